"""How a benchmark reads: the tables the terminal and bench.md share, bench.md itself and
bench.png. Sizes and durations go through `mnist_edge.units`, so a model file shows the same
size here as in report.html. matplotlib is imported only to draw bench.png.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnist_edge.benchmark.verdicts import BenchReport, Comparison
from mnist_edge.fileio import atomic_write, atomic_write_json, atomic_write_text
from mnist_edge.measure import Environment, ModelResult
from mnist_edge.units import format_bytes, format_us

if TYPE_CHECKING:  # job.py imports this module
    from mnist_edge.benchmark.job import BenchOutcome

# (title, header, rows): one table, as the markdown file and the terminal both show it.
TableData = tuple[str, list[str], list[list[str]]]


def write_bench_files(out: str | Path, outcome: BenchOutcome) -> None:
    """bench.json (the payload) and bench.md; bench.png is drawn by `write_png`."""
    out = Path(out)
    atomic_write_json(out / "bench.json", outcome.payload)
    atomic_write_text(out / "bench.md", markdown(outcome))


def write_png(path: str | Path, report: BenchReport) -> list[str]:
    """bench.png: the latency distribution above throughput vs batch size. Returns notes."""
    try:
        from mnist_edge import plots
    except ImportError as exc:  # the light install has no matplotlib
        return [f"bench.png skipped: plotting needs matplotlib ({exc.name or exc} missing)"]
    path = Path(path)
    # Each model's file size in its legend entry, written as everywhere else.
    latency = {f"{m.name} ({format_bytes(m.file_bytes)})": np.asarray(m.latency.quantiles_us)
               for m in report.models}
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

    images = [Image.open(p).convert("RGB") for p in parts]
    canvas = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    top = 0
    for image in images:
        canvas.paste(image, (0, top))
        top += image.height
    atomic_write(target, lambda tmp: canvas.save(tmp, format="PNG"))


# What the memory column means, wherever it is shown (bench tables, bench.md, the report).
MEMORY_ADDED_LABEL = "memory added (peak over RSS before loading)"


def markdown(outcome: BenchOutcome) -> str:
    """bench.md: environment, the tables of `tables`, findings and the comparison."""
    report, comparison = outcome.report, outcome.comparison
    env = report.environment
    lines = [
        "# mnist-edge bench", "",
        f"{report.created} · mnist-edge {report.mnist_edge} · inputs: {report.settings.inputs}", "",
        "## Environment", "",
        f"- CPU: {env.cpu_model} ({env.physical_cores or '?'} cores, {env.logical_cores} logical, "
        f"{env.usable_cores} usable)",
        f"- ISA: {isa_text(env)}",
        f"- onnxruntime {env.onnxruntime} ({env.provider}), numpy {env.numpy}, Python {env.python}",
        f"- OS: {env.os}", "",
    ]
    for title, header, rows in tables(report):
        lines += [f"## {title}", "", _md_table(header, rows), ""]
    found = findings(report, outcome.notes, comparison)
    if found:
        lines += ["## Warnings and notes", ""] + [f"- {f}" for f in found] + [""]
    if comparison is not None:
        title, header, rows = comparison_table(comparison)
        lines += [f"## {title}", "", f"verdict: **{comparison.verdict}**", "",
                  _md_table(header, rows), ""]
    return "\n".join(lines)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def headline(report: BenchReport) -> str:
    """One line: CPU, cores, ISA, onnxruntime, where the images came from."""
    env = report.environment
    return (f"{env.cpu_model} · {env.usable_cores} usable cores · {isa_text(env)} · "
            f"onnxruntime {env.onnxruntime} ({env.provider}) · inputs: {report.settings.inputs}")


def tables(report: BenchReport) -> list[TableData]:
    """Footprint, latency, throughput, ratios to the first model (with two models or more) and
    one operator profile per profiled model, as (title, header, rows) of plain strings."""
    found: list[TableData] = [
        ("Footprint", *_footprint_table(report)),
        ("Latency (batch 1 unless noted)", *_latency_table(report)),
        ("Throughput (images/s)", *_throughput_table(report)),
    ]
    if report.ratios:
        found.append((f"Ratios to {report.models[0].name}", *_ratio_table(report)))
    found += [(f"Operator profile: {model.name}", *_profile_table(model))
              for model in report.models if model.profile]
    return found


def comparison_table(comparison: Comparison) -> TableData:
    rows = [[c.model, c.metric, _metric_value(c.metric, c.old), _metric_value(c.metric, c.new),
             f"{c.change:+.1%}", c.verdict] for c in comparison.changes]
    return (f"Comparison (threshold {comparison.threshold:.0%})",
            ["model", "metric", "old", "new", "worse by", "verdict"], rows)


def findings(report: BenchReport, notes: Sequence[str] = (),
             comparison: Comparison | None = None) -> list[str]:
    """Warnings, int8 explanations and notes, one sentence each."""
    found = []
    for model in report.models:
        found += [f"{model.name}: {w}" for w in model.latency.warnings + model.notes]
    found += report.explanations
    if comparison is not None:
        found += [f"environment differs from the compared run: {d}"
                  for d in comparison.environment_differences]
        found += [f"not in both runs: {name}" for name in comparison.unmatched_models]
    return found + list(notes)


def isa_text(env: Environment) -> str:
    present = [name for name, has in env.isa.items() if has]
    dot = "int8 dot product: yes" if env.int8_dot_product else "int8 dot product: NO (no VNNI/AMX)"
    return (", ".join(present) or "no flags known") + f"; {dot}"


def _footprint_table(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """Memory leads with what the model itself added; the process peak (which includes whatever
    ran earlier in the process, e.g. training in `pipeline`) is labelled as such."""
    rows = []
    for model in report.models:
        cold = model.cold_start
        load = f"{cold.load_ms:.1f} + " if cold.load_ms is not None else ""
        rows.append([_model_label(model), format_bytes(model.file_bytes),
                     f"{load}{cold.first_inference_ms:.1f} = {cold.total_ms:.1f} ms",
                     format_bytes(model.memory_added_bytes), format_bytes(model.peak_rss_bytes)])
    return ["model", "file", "cold start (load + 1st run)", MEMORY_ADDED_LABEL, "process peak RSS"], rows


def _latency_table(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    rows = []
    for model in report.models:
        lat = model.latency
        batch = f" [b{lat.batch_size}]" if lat.batch_size != 1 else ""
        rows.append([_model_label(model) + batch] + [
            format_us(v) for v in (lat.p50_us, lat.p90_us, lat.p99_us, lat.p999_us, lat.mean_us, lat.std_us)
        ] + [f"{lat.cv:.1%}", f"{lat.runs:,}"])
    return ["model", "p50", "p90", "p99", "p99.9", "mean", "std", "CV", "runs"], rows


def _model_label(model: ModelResult) -> str:
    if model.kind == "c":
        return f"{model.name} (C, {(model.build or {}).get('kernels', '?')})"
    return model.name + (" (int8)" if model.quantized else "")


def _measured_points(report: BenchReport) -> list[tuple[int, int]]:
    """Every (batch, threads) any model measured, threads outer: fixed-batch models add theirs."""
    points = {(p.batch_size, p.threads) for m in report.models for p in m.throughput}
    return sorted(points, key=lambda bt: (bt[1], bt[0]))


def _point_label(batch: int, threads: int) -> str:
    return f"b{batch}·{threads}t"


def _throughput_table(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    columns = _measured_points(report)
    rows = []
    for model in report.models:
        values = [model.throughput_at(b, t) for b, t in columns]
        rows.append([model.name] + [f"{v:,.0f}" if v else "—" for v in values])
    return ["model"] + [_point_label(b, t) for b, t in columns], rows


def _ratio_table(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    keys = [f"{b}@{t}" for b, t in _measured_points(report)
            if any(f"{b}@{t}" in r.throughput for r in report.ratios)]
    header = ["model", "p50", "file", "cold start"]
    header += ["img/s " + _point_label(*map(int, k.split("@"))) for k in keys]
    rows = [[r.model, f"{r.latency_p50:.2f}x", f"{r.file_size:.2f}x" if r.file_size else "—",
             f"{r.cold_start:.2f}x"] + [f"{r.throughput[k]:.2f}x" if k in r.throughput else "—" for k in keys]
            for r in report.ratios]
    return header, rows


def _profile_table(model: ModelResult) -> tuple[list[str], list[list[str]]]:
    rows = [[op.op_type, f"{op.calls_per_run:g}", f"{op.us_per_run:,.1f}", f"{op.share:.1%}"]
            for op in model.profile]
    return ["operator", "calls/run", "µs/run", "share"], rows


def _metric_value(metric: str, value: float) -> str:
    """A compared figure in its own unit (the metric names come from verdicts._metrics)."""
    if metric.endswith("µs"):
        return format_us(value)
    if metric == "file bytes":
        return format_bytes(value)
    return f"{value:,.0f}"  # images/s
