"""Parity: the PyTorch checkpoint, its fp32 ONNX and its int8 ONNX on the same test images.

For each pair of models: the accuracy of each, top-1 agreement (count and the indices that
disagree), and the max and mean absolute logit difference. Thresholds (defaults below) turn
the figures into a verdict; when int8 loses more accuracy than allowed, `layer_errors` says
which layers cause it. Returns dataclasses and writes files; never prints.

ONNX models run through `mnist_edge.runtime.Predictor` (what users run); the PyTorch side
through `checkpoint.load_for_inference` + `evaluate.torch_logits` (torch imported only then).
"""

from __future__ import annotations

import platform
import shlex
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge import manifest as manifest_io
from mnist_edge.errors import ConfigError, ModelFileError, ParityError
from mnist_edge.fileio import atomic_write_json, ensure_dir

REPORT_FILE = "parity.json"
FIGURE_FILE = "parity_disagreements.png"
# What parity writes beside a model; `export` and `quantize` remove them when they replace the model.
PARITY_FILES = (REPORT_FILE, FIGURE_FILE)
MAX_FIGURE_DIGITS = 60
MAX_LISTED = 1000
# Images run through the per-layer analysis: every int8/fp32 disagreement plus a sample.
LAYER_SAMPLE = 256
TOP_SUSPECTS = 3


@dataclass(frozen=True)
class Thresholds:
    """fp32 vs PyTorch: logits within `fp32_max_abs_diff` and `fp32_min_agreement` top-1 agreement;
    int8: accuracy at most `int8_max_drop_points` percentage points below fp32."""

    fp32_max_abs_diff: float = 1e-4
    fp32_min_agreement: float = 1.0
    int8_max_drop_points: float = 0.1

    def validate(self) -> Thresholds:
        if not self.fp32_max_abs_diff >= 0:
            raise ConfigError(f"--max-logit-diff must be >= 0, got {self.fp32_max_abs_diff}")
        if not 0 <= self.fp32_min_agreement <= 1:
            raise ConfigError(f"--min-agreement must be between 0 and 100 %, "
                              f"got {self.fp32_min_agreement:.2%}")
        if not self.int8_max_drop_points >= 0:
            raise ConfigError(f"--max-int8-drop must be >= 0 points, got {self.int8_max_drop_points}")
        return self


@dataclass(frozen=True)
class ModelScore:
    role: str  # "pytorch", "fp32" or "int8"
    name: str
    path: str
    correct: int
    count: int
    accuracy: float


@dataclass(frozen=True)
class PairComparison:
    reference: str  # role of the reference model
    candidate: str
    reference_accuracy: float
    candidate_accuracy: float
    accuracy_delta_points: float  # candidate minus reference, in percentage points
    agreement: float
    agree_count: int
    disagree_count: int
    disagreements: list[int]  # test-set indices where the top-1 predictions differ
    max_abs_logit_diff: float
    mean_abs_logit_diff: float


@dataclass(frozen=True)
class Breach:
    check: str
    pair: str
    measured: float
    limit: float
    message: str


@dataclass(frozen=True)
class LayerError:
    """One layer with weights: signal-to-quantization-noise ratios in dB (higher is better)."""

    tensor: str  # the layer's output (after its Relu, which the quantizer merges into it)
    node: str  # the layer's node name in the fp32 model: what `quantize --exclude` takes
    op_type: str
    vs_fp32_db: float | None  # int8 graph's output vs the fp32 model's (errors accumulated so far)
    own_qdq_db: float | None  # the fp32 output vs itself quantized with the int8 model's scale
    weight_db: float | None  # the layer's weight vs its int8 copy


@dataclass(frozen=True)
class KernelCheck:
    """The int8 model run with onnxruntime's int8 kernels vs the same graph simulated in float.

    A large gap means the kernels do not compute what the quantized graph says: typically
    16-bit saturation of uint8 x int8 products on x86 CPUs without VNNI.
    """

    images: int
    max_abs_logit_diff: float
    disagreements: int
    saturation_suspected: bool


@dataclass(frozen=True)
class LayerReport:
    images: int
    layers: list[LayerError]
    suspects: list[str]
    kernel_check: KernelCheck | None
    advice: list[str]
    note: str = ("activations from onnxruntime.quantization.qdq_loss_debug: the int8 graph is "
                 "simulated in float (quantize/dequantize, then float operators)")


@dataclass(frozen=True)
class Disagreement:
    index: int  # in the test set
    label: int
    predictions: dict[str, int]  # role -> top-1 digit


