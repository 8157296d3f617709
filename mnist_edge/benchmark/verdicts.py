"""What a benchmark concludes from its measurements: ratios to the first model, why an int8
model is slower than its own fp32 sibling (when both were measured), and the verdict against an earlier bench.json.

The measuring itself is in `mnist_edge.measure`; the whole job in `mnist_edge.benchmark.job`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mnist_edge import __version__
from mnist_edge.errors import ConfigError
from mnist_edge.fileio import read_json
from mnist_edge.measure import Environment, ModelResult

_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
_LAYOUT_OPS = ("Transpose", "ReorderInput", "ReorderOutput")


# --- results ----------------------------------------------------------------------------------


@dataclass
class Settings:
    batch_sizes: list[int]
    threads: list[int]
    provider: str
    seconds: float  # latency measurement time per model
    throughput_seconds: float  # per batch size x thread count
    inputs: str  # where the benchmark images came from


@dataclass
class Ratio:
    model: str
    baseline: str
    latency_p50: float  # model / baseline: < 1 is faster
    throughput: dict[str, float]  # "batch@threads" -> model / baseline: > 1 is faster
    file_size: float | None
    cold_start: float


@dataclass
class BenchReport:
    environment: Environment
    settings: Settings
    models: list[ModelResult]
    ratios: list[Ratio]
    explanations: list[str]
    created: str
    mnist_edge: str = __version__


@dataclass
class MetricChange:
    model: str
    metric: str
    old: float
    new: float
    change: float  # relative; positive means worse
    verdict: str  # "worse", "better" or "same"


@dataclass
class Comparison:
    verdict: str  # "regression", "improvement" or "no change"
    threshold: float
    changes: list[MetricChange]
    unmatched_models: list[str]
    environment_differences: list[str]


# --- conclusions ------------------------------------------------------------------------------


def report(env: Environment, settings: Settings, models: list[ModelResult]) -> BenchReport:
    """Gather results with their ratios to the first model and the int8 explanations."""
    return BenchReport(
        environment=env, settings=settings, models=models,
        ratios=[ratio(m, models[0]) for m in models[1:]] if models else [],
        explanations=explain_int8(models, env),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def ratio(model: ModelResult, baseline: ModelResult) -> Ratio:
    throughput = {}
    for point in model.throughput:
        base = baseline.throughput_at(point.batch_size, point.threads)
        if base:
            throughput[f"{point.batch_size}@{point.threads}"] = point.images_per_s / base
    size = (model.file_bytes / baseline.file_bytes
            if model.file_bytes and baseline.file_bytes else None)
    return Ratio(model.name, baseline.name, model.latency.p50_us / baseline.latency.p50_us,
                 throughput, size, model.cold_start.total_ms / baseline.cold_start.total_ms)


def fp32_sibling(model: ModelResult, models: list[ModelResult]) -> ModelResult | None:
    """The fp32 model an int8 model was quantized from, when it is among `models`: the one whose
    file the int8 manifest names by SHA-256, else the NAME-fp32 folder beside a NAME-int8 one."""
    candidates = [m for m in models if m.kind == "onnx" and not m.quantized and m is not model]
    if model.fp32_sibling_sha256:
        named = next((m for m in candidates if m.sha256 == model.fp32_sibling_sha256), None)
        if named is not None:
            return named
    folder = Path(model.path).parent.name
    if not folder.endswith("-int8"):
        return None
    wanted = folder.removesuffix("-int8") + "-fp32"
    return next((m for m in candidates if Path(m.path).parent.name == wanted), None)


def explain_int8(models: list[ModelResult], env: Environment) -> list[str]:
    """Why an int8 model is slower than its own fp32 sibling, from the CPU flags and the profile.

    An int8 model whose sibling was not measured in this run gets no explanation: comparing it
    with an unrelated fp32 model would say nothing about quantization.
    """
    lines = []
    for model in models:
        if not model.quantized or model.kind != "onnx":
            continue
        sibling = fp32_sibling(model, models)
        if sibling is None or model.latency.p50_us <= 1.05 * sibling.latency.p50_us:
            continue
        reasons = _int8_reasons(model, sibling, env)
        lines.append(f"{model.name} is {model.latency.p50_us / sibling.latency.p50_us:.2f}x slower than its "
                     f"fp32 sibling {sibling.name} at batch 1: " + "; ".join(reasons))
    return lines


def _int8_reasons(model: ModelResult, sibling: ModelResult, env: Environment) -> list[str]:
    reasons = []
    if not env.int8_dot_product:
        reasons.append("this CPU has no int8 dot-product instructions (no AVX-512 VNNI, "
                       "AVX-VNNI or AMX), so int8 matrix products take several instructions "
                       "each and gain little over fp32")
    qdq = sum(op.share for op in model.profile or [] if op.op_type in _QDQ_OPS)
    if qdq >= 0.1:
        reasons.append(f"quantize/dequantize operators take {qdq:.0%} of its operator time")
    layout = sum(op.share for op in model.profile or [] if op.op_type in _LAYOUT_OPS)
    if layout >= 0.05:
        reasons.append(f"layout conversions for the int8 kernels (Transpose/Reorder) take "
                       f"{layout:.0%} of its operator time")
    if sibling.latency.p50_us < 200:
        reasons.append(f"the fp32 model already runs in {sibling.latency.p50_us:.0f} µs: at "
                       "this size fixed per-operator costs dominate, and quantization adds "
                       "operators")
    if model.profile is None:
        reasons.append("run with --profile for the per-operator breakdown")
    return reasons


# --- comparing with an earlier run ----------------------------------------------------------


def compare(old: dict[str, Any], new: BenchReport, threshold: float = 0.10) -> Comparison:
    """Compare `new` with an earlier bench.json (as loaded): a regression is any matched metric
    worse than `threshold` (a fraction: 0.10 = 10 %)."""
    if not threshold > 0:
        raise ConfigError(f"--threshold must be positive, got {threshold}")
    old_models = _old_models(old)
    changes, unmatched = [], []
    for model in new.models:
        before = old_models.get(model.name)
        if before is None:
            unmatched.append(model.name)
            continue
        for metric, old_value, new_value, lower_is_better in _metrics(before, model):
            changes.append(_change(model.name, metric, old_value, new_value, lower_is_better, threshold))
    unmatched += [name for name in old_models if name not in {m.name for m in new.models}]
    verdicts = {c.verdict for c in changes}
    verdict = "regression" if "worse" in verdicts else "improvement" if "better" in verdicts else "no change"
    return Comparison(verdict, threshold, changes, unmatched, _environment_differences(old, new))


def load_previous(path: str | Path) -> dict[str, Any]:
    """An earlier bench.json, checked before any measuring so a wrong file fails fast."""
    previous = read_json(path, ConfigError)
    try:
        _old_models(previous)
    except ConfigError as exc:
        raise ConfigError(exc.reason, path) from None
    return previous


def _old_models(old: Any) -> dict[str, dict[str, Any]]:
    try:
        return {m["name"]: m for m in old["models"] if isinstance(m["latency"]["p50_us"], (int, float))}
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"not a bench.json written by mnist-edge bench (missing {exc})") from exc


def _metrics(old: dict[str, Any], new: ModelResult) -> list[tuple[str, float, float, bool]]:
    rows = [("p50 µs", old["latency"]["p50_us"], new.latency.p50_us, True),
            ("p99 µs", old["latency"]["p99_us"], new.latency.p99_us, True)]
    old_points = {(p["batch_size"], p["threads"]): p["images_per_s"] for p in old.get("throughput", [])}
    for point in new.throughput:
        before = old_points.get((point.batch_size, point.threads))
        if before:
            rows.append((f"img/s b{point.batch_size}·{point.threads}t", before,
                         point.images_per_s, False))
    if old.get("file_bytes") and new.file_bytes:
        rows.append(("file bytes", old["file_bytes"], new.file_bytes, True))
    return rows


def _change(model: str, metric: str, old: float, new: float, lower_is_better: bool,
            threshold: float) -> MetricChange:
    relative = (new - old) / old if old else 0.0
    worse_by = relative if lower_is_better else -relative
    verdict = "worse" if worse_by > threshold else "better" if worse_by < -threshold else "same"
    return MetricChange(model, metric, float(old), float(new), worse_by, verdict)


def _environment_differences(old: dict[str, Any], new: BenchReport) -> list[str]:
    before, now = old.get("environment", {}), asdict(new.environment)
    keys = ("cpu_model", "usable_cores", "onnxruntime", "provider")
    return [f"{k}: {before.get(k)!r} -> {now[k]!r}" for k in keys if before.get(k) != now[k]]
