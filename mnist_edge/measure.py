"""Measure digit models as an edge deployment sees them: the timing loops, memory, the machine's
fingerprint and the PyTorch eager baseline. Measurement only: returns dataclasses (JSON-ready
through `dataclasses.asdict`) and never prints; what the figures mean (ratios, int8
explanations, regressions) is `mnist_edge.benchmark`'s job.

For each ONNX model: file size, cold start (session creation + first inference), batch-1
latency after a warm-up that runs until latency is steady (p50/p90/p99/p99.9, mean, std, CV),
throughput for every batch size x thread count, peak resident memory, and optionally
onnxruntime's per-operator profile. A PyTorch eager model can be measured the same way
(`bench_torch`); torch is imported only there.

The timed loops hold nothing but the inference call: inputs are prepared, bound (IOBinding)
and output buffers allocated before the clock starts.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import re
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from mnist_edge import data
from mnist_edge.config import Normalization
from mnist_edge.errors import DataError
from mnist_edge.fileio import sha256_file
from mnist_edge.modelfile import is_quantized, model_bytes
from mnist_edge.runtime import Predictor, create_session

# A warm-up block must last about this long so its median is meaningful for fast models.
_BLOCK_SECONDS = 0.02
# Steady: two consecutive block medians within this fraction of each other.
_STEADY_TOLERANCE = 0.05
CV_WARNING = 0.05
# p99 rests on the slowest 1 % of runs: below 1,000 runs that is fewer than 10 samples.
MIN_RUNS_FOR_P99 = 1000
_MAX_RUNS = 500_000
# The longest warm-up allowed is half the measuring time, but never less than these seconds: a
# noisy machine needs that long to settle, even when a short measurement is asked for.
LATENCY_WARMUP_FLOOR = 0.5
THROUGHPUT_WARMUP_FLOOR = 0.2
# The latency distribution is kept as this many evenly spaced quantiles (enough for a plot and
# a comparison, and a few kB of JSON instead of every sample).
_QUANTILES = 201
_PROFILE_WARMUP = 20
ISA_FLAGS = {
    # x86: what MLAS uses for fp32 (AVX2/FMA, AVX-512) and int8 dot products (VNNI, AMX).
    "avx2": ("avx2",), "fma": ("fma",), "avx512f": ("avx512f",),
    "avx512_vnni": ("avx512_vnni",), "avx_vnni": ("avx_vnni",), "amx_int8": ("amx_int8",),
    # Arm: NEON, and the SDOT/UDOT and I8MM int8 dot-product instructions.
    "neon": ("asimd", "neon"), "arm_dotprod": ("asimddp",), "arm_i8mm": ("i8mm",),
}
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "arm_dotprod", "arm_i8mm")


# --- results --------------------------------------------------------------------------------


@dataclass
class Environment:
    cpu_model: str
    logical_cores: int
    physical_cores: int | None
    usable_cores: int  # what this process may run on (affinity, containers)
    isa: dict[str, bool]
    int8_dot_product: bool  # VNNI / AMX / Arm dotprod: what makes int8 faster than fp32
    os: str
    python: str
    numpy: str
    onnxruntime: str
    provider: str
    providers_available: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass
class ColdStart:
    load_ms: float | None  # session creation (ONNX) or checkpoint loading (torch, when known)
    first_inference_ms: float
    total_ms: float


@dataclass
class LatencyStats:
    batch_size: int
    threads: int
    runs: int
    warmup_runs: int
    steady: bool
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    mean_us: float
    std_us: float
    cv: float
    min_us: float
    max_us: float
    quantiles_us: list[float]  # _QUANTILES evenly spaced quantiles, 0 to 1
    warnings: list[str] = field(default_factory=list)


@dataclass
class ThroughputPoint:
    batch_size: int
    threads: int
    images_per_s: float
    runs: int
    seconds: float


@dataclass
class OpTime:
    op_type: str
    calls_per_run: float
    us_per_run: float
    share: float  # of all operator time


@dataclass
class ModelResult:
    name: str
    path: str
    kind: str  # "onnx" or "torch"
    quantized: bool
    file_bytes: int | None
    cold_start: ColdStart
    latency: LatencyStats
    throughput: list[ThroughputPoint]
    peak_rss_bytes: int | None
    rss_before_bytes: int | None
    profile: list[OpTime] | None = None
    profile_file: str | None = None
    notes: list[str] = field(default_factory=list)
    # The model's own memory: the peak while it was measured over the RSS just before it was
    # loaded, with the kernel's high-water mark reset first. None where that reset is impossible
    # (then only the process peak above is known, which includes whatever ran before).
    memory_added_bytes: int | None = None
    sha256: str | None = None  # of the model file: how an int8 model finds its fp32 sibling
    fp32_sibling_sha256: str | None = None  # an int8 model's manifest: the fp32 model it came from
    # A C library (kind "c"): compiler, every flag, the kernels the build chose, its source int8 model.
    build: dict[str, Any] | None = None

    def throughput_at(self, batch_size: int, threads: int) -> float | None:
        for point in self.throughput:
            if point.batch_size == batch_size and point.threads == threads:
                return point.images_per_s
        return None


# --- environment ----------------------------------------------------------------------------


def environment(provider: str = "cpu") -> Environment:
    """The machine and software a measurement is only valid for."""
    cpu_model, flags, physical, notes = _cpu_info()
    isa = {name: any(f in flags for f in aliases) for name, aliases in ISA_FLAGS.items()}
    if not flags:
        notes.append("ISA flags unknown on this OS (no /proc/cpuinfo)")
    return Environment(
        cpu_model=cpu_model,
        logical_cores=os.cpu_count() or 1,
        physical_cores=physical,
        usable_cores=usable_cores(),
        isa=isa,
        int8_dot_product=any(isa[f] for f in INT8_DOT_FLAGS),
        os=platform.platform(),
        python=platform.python_version(),
        numpy=np.__version__,
        onnxruntime=ort.__version__,
        provider=provider,
        providers_available=list(ort.get_available_providers()),
        notes=notes,
    )


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on macOS or Windows
        return os.cpu_count() or 1


def _cpu_info() -> tuple[str, set[str], int | None, list[str]]:
    """(model name, ISA flags, physical core count) from /proc/cpuinfo, or what platform knows."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine() or "unknown", set(), None, []
    fields = [line.split(":", 1) for line in text.splitlines() if ":" in line]
    values: dict[str, list[str]] = {}
    for key, value in fields:
        values.setdefault(key.strip(), []).append(value.strip())
    model = next((values[k][0] for k in ("model name", "Hardware", "Model", "cpu model")
                  if values.get(k)), platform.processor() or platform.machine() or "unknown")
    flags = set((values.get("flags") or values.get("Features") or [""])[0].split())
    cores = set(zip(values.get("physical id", []), values.get("core id", []), strict=False))
    return model, flags, (len(cores) or None), []