@dataclass
class ParityReport:
    images: int
    data: str
    models: list[ModelScore]
    pairs: list[PairComparison]
    thresholds: Thresholds
    breaches: list[Breach]
    passed: bool
    command: str
    environment: dict[str, str]
    created: str
    disagreements: list[Disagreement] = field(default_factory=list)  # the first MAX_LISTED
    layer_report: LayerReport | None = None
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def pair(self, reference: str, candidate: str) -> PairComparison | None:
        return next((p for p in self.pairs if (p.reference, p.candidate) == (reference, candidate)), None)

    def score(self, role: str) -> ModelScore | None:
        return next((m for m in self.models if m.role == role), None)


# --- finding the models ------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    fp32: Path | None
    int8: Path | None


def resolve_models(paths: list[str | Path]) -> Targets:
    """One or two model paths -> the fp32 and int8 models to compare.

    Each path is an exported folder, an .onnx file, or the NAME given to `export --out` (whose
    NAME-fp32 and NAME-int8 folders are then used). Given only a folder NAME-fp32 (NAME-int8),
    its sibling NAME-int8 (NAME-fp32) is used when it exists. Roles come from the manifests (`quantization`)
    or, for bare files, from the operators in the file.
    """
    if not 1 <= len(paths) <= 2:
        raise ConfigError(f"give one or two models (fp32, int8), got {len(paths)}")
    found: list[Path] = []
    for raw in map(Path, paths):
        if raw.exists():
            found.append(raw)
            continue
        variants = [raw.with_name(f"{raw.name}-{kind}") for kind in ("fp32", "int8")]
        if not any(v.exists() for v in variants):
            raise ModelFileError("no such model file or folder (nor NAME-fp32 / NAME-int8 beside it)", raw)
        found += [v for v in variants if v.exists()]
    roles: dict[str, Path] = {}
    for path in found:
        role = "int8" if _is_int8(path) else "fp32"
        if role in roles:
            raise ConfigError(f"two {role} models given ({roles[role]} and {path}); "
                              "give one fp32 and one int8")
        roles[role] = path
    if len(found) == 1:
        _add_sibling(roles)
    return Targets(roles.get("fp32"), roles.get("int8"))


def _add_sibling(roles: dict[str, Path]) -> None:
    """One folder NAME-fp32 or NAME-int8 given: its export sibling joins when it exists.

    Without it an int8 model is compared only with PyTorch (checked against the int8 limit all
    the same), and fp32 vs int8, the pair the per-layer analysis needs, would be missing.
    """
    ((role, path),) = roles.items()
    other = "int8" if role == "fp32" else "fp32"
    if path.name.endswith(f"-{role}"):
        sibling = path.with_name(path.name.removesuffix(f"-{role}") + f"-{other}")
        if sibling.exists():
            roles[other] = sibling


def _is_int8(path: Path) -> bool:
    from mnist_edge.bench import is_quantized
    from mnist_edge.runtime import locate_model

    model_path, manifest = locate_model(path)
    return is_quantized(model_path, manifest)


def folder_of(path: Path) -> Path:
    return path if path.is_dir() else path.parent


# --- measuring ----------------------------------------------------------------------------------


def compare(reference: str, candidate: str, logits: dict[str, np.ndarray],
            labels: np.ndarray) -> PairComparison:
    a, b = logits[reference], logits[candidate]
    top_a, top_b = a.argmax(axis=1), b.argmax(axis=1)
    differ = np.flatnonzero(top_a != top_b)
    acc_a, acc_b = float((top_a == labels).mean()), float((top_b == labels).mean())
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return PairComparison(
        reference=reference, candidate=candidate, reference_accuracy=acc_a, candidate_accuracy=acc_b,
        accuracy_delta_points=round((acc_b - acc_a) * 100, 6), agreement=1 - len(differ) / len(labels),
        agree_count=int(len(labels) - len(differ)), disagree_count=int(len(differ)),
        disagreements=differ.tolist(), max_abs_logit_diff=float(diff.max(initial=0.0)),
        mean_abs_logit_diff=float(diff.mean()) if diff.size else 0.0)


def check(pairs: list[PairComparison], thresholds: Thresholds) -> list[Breach]:
    """The breaches of `thresholds`. int8 is held to its accuracy limit against fp32 ONNX, or
    against PyTorch when no fp32 model was compared (an int8 model alone must not pass unchecked)."""
    found = {(p.reference, p.candidate): p for p in pairs}
    breaches = []
    if ("pytorch", "fp32") in found:
        breaches += _fp32_breaches(found["pytorch", "fp32"], thresholds)
    int8 = found.get(("fp32", "int8")) or found.get(("pytorch", "int8"))
    if int8 is not None:
        breaches += _int8_breaches(int8, thresholds)
    return breaches


