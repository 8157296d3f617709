"""An int8 QDQ model -> the integer layers onnxruntime actually runs, with their parameters.

The layers are read from onnxruntime's own optimized graph (at ORT_ENABLE_EXTENDED, where the
QDQ node groups become QLinearConv, QGemm and QLinearGlobalAveragePool), not re-derived from the
QDQ pattern: the C code then computes what onnxruntime computes, and a QDQ group that
onnxruntime does not fuse shows up as a float operator here and is refused by name.
No torch; onnx and onnxruntime only.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge.errors import CodegenError
from mnist_edge.logs import quiet_onnxruntime

# The optimization level whose fused graph the C code reproduces (recorded in the manifest).
OPT_LEVEL = "ORT_ENABLE_EXTENDED"
FUSED = ("QLinearConv", "QGemm")


@dataclass(frozen=True)
class InputQuant:
    """Raw pixel 0-255 -> the model's quantized input: normalization and QuantizeLinear folded
    into one table, computed by onnxruntime itself."""

    table: np.ndarray  # uint8 [256]
    shape: tuple[int, int, int]  # C, H, W
    name: str = "input"


@dataclass(frozen=True)
class Conv:
    name: str
    weights: np.ndarray  # int8 [M, C, kh, kw]
    bias: np.ndarray  # int32 [M]
    scale: np.ndarray  # float32 [M]: x_scale * w_scale[m] / y_scale, in onnxruntime's order
    x_zero: int
    y_zero: int
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]


@dataclass(frozen=True)
class MaxPool:
    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]


@dataclass(frozen=True)
class GlobalAveragePool:
    name: str
    scale: float  # x_scale / (y_scale * H * W), as onnxruntime's kernel computes it
    x_zero: int
    y_zero: int
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]


@dataclass(frozen=True)
class Gemm:
    name: str
    weights: np.ndarray  # int8 [N, K]
    bias: np.ndarray  # int32 [N]
    scale: np.ndarray  # float32 [N]
    x_zero: int
    y_zero: int
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]


Layer = Conv | MaxPool | GlobalAveragePool | Gemm


@dataclass(frozen=True)
class IntegerModel:
    source: Path
    input: InputQuant
    layers: list[Layer]
    output_scale: float  # logit = (score - output_zero) * output_scale
    output_zero: int
    labels: list[str]
    normalization: Any  # config.Normalization: how pixels become the model's float input

    @property
    def classes(self) -> int:
        return self.layers[-1].out_shape[0]


def optimized_graph(model_path: Path, level: str = OPT_LEVEL) -> Any:
    """onnxruntime's optimized graph of MODEL_PATH at LEVEL (a GraphOptimizationLevel name; the
    generator's OPT_LEVEL unless given), as an onnx ModelProto."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="mnist-edge-codegen-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        quiet_onnxruntime(options)
        try:
            ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CodegenError(f"onnxruntime cannot load the model: {str(exc).splitlines()[0]}", model_path) from None
        return onnx.load(options.optimized_model_filepath)


def read_integer_model(model_path: Path, normalization: Any, labels: list[str]) -> IntegerModel:
    """The integer layers of an all-int8 QDQ model; a CodegenError names the first node that is not."""
    graph = optimized_graph(model_path).graph
    values = _initializers(graph)
    nodes = list(graph.node)
    _refuse_what_is_not_integer(nodes, model_path)
    if not nodes or nodes[0].op_type != "QuantizeLinear":
        raise CodegenError("the model's input is not quantized (no QuantizeLinear first): "
                           "quantize it with `mnist-edge quantize MODEL --for mcu`", model_path)
    shape = _input_shape(graph, model_path)
    quant = nodes[0]
    table = input_table(normalization, values[quant.input[1]], values[quant.input[2]])
    layers: list[Layer] = []
    in_shape = shape
    for node in nodes[1:-1]:
        layer = _layer(node, values, in_shape, model_path)
        if layer is not None:
            layers.append(layer)
            in_shape = layer.out_shape
    last = nodes[-1]
    if last.op_type != "DequantizeLinear" or not layers:
        raise CodegenError(f"the logits are not quantized (last node {last.name or last.op_type} is {last.op_type}): "
                           "quantize with `mnist-edge quantize MODEL --for mcu`", model_path)
    return IntegerModel(model_path, InputQuant(table, shape), layers, float(values[last.input[1]]),
                        int(values[last.input[2]]), labels, normalization)


SUPPORTED = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QGemm", "MaxPool", "QLinearGlobalAveragePool",
             "Flatten")
FLOAT_COMPUTE = ("Conv", "Gemm", "MatMul", "GlobalAveragePool", "Relu")


