"""`mnist-edge pipeline` and `mnist-edge sweep`: the main job and the experiments."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from mnist_edge.cli.commands_train import DataDirOption, DownloadOption, TrainingDisplay
from mnist_edge.cli.common import command, console

_STATUS_STYLE = {"done": "green", "skipped": "cyan", "failed": "red", "running": "yellow"}


@command()
def pipeline(
    out: Path = typer.Option(..., "--out", help="Folder for everything: checkpoint, models, reports."),
    preset: str = typer.Option("fast", help="Recipe preset: fast, default or seed."),
    arch: Optional[str] = typer.Option(None, help="Architecture: mlp, lenet5, cnn, tiny (overrides the preset)."),
    epochs: Optional[int] = typer.Option(None, help="Epochs (overrides the preset)."),
    seed: Optional[int] = typer.Option(None, help="Training seed (overrides the preset)."),
    device: str = typer.Option("auto", help="Training device: auto, cpu, cuda or mps."),
    bench_seconds: float = typer.Option(1.0, help="Latency measurement time per model in the bench step."),
    resume: bool = typer.Option(False, "--resume", help="Skip steps already done with unchanged inputs."),
    force: bool = typer.Option(False, "--force", help="Start over in an --out that holds a run."),
    data_dir: Optional[Path] = DataDirOption,
    download: bool = DownloadOption,
) -> None:
    """Run the whole job: data check, train, eval, export, quantize, parity, bench and report.

    Writes one folder with the checkpoint, fp32 and int8 ONNX models with manifests, JSON
    reports, PNGs and a self-contained report.html. A failing step stops the run and names
    itself; `--resume` then skips the steps already done.

    Example: mnist-edge pipeline --preset fast --out runs/fast
    """
    from mnist_edge.config import preset as make_recipe
    from mnist_edge.pipeline import PipelineOptions, run_pipeline

    recipe = make_recipe(preset, arch=arch, epochs=epochs, seed=seed)
    options = PipelineOptions(recipe=recipe, out=out, device=device, data_dir=data_dir, download=download,
                              resume=resume, force=force, bench_seconds=bench_seconds)
    with TrainingDisplay() as display:
        state = run_pipeline(options, _hooks(display))
    summary = state.summary
    accuracy = (summary.get("parity") or {}).get("accuracy", {})
    console.print(f"[bold]done[/]: {out}/report.html  ·  test accuracy "
                  + ", ".join(f"{role} {acc:.2%}" for role, acc in accuracy.items()))


def _hooks(display: TrainingDisplay) -> dict[str, Any]:
    def step_start(name: str, index: int, total: int) -> None:
        console.print(f"[bold]step {index + 1}/{total}: {name}[/]")

    def step_end(record: Any) -> None:
        style = _STATUS_STYLE.get(record.status, "white")
        console.print(f"  [{style}]{record.status}[/] in {record.seconds:.1f}s  {record.message}")

    return {"step_start": step_start, "step_end": step_end, "train_step": display.step,
            "train_epoch": display.epoch, "train_start": display.start}