def _fp32_breaches(pair: PairComparison, thresholds: Thresholds) -> list[Breach]:
    label, breaches = f"{pair.candidate} vs {pair.reference}", []
    if pair.max_abs_logit_diff > thresholds.fp32_max_abs_diff:
        breaches.append(Breach(
            "max abs logit diff", label, pair.max_abs_logit_diff, thresholds.fp32_max_abs_diff,
            f"fp32 ONNX logits differ from PyTorch by up to {pair.max_abs_logit_diff:.3g} "
            f"(limit {thresholds.fp32_max_abs_diff:.3g})"))
    if pair.agreement < thresholds.fp32_min_agreement:
        breaches.append(Breach(
            "top-1 agreement", label, pair.agreement, thresholds.fp32_min_agreement,
            f"fp32 ONNX and PyTorch disagree on {pair.disagree_count} images "
            f"({pair.agreement:.2%} agreement, limit {thresholds.fp32_min_agreement:.2%})"))
    return breaches


def _int8_breaches(pair: PairComparison, thresholds: Thresholds) -> list[Breach]:
    drop = -pair.accuracy_delta_points
    if drop <= thresholds.int8_max_drop_points + 1e-9:
        return []
    reference = {"fp32": "fp32", "pytorch": "PyTorch"}[pair.reference]
    return [Breach(
        "int8 accuracy drop (points)", f"{pair.candidate} vs {pair.reference}", drop,
        thresholds.int8_max_drop_points,
        f"int8 accuracy {pair.candidate_accuracy:.2%} is {drop:.2f} points below {reference} "
        f"{pair.reference_accuracy:.2%} (limit {thresholds.int8_max_drop_points:.2f})")]


def torch_logits_of(run_dir: str | Path, images: np.ndarray) -> tuple[str, np.ndarray]:
    from mnist_edge.checkpoint import load_for_inference
    from mnist_edge.evaluate import torch_logits

    model, config = load_for_inference(run_dir)
    norm = config["normalization"]
    logits = torch_logits(model, images, norm["scale"], norm["mean"], norm["std"])
    return f"{config['arch']} (PyTorch)", logits


def run_parity(run_dir: str | Path | None, fp32: str | Path | None, int8: str | Path | None, *,
               thresholds: Thresholds = Thresholds(), limit: int = 0, layers: str = "auto",
               data_dir: Any = None, download: bool = True, command: str | None = None,
               threads: int | None = None) -> ParityReport:
    """Evaluate every given model on the test set (the first `limit` images; 0 = all 10,000).

    `layers`: "auto" runs the per-layer analysis when int8 breaches its threshold, "always"
    and "never" do what they say.
    """
    from mnist_edge import data
    from mnist_edge.runtime import Predictor

    thresholds.validate()
    if layers not in ("auto", "always", "never"):
        raise ConfigError(f"layers must be auto, always or never, got {layers!r}")
    if limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {limit}")
    if sum(x is not None for x in (run_dir, fp32, int8)) < 2:
        raise ConfigError("parity needs at least two models (a checkpoint, an fp32 and/or an int8 model)")
    # Open everything before the long evaluation, so a bad file fails fast.
    predictors = {role: Predictor.load(path, threads=threads)
                  for role, path in (("fp32", fp32), ("int8", int8)) if path is not None}
    if run_dir is not None:
        from mnist_edge.checkpoint import load_config

        load_config(run_dir)
    _check_labels(predictors)
    test = data.load_split("test", data_dir, download).subset(limit)
    logits: dict[str, np.ndarray] = {}
    models: list[ModelScore] = []
    if run_dir is not None:
        name, logits["pytorch"] = torch_logits_of(run_dir, test.images)
        models.append(_score("pytorch", name, str(run_dir), logits["pytorch"], test.labels))
    for role, predictor in predictors.items():
        if predictor.outputs_probabilities:
            raise ParityError("model outputs probabilities, not logits; logit differences need logits",
                              predictor.model_path)
        logits[role] = predictor.logits(test.images)
        models.append(_score(role, predictor.name, str(predictor.model_path), logits[role], test.labels))
    order = [("pytorch", "fp32"), ("fp32", "int8"), ("pytorch", "int8")]
    pairs = [compare(a, b, logits, test.labels) for a, b in order if a in logits and b in logits]
    breaches = check(pairs, thresholds)
    top1 = {role: values.argmax(axis=1) for role, values in logits.items()}
    differ = sorted({i for p in pairs for i in p.disagreements})[:MAX_LISTED]
    listed = [Disagreement(int(i), int(test.labels[i]), {r: int(t[i]) for r, t in top1.items()})
              for i in differ]
    report = ParityReport(
        images=len(test), data=str(data.locate(data_dir, download=False)), models=models, pairs=pairs,
        thresholds=thresholds, breaches=breaches, passed=not breaches,
        command=command or parity_command(run_dir, fp32, int8, limit=limit),
        environment=environment(), created=datetime.now(UTC).isoformat(timespec="seconds"),
        disagreements=listed)
    int8_breach = any(b.check.startswith("int8") for b in breaches)
    wanted = layers == "always" or (layers == "auto" and int8_breach)
    if wanted and "int8" in predictors and "fp32" in predictors:
        disagreements = report.pair("fp32", "int8").disagreements
        report.layer_report = layer_errors(predictors["fp32"], predictors["int8"], test.images, disagreements)
    return report


