"""The whole `bench` job as one library call: check the options, measure every model (and the
optional PyTorch baseline), compare with an earlier run, write bench.json / bench.md / bench.png.

`mnist_edge.measure` measures one thing at a time; this module runs a complete benchmark the
same way for the CLI and the pipeline. It never prints; bad options raise `ConfigError` before
the first measurement.

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

from mnist_edge import measure
from mnist_edge.benchmark.clibrary import bench_c_library, is_c_library
from mnist_edge.benchmark.floor import floor_path
from mnist_edge.benchmark.render import write_bench_files, write_png
from mnist_edge.benchmark.verdicts import BenchReport, Comparison, Settings, compare, load_previous, report
from mnist_edge.codegen.verify import HOST_CFLAGS, find_compiler
from mnist_edge.config import BENCH_BATCH_SIZES, BENCH_SECONDS, BENCH_THREADS
from mnist_edge.errors import ConfigError
from mnist_edge.fileio import ensure_dir
from mnist_edge.measure import ModelResult
from mnist_edge.modelfile import locate_model
from mnist_edge.runtime import create_session, providers_for

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
    """What to benchmark and how. Ratios are to the first model (the floor, with `floor`).

    threads: None means "1,N" (one thread, then every usable core). torch_checkpoint: a
    training run folder for the PyTorch eager baseline; None lets the first manifest's
    source.checkpoint name one, and no_torch turns the baseline off altogether.
    """

    models: Sequence[str | Path]
    batch_sizes: Sequence[int] = BENCH_BATCH_SIZES
    threads: Sequence[int] | None = None
    provider: str = "cpu"
    seconds: float = BENCH_SECONDS  # latency time per model; each throughput point gets a quarter
    out: str | Path | None = None  # bench.json, bench.md, bench.png (and profiles/) go here
    profile: bool = False
    torch_checkpoint: str | Path | None = None
    no_torch: bool = False
    compare: str | Path | None = None  # an earlier bench.json: gives a regression verdict
    threshold: float = 0.10  # fraction a metric may worsen before it is a regression
    scale: float | None = None
    mean: float | None = None
    std: float | None = None
    # Measure onnxruntime's floor first (mnist_edge/benchmark/floor.py), so the ratios read "x floor".
    floor: bool = False
    # C libraries (codegen folders): the compiler and its optimization flags (the strict C99 flags,
    # -fPIC and -shared are always added); None: -O3 -march=native, the build `codegen --verify` proves.
    cc: str = "cc"
    cflags: Sequence[str] | None = None

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
        if self.cflags is not None:
            fix("cflags", tuple(self.cflags))

    def validate(self) -> None:
        """Raise ConfigError for the first nonsensical option; measures nothing."""
        if not self.models:
            raise ConfigError("no models to benchmark")
        for option, values in (("--batch-sizes", self.batch_sizes), ("--threads", self.threads)):
            if values is not None:
                _check_counts(values, option)
        if not self.seconds > 0:
            raise ConfigError(f"--seconds must be positive, got {self.seconds}")
        if not self.threshold > 0:
            raise ConfigError(f"--threshold must be positive, got {self.threshold}")
        providers_for(self.provider)
        if any(is_c_library(model) for model in self.models):
            find_compiler(self.cc)  # no compiler: one error before anything is measured
        elif self.cflags is not None:
            raise ConfigError("--cflags applies to C libraries (codegen folders) and none is benchmarked")


def _check_counts(values: Sequence[Any], option: str) -> None:
    """Batch sizes and thread counts given as numbers: positive whole numbers only (not 1.5, 0)."""
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ConfigError(f"{option} must be a comma-separated list of positive integers, got "
                          f"{','.join(map(str, values))!r}")


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
    # Every option is checked before the first measurement: a typo should not cost a minute.
    request.validate()
    sizes = list(request.batch_sizes)
    counts = list(request.threads) if request.threads is not None else list(parse_threads(BENCH_THREADS))
    old = load_previous(request.compare) if request.compare is not None else None
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
    paths = ([floor_path()] if request.floor else []) + list(request.models)
    _initialise_runtime(counts[0], request.provider)
    total = len(paths) + (checkpoint is not None)
    results = []
    for index, path in enumerate(paths):
        if on_model:
            on_model(str(path), index, total)
        if is_c_library(path):
            results.append(bench_c_library(path, images=images, batch_sizes=sizes, seconds=request.seconds,
                                           throughput_seconds=settings.throughput_seconds, cc=request.cc,
                                           cflags=request.cflags or HOST_CFLAGS))
            continue
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
    concluded = report(measure.environment(request.provider), settings, results)
    comparison = compare(old, concluded, request.threshold) if old is not None else None
    if out is not None:
        notes += write_png(out / "bench.png", concluded)  # first: its note goes in the files
    payload = {**asdict(concluded), "comparison": asdict(comparison) if comparison else None,
               "notes": notes}
    outcome = BenchOutcome(concluded, comparison, notes, payload)
    if out is not None:
        write_bench_files(out, outcome)
    return outcome


def _initialise_runtime(threads: int, provider: str) -> None:
    """Run the floor model once, unmeasured: onnxruntime's one-time set-up (its environment,
    kernel registries, thread pool) would otherwise be charged to the first model's memory
    added and cold start."""
    session = create_session(floor_path(), threads=threads, provider=provider)
    session.run(None, {"input": np.zeros((1, 1, 28, 28), np.float32)})


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
    from mnist_edge.checkpoint import WEIGHTS, load_checkpoint

    run_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent
    start = time.perf_counter()
    loaded = load_checkpoint(run_dir)
    load_ms = (time.perf_counter() - start) * 1e3
    weights = run_dir / WEIGHTS
    return measure.bench_torch(
        loaded.module, name=f"torch-{loaded.arch}", images=images,
        batch_sizes=settings.batch_sizes, threads=settings.threads, seconds=settings.seconds,
        throughput_seconds=settings.throughput_seconds, normalization=loaded.normalization,
        path=str(run_dir), file_bytes=weights.stat().st_size if weights.is_file() else None,
        load_ms=load_ms)
