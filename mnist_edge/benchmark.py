"""The whole `bench` job as one library call: check the options, measure every model (and the
optional PyTorch baseline), compare with an earlier run, write bench.json / bench.md / bench.png.

`mnist_edge.bench` measures one thing at a time; this module runs a complete benchmark the
same way for the CLI and the pipeline, and builds the tables both the markdown file and the
terminal show. It never prints; bad options raise `ConfigError` before the first measurement.

torch is imported only when the PyTorch baseline is asked for (or hinted by a manifest),
matplotlib only to draw bench.png: the light install can run all of this.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge import bench as measure
from mnist_edge.bench import BenchReport, Comparison, Environment, ModelResult, Settings
from mnist_edge.errors import ConfigError

DEFAULT_BATCH_SIZES = "1,8,64,256"
DEFAULT_THREADS = "1,N"

# (title, header, rows): one table, as the markdown file and the terminal both show it.
TableData = tuple[str, list[str], list[list[str]]]


# --- request and outcome --------------------------------------------------------------------


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """"1,8,64" -> (1, 8, 64): sorted, without repeats."""
    return tuple(_positive_ints(text, "--batch-sizes"))


def parse_threads(text: str, cores: int | None = None) -> tuple[int, ...]:
    """"1,N" -> (1, cores), keeping the order (latency uses the first) and dropping repeats.

    `cores` defaults to the cores this process may use.
    """
    if cores is None:
        cores = measure.usable_cores()
    counts: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        value = cores if part.upper() == "N" else _positive_ints(part, "--threads")[0]
        if value not in counts:
            counts.append(value)
    if not counts:
        raise ConfigError(f"--threads must list thread counts such as 1,N, got {text!r}")
    return tuple(counts)


def _positive_ints(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ConfigError(f"{option} must be a comma-separated list of positive integers, got {text!r}")
    return sorted(set(values))


@dataclass(frozen=True)
class BenchRequest:
    """What to benchmark and how. Ratios are to the first model.

    threads: None means "1,N" (one thread, then every usable core). torch_checkpoint: a
    training run folder for the PyTorch eager baseline; None lets the first manifest's
    source.checkpoint name one, and no_torch turns the baseline off altogether.
    """

    models: Sequence[str | Path]
    batch_sizes: Sequence[int] = (1, 8, 64, 256)
    threads: Sequence[int] | None = None
    provider: str = "cpu"
    seconds: float = 2.0  # latency time per model; each throughput point gets a quarter
    out: str | Path | None = None  # bench.json, bench.md, bench.png (and profiles/) go here
    profile: bool = False
    torch_checkpoint: str | Path | None = None
    no_torch: bool = False
    compare: str | Path | None = None  # an earlier bench.json: gives a regression verdict
    threshold: float = 0.10  # fraction a metric may worsen before it is a regression
    scale: float | None = None
    mean: float | None = None
    std: float | None = None

    def __post_init__(self) -> None:
        # Accept lists and str paths; keep tuples and Paths (the dataclass is frozen).
        def fix(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        fix("models", tuple(Path(m) for m in self.models))
        fix("batch_sizes", tuple(self.batch_sizes))
        if self.threads is not None:
            fix("threads", tuple(self.threads))
        for name in ("out", "torch_checkpoint", "compare"):
            if getattr(self, name) is not None:
                fix(name, Path(getattr(self, name)))

    def validate(self) -> None:
        """Raise ConfigError for the first nonsensical option; measures nothing."""
        from mnist_edge.runtime import providers_for

        if not self.models:
            raise ConfigError("no models to benchmark")
        for option, values in (("--batch-sizes", self.batch_sizes), ("--threads", self.threads)):
            if values is not None:
                _positive_ints(",".join(map(str, values)), option)  # 1.5, 0 or nothing: refused
        if not self.seconds > 0:
            raise ConfigError(f"--seconds must be positive, got {self.seconds}")
        if not self.threshold > 0:
            raise ConfigError(f"--threshold must be positive, got {self.threshold}")
        providers_for(self.provider)


@dataclass
class BenchOutcome:
    report: BenchReport
    comparison: Comparison | None
    notes: list[str] = field(default_factory=list)  # also in payload["notes"]
    payload: dict[str, Any] = field(default_factory=dict)  # what bench.json holds

    @property
    def regression(self) -> bool:
        return self.comparison is not None and self.comparison.verdict == "regression"


# --- the run --------------------------------------------------------------------------------


def run_benchmark(request: BenchRequest,
                  on_model: Callable[[str, int, int], None] | None = None) -> BenchOutcome:
    """Measure every model of `request` (then the PyTorch baseline, if any) and, when
    `request.out` is set, write bench.json, bench.md and bench.png there.

    `on_model(name, index, total)` is called before each model is measured (progress display).
    """
    from mnist_edge.fileio import ensure_dir

    # Every option is checked before the first measurement: a typo should not cost a minute.
    request.validate()
    sizes = list(request.batch_sizes)
    counts = list(request.threads) if request.threads is not None else list(parse_threads(DEFAULT_THREADS))
    old = measure.load_previous(request.compare) if request.compare is not None else None
    notes: list[str] = []
    checkpoint = None if request.no_torch else _torch_baseline_source(
        request.torch_checkpoint, list(request.models), notes)
    out = request.out
    if out is not None:
        ensure_dir(out)
    images, source = measure.sample_images(max(max(sizes), 8))
    settings = Settings(sizes, counts, request.provider, request.seconds, request.seconds / 4, source)
    profile_dir = None
    if request.profile:
        profile_dir = out / "profiles" if out else Path(tempfile.mkdtemp(prefix="mnist-edge-profile-"))
    total = len(request.models) + (checkpoint is not None)
    results = []
    for index, path in enumerate(request.models):
        if on_model:
            on_model(str(path), index, total)
        results.append(measure.bench_onnx(path, images=images, batch_sizes=sizes, threads=counts,
                                          seconds=request.seconds,
                                          throughput_seconds=settings.throughput_seconds,
                                          provider=request.provider, profile_dir=profile_dir,
                                          scale=request.scale, mean=request.mean, std=request.std))
    # PyTorch last: importing it adds hundreds of MB to the process, which would blur the
    # ONNX models' memory figures.
    if checkpoint is not None:
        if on_model:
            on_model(f"PyTorch eager ({checkpoint})", total - 1, total)
        results.append(_bench_torch(checkpoint, images, settings))
    _unique_names(results)
    report = measure.report(measure.environment(request.provider), settings, results)
    comparison = measure.compare(old, report, request.threshold) if old is not None else None
    if out is not None:
        notes += write_png(out / "bench.png", report)  # first: its note goes in the files
    payload = {**asdict(report), "comparison": asdict(comparison) if comparison else None,
               "notes": notes}
    outcome = BenchOutcome(report, comparison, notes, payload)
    if out is not None:
        write_bench_files(out, outcome)
    return outcome


def _unique_names(results: list[ModelResult]) -> None:
    seen: dict[str, int] = {}
    for result in results:
        seen[result.name] = seen.get(result.name, 0) + 1
        if seen[result.name] > 1:
            result.name = f"{result.name}#{seen[result.name]}"


# --- the PyTorch baseline -------------------------------------------------------------------


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


def _bench_torch(checkpoint: Path, images: np.ndarray, settings: Settings) -> ModelResult:
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


# --- files ----------------------------------------------------------------------------------


def write_bench_files(out: str | Path, outcome: BenchOutcome) -> None:
    """bench.json (the payload) and bench.md; bench.png is drawn by `write_png`."""
    from mnist_edge.fileio import atomic_write_json, atomic_write_text

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


# --- tables shared by bench.md and the terminal ---------------------------------------------


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
        ("Latency (µs, batch 1 unless noted)", *_latency_table(report)),
        ("Throughput (images/s)", *_throughput_table(report)),
    ]
    if report.ratios:
        found.append((f"Ratios to {report.models[0].name}", *_ratio_table(report)))
    found += [(f"Operator profile: {model.name}", *_profile_table(model))
              for model in report.models if model.profile]
    return found


def comparison_table(comparison: Comparison) -> TableData:
    rows = [[c.model, c.metric, _us(c.old), _us(c.new), f"{c.change:+.1%}", c.verdict]
            for c in comparison.changes]
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


def _latency_table(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    rows = []
    for model in report.models:
        lat = model.latency
        batch = f" [b{lat.batch_size}]" if lat.batch_size != 1 else ""
        rows.append([_model_label(model) + batch] + [
            _us(v) for v in (lat.p50_us, lat.p90_us, lat.p99_us, lat.p999_us, lat.mean_us, lat.std_us)
        ] + [f"{lat.cv:.1%}", f"{lat.runs:,}"])
    return ["model", "p50", "p90", "p99", "p99.9", "mean", "std", "CV", "runs"], rows


def _model_label(model: ModelResult) -> str:
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


def _us(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _bytes(count: float | None) -> str:
    if count is None:
        return "—"
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1024
    return str(count)
