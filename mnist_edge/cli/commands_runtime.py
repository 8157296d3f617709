"""`mnist-edge run` and `mnist-edge bench`: the torch-free side of the toolkit.

Both work from the light install (onnxruntime, numpy, Pillow, Typer, rich). The library modules
are imported inside the commands so `mnist-edge --help` stays fast; torch is imported only for
the optional PyTorch baseline of `bench`, matplotlib only to draw bench.png.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from mnist_edge.cli.common import command, console, print_json
from mnist_edge.errors import ConfigError

_NORMALISATION_HELP = "x = (pixel / scale - mean) / std for float-input models"


def _scale_option() -> Any:
    return typer.Option(None, "--scale", help=f"Pixel scale; {_NORMALISATION_HELP}. Default: the "
                        "manifest's, else 255. uint8-input models take raw pixels.")


def _mean_option() -> Any:
    return typer.Option(None, "--mean", help="Mean after scaling. Default: the manifest's, else 0.1307.")


def _std_option() -> Any:
    return typer.Option(None, "--std", help="Std after scaling. Default: the manifest's, else 0.3081.")


# --- run ------------------------------------------------------------------------------------


@command()
def run(
    model: Path = typer.Argument(..., help="Exported model folder (with manifest.json) or .onnx file."),
    inputs: list[Path] = typer.Argument(
        ..., help="Images (PNG, JPEG, BMP...), directories, .npy arrays (N x 28 x 28 or N x 784) "
        "or IDX files."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    top: int = typer.Option(3, "--top", min=1, max=10, help="How many best guesses to show."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Images per inference call."),
    save_preprocessed: Path | None = typer.Option(
        None, "--save-preprocessed", help="Write the 28 x 28 images the model saw into this folder."),
    out: Path | None = typer.Option(None, "--out", help="Also write predictions.json into this folder."),
    scale: float | None = _scale_option(),
    mean: float | None = _mean_option(),
    std: float | None = _std_option(),
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
    """
    from mnist_edge.inputs import load_inputs, save_images
    from mnist_edge.runtime import Predictor

    predictor = Predictor.load(model, scale=scale, mean=mean, std=std, threads=threads,
                               provider=provider)
    loaded = load_inputs(inputs)
    for error in loaded.errors:
        typer.echo(f"error: {error}", err=True)
    if not len(loaded):
        raise typer.Exit(2)
    if save_preprocessed is not None:
        save_images(save_preprocessed, loaded.names, loaded.images)
    prediction = predictor.predict(loaded.images, chunk=batch_size)
    payload = _predictions_payload(predictor, loaded, prediction, top)
    if out is not None:
        from mnist_edge.fileio import atomic_write_json

        atomic_write_json(Path(out) / "predictions.json", payload)
    if json_output:
        print_json(payload)
    else:
        _print_predictions(payload, top)
    raise typer.Exit(1 if loaded.errors else 0)


def _predictions_payload(predictor: Any, loaded: Any, prediction: Any, top: int) -> dict[str, Any]:
    indices, probabilities = prediction.top(top)
    labels = predictor.labels
    rows = []
    for name, best, chances in zip(loaded.names, indices.tolist(), probabilities.tolist(), strict=True):
        guesses = [{"digit": labels[i], "probability": round(q, 6)}
                   for i, q in zip(best, chances, strict=True)]
        rows.append({"input": name, "digit": guesses[0]["digit"],
                     "confidence": guesses[0]["probability"], "top": guesses})
    return {
        "model": str(predictor.model_path), "model_name": predictor.name,
        "input": {"layout": predictor.layout, "dtype": str(predictor.input_dtype),
                  "batch": predictor.batch},
        "outputs_probabilities": predictor.outputs_probabilities,
        "predictions": rows,
        "errors": [{"input": str(e.path) if e.path else None, "error": e.reason} for e in loaded.errors],
    }