# --- inputs ---------------------------------------------------------------------------------


def sample_images(count: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """`count` digit images: MNIST test images when they are on disk, else seeded noise."""
    try:
        test = data.load_split("test", download=False)
    except DataError:
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8), "synthetic (MNIST not found)"
    reps = -(-count // len(test))
    return np.tile(test.images, (reps, 1, 1))[:count].copy(), "MNIST test images"


# --- timing primitives ----------------------------------------------------------------------


def _sample(call: Callable[[], object], runs: int) -> np.ndarray:
    """Time `runs` calls one by one; microseconds. The loop holds the call and the clock only."""
    clock = time.perf_counter_ns
    samples = [0] * runs
    for i in range(runs):
        start = clock()
        call()
        samples[i] = clock() - start
    return np.asarray(samples, dtype=np.float64) / 1e3


def warm_up(call: Callable[[], object], max_seconds: float) -> tuple[int, bool, float]:
    """Call until block medians agree within 5 % twice running (or time runs out).

    Returns (runs, steady, median µs of the last block).
    """
    first = _sample(call, 1)[0]  # the first call pays lazy allocation: not a guide to the rest
    block = _block_size(first)
    medians: list[float] = []
    runs, deadline, resized = 1, time.perf_counter() + max_seconds, False
    while True:
        medians.append(float(np.median(_sample(call, block))))
        runs += block
        if not resized:
            # A slow cold call makes the first block tiny and its median noisy: size the blocks
            # again from this warm median so each spans about _BLOCK_SECONDS, and start over.
            block, medians, resized = _block_size(medians[-1]), [], True
            continue
        if len(medians) >= 3 and all(
            abs(a - b) <= _STEADY_TOLERANCE * b for a, b in zip(medians[-2:], medians[-3:-1], strict=True)
        ):
            return runs, True, medians[-1]
        if time.perf_counter() > deadline:
            return runs, False, medians[-1]


def _block_size(call_us: float) -> int:
    return int(max(5, min(10_000, _BLOCK_SECONDS * 1e6 / max(call_us, 1.0))))


def latency_stats(samples_us: np.ndarray, batch_size: int, threads: int, warmup_runs: int,
                  steady: bool) -> LatencyStats:
    p50, p90, p99, p999 = np.percentile(samples_us, [50, 90, 99, 99.9])
    mean, std = float(samples_us.mean()), float(samples_us.std(ddof=1)) if len(samples_us) > 1 else 0.0
    cv = std / mean if mean > 0 else 0.0
    warnings = []
    if cv > CV_WARNING:
        warnings.append(f"CV {cv:.1%} > {CV_WARNING:.0%}: noisy measurement (other processes, "
                        "frequency scaling); close other work or pin cores and repeat")
    if len(samples_us) < MIN_RUNS_FOR_P99:
        warnings.append(f"only {len(samples_us)} runs: p99 rests on fewer than 10 samples "
                        f"(want >= {MIN_RUNS_FOR_P99}; raise --seconds)")
    if not steady:
        warnings.append("latency was still changing when warm-up time ran out")
    quantiles = np.quantile(samples_us, np.linspace(0, 1, _QUANTILES))
    return LatencyStats(
        batch_size=batch_size, threads=threads, runs=len(samples_us), warmup_runs=warmup_runs,
        steady=steady, p50_us=float(p50), p90_us=float(p90), p99_us=float(p99),
        p999_us=float(p999), mean_us=mean, std_us=std, cv=cv,
        min_us=float(samples_us.min()), max_us=float(samples_us.max()),
        quantiles_us=[round(float(q), 3) for q in quantiles], warnings=warnings)


def measure_latency(call: Callable[[], object], seconds: float, batch_size: int,
                    threads: int) -> LatencyStats:
    warmup_runs, steady, median_us = warm_up(call, max_seconds=max(LATENCY_WARMUP_FLOOR, seconds / 2))
    runs = int(np.clip(seconds * 1e6 / max(median_us, 0.1), 50, _MAX_RUNS))
    return latency_stats(_sample(call, runs), batch_size, threads, warmup_runs, steady)


def measure_throughput(call: Callable[[], object], batch_size: int, threads: int,
                       seconds: float) -> ThroughputPoint:
    """Images per second over back-to-back calls (timed as a whole: no per-call clock reads)."""
    _, _, median_us = warm_up(call, max_seconds=max(THROUGHPUT_WARMUP_FLOOR, seconds / 2))
    runs = int(np.clip(seconds * 1e6 / max(median_us, 0.1), 5, _MAX_RUNS))
    start = time.perf_counter()
    for _ in range(runs):
        call()
    elapsed = time.perf_counter() - start
    return ThroughputPoint(batch_size, threads, batch_size * runs / elapsed, runs, elapsed)


# --- memory ---------------------------------------------------------------------------------


def reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux), so each model gets its own peak."""
    gc.collect()  # drop the previous model's sessions first
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


NO_RESET_NOTE = ("memory added is unknown: the process's peak RSS cannot be reset here, so only "
                  "the whole process's peak is reported")


def memory_added(reset: bool, before: int | None, peak: int | None) -> int | None:
    """A model's own memory: the peak since the high-water mark was reset, over the RSS then."""
    if not reset or before is None or peak is None:
        return None
    return max(0, peak - before)