def _check_labels(predictors: dict[str, Any]) -> None:
    labels = {role: tuple(p.labels) for role, p in predictors.items()}
    if len(set(labels.values())) > 1:
        raise ParityError(f"the models have different labels: {labels}")


def _score(role: str, name: str, path: str, logits: np.ndarray, labels: np.ndarray) -> ModelScore:
    correct = int((logits.argmax(axis=1) == labels).sum())
    return ModelScore(role, name, path, correct, int(len(labels)), correct / len(labels))


def parity_command(run_dir: Any, fp32: Any, int8: Any, *, limit: int = 0,
                   thresholds: Thresholds | None = None) -> str:
    """The `mnist-edge parity` command line that measures these figures (and verdict) again."""
    parts = ["mnist-edge", "parity"] + [str(p) for p in (run_dir, fp32, int8) if p is not None]
    default, chosen = Thresholds(), thresholds or Thresholds()
    if chosen.fp32_max_abs_diff != default.fp32_max_abs_diff:
        parts += ["--max-logit-diff", f"{chosen.fp32_max_abs_diff:g}"]
    if chosen.fp32_min_agreement != default.fp32_min_agreement:
        parts += ["--min-agreement", f"{chosen.fp32_min_agreement * 100:g}"]
    if chosen.int8_max_drop_points != default.int8_max_drop_points:
        parts += ["--max-int8-drop", f"{chosen.int8_max_drop_points:g}"]
    if limit:
        parts += ["--limit", str(limit)]
    return shlex.join(parts)


def environment() -> dict[str, str]:
    import onnxruntime

    env = {"onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
           "python": platform.python_version(), "machine": platform.machine(), "cpu": _cpu_model()}
    torch = sys.modules.get("torch")  # only when a PyTorch model was compared
    if torch is not None:
        env["torch"] = torch.__version__
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --- which layers lose accuracy -------------------------------------------------------------------


def layer_errors(fp32: Any, int8: Any, images: np.ndarray, disagreements: list[int],
                 sample: int = LAYER_SAMPLE, seed: int = 0) -> LayerReport:
    """Per-layer error between the fp32 and the int8 model (both `Predictor`s) on the images
    where they disagree plus a seeded sample, and the kernel check."""
    rng = np.random.default_rng(seed)
    extra = rng.choice(len(images), size=min(sample, len(images)), replace=False)
    chosen = np.unique(np.concatenate([np.asarray(disagreements, dtype=np.int64), extra]))
    x = fp32.prepare(images[chosen])
    kernel = kernel_check(int8, images[chosen])
    advice = []
    if kernel.saturation_suspected:
        advice.append("the int8 kernels diverge from the quantized graph (16-bit saturation of "
                      "uint8 x int8 products on CPUs without VNNI): quantize with --reduce-range "
                      "or --weight-type uint8")
    if not _is_qdq(int8.model_path):
        return LayerReport(len(chosen), [], [], kernel,
                           advice + ["per-layer errors need a QDQ model (quantize --format qdq)"])
    layers = _qdq_layer_errors(fp32.model_path, int8.model_path, fp32.input_name, x)
    suspects = rank_suspects(layers)
    if suspects:
        advice.append("largest quantization error first: try `mnist-edge quantize ... --exclude "
                      + " --exclude ".join(shlex.quote(s) for s in suspects[:2]) + "`")
    return LayerReport(len(chosen), layers, suspects, kernel, advice)