def _print_predictions(payload: dict[str, Any], top: int) -> None:
    """Aligned plain columns: a rich Table measures every cell and takes 0.7 s for 1,000 rows,
    longer than decoding and classifying them; plain lines also stay greppable."""
    rows = [(row["input"], row["digit"], f"{row['confidence']:.1%}",
             "  ".join(f"{g['digit']} {g['probability']:.0%}" for g in row["top"]))
            for row in payload["predictions"]]
    header = ("input", "digit", "confidence", f"top-{top}")
    width = max(len(header[0]), *(len(r[0]) for r in rows))
    lines = [f"{payload['model_name']}: {len(rows)} image(s)"]
    lines += [f"{a:<{width}}  {b:>5}  {c:>10}  {d}" for a, b, c, d in [header, *rows]]
    if payload["errors"]:
        lines.append(f"{len(payload['errors'])} input(s) skipped (see the errors above)")
    typer.echo("\n".join(lines))


# --- bench ----------------------------------------------------------------------------------


@command()
def bench(
    models: list[Path] = typer.Argument(
        ..., help="ONNX files or exported folders; ratios are to the first."),
    batch_sizes: str = typer.Option("1,8,64,256", "--batch-sizes", help="Batch sizes for throughput."),
    threads: str = typer.Option(
        "1,N", "--threads", help="Thread counts; N = all usable cores. Latency uses the first."),
    provider: str = typer.Option("cpu", "--provider", help="cpu or cuda."),
    seconds: float = typer.Option(
        2.0, "--seconds", min=0.01,
        help="Latency measurement time per model; each throughput point gets a quarter of it."),
    out: Path | None = typer.Option(
        None, "--out", help="Write bench.json, bench.md and bench.png (and profiles) into this folder."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
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
    scale: float | None = _scale_option(),
    mean: float | None = _mean_option(),
    std: float | None = _std_option(),
) -> None:
    """Benchmark ONNX models side by side: cold start, latency percentiles, throughput, memory.

    Batch-1 latency is measured after a warm-up that runs until latency is steady, with
    IOBinding so the timed loop holds nothing but the inference call. Reports p50/p90/p99/
    p99.9, mean, std and CV (with warnings when noisy or too few runs), images/s for every
    batch size x thread count, peak RSS, the CPU's int8-relevant ISA flags, and why an int8
    model is slower than fp32 when it is.

    Example: mnist-edge bench exported/cnn-fp32 exported/cnn-int8 --out bench/ --profile
    """
    from mnist_edge import bench as measure
    from mnist_edge.fileio import ensure_dir

    # Every option is checked before the first measurement: a typo should not cost a minute.
    sizes = _positive_ints(batch_sizes, "--batch-sizes")
    counts = _thread_counts(threads, measure.usable_cores())
    if not threshold > 0:
        raise ConfigError(f"--threshold must be positive, got {threshold}")
    old = measure.load_previous(compare) if compare is not None else None
    notes: list[str] = []
    checkpoint = None if no_torch else _torch_baseline_source(torch_checkpoint, models, notes)
    if out is not None:
        ensure_dir(out)
    images, source = measure.sample_images(max(max(sizes), 8))
    settings = measure.Settings(sizes, counts, provider, seconds, seconds / 4, source)
    profile_dir = (Path(out) / "profiles" if out else Path(_temp_dir())) if profile else None
    results = [measure.bench_onnx(path, images=images, batch_sizes=sizes, threads=counts,
                                  seconds=seconds, throughput_seconds=settings.throughput_seconds,
                                  provider=provider, profile_dir=profile_dir, scale=scale,
                                  mean=mean, std=std)
               for path in models]
    # PyTorch last: importing it adds hundreds of MB to the process, which would blur the
    # ONNX models' memory figures.
    if checkpoint is not None:
        results.append(_bench_torch(checkpoint, images, settings))
    _unique_names(results)
    report = measure.report(measure.environment(provider), settings, results)
    comparison = measure.compare(old, report, threshold) if old is not None else None
    _output_bench(report, comparison, notes, out, json_output)
    raise typer.Exit(1 if comparison is not None and comparison.verdict == "regression" else 0)


def _output_bench(report: Any, comparison: Any, notes: list[str], out: Path | None,
                  json_output: bool) -> None:
    if out is not None:
        notes += _write_png(Path(out) / "bench.png", report)  # first: its note goes in the files
    payload = {**asdict(report), "comparison": asdict(comparison) if comparison else None,
               "notes": notes}
    if out is not None:
        _write_bench_files(Path(out), payload, report)
    if json_output:
        print_json(payload)
    else:
        _print_bench(report, comparison, notes)


def _positive_ints(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ConfigError(f"{option} must be a comma-separated list of positive integers, got {text!r}")
    return sorted(set(values))


def _thread_counts(text: str, cores: int) -> list[int]:
    """"1,N" -> [1, cores], keeping the order (latency uses the first) and dropping repeats."""
    counts: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        value = cores if part.upper() == "N" else _positive_ints(part, "--threads")[0]
        if value not in counts:
            counts.append(value)
    if not counts:
        raise ConfigError(f"--threads must list thread counts such as 1,N, got {text!r}")
    return counts


def _temp_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="mnist-edge-profile-")


def _unique_names(results: list[Any]) -> None:
    seen: dict[str, int] = {}
    for result in results:
        seen[result.name] = seen.get(result.name, 0) + 1
        if seen[result.name] > 1:
            result.name = f"{result.name}#{seen[result.name]}"


def _torch_baseline_source(explicit: Path | None, models: list[Path], notes: list[str]) -> Path | None:
    """The training run to benchmark with PyTorch: --torch-checkpoint, else the manifest's hint.

    Checked before any measuring, so a missing torch or checkpoint fails fast.
    """
    if explicit is not None:
        if not explicit.exists():
            raise ConfigError("--torch-checkpoint: no such file or directory", explicit)
        if not _torch_available():
            raise ConfigError("--torch-checkpoint needs PyTorch: pip install 'mnist-edge[train]'")
        return explicit
    hint = _checkpoint_hint(models)
    if hint is not None and not _torch_available():
        notes.append(f"PyTorch baseline ({hint}) skipped: torch is not installed")
        return None
    return hint


def _checkpoint_hint(models: list[Path]) -> Path | None:
    """The first manifest's source.checkpoint that exists on this machine."""
    from mnist_edge.runtime import locate_model

    for model in models:
        manifest = locate_model(model)[1]
        hint = ((manifest or {}).get("source") or {}).get("checkpoint")
        if not isinstance(hint, str):
            continue
        folder = model if model.is_dir() else model.parent
        for candidate in (folder / hint, Path(hint)):  # relative to the manifest first
            if candidate.exists():
                return candidate
    return None


def _torch_available() -> bool:
    # Only asked once a checkpoint is in play, and the baseline imports torch anyway.
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _bench_torch(checkpoint: Path, images: Any, settings: Any) -> Any:
    from mnist_edge import bench as measure
    from mnist_edge.checkpoint import load_for_inference
    from mnist_edge.config import Normalization

    run_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent
    start = time.perf_counter()
    module, config = load_for_inference(run_dir)
    load_ms = (time.perf_counter() - start) * 1e3
    norm = config.get("normalization") or {}
    weights = run_dir / "model.safetensors"
    return measure.bench_torch(
        module, name=f"torch-{config.get('arch', 'eager')}", images=images,
        batch_sizes=settings.batch_sizes, threads=settings.threads, seconds=settings.seconds,
        throughput_seconds=settings.throughput_seconds,
        normalization=Normalization(**norm) if norm else None, path=str(run_dir),
        file_bytes=weights.stat().st_size if weights.is_file() else None, load_ms=load_ms)


# --- bench output: files --------------------------------------------------------------------


def _write_bench_files(out: Path, payload: dict[str, Any], report: Any) -> None:
    from mnist_edge.fileio import atomic_write_json, atomic_write_text

    atomic_write_json(out / "bench.json", payload)
    atomic_write_text(out / "bench.md", _markdown(report, payload))


def _write_png(path: Path, report: Any) -> list[str]:
    """bench.png: the latency distribution above throughput vs batch size. Returns notes."""
    import numpy as np

    try:
        from mnist_edge import plots
    except ImportError as exc:  # the light install has no matplotlib
        return [f"bench.png skipped: plotting needs matplotlib ({exc.name or exc} missing)"]
    latency = {m.name: np.asarray(m.latency.quantiles_us) for m in report.models}
    several = len(report.settings.threads) > 1
    throughput = {}
    for model in report.models:
        for count in report.settings.threads:
            key = f"{model.name} ({count} thr)" if several else model.name
            throughput[key] = {p.batch_size: p.images_per_s for p in model.throughput if p.threads == count}
    label = "" if several else f"{report.settings.threads[0]} threads"
    parts = [path.with_name(".bench_latency.png"), path.with_name(".bench_throughput.png")]
    try:
        plots.latency_distribution(latency, parts[0])
        plots.throughput_vs_batch(throughput, parts[1], threads_label=label)
        _stack_images(parts, path)
    finally:
        for part in parts:
            part.unlink(missing_ok=True)
    return []


def _stack_images(parts: list[Path], target: Path) -> None:
    from PIL import Image

    from mnist_edge.fileio import atomic_write

    images = [Image.open(p).convert("RGB") for p in parts]
    canvas = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    top = 0
    for image in images:
        canvas.paste(image, (0, top))
        top += image.height
    atomic_write(target, lambda tmp: canvas.save(tmp, format="PNG"))


def _markdown(report: Any, payload: dict[str, Any]) -> str:
    env = report.environment
    lines = [
        "# mnist-edge bench", "",
        f"{report.created} · mnist-edge {report.mnist_edge} · inputs: {report.settings.inputs}", "",
        "## Environment", "",
        f"- CPU: {env.cpu_model} ({env.physical_cores or '?'} cores, {env.logical_cores} logical, "
        f"{env.usable_cores} usable)",
        f"- ISA: {_isa_text(env)}",
        f"- onnxruntime {env.onnxruntime} ({env.provider}), numpy {env.numpy}, Python {env.python}",
        f"- OS: {env.os}", "",
        "## Footprint", "",
        _md_table(*_footprint_table(report)), "",
        "## Latency (µs, batch 1 unless noted)", "",
        _md_table(*_latency_table(report)), "",
        "## Throughput (images/s)", "",
        _md_table(*_throughput_table(report)), "",
    ]
    if report.ratios:
        lines += ["## Ratios to the first model", "",
                  _md_table(*_ratio_table(report)), ""]
    findings = _findings(report, payload.get("notes", []), payload.get("comparison"))
    if findings:
        lines += ["## Warnings and notes", ""] + [f"- {f}" for f in findings] + [""]
    for model in report.models:
        if model.profile:
            lines += [f"## Operator profile: {model.name}", "",
                      _md_table(*_profile_table(model)), ""]
    comparison = payload.get("comparison")
    if comparison:
        lines += [f"## Comparison: {comparison['verdict']} (threshold {comparison['threshold']:.0%})", "",
                  _md_table(*_comparison_table(comparison)), ""]
    return "\n".join(lines)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


# --- bench output: terminal -----------------------------------------------------------------


def _print_bench(report: Any, comparison: Any, notes: list[str]) -> None:
    env = report.environment
    console.print(escape(f"{env.cpu_model} · {env.usable_cores} usable cores · {_isa_text(env)} · "
                         f"onnxruntime {env.onnxruntime} ({env.provider}) · "
                         f"inputs: {report.settings.inputs}"))
    console.print(_rich_table("Footprint", *_footprint_table(report)))
    console.print(_rich_table("Latency (µs, batch 1 unless noted)", *_latency_table(report)))
    console.print(_rich_table("Throughput (images/s)", *_throughput_table(report)))
    if report.ratios:
        console.print(_rich_table(f"Ratios to {report.models[0].name}", *_ratio_table(report)))
    for model in report.models:
        if model.profile:
            console.print(_rich_table(f"Operator profile: {model.name}", *_profile_table(model)))
            console.print(f"raw profile: {escape(str(model.profile_file))}")
    data = asdict(comparison) if comparison is not None else None
    for finding in _findings(report, notes, data):
        console.print(f"[yellow]note:[/] {escape(finding)}")
    if comparison is not None:
        console.print(_rich_table(f"Comparison (threshold {comparison.threshold:.0%})",
                                  *_comparison_table(data)))
        colour = {"regression": "red", "improvement": "green"}.get(comparison.verdict, "white")
        console.print(f"verdict: [bold {colour}]{comparison.verdict}[/]")


def _rich_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


# --- bench output: shared tables ------------------------------------------------------------


def _footprint_table(report: Any) -> tuple[list[str], list[list[str]]]:
    rows = []
    for model in report.models:
        added = (model.peak_rss_bytes - model.rss_before_bytes
                 if model.peak_rss_bytes and model.rss_before_bytes else None)
        cold = model.cold_start
        load = f"{cold.load_ms:.1f} + " if cold.load_ms is not None else ""
        rows.append([_model_label(model), _bytes(model.file_bytes),
                     f"{load}{cold.first_inference_ms:.1f} = {cold.total_ms:.1f} ms",
                     _bytes(model.peak_rss_bytes), _bytes(added)])
    return ["model", "file", "cold start (load + 1st run)", "peak RSS", "RSS added"], rows


def _latency_table(report: Any) -> tuple[list[str], list[list[str]]]:
    rows = []
    for model in report.models:
        lat = model.latency
        batch = f" [b{lat.batch_size}]" if lat.batch_size != 1 else ""
        rows.append([_model_label(model) + batch] + [
            _us(v) for v in (lat.p50_us, lat.p90_us, lat.p99_us, lat.p999_us, lat.mean_us, lat.std_us)
        ] + [f"{lat.cv:.1%}", f"{lat.runs:,}"])
    return ["model", "p50", "p90", "p99", "p99.9", "mean", "std", "CV", "runs"], rows


def _model_label(model: Any) -> str:
    return model.name + (" (int8)" if model.quantized else "")


def _measured_points(report: Any) -> list[tuple[int, int]]:
    """Every (batch, threads) any model measured, threads outer: fixed-batch models add theirs."""
    points = {(p.batch_size, p.threads) for m in report.models for p in m.throughput}
    return sorted(points, key=lambda bt: (bt[1], bt[0]))


def _point_label(batch: int, threads: int) -> str:
    return f"b{batch}·{threads}t"


def _throughput_table(report: Any) -> tuple[list[str], list[list[str]]]:
    columns = _measured_points(report)
    rows = []
    for model in report.models:
        values = [model.throughput_at(b, t) for b, t in columns]
        rows.append([model.name] + [f"{v:,.0f}" if v else "—" for v in values])
    return ["model"] + [_point_label(b, t) for b, t in columns], rows


def _ratio_table(report: Any) -> tuple[list[str], list[list[str]]]:
    keys = [f"{b}@{t}" for b, t in _measured_points(report)
            if any(f"{b}@{t}" in r.throughput for r in report.ratios)]
    header = ["model", "p50", "file", "cold start"]
    header += ["img/s " + _point_label(*map(int, k.split("@"))) for k in keys]
    rows = [[r.model, f"{r.latency_p50:.2f}x", f"{r.file_size:.2f}x" if r.file_size else "—",
             f"{r.cold_start:.2f}x"] + [f"{r.throughput[k]:.2f}x" if k in r.throughput else "—" for k in keys]
            for r in report.ratios]
    return header, rows


def _us(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _profile_table(model: Any) -> tuple[list[str], list[list[str]]]:
    rows = [[op.op_type, f"{op.calls_per_run:g}", f"{op.us_per_run:,.1f}", f"{op.share:.1%}"]
            for op in model.profile]
    return ["operator", "calls/run", "µs/run", "share"], rows


def _comparison_table(comparison: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    rows = [[c["model"], c["metric"], _us(c["old"]), _us(c["new"]),
             f"{c['change']:+.1%}", c["verdict"]] for c in comparison["changes"]]
    return ["model", "metric", "old", "new", "worse by", "verdict"], rows


def _findings(report: Any, notes: list[str], comparison: dict[str, Any] | None) -> list[str]:
    """Warnings, int8 explanations and notes, one sentence each."""
    found = []
    for model in report.models:
        found += [f"{model.name}: {w}" for w in model.latency.warnings + model.notes]
    found += report.explanations
    if comparison:
        found += [f"environment differs from the compared run: {d}"
                  for d in comparison["environment_differences"]]
        found += [f"not in both runs: {name}" for name in comparison["unmatched_models"]]
    return found + list(notes)


def _isa_text(env: Any) -> str:
    present = [name for name, has in env.isa.items() if has]
    dot = "int8 dot product: yes" if env.int8_dot_product else "int8 dot product: NO (no VNNI/AMX)"
    return (", ".join(present) or "no flags known") + f"; {dot}"


def _bytes(count: int | None) -> str:
    if count is None:
        return "—"
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1024
    return str(count)
