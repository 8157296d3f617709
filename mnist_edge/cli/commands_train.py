"""`mnist-edge train` and `mnist-edge eval`: render training progress and evaluation results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from mnist_edge.cli.common import DataDirOption, DeviceOption, DownloadOption, JsonOption, command, console, print_json
from mnist_edge.config import preset as make_recipe


@command()
def train(
    out: Path = typer.Option(..., "--out", help="Run folder for checkpoint, metrics and curves."),
    preset: str | None = typer.Option(None, help="Recipe preset: seed (the original notebook), default "
                                      "(used when none is given), fast, fast-distill (fast taught by "
                                      "exported/checkpoints/cnn)."),
    arch: str | None = typer.Option(None, help="Architecture: mlp, lenet5, cnn, tiny, strided, micro."),
    width: int | None = typer.Option(None, help="Width knob: mlp hidden units; strided, cnn, tiny, micro first-conv "
                                     "channels (0: the layout as named)."),
    depth: int | None = typer.Option(None, help="Depth knob: mlp hidden layers; strided stride-2 stages (2 or 3)."),
    epochs: int | None = typer.Option(None, help="Number of epochs."),
    batch_size: int | None = typer.Option(None, help="Images per step."),
    lr: float | None = typer.Option(None, help="Peak learning rate."),
    optimizer: str | None = typer.Option(None, help="sgd or adamw."),
    schedule: str | None = typer.Option(None, help="onecycle or none."),
    augment: bool | None = typer.Option(None, "--augment/--no-augment", help="Random affine augmentation."),
    seed: int | None = typer.Option(None, help="Seed for weights, shuffling and augmentation."),
    limit: int | None = typer.Option(None, help="Train on the first N training images only (smoke runs)."),
    val_size: int | None = typer.Option(None, help="Validation images carved from the training set."),
    teacher: Path | None = typer.Option(None, "--teacher", help="Distil from this teacher: a training run "
                                        "folder or an exported checkpoint (e.g. exported/checkpoints/cnn)."),
    distill_weight: float | None = typer.Option(None, help="Share of the loss that matches the teacher's "
                                                "softened outputs, 0 to 1 (default 0.5; needs --teacher)."),
    temperature: float | None = typer.Option(None, help="Temperature softening the teacher's and the student's "
                                             "outputs (default 4; needs --teacher)."),
    device: DeviceOption = "auto",
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model (CUDA)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    force: bool = typer.Option(False, "--force", help="Start over in an --out that holds a run."),
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
) -> None:
    """Train a model; checkpoints are saved every epoch and on Ctrl-C.

    Explicit options override the preset. With --teacher the loss mixes the labels'
    cross-entropy with the KL divergence to the teacher's softened outputs (knowledge
    distillation).

    Example: mnist-edge train --preset fast --teacher exported/checkpoints/cnn --out runs/fast-kd
    """
    from mnist_edge.train import train as run_training

    requested = {"arch": arch, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                 "optimizer": optimizer, "schedule": schedule, "augment": augment, "seed": seed,
                 "train_limit": limit, "val_size": val_size,
                 "width": width, "depth": depth, "distill_weight": distill_weight, "temperature": temperature,
                 "teacher": None if teacher is None else str(teacher)}
    recipe = make_recipe(preset or "default", **requested)
    check_distill_options(recipe, distill_weight, temperature, resume)
    if resume and preset is not None:
        # A preset given again on --resume must agree with the saved run in every field it sets.
        requested = recipe.to_dict()
    with TrainingDisplay() as display:
        result = run_training(recipe, out, device=device, data_dir=data_dir, download=download,
                              resume=resume, force=force, compile_model=compile, requested=requested,
                              on_step=display.step, on_epoch=display.epoch, on_start=display.start)
    last = result.history[-1] if result.history else {}
    run_dir = escape(str(result.run_dir))  # a user's path: "[/x]" in it is no markup
    console.print(f"[bold]done[/]: {run_dir} ({result.params:,} parameters, {result.device}); "
                  f"val acc {_pct(last.get('val_acc'))}. Next: mnist-edge eval {run_dir}")


def check_distill_options(recipe: Any, distill_weight: float | None, temperature: float | None,
                          resume: bool) -> None:
    """--distill-weight and --temperature mean nothing without a teacher: refuse them, not ignore them."""
    from mnist_edge.errors import ConfigError

    given = [flag for flag, value in (("--distill-weight", distill_weight), ("--temperature", temperature))
             if value is not None]
    if given and not recipe.distilled and not resume:
        raise ConfigError(f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} a teacher: add "
                          "--teacher RUN_OR_CHECKPOINT")


class TrainingDisplay:
    """A rich progress bar for steps and one summary line per epoch."""

    def __enter__(self) -> TrainingDisplay:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=console,
                                 transient=True)
        self.progress.__enter__()
        self.task = self.progress.add_task("train", total=None, epoch="-", stats="")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def start(self, trainer: Any) -> None:
        r = trainer.recipe
        console.print(f"training [bold]{r.arch}[/] ({trainer.params:,} parameters) on {trainer.device}: "
                      f"{r.epochs} epochs, batch {r.batch_size}, {r.optimizer} lr {r.lr}, {r.schedule}, "
                      f"augment {'on' if r.augment else 'off'}, seed {r.seed}"
                      + (f", teacher {escape(r.teacher)} (weight {r.distill_weight:g}, temperature "
                         f"{r.temperature:g})" if r.distilled else "")
                      + (f" (resuming at epoch {trainer.progress.epoch + 1})" if trainer.progress.epoch
                         or trainer.progress.step else ""))

    def step(self, info: Any) -> None:
        stats = f"loss {info.loss:.4f} acc {info.accuracy:.3f} {info.images_per_s:,.0f} img/s"
        self.progress.update(self.task, completed=info.step, total=info.steps_per_epoch,
                             epoch=f"{info.epoch}/{info.epochs}", stats=stats)

    def epoch(self, result: Any) -> None:
        console.print(f"epoch {result.epoch:>3}: train loss {result.train_loss:.4f} acc {_pct(result.train_acc)}"
                      f" | val loss {_num(result.val_loss)} acc {_pct(result.val_acc)} | lr {result.lr:.4g}"
                      f" | {result.seconds:.1f}s, {result.images_per_s:,.0f} img/s"
                      + ("" if result.teacher_seconds is None else f" (teacher {result.teacher_seconds:.1f}s)"))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@command(name="eval")
def evaluate(
    model: Path = typer.Argument(..., help="A training run folder, an exported model folder or an .onnx file."),
    out: Path | None = typer.Option(None, "--out", help="Folder for eval.json and PNGs (default: next "
                                       "to a run folder's checkpoint; none for ONNX models)."),
    split: str = typer.Option("test", "--split", help="Images to evaluate on: test (the 10,000 test images), "
                              "train (those the model learnt from, unaugmented) or val (the validation "
                              "images its recipe held out). Other splits than test write eval_SPLIT.json "
                              "and its PNGs."),
    json_output: JsonOption = False,
    scale: float | None = typer.Option(None, help="ONNX input scale (default: manifest, else 255)."),
    mean: float | None = typer.Option(None, help="ONNX input mean (default: manifest, else 0.1307)."),
    std: float | None = typer.Option(None, help="ONNX input std (default: manifest, else 0.3081)."),
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
) -> None:
    """Evaluate a model on the 10,000 MNIST test images (or its training or validation images):
    accuracy, per-class figures, confusion.

    A training run folder is evaluated with PyTorch; an .onnx file or exported folder with
    onnxruntime alone (no torch needed). The training and validation images are those the
    model's recipe used (from the checkpoint, or the manifest's source.recipe; else the
    default hold-out of 5,000 validation images, split seed 0).

    Example: mnist-edge eval runs/fast
    Example: mnist-edge eval exported/cnn-int8 --split train
    """
    from mnist_edge.evaluate import evaluate_any

    report, artifacts = evaluate_any(model, split=split, out=out, data_dir=data_dir, download=download,
                                     scale=scale, mean=mean, std=std)
    if json_output:
        print_json(report.to_dict())
        return
    _render_eval(report)
    for kind, path in artifacts.items():
        console.print(f"{kind}: {escape(str(path))}")


def _render_eval(report: Any) -> None:
    from mnist_edge.evaluate import confusion_lines

    table = Table(title=f"{report.model}: {report.split} accuracy {report.accuracy:.2%} "
                        f"({report.correct:,}/{report.count:,})")
    for column in ("digit", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="right")
    for row in report.per_class:
        table.add_row(row.label, f"{row.precision:.2%}", f"{row.recall:.2%}", f"{row.f1:.4f}", str(row.support))
    console.print(table)
    typer.echo(f"images: {report.images}")
    for name, other in report.beside.items():
        typer.echo(f"{name} accuracy {other.accuracy:.2%} ({other.correct:,}/{other.count:,}): {other.images}")
    if report.params is not None:
        console.print(f"parameters: {report.params:,}")
    # typer.echo, not rich: plain aligned lines, never re-wrapped.
    typer.echo("confusion (rows: true digit, columns: predicted)")
    typer.echo("\n".join(confusion_lines(report)))