def _refuse_what_is_not_integer(nodes: list[Any], model_path: Path) -> None:
    """The first operator the C generator cannot run, named, and a float layer with what to do."""
    for node in nodes:
        name = node.name or node.op_type
        if node.op_type in FLOAT_COMPUTE:
            raise CodegenError(f"node {name} ({node.op_type}) runs in float, not int8: every layer must be "
                               "integer; quantize with `mnist-edge quantize MODEL --for mcu`", model_path)
        if node.op_type.startswith("Dynamic"):
            raise CodegenError(f"node {name}: operator {node.op_type} is not supported by the C generator "
                               "(dynamic quantization computes scales at run time); quantize the fp32 model "
                               "with `mnist-edge quantize MODEL --for mcu`", model_path)
        if node.op_type not in SUPPORTED:
            raise CodegenError(f"node {name}: operator {node.op_type} is not supported by the C generator "
                               "(supported: Conv, Gemm, MaxPool, GlobalAveragePool, Flatten and Relu, in QDQ form)",
                               model_path)
    middle = [n for n in nodes[1:-1] if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if middle:
        raise CodegenError(f"node {middle[0].name or middle[0].op_type}: a quantize/dequantize pair that "
                           "onnxruntime does not fuse into an integer layer; quantize with --for mcu", model_path)


def input_table(normalization: Any, scale: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """Pixel -> quantized input: normalised with the runtime's float32 arithmetic
    (`data.normalize`, as `run` does), then quantized by onnxruntime's own QuantizeLinear, so the
    table holds exactly what onnxruntime would compute from those pixels."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from mnist_edge.data import normalize

    pixels = normalize(np.arange(256, dtype=np.uint8).reshape(1, 16, 16), normalization.scale,
                       normalization.mean, normalization.std).reshape(256)
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])], "table",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256])],
        [helper.make_tensor_value_info("q", TensorProto.UINT8, [256])],
        [numpy_helper.from_array(np.asarray(scale, np.float32).reshape(()), "s"),
         numpy_helper.from_array(np.asarray(zero, np.uint8).reshape(()), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (table,) = session.run(None, {"x": pixels})
    return table.astype(np.uint8)


def _initializers(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in graph.initializer}


def _input_shape(graph: Any, model_path: Path) -> tuple[int, int, int]:
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim][1:]
    if len(dims) != 3 or not all(dims):
        raise CodegenError(f"the input must be [batch, C, H, W] with fixed C, H, W, got {dims}", model_path)
    return tuple(dims)


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _layer(node: Any, values: dict[str, np.ndarray], in_shape: tuple[int, int, int], path: Path) -> Layer | None:
    kind = node.op_type
    if kind == "QLinearConv":
        return _conv(node, values, in_shape, path)
    if kind == "MaxPool":
        return _maxpool(node, in_shape, path)
    if kind == "QLinearGlobalAveragePool":
        return _gap(node, values, in_shape, path)
    if kind == "QGemm":
        return _gemm(node, values, in_shape, path)
    return None  # Flatten: the C arrays are flat already (checked by _refuse_what_is_not_integer)


def _zero(values: dict[str, np.ndarray], name: str) -> int:
    return int(np.asarray(values[name]).reshape(-1)[0])


def _weights_symmetric(node: Any, values: dict[str, np.ndarray], path: Path) -> np.ndarray:
    weights, zero = values[node.input[3]], np.asarray(values[node.input[5]])
    if weights.dtype != np.int8 or np.any(zero != 0):
        raise CodegenError(f"node {node.name}: weights must be int8 with zero point 0 "
                           "(symmetric, as `quantize --for mcu` writes them)", path)
    return weights


def requant_scale(x_scale: np.ndarray, w_scale: np.ndarray, y_scale: np.ndarray) -> np.ndarray:
    """Per output channel, in float32 and in onnxruntime's order: (x_scale * w_scale) / y_scale."""
    x, y = np.float32(np.asarray(x_scale).reshape(())), np.float32(np.asarray(y_scale).reshape(()))
    with np.errstate(all="ignore"):  # a zero or infinite scale is refused by name below
        return ((x * np.asarray(w_scale, np.float32).reshape(-1)) / y).astype(np.float32)


def checked_scales(scale: np.ndarray, node: Any, path: Path) -> np.ndarray:
    """Requantization scales that the kernels can use: finite, positive and normal float32. Positive,
    because pooling is taken on the int32 sums before requantization (exact only when requantization
    never decreases as the sum grows); normal, because the integer requantization reads the scale's
    exponent and 24-bit mantissa."""
    scale = np.asarray(scale, np.float32)
    bad = ~np.isfinite(scale) | (scale < np.finfo(np.float32).tiny)
    if bad.any():
        raise CodegenError(f"node {node.name}: requantization scale {float(scale[bad][0])!r} is not a positive "
                           "normal float32 (a zero, negative, infinite or NaN quantization scale)", path)
    return scale


def _conv(node: Any, values: dict[str, np.ndarray], in_shape: tuple[int, int, int], path: Path) -> Conv:
    attrs = _attrs(node)
    weights = _weights_symmetric(node, values, path)
    if attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise CodegenError(f"node {node.name}: grouped or dilated convolutions are not supported", path)
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise CodegenError(f"node {node.name}: auto_pad is not supported (export with explicit pads)", path)
    m, c, kh, kw = weights.shape
    if c != in_shape[0]:
        raise CodegenError(f"node {node.name}: expects {c} input channels, gets {in_shape[0]}", path)
    stride = tuple(attrs.get("strides", [1, 1]))
    pads = tuple(attrs.get("pads", [0, 0, 0, 0]))
    top, left, bottom, right = pads[0], pads[1], pads[2], pads[3]
    h = (in_shape[1] + top + bottom - kh) // stride[0] + 1
    w = (in_shape[2] + left + right - kw) // stride[1] + 1
    scale = np.broadcast_to(checked_scales(requant_scale(values[node.input[1]], values[node.input[4]],
                                                         values[node.input[6]]), node, path), (m,))
    bias = values[node.input[8]].astype(np.int32) if len(node.input) > 8 and node.input[8] else np.zeros(m, np.int32)
    return Conv(node.name, weights, bias, np.ascontiguousarray(scale), _zero(values, node.input[2]),
                _zero(values, node.input[7]), stride, (top, left, bottom, right), in_shape, (m, h, w))


def _maxpool(node: Any, in_shape: tuple[int, int, int], path: Path) -> MaxPool:
    attrs = _attrs(node)
    kernel = tuple(attrs["kernel_shape"])
    stride = tuple(attrs.get("strides", kernel))
    if any(attrs.get("pads", [0, 0, 0, 0])) or attrs.get("ceil_mode", 0) or any(
            d != 1 for d in attrs.get("dilations", [1, 1])):
        raise CodegenError(f"node {node.name}: MaxPool with pads, ceil_mode or dilations is not supported", path)
    if kernel[0] != kernel[1] or stride[0] != stride[1]:  # the C kernel takes one size and one stride
        raise CodegenError(f"node {node.name}: only square max pooling with equal strides is supported", path)
    h = (in_shape[1] - kernel[0]) // stride[0] + 1
    w = (in_shape[2] - kernel[1]) // stride[1] + 1
    return MaxPool(node.name, kernel, stride, in_shape, (in_shape[0], h, w))


def _gap(node: Any, values: dict[str, np.ndarray], in_shape: tuple[int, int, int], path: Path) -> GlobalAveragePool:
    x_scale, y_scale = (np.float32(np.asarray(values[node.input[i]]).reshape(())) for i in (1, 3))
    size = np.float32(in_shape[1] * in_shape[2])
    with np.errstate(all="ignore"):
        scale = float(checked_scales(np.float32(x_scale / np.float32(y_scale * size)).reshape(1), node, path)[0])
    return GlobalAveragePool(node.name, scale, _zero(values, node.input[2]), _zero(values, node.input[4]),
                             in_shape, (in_shape[0], 1, 1))


def _gemm(node: Any, values: dict[str, np.ndarray], in_shape: tuple[int, int, int], path: Path) -> Gemm:
    attrs = _attrs(node)
    if attrs.get("alpha", 1.0) != 1.0 or attrs.get("transA", 0):
        raise CodegenError(f"node {node.name}: QGemm with alpha != 1 or transA is not supported", path)
    if len(node.input) < 9 or not node.input[7]:
        raise CodegenError(f"node {node.name}: the Gemm's output is float; quantize with --for mcu", path)
    weights = _weights_symmetric(node, values, path)
    weights = weights if attrs.get("transB", 0) else weights.T
    n, k = weights.shape
    if k != int(np.prod(in_shape)):
        raise CodegenError(f"node {node.name}: expects {k} inputs, gets {int(np.prod(in_shape))}", path)
    scale = np.broadcast_to(checked_scales(requant_scale(values[node.input[1]], values[node.input[4]],
                                                         values[node.input[7]]), node, path), (n,))
    bias = values[node.input[6]].astype(np.int32) if node.input[6] else np.zeros(n, np.int32)
    return Gemm(node.name, np.ascontiguousarray(weights), bias, np.ascontiguousarray(scale),
                _zero(values, node.input[2]), _zero(values, node.input[8]), in_shape, (n, 1, 1))
