"""`mnist-edge pipeline` and `mnist-edge sweep`: the main job and the experiments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from mnist_edge.cli.commands_train import TrainingDisplay
from mnist_edge.cli.common import DataDirOption, DeviceOption, DownloadOption, command, console
from mnist_edge.config import PIPELINE_BENCH_SECONDS
from mnist_edge.config import preset as make_recipe
from mnist_edge.units import format_us

_STATUS_STYLE = {"done": "green", "skipped": "cyan", "failed": "red", "running": "yellow"}


@command()
def pipeline(
    out: Path = typer.Option(..., "--out", help="Folder for everything: checkpoint, models, reports."),
    preset: str = typer.Option("fast", help="Recipe preset: fast, default or seed."),
    arch: str | None = typer.Option(None, help="Architecture: mlp, lenet5, cnn, tiny, strided, micro (overrides "
                                      "the preset)."),
    epochs: int | None = typer.Option(None, help="Epochs (overrides the preset)."),
    seed: int | None = typer.Option(None, help="Training seed (overrides the preset)."),
    teacher: Path | None = typer.Option(None, "--teacher", help="Distil from this teacher: a training run "
                                        "folder or an exported checkpoint (e.g. exported/checkpoints/cnn)."),
    device: DeviceOption = "auto",
    bench_seconds: float = typer.Option(PIPELINE_BENCH_SECONDS, help="Latency measurement time per model in the "
                                        "bench step."),
    resume: bool = typer.Option(False, "--resume", help="Skip steps already done with unchanged inputs."),
    force: bool = typer.Option(False, "--force", help="Start over in an --out that holds a run."),
    web: bool = typer.Option(False, "--web", help="Also build the browser page of the int8 model in OUT/site "
                             "(`mnist-edge web`), linked from the report."),
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
) -> None:
    """Run the whole job: data check, train, eval, export, quantize, parity, bench and report.

    Writes one folder with the checkpoint, fp32 and int8 ONNX models with manifests, JSON
    reports, PNGs and a self-contained report.html. A failing step stops the run and names
    itself; `--resume` then skips the steps already done.

    Example: mnist-edge pipeline --preset fast --out runs/fast
    """
    from mnist_edge.pipeline import PipelineOptions, run_pipeline

    recipe = make_recipe(preset, arch=arch, epochs=epochs, seed=seed,
                         teacher=None if teacher is None else str(teacher))
    options = PipelineOptions(recipe=recipe, out=out, device=device, data_dir=data_dir, download=download,
                              resume=resume, force=force, bench_seconds=bench_seconds, web=web)
    with TrainingDisplay() as display:
        state = run_pipeline(options, _hooks(display))
    summary = state.summary
    accuracy = (summary.get("parity") or {}).get("accuracy", {})
    console.print(f"[bold]done[/]: {escape(str(out))}/report.html  ·  test accuracy "
                  + ", ".join(f"{role} {acc:.2%}" for role, acc in accuracy.items()))


def _hooks(display: TrainingDisplay) -> dict[str, Any]:
    def step_start(name: str, index: int, total: int) -> None:
        console.print(f"[bold]step {index + 1}/{total}: {name}[/]")

    def step_end(record: Any) -> None:
        style = _STATUS_STYLE.get(record.status, "white")
        took = "" if record.status == "skipped" else f" in {record.seconds:.1f}s"
        console.print(f"  [{style}]{record.status}[/]{took}  {escape(record.message)}")

    def bench_model(name: str, index: int, total: int) -> None:
        console.print(f"  measuring {index + 1}/{total}: {escape(name)}")

    return {"step_start": step_start, "step_end": step_end, "train_step": display.step,
            "train_epoch": display.epoch, "train_start": display.start, "bench_model": bench_model}


@command()
def sweep(
    config: Path = typer.Argument(..., help="Sweep config (TOML): [sweep], [[run]] tables and/or a [grid]."),
    out: Path = typer.Option(..., "--out", help="Folder for one sub-folder per run plus the results."),
    resume: bool = typer.Option(False, "--resume", help="Finish a half-done sweep, skipping finished steps."),
    force: bool = typer.Option(False, "--force", help="Start over in an --out that holds a sweep."),
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
) -> None:
    """Train, export and quantize every run of a sweep, then measure each deployed int8 model.

    Writes results.csv, results.md, results.json and pareto.png (accuracy vs batch-1 latency,
    marker size = file size, the Pareto front highlighted). A failing run is recorded and the
    sweep goes on.

    Example: mnist-edge sweep sweeps/example.toml --out runs/sweep
    """
    from mnist_edge.sweep import load_config, run_sweep

    parsed = load_config(config)
    # Names, messages and paths come from the user's files: escaped, or rich reads "[/x]" as markup.
    console.print(f"sweep [bold]{escape(parsed.name)}[/]: {len(parsed.runs)} runs -> {escape(str(out))}")
    with TrainingDisplay() as display:
        hooks = _hooks(display)
        hooks["run_start"] = lambda spec, i, n: console.print(f"[bold]run {i + 1}/{n}: {escape(spec.name)}[/] "
                                                              f"({spec.recipe.arch})")
        hooks["run_end"] = lambda r: console.print(
            f"  {r.status}: int8 {r.int8_accuracy:.2%}, {format_us(r.latency_us)}" if r.status == "done"
            else f"  [red]failed[/]: {escape(r.message)}")
        results = run_sweep(parsed, out, resume=resume, force=force, data_dir=data_dir, download=download,
                            hooks=hooks)
    failed = sum(r.status != "done" for r in results)
    console.print(f"[bold]done[/]: {len(results) - failed} runs measured, {failed} failed; "
                  f"{escape(str(out))}/results.md, {escape(str(out))}/pareto.png")