def rss_bytes() -> tuple[int | None, int | None]:
    """(current, peak) resident set size in bytes."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return None, peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, flags=re.MULTILINE))
    current, peak = found.get("VmRSS"), found.get("VmHWM")
    return (int(current) * 1024 if current else None), (int(peak) * 1024 if peak else None)


# --- ONNX models ----------------------------------------------------------------------------


class _BoundCall:
    """A session with its input and output bound once, so each call is just the inference."""

    def __init__(self, session: ort.InferenceSession, input_name: str, x: np.ndarray, provider: str):
        self.session = session
        self.binding = session.io_binding()
        output = session.get_outputs()[0].name
        (example,) = session.run([output], {input_name: x})  # learn the output's shape and type
        if provider == "cuda":
            self.binding.bind_ortvalue_input(input_name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
            self.binding.bind_output(output, "cuda")
        else:
            self.binding.bind_cpu_input(input_name, x)
            self.output = np.empty_like(example)
            self.binding.bind_ortvalue_output(output, ort.OrtValue.ortvalue_from_numpy(self.output))
        self.call = partial(session.run_with_iobinding, self.binding)


def bench_onnx(path: str | Path, *, images: np.ndarray, batch_sizes: Sequence[int],
               threads: Sequence[int], seconds: float = 2.0, throughput_seconds: float = 0.5,
               provider: str = "cpu", name: str | None = None, profile_dir: str | Path | None = None,
               scale: float | None = None, mean: float | None = None,
               std: float | None = None) -> ModelResult:
    """Measure one ONNX model (file or exported folder). `images`: uint8 [>= max batch, 28, 28]."""
    memory_reset = reset_peak_rss()
    rss_before, _ = rss_bytes()
    predictor = Predictor.load(path, scale=scale, mean=mean, std=std, threads=threads[0],
                               provider=provider)
    notes = [] if memory_reset else [NO_RESET_NOTE]
    usable = _usable_batches(predictor, batch_sizes, notes)
    latency_batch = 1 if predictor.batch in (None, 1) else predictor.batch
    x_latency = predictor.prepare(_take(images, latency_batch))
    cold = cold_start(predictor.model_path, predictor.input_name, x_latency, threads[0], provider)
    bound = _BoundCall(predictor.session, predictor.input_name, x_latency, provider)
    latency = measure_latency(bound.call, seconds, latency_batch, threads[0])
    points = _throughput_points(predictor, images, usable, threads, provider, throughput_seconds)
    _, peak = rss_bytes()
    quantization = (predictor.manifest or {}).get("quantization") or {}
    result = ModelResult(
        name=name or predictor.name, path=str(predictor.model_path), kind="onnx",
        quantized=is_quantized(predictor.model_path, predictor.manifest),
        file_bytes=model_bytes(predictor.model_path), cold_start=cold, latency=latency,
        throughput=points, peak_rss_bytes=peak, rss_before_bytes=rss_before, notes=notes,
        memory_added_bytes=memory_added(memory_reset, rss_before, peak),
        sha256=sha256_file(predictor.model_path),
        fp32_sibling_sha256=quantization.get("fp32_model_sha256") if isinstance(quantization, dict) else None)
    if profile_dir is not None:
        result.profile, result.profile_file = profile_onnx(
            predictor.model_path, predictor.input_name, x_latency, profile_dir,
            threads=threads[0], provider=provider, label=result.name)
    return result


def _throughput_points(predictor: Predictor, images: np.ndarray, batch_sizes: Sequence[int],
                       threads: Sequence[int], provider: str, seconds: float) -> list[ThroughputPoint]:
    """One point per thread count x batch size; a session per thread count (threads are fixed
    when onnxruntime creates its thread pool)."""
    points = []
    for count in threads:
        session = predictor.session if count == threads[0] else create_session(
            predictor.model_path, threads=count, provider=provider)
        for batch in batch_sizes:
            x = predictor.prepare(_take(images, batch))
            call = _BoundCall(session, predictor.input_name, x, provider).call
            points.append(measure_throughput(call, batch, count, seconds))
    return points


def _take(images: np.ndarray, count: int) -> np.ndarray:
    """The first `count` images, repeating them when there are fewer."""
    if len(images) >= count:
        return images[:count]
    return np.resize(images, (count, *images.shape[1:]))


def _usable_batches(predictor: Predictor, batch_sizes: Sequence[int], notes: list[str]) -> list[int]:
    if predictor.batch is None:
        return list(batch_sizes)
    skipped = [b for b in batch_sizes if b != predictor.batch]
    if skipped:
        notes.append(f"fixed batch {predictor.batch}: batch sizes {', '.join(map(str, skipped))} "
                     f"not measurable; measured {predictor.batch}")
    return [predictor.batch]


def cold_start(model_path: Path, input_name: str, x: np.ndarray, threads: int, provider: str,
               repeats: int = 3) -> ColdStart:
    """Session creation plus first inference, median of `repeats` fresh sessions.

    Measured in this process, after onnxruntime is imported and its environment created: that
    one-time cost is the same for every model and would blur the comparison.
    """
    loads, firsts = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        session = create_session(model_path, threads=threads, provider=provider)
        created = time.perf_counter()
        session.run(None, {input_name: x})
        done = time.perf_counter()
        loads.append((created - start) * 1e3)
        firsts.append((done - created) * 1e3)
        del session
    load_ms, first_ms = float(np.median(loads)), float(np.median(firsts))
    return ColdStart(load_ms, first_ms, load_ms + first_ms)


def profile_onnx(model_path: Path, input_name: str, x: np.ndarray, out_dir: str | Path, *,
                 threads: int = 1, provider: str = "cpu", runs: int = 200,
                 label: str | None = None) -> tuple[list[OpTime], str]:
    """onnxruntime's own profiler: time per operator type, averaged over `runs` runs.

    Every profiled run adds about ten events to the JSON, so warm-up is a fixed few runs and
    `runs` stays in the hundreds: enough for stable per-operator means.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = str(out_dir / f"profile_{label or model_path.stem}")
    session = create_session(model_path, threads=threads, provider=provider, profile_prefix=prefix)
    call = _BoundCall(session, input_name, x, provider).call
    for _ in range(_PROFILE_WARMUP + runs):
        call()
    profile_file = session.end_profiling()
    return operator_times(Path(profile_file), skip_runs=_PROFILE_WARMUP + 1), profile_file


