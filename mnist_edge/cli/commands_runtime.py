"""`mnist-edge run` and `mnist-edge bench`: the torch-free side of the toolkit.

Both work from the light install (onnxruntime, numpy, Pillow, Typer, rich). The library modules
are imported inside the commands so `mnist-edge --help` stays fast. `bench` is a thin layer over
`mnist_edge.benchmark.run_benchmark` (which imports torch only for the optional PyTorch
baseline, matplotlib only to draw bench.png) and renders its tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mnist_edge.cli.common import JsonOption, command, console, mean_option, print_json, scale_option, std_option
from mnist_edge.config import BENCH_BATCH_SIZES, BENCH_SECONDS, BENCH_THREADS, SHOW_EACH_UP_TO, SHOW_LIMIT
from mnist_edge.errors import ConfigError
from mnist_edge.fileio import atomic_write_json

if TYPE_CHECKING:
    from mnist_edge.benchmark import BenchOutcome

# --- run ------------------------------------------------------------------------------------


@command()
def run(
    model: Path = typer.Argument(..., help="Exported model folder (with manifest.json) or .onnx file."),
    inputs: list[Path] = typer.Argument(
        ..., help="Images (PNG, JPEG, BMP...), directories, .npy arrays (N x 28 x 28 or N x 784) "
        "or IDX files."),
    json_output: JsonOption = False,
    top: int = typer.Option(3, "--top", min=1, max=10, help="How many best guesses to show."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Images per inference call."),
    save_preprocessed: Path | None = typer.Option(
        None, "--save-preprocessed", help="Write the 28 x 28 images the model saw into this folder."),
    out: Path | None = typer.Option(None, "--out", help="Also write predictions.json into this folder."),
    show: Path | None = typer.Option(
        None, "--show", help="Draw the predictions into this folder: one PNG per input (the input as given, "
        f"what the model saw, the top probabilities) for up to {SHOW_EACH_UP_TO} inputs, else a contact sheet "
        "(sheet.png)."),
    show_each: bool = typer.Option(False, "--show-each", help="With --show: one PNG per input however many."),
    show_limit: int | None = typer.Option(None, "--show-limit", min=1, help=f"With --show: draw the first N "
                                          f"inputs only (default {SHOW_LIMIT:,})."),
    labels: Path | None = typer.Option(
        None, "--labels", help="The true digits, one per image in input order: an IDX label file or a .npy "
        "array of integers. Adds right/wrong and the accuracy to the output and the pictures."),
    scale: float | None = scale_option(),
    mean: float | None = mean_option(),
    std: float | None = std_option(),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="onnxruntime threads (default: all cores)."),
    provider: str = typer.Option("cpu", "--provider", help="cpu or cuda."),
) -> None:
    """Predict the digits in images, arrays or IDX files with an ONNX model (no PyTorch needed).

    Photos and scans are made MNIST-like first: grayscale, inverted when the background is
    light, cropped to the digit, fitted into 20 x 20 and centred by mass in 28 x 28 (a 28 x 28
    image is taken as already MNIST-like). A bad input is reported on stderr and skipped:
    the exit code is then 1, or 2 when no input could be read.

    Example: mnist-edge run exported/cnn-int8 photo.jpg scans/ digits.npy --top 3
    Example: mnist-edge run exported/cnn-int8 t10k-images-idx3-ubyte --labels t10k-labels-idx1-ubyte --show pics/
    """
    from mnist_edge import prediction_pictures
    from mnist_edge.inputs import check_labels, load_inputs, load_labels, save_images
    from mnist_edge.runtime import Predictor

    _check_show_options(show, show_each, show_limit)
    true = load_labels(labels) if labels is not None else None
    predictor = Predictor.load(model, scale=scale, mean=mean, std=std, threads=threads,
                               provider=provider)
    loaded = load_inputs(inputs)
    for error in loaded.errors:
        typer.echo(f"error: {error}", err=True)
    if not len(loaded):
        raise typer.Exit(2)
    if true is not None:  # before anything is written
        true = check_labels(true, labels, len(loaded), len(predictor.labels), skipped=len(loaded.errors))
    if save_preprocessed is not None:
        save_images(save_preprocessed, loaded.names, loaded.images)
    prediction = predictor.predict(loaded.images, chunk=batch_size)
    payload = _predictions_payload(predictor, loaded, prediction, top, true)
    if show is not None:
        payload["pictures"] = [str(path) for path in prediction_pictures.write_pictures(
            show, loaded.names, loaded.images, prediction.probabilities, origins=loaded.origins, true=true,
            labels=predictor.labels, title=predictor.name, each=show_each, limit=show_limit or SHOW_LIMIT,
            top=max(top, 5))]
    if out is not None:
        atomic_write_json(Path(out) / "predictions.json", payload)
    if json_output:
        print_json(payload)
    else:
        _print_predictions(payload, top)
        _print_pictures(show, payload.get("pictures", []))
    raise typer.Exit(1 if loaded.errors else 0)


def _check_show_options(show: Path | None, each: bool, limit: int | None) -> None:
    """Before any work: --show names a folder that can be written; its companions need it."""
    from mnist_edge import prediction_pictures

    if show is not None:
        prediction_pictures.check_folder(show)
        return
    given = [name for name, value in (("--show-each", each), ("--show-limit", limit)) if value]
    if given:
        raise ConfigError(f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} --show DIR")


def _print_pictures(folder: Path | None, pictures: list[str]) -> None:
    if len(pictures) == 1:
        typer.echo(f"picture: {pictures[0]}")
    elif pictures:
        typer.echo(f"pictures: {len(pictures):,} PNG files in {folder}")


def _predictions_payload(predictor: Any, loaded: Any, prediction: Any, top: int,
                         true: Any = None) -> dict[str, Any]:
    indices, probabilities = prediction.top(top)
    labels = predictor.labels
    rows = []
    for name, best, chances in zip(loaded.names, indices.tolist(), probabilities.tolist(), strict=True):
        guesses = [{"digit": labels[i], "probability": round(q, 6)}
                   for i, q in zip(best, chances, strict=True)]
        rows.append({"input": name, "digit": guesses[0]["digit"],
                     "confidence": guesses[0]["probability"], "top": guesses})
    payload = {
        "model": str(predictor.model_path), "model_name": predictor.name,
        "input": {"layout": predictor.layout, "dtype": str(predictor.input_dtype),
                  "batch": predictor.batch},
        "outputs_probabilities": predictor.outputs_probabilities,
        "predictions": rows,
        "errors": [{"input": str(e.path) if e.path else None, "error": e.reason} for e in loaded.errors],
    }
    if true is not None:
        for row, label, digit in zip(rows, true.tolist(), prediction.digits.tolist(), strict=True):
            row.update({"label": labels[label], "correct": label == digit})
        right = int((prediction.digits == true).sum())
        payload["accuracy"] = {"correct": right, "count": len(rows), "accuracy": right / len(rows)}
    return payload


def _label_mark(row: dict[str, Any]) -> str:
    return f"{row['label']} right" if row["correct"] else f"{row['label']} WRONG"


def _print_predictions(payload: dict[str, Any], top: int) -> None:
    """Aligned plain columns: a rich Table measures every cell and takes 0.7 s for 1,000 rows,
    longer than decoding and classifying them; plain lines also stay greppable."""
    labelled = "accuracy" in payload
    rows = [(row["input"], row["digit"], f"{row['confidence']:.1%}",
             "  ".join(f"{g['digit']} {g['probability']:.0%}" for g in row["top"]),
             _label_mark(row) if labelled else "")
            for row in payload["predictions"]]
    header = ("input", "digit", "confidence", f"top-{top}", "label" if labelled else "")
    width = max(len(header[0]), *(len(r[0]) for r in rows))
    top_width = max(len(r[3]) for r in [header, *rows])
    lines = [f"{payload['model_name']}: {len(rows)} image(s)"]
    lines += [f"{a:<{width}}  {b:>5}  {c:>10}  {d:<{top_width}}  {e}".rstrip() for a, b, c, d, e in [header, *rows]]
    if labelled:
        score = payload["accuracy"]
        lines.append(f"accuracy {score['accuracy']:.2%} ({score['correct']:,} of {score['count']:,} right)")
    if payload["errors"]:
        lines.append(f"{len(payload['errors'])} input(s) skipped (see the errors above)")
    typer.echo("\n".join(lines))


# --- bench ----------------------------------------------------------------------------------


@command()
def bench(
    models: list[Path] = typer.Argument(
        ..., help="ONNX files, exported folders or C libraries (codegen folders); ratios are to the first."),
    batch_sizes: str = typer.Option(",".join(map(str, BENCH_BATCH_SIZES)), "--batch-sizes",
                                    help="Batch sizes for throughput."),
    threads: str = typer.Option(
        BENCH_THREADS, "--threads", help="Thread counts; N = all usable cores. Latency uses the first."),
    provider: str = typer.Option("cpu", "--provider", help="cpu or cuda."),
    seconds: float = typer.Option(
        BENCH_SECONDS, "--seconds", min=0.01,
        help="Latency measurement time per model; each throughput point gets a quarter of it."),
    out: Path | None = typer.Option(
        None, "--out", help="Write bench.json, bench.md and bench.png (and profiles) into this folder."),
    json_output: JsonOption = False,
    compare: Path | None = typer.Option(
        None, "--compare", help="An earlier bench.json: give a regression verdict (exit 1 on regression)."),
    threshold: float = typer.Option(
        0.10, "--threshold", help="Fraction a metric may worsen before --compare calls it a regression."),
    profile: bool = typer.Option(False, "--profile", help="Per-operator times from onnxruntime's profiler."),
    torch_checkpoint: Path | None = typer.Option(
        None, "--torch-checkpoint",
        help="Training run folder: add its PyTorch eager model (needs torch). Default: the "
        "manifest's source.checkpoint when it exists and torch is installed."),
    no_torch: bool = typer.Option(False, "--no-torch", help="Never add the PyTorch baseline."),
    floor: bool = typer.Option(
        False, "--floor", help="Measure onnxruntime's floor first (a model that only slices its input to 10 "
        "values: what any call costs here), so the ratios read 'x floor'."),
    scale: float | None = scale_option(),
    mean: float | None = mean_option(),
    std: float | None = std_option(),
    cc: str = typer.Option("cc", "--cc", help="C compiler for C libraries."),
    cflags: str | None = typer.Option(
        None, "--cflags", help="Optimization flags for C libraries (default -O3 -march=native, the build "
        "`codegen --verify` proves; the strict C99 flags and -fPIC are always added)."),
) -> None:
    """Benchmark ONNX models and C libraries side by side: cold start, latency, throughput, memory.

    Batch-1 latency is measured after a warm-up that runs until latency is steady, with
    IOBinding so the timed loop holds nothing but the inference call. Reports p50/p90/p99/
    p99.9, mean, std and CV (with warnings when noisy or too few runs), images/s for every
    batch size x thread count, the memory each model adds (its peak over the RSS before it was
    loaded) beside the process peak, the CPU's int8-relevant ISA flags, and why an int8 model is
    slower than its own fp32 sibling when both are measured and it is.

    A C library (a `codegen` folder) is compiled into a shared library and called through ctypes
    with the same raw pixels; its rows name the kernels the build chose and its source int8 model.

    Example: mnist-edge bench --floor exported/cnn-fp32 exported/cnn-int8 --out bench/ --profile
    Example: mnist-edge bench exported/tiny-mcu exported/tiny-mcu-int8 --threads 1
    """
    from mnist_edge import benchmark
    from mnist_edge.cli.commands_codegen import parse_cflags

    request = benchmark.BenchRequest(
        models, batch_sizes=benchmark.parse_batch_sizes(batch_sizes),
        threads=benchmark.parse_threads(threads), provider=provider, seconds=seconds, out=out,
        profile=profile, torch_checkpoint=torch_checkpoint, no_torch=no_torch, compare=compare,
        threshold=threshold, scale=scale, mean=mean, std=std, floor=floor, cc=cc,
        cflags=parse_cflags(cflags) if cflags is not None else None)
    # A transient status line on stderr: stdout carries the tables or the JSON, and nothing of
    # it is left behind (or written at all when stderr is not a terminal).
    with Console(stderr=True).status("measuring") as status:
        outcome = benchmark.run_benchmark(
            request, on_model=lambda name, i, n: status.update(f"measuring {i + 1}/{n}: {name}"))
    if json_output:
        print_json(outcome.payload)
    else:
        _print_bench(outcome)
    raise typer.Exit(1 if outcome.regression else 0)


def _print_bench(outcome: BenchOutcome) -> None:
    from mnist_edge import benchmark

    report, comparison = outcome.report, outcome.comparison
    console.print(escape(benchmark.headline(report)))
    for title, header, rows in benchmark.tables(report):
        console.print(_rich_table(title, header, rows))
    for model in report.models:
        if model.profile_file:
            console.print(f"raw profile: {escape(str(model.profile_file))}")
    for finding in benchmark.findings(report, outcome.notes, comparison):
        console.print(f"[yellow]note:[/] {escape(finding)}")
    if comparison is not None:
        console.print(_rich_table(*benchmark.comparison_table(comparison)))
        colour = {"regression": "red", "improvement": "green"}.get(comparison.verdict, "white")
        console.print(f"verdict: [bold {colour}]{comparison.verdict}[/]")


def _rich_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table
