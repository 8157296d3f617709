"""Which layers lose accuracy in an int8 model: the per-layer analysis `parity` runs when int8
breaches its threshold (or when asked), kept beside the verdicts as onnxruntime keeps
`qdq_loss_debug.py` beside its quantizer.

For every layer with weights: the signal-to-quantization-noise ratio of its output in the int8
graph against the fp32 model, of its own output quantized with the int8 model's scale, and of its
weights; plus a check that onnxruntime's fused int8 kernels compute what the QDQ graph says.
onnx and onnxruntime.quantization are imported inside the functions that need them.
"""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge.errors import ParityError

# Images run through the per-layer analysis: every int8/fp32 disagreement plus a sample.
LAYER_SAMPLE = 256


TOP_SUSPECTS = 3


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

    from mnist_edge.ortsession import open_session

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    simulated = open_session(str(int8.model_path), options)
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