def rank_suspects(layers: list[LayerError]) -> list[str]:
    """The nodes with the largest quantization error first: the lower of each layer's own-output
    and weight SQNR ranks it (0 dB, the worst possible, is a real figure, not a missing one)."""
    def worst(e: LayerError) -> float:
        return min((db for db in (e.own_qdq_db, e.weight_db) if db is not None), default=np.inf)

    return list(dict.fromkeys(e.node for e in sorted(layers, key=worst)))[:TOP_SUSPECTS]


def kernel_check(int8: Any, images: np.ndarray) -> KernelCheck:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    simulated = ort.InferenceSession(str(int8.model_path), options, providers=["CPUExecutionProvider"])
    x = int8.prepare(images)
    (reference,) = simulated.run([int8.output_name], {int8.input_name: x})
    kernels = int8.logits(images)
    diff = np.abs(kernels - reference)
    differ = int((kernels.argmax(axis=1) != reference.argmax(axis=1)).sum())
    spread = float(np.abs(reference).max(initial=1.0))
    # Rounding differences between the fused kernels and the simulation stay within a few
    # quantization steps; saturation moves logits by a sizeable fraction of their range.
    suspected = float(diff.max(initial=0.0)) > 0.05 * spread or differ > max(1, len(images) // 500)
    return KernelCheck(len(images), float(diff.max(initial=0.0)), differ, suspected)


def _is_qdq(model_path: Path) -> bool:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    return "DequantizeLinear" in ops and not ops & {"QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger",
                                                  "MatMulInteger"}


def _qdq_layer_errors(fp32_path: Path, int8_path: Path, input_name: str, x: np.ndarray) -> list[LayerError]:
    """One row per layer with weights (Conv, Gemm, MatMul), in graph order.

    A layer's output is taken after its activation (Relu/Clip), which the QDQ quantizer merges
    into the layer: that is the tensor the int8 model quantizes.
    """
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as debug

    class Reader(debug.CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = [x[i : i + 64] for i in range(0, len(x), 64)]

        def get_next(self) -> dict[str, np.ndarray] | None:
            return {input_name: self.batches.pop(0)} if self.batches else None

    with tempfile.TemporaryDirectory(prefix="mnist-edge-parity-") as tmp:
        fp32_aug, int8_aug = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        try:
            debug.modify_model_output_intermediate_tensors(str(fp32_path), str(fp32_aug))
            debug.modify_model_output_intermediate_tensors(str(int8_path), str(int8_aug))
            float_acts = debug.collect_activations(str(fp32_aug), Reader())
            int8_acts = debug.collect_activations(str(int8_aug), Reader())
            matched = debug.create_activation_matching(int8_acts, float_acts)
            weights = debug.compute_weight_error(debug.create_weight_matching(str(fp32_path), str(int8_path)))
        except Exception as exc:  # noqa: BLE001 - the debugging helpers raise many kinds
            reason = str(exc).splitlines()[0] if str(exc) else repr(exc)
            raise ParityError(f"per-layer analysis failed: {reason}", int8_path) from None
    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    qparams = _activation_qparams(onnx.load(str(int8_path), load_external_data=False))
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    snr = debug.compute_signal_to_quantization_noice_ratio
    layers = []
    for node in graph.node:
        weight = next((w for w in node.input[1:2] if w in weights), None)
        if weight is None:
            continue
        out = node.output[0]
        after = consumers.get(out, [])
        if len(after) == 1 and after[0].op_type in ("Relu", "Clip"):
            out = after[0].output[0]
        reference = float_acts.get(out)
        if reference is None:
            continue
        quantized = matched.get(out, {}).get("post_qdq") or int8_acts.get(out)
        own = None
        if out in qparams:
            scale, zero_point = qparams[out]
            own = snr(reference, [_fake_quantize(r, scale, zero_point) for r in reference])
        layers.append(LayerError(
            out, node.name, node.op_type, _db(snr(reference, quantized)) if quantized else None,
            _db(own), _db(weights[weight])))
    return layers


def _activation_qparams(int8_model: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Float tensor name -> (scale, zero point) of its QuantizeLinear in the int8 model."""
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in int8_model.graph.initializer}
    suffix = "_QuantizeLinear_Input"
    found = {}
    for node in int8_model.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) == 3 and node.input[1] in init:
            name = node.input[0].removesuffix(suffix)
            found.setdefault(name, (init[node.input[1]], init[node.input[2]]))
    return found


def _fake_quantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """ONNX QuantizeLinear then DequantizeLinear (round half to even, saturate)."""
    info = np.iinfo(zero_point.dtype)
    q = np.clip(np.rint(x / scale) + zero_point.astype(np.int32), info.min, info.max)
    return ((q - zero_point.astype(np.int32)) * scale).astype(np.float32)


def _db(value: float | None) -> float | None:
    if value is None:
        return None
    return round(float(value), 2) if np.isfinite(value) else 999.0


# --- files ---------------------------------------------------------------------------------------


def write_report(report: ParityReport, out_dir: str | Path, images: np.ndarray,
                 figure: bool = True) -> dict[str, Path]:
    """OUT/parity.json and OUT/parity_disagreements.png (the digits on which the models disagree)."""
    out = ensure_dir(out_dir)
    paths: dict[str, Path] = {}
    if figure:
        paths["figure"] = disagreement_figure(report, images, out / FIGURE_FILE)
    report.files = {kind: path.name for kind, path in paths.items()} | {"report": REPORT_FILE}
    paths["report"] = atomic_write_json(out / REPORT_FILE, report.to_dict())
    return paths


def disagreement_figure(report: ParityReport, images: np.ndarray, path: Path) -> Path:
    from mnist_edge import plots

    roles = [m.role for m in report.models]
    total = len({i for p in report.pairs for i in p.disagreements})
    shown = report.disagreements[:MAX_FIGURE_DIGITS]
    short = {"pytorch": "pt", "fp32": "fp32", "int8": "int8"}
    titles = [f"#{d.index} ({d.label})\n" + "/".join(str(d.predictions[r]) for r in roles) for d in shown]
    # Every tile is a disagreement; red marks those the last model (int8, else fp32) gets wrong.
    last = roles[-1]
    colors = [plots.WRONG_COLOR if d.predictions[last] != d.label else "black" for d in shown]
    title = (f"{total} test digit{'' if total == 1 else 's'} where the models disagree: #index (label), "
             f"then {'/'.join(short[r] for r in roles)} predictions; red: {short[last]} wrong")
    if not total:
        title = f"{' / '.join(short[r] for r in roles)}: the same prediction on every test digit"
    if total > len(shown):
        title += f"; first {len(shown)} shown"
    return plots.tile_grid([images[d.index] for d in shown], titles, colors, path, title, columns=10,
                            empty_note="no disagreements")


def metrics_for(report: ParityReport, role: str) -> dict[str, Any]:
    """The manifest's `metrics` section for the model with `role` (fp32 or int8)."""
    score = report.score(role)
    if score is None:
        raise ParityError(f"the report has no {role} model")
    reference = "pytorch" if role == "fp32" else "fp32"
    pair = report.pair(reference, role) or report.pair("pytorch", role)
    metrics: dict[str, Any] = {
        "test_images": report.images, "test_accuracy": score.accuracy, "test_correct": score.correct,
    }
    torch_score = report.score("pytorch")
    if torch_score is not None:
        metrics["torch_accuracy"] = torch_score.accuracy
    if role == "int8" and report.score("fp32") is not None:
        metrics["fp32_accuracy"] = report.score("fp32").accuracy
    if pair is not None:
        metrics.update({
            "reference": {"pytorch": "PyTorch checkpoint", "fp32": "fp32 ONNX"}[pair.reference],
            "accuracy_delta_points": pair.accuracy_delta_points,
            "top1_agreement": pair.agreement, "disagreements": pair.disagree_count,
            "max_abs_logit_diff": pair.max_abs_logit_diff, "mean_abs_logit_diff": pair.mean_abs_logit_diff,
        })
    to_torch = report.pair("pytorch", role)
    if role == "int8" and to_torch is not None:
        metrics["torch_top1_agreement"] = to_torch.agreement
    metrics.update({
        "parity_passed": report.passed, "measured_with": report.command,
        "measured": report.created, "onnxruntime": report.environment.get("onnxruntime"),
        "cpu": report.environment.get("cpu"), "report": REPORT_FILE,
    })
    return metrics


def update_manifest(folder: str | Path, report: ParityReport, role: str) -> Path:
    """Write the measured metrics into FOLDER/manifest.json (the model file is untouched)."""
    folder = Path(folder)
    manifest = manifest_io.load(folder)
    manifest["metrics"] = metrics_for(report, role)
    return manifest_io.save(folder, manifest)