def operator_times(profile_file: Path, skip_runs: int = 0) -> list[OpTime]:
    """Aggregate a profile JSON by operator type, slowest first, leaving out the first
    `skip_runs` runs (warm-up, and the output-shape probe of _BoundCall)."""
    events = json.loads(profile_file.read_text())
    runs_seen = 0
    totals: dict[str, list[float]] = {}
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            runs_seen += 1  # a run's model_run event follows its operators' events
        elif (runs_seen >= skip_runs and event.get("cat") == "Node"
              and str(event.get("name", "")).endswith("_kernel_time")):
            op = event.get("args", {}).get("op_name", "?")
            entry = totals.setdefault(op, [0.0, 0.0])
            entry[0] += 1
            entry[1] += float(event.get("dur", 0))
    all_time = sum(t for _, t in totals.values()) or 1.0
    runs = max(runs_seen - skip_runs, 1)
    ops = [OpTime(op, calls / runs, total / runs, total / all_time)
           for op, (calls, total) in totals.items()]
    return sorted(ops, key=lambda o: -o.us_per_run)


# --- PyTorch eager baseline -----------------------------------------------------------------


def bench_torch(module: Any, *, name: str, images: np.ndarray, batch_sizes: Sequence[int],
                threads: Sequence[int], seconds: float = 2.0, throughput_seconds: float = 0.5,
                normalization: Normalization | None = None, path: str = "",
                file_bytes: int | None = None, load_ms: float | None = None) -> ModelResult:
    """Measure an eval-mode `torch.nn.Module` taking float32 [N, 1, 28, 28] normalised images."""
    import torch

    norm = normalization or Normalization()
    memory_reset = reset_peak_rss()
    rss_before, _ = rss_bytes()

    def tensor(count: int) -> Any:
        return torch.from_numpy(data.normalize(_take(images, count), norm.scale, norm.mean, norm.std).copy())

    previous_threads = torch.get_num_threads()
    try:
        with torch.inference_mode():
            torch.set_num_threads(threads[0])
            x1 = tensor(1)
            start = time.perf_counter()
            module(x1)
            first_ms = (time.perf_counter() - start) * 1e3
            latency = measure_latency(partial(module, x1), seconds, 1, threads[0])
            points = []
            for count in threads:
                torch.set_num_threads(count)
                for batch in batch_sizes:
                    points.append(measure_throughput(partial(module, tensor(batch)), batch, count,
                                                     throughput_seconds))
    finally:
        torch.set_num_threads(previous_threads)
    _, peak = rss_bytes()
    cold = ColdStart(load_ms, first_ms, (load_ms or 0.0) + first_ms)
    notes = [f"PyTorch {torch.__version__} eager, CPU"]
    if not memory_reset:
        notes.append(NO_RESET_NOTE)
    return ModelResult(name=name, path=path, kind="torch", quantized=False, file_bytes=file_bytes,
                       cold_start=cold, latency=latency, throughput=points, peak_rss_bytes=peak,
                       rss_before_bytes=rss_before, notes=notes,
                       memory_added_bytes=memory_added(memory_reset, rss_before, peak))
