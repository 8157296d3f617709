"""An int8 QDQ model -> the integer layers onnxruntime actually runs, with their parameters.

The layers are read from onnxruntime's own optimized graph (at ORT_ENABLE_EXTENDED, where the
QDQ node groups become QLinearConv, QGemm, QLinearAdd...), not re-derived from the QDQ pattern:
the C code then computes what onnxruntime computes, and a QDQ group that onnxruntime does not
fuse shows up as a float operator here and is refused by name. The batch dimension is fixed to 1
first, so the optimizer folds what a dynamic batch would keep (a flatten spelled Shape -> Concat
-> Reshape).

The graph is read node by node through a table from operator to handler (HANDLERS). Layout
operators (Transpose, Reshape, Flatten, Identity, Dropout) make no layer: they change how an
ONNX tensor views a map of the C (`View`), which decides a dense layer's column order. Elementwise
operators whose result depends on one byte (QLinearLeakyRelu, QLinearSigmoid, a float Tanh
between a DequantizeLinear and a QuantizeLinear) become 256-entry tables computed by onnxruntime
itself for every input byte, so they are exact by construction. No torch; onnx and onnxruntime.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge.errors import CodegenError
from mnist_edge.logs import quiet_onnxruntime

# The optimization level whose fused graph the C code reproduces (recorded in the manifest).
OPT_LEVEL = "ORT_ENABLE_EXTENDED"
FUSED = ("QLinearConv", "QGemm")
INPUT = "input"  # the map the input table writes


@dataclass(frozen=True)
class InputQuant:
    """Raw pixel 0-255 -> the model's quantized input: normalization and QuantizeLinear folded
    into one table, computed by onnxruntime itself."""

    table: np.ndarray  # uint8 [256]
    shape: tuple[int, int, int]  # C, H, W
    name: str = INPUT


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
    inputs: tuple[str, ...] = ()  # the maps it reads (graph.View.map)
    output: str = ""  # the map it writes: onnxruntime's tensor name


@dataclass(frozen=True)
class MaxPool:
    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    inputs: tuple[str, ...] = ()
    output: str = ""


@dataclass(frozen=True)
class GlobalAveragePool:
    name: str
    scale: float  # x_scale / (y_scale * H * W), as onnxruntime's kernel computes it
    x_zero: int
    y_zero: int
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    inputs: tuple[str, ...] = ()
    output: str = ""


@dataclass(frozen=True)
class Gemm:
    name: str
    weights: np.ndarray  # int8 [N, K], columns in the model's flatten order of its input
    bias: np.ndarray  # int32 [N]
    scale: np.ndarray  # float32 [N]
    x_zero: int
    y_zero: int
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    inputs: tuple[str, ...] = ()
    output: str = ""
    # The input map's axes in the order the model flattens them ("c", "h", "w" for NCHW; "h",
    # "w", "c" after a transpose to NHWC): how a column of `weights` finds its byte in the map.
    flatten_order: tuple[str, ...] = ("c", "h", "w")


@dataclass(frozen=True)
class AveragePool:
    """QLinearAveragePool: each input dequantized to float32, summed in float, divided by the
    count, quantized (onnxruntime's contrib kernel)."""

    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]
    count_include_pad: bool
    x_scale: float
    x_zero: int
    y_scale: float
    y_zero: int
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    inputs: tuple[str, ...] = ()
    output: str = ""


@dataclass(frozen=True)
class Add:
    """QLinearAdd of two maps (or a map and a constant per channel), as onnxruntime's x86 kernel
    computes it: t = fl(b * ratio_b + fixed) then fl(a * ratio_a + t), each one rounding (fused
    multiply-adds), rounded half to even, saturated."""

    name: str
    ratio_a: float  # float32 a_scale / c_scale
    ratio_b: float
    fixed: float  # float32: c_zero - (ratio_a * a_zero + ratio_b * b_zero), as onnxruntime rounds it
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    inputs: tuple[str, ...] = ()  # a, then b (b absent when constant)
    output: str = ""
    constant_b: np.ndarray | None = None  # uint8 [C] or [1]: B as an initializer


@dataclass(frozen=True)
class Table:
    """An elementwise layer whose output depends on one input byte: 256 outputs, computed by
    onnxruntime for every input byte (QLinearLeakyRelu, QLinearSigmoid, a float Tanh island)."""

    name: str
    table: np.ndarray  # uint8 [256]
    operator: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    inputs: tuple[str, ...] = ()
    output: str = ""


Layer = Conv | MaxPool | GlobalAveragePool | Gemm | AveragePool | Add | Table


@dataclass(frozen=True)
class IntegerModel:
    source: Path
    input: InputQuant
    layers: list[Layer]
    output_scale: float  # logit = (score - output_zero) * output_scale
    output_zero: int
    labels: list[str]
    normalization: Any  # config.Normalization: how pixels become the model's float input
    # A final Softmax left in float after the scores (quantize --for mcu keeps it out of
    # quantization): the C returns the scores before it.
    output_softmax: bool = False
    input_layout: str = "NCHW"  # the model's own input: NCHW, NHWC or flat (the C takes raw pixels)

    @property
    def classes(self) -> int:
        return int(np.prod(self.layers[-1].out_shape))

    @property
    def streamable(self) -> bool:
        """A chain: each layer reads the one before it (the plan may stream rows through rings)."""
        previous = INPUT
        for layer in self.layers:
            if layer.inputs != (previous,):
                return False
            previous = layer.output
        return True


@dataclass(frozen=True)
class View:
    """How an ONNX tensor of the graph lays out a map of the C (shape C, H, W): `order` names the
    map's axes in the tensor's order after the batch axis, `flat` when it is one flattened axis."""

    map: str
    shape: tuple[int, int, int]
    order: tuple[str, ...] = ("c", "h", "w")
    flat: bool = False

    @property
    def canonical(self) -> bool:
        """The memory order of an NCHW map (what convolutions and pooling read): the order, or
        one that differs only in axes of size 1."""
        sizes = dict(zip("chw", self.shape, strict=True))
        return not self.flat and [a for a in self.order if sizes[a] > 1] == [a for a in "chw" if sizes[a] > 1]


def optimized_graph(model_path: Path, level: str = OPT_LEVEL, batch: int | None = None) -> Any:
    """onnxruntime's optimized graph of MODEL_PATH at LEVEL (a GraphOptimizationLevel name; the
    generator's OPT_LEVEL unless given), as an onnx ModelProto; with `batch`, the model's batch
    dimension fixed to it first (so the optimizer can fold shape computations)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="mnist-edge-codegen-") as tmp:
        source = model_path
        if batch is not None:
            source = Path(tmp) / "fixed.onnx"
            source.write_bytes(fixed_batch(model_path, batch).SerializeToString())
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        quiet_onnxruntime(options)
        try:
            ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CodegenError(f"onnxruntime cannot load the model: {str(exc).splitlines()[0]}", model_path) from None
        return onnx.load(options.optimized_model_filepath)


def fixed_batch(model_path: Path, batch: int = 1) -> Any:
    """The model with every graph input's and output's first dimension set to BATCH."""
    import onnx

    model = onnx.load(str(model_path))
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_value = batch
    del model.graph.value_info[:]  # shapes inferred with the free batch would contradict it
    return model


def read_integer_model(model_path: Path, normalization: Any, labels: list[str]) -> IntegerModel:
    """The integer layers of an all-int8 QDQ model; a CodegenError names the first node that is not."""
    graph = optimized_graph(model_path, batch=1).graph
    return _Reader(graph, model_path, normalization).read(labels)


SUPPORTED = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QGemm", "QLinearMatMul", "MaxPool",
             "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearAdd", "QLinearLeakyRelu", "QLinearSigmoid",
             "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
SUPPORTED_TEXT = ("Conv, Gemm, MatMul + Add, MaxPool, AveragePool, GlobalAveragePool, Add, Relu, Clip (ReLU6), "
                  "LeakyRelu, Sigmoid, Tanh, BatchNormalization (folded), Transpose, Reshape, Flatten, Identity, "
                  "Dropout and a final Softmax, in QDQ form")
FLOAT_COMPUTE = ("Conv", "Gemm", "MatMul", "GlobalAveragePool", "AveragePool", "Relu", "Add", "Mul", "Sigmoid",
                 "LeakyRelu", "Clip", "BatchNormalization")
LAYOUT = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
# Float elementwise operators that may sit between a DequantizeLinear and a QuantizeLinear: the
# island becomes a table.
FLOAT_ELEMENTWISE = ("Tanh", "Sigmoid", "LeakyRelu", "Relu", "Clip", "HardSigmoid", "Elu", "Selu", "Softsign",
                     "Softplus", "Neg", "Abs", "Exp")


class _Reader:
    """Walks the optimized graph once: views of tensors, layers in order, the output."""

    def __init__(self, graph: Any, path: Path, normalization: Any):
        self.graph, self.path, self.normalization = graph, path, normalization
        self.values = _initializers(graph)
        self.views: dict[str, View] = {}
        self.layers: list[Layer] = []
        self.table: np.ndarray | None = None
        self.output: tuple[float, int] | None = None
        self.softmax = False
        self.consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.done: set[int] = set()

    def read(self, labels: list[str]) -> IntegerModel:
        shape, order, flat = _input_layout(self.graph, self.path)
        self.views[self.graph.input[0].name] = View("float:" + INPUT, shape, order, flat)
        for index, node in enumerate(self.graph.node):
            if index in self.done:
                continue
            handler = HANDLERS.get(node.op_type)
            if handler is None:
                _refuse(node, self.path)
            handler(self, node, index)
        if self.table is None:
            raise CodegenError("the model's input is not quantized (no QuantizeLinear on it): quantize it with "
                               "`mnist-edge quantize MODEL --for mcu`", self.path)
        if self.output is None or not self.layers:
            raise CodegenError("the logits are not quantized (no DequantizeLinear of integer scores at the end): "
                               "quantize with `mnist-edge quantize MODEL --for mcu`", self.path)
        layout = "flat" if flat else "NHWC" if order == ("h", "w", "c") else "NCHW"
        return IntegerModel(self.path, InputQuant(self.table, shape), self.layers, self.output[0], self.output[1],
                            labels, self.normalization, self.softmax, layout)

    # --- helpers the handlers share -----------------------------------------------------------------

    def view(self, node: Any, index: int = 0) -> View:
        name = node.input[index]
        if name not in self.views:
            raise CodegenError(f"node {_name(node)} ({node.op_type}) reads {name!r}, which is not an integer map of "
                               "the model's image (a constant or a second input is not supported there)", self.path)
        found = self.views[name]
        if found.map.startswith("float:") and node.op_type not in (*LAYOUT, "QuantizeLinear"):
            raise CodegenError(f"node {_name(node)} ({node.op_type}) runs in float, not int8: every layer must be "
                               "integer; quantize with `mnist-edge quantize MODEL --for mcu`", self.path)
        return found

    def map_view(self, node: Any, index: int = 0) -> View:
        """The input of a convolution or pooling: a map in NCHW memory order."""
        found = self.view(node, index)
        if not found.canonical:
            raise CodegenError(f"node {_name(node)} ({node.op_type}) reads its map through a transpose the C "
                               f"generator cannot follow (axes {found.order}{', flattened' if found.flat else ''})",
                               self.path)
        return found

    def add_layer(self, layer: Layer, node: Any) -> None:
        self.layers.append(layer)
        self.views[node.output[0]] = View(node.output[0], layer.out_shape)

    def zero(self, name: str) -> int:
        return int(np.asarray(self.values[name]).reshape(-1)[0])

    def scalar(self, name: str) -> np.float32:
        return np.float32(np.asarray(self.values[name]).reshape(-1)[0])


def _name(node: Any) -> str:
    return node.name or node.op_type


def _refuse(node: Any, path: Path) -> None:
    """The operator the C generator cannot run, named, with what to do."""
    name = _name(node)
    if node.op_type in FLOAT_COMPUTE:
        raise CodegenError(f"node {name} ({node.op_type}) runs in float, not int8: every layer must be "
                           "integer; quantize with `mnist-edge quantize MODEL --for mcu`", path)
    if node.op_type.startswith("Dynamic"):
        raise CodegenError(f"node {name}: operator {node.op_type} is not supported by the C generator "
                           "(dynamic quantization computes scales at run time); quantize the fp32 model "
                           "with `mnist-edge quantize MODEL --for mcu`", path)
    if node.op_type == "QLinearSoftmax":
        raise CodegenError(f"node {name}: a quantized Softmax (its uint8 probabilities lose near-ties); "
                           "`mnist-edge quantize MODEL --for mcu` keeps a final Softmax in float", path)
    raise CodegenError(f"node {name}: operator {node.op_type} is not supported by the C generator "
                       f"(supported: {SUPPORTED_TEXT})", path)


def _input_layout(graph: Any, path: Path) -> tuple[tuple[int, int, int], tuple[str, ...], bool]:
    """The image map (1, 28, 28) and how the model's input tensor lays it out."""
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim][1:]
    if dims == [784]:
        return (1, 28, 28), ("c", "h", "w"), True
    if dims == [1, 28, 28]:
        return (1, 28, 28), ("c", "h", "w"), False
    if dims == [28, 28, 1]:
        return (1, 28, 28), ("h", "w", "c"), False
    raise CodegenError(f"the input must be one 28 x 28 image (N x 1 x 28 x 28, N x 28 x 28 x 1 or N x 784), "
                       f"got {['N', *dims]}", path)


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _initializers(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in graph.initializer}


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


def _weights_symmetric(reader: _Reader, node: Any, weights_at: int, zero_at: int) -> np.ndarray:
    weights, zero = reader.values.get(node.input[weights_at]), np.asarray(reader.values.get(node.input[zero_at], 0))
    if weights is None or weights.dtype != np.int8 or np.any(zero != 0):
        raise CodegenError(f"node {node.name}: weights must be constant int8 with zero point 0 "
                           "(symmetric, as `quantize --for mcu` writes them)", reader.path)
    return weights


# --- handlers: one per operator of the optimized graph ------------------------------------------------


def _quantize(reader: _Reader, node: Any, index: int) -> None:
    """The QuantizeLinear of the model's (float) input: the input table."""
    found = reader.view(node)
    if not found.map.startswith("float:") or reader.table is not None:
        raise CodegenError(f"node {_name(node)}: a quantize/dequantize pair that onnxruntime does not fuse into an "
                           "integer layer; quantize with --for mcu", reader.path)
    reader.table = input_table(reader.normalization, reader.values[node.input[1]], reader.values[node.input[2]])
    reader.views[node.output[0]] = View(INPUT, found.shape, found.order, found.flat)


def _dequantize(reader: _Reader, node: Any, index: int) -> None:
    """Either the scores' DequantizeLinear (then nothing but layout and a Softmax up to the graph's
    output), or the start of a float island (elementwise float operators back to a QuantizeLinear)."""
    chain = _float_chain(reader, node)
    if chain and chain[-1].op_type == "QuantizeLinear":
        _float_island(reader, node, chain)
        return
    outputs = {o.name for o in reader.graph.output}
    tail = [n.op_type for n in chain]
    if not chain and node.output[0] in outputs or tail and tail[-1] in ("Softmax", *LAYOUT) and \
            chain[-1].output[0] in outputs and set(tail) <= {"Softmax", *LAYOUT}:
        reader.view(node)
        reader.output = (float(reader.scalar(node.input[1])), reader.zero(node.input[2]))
        reader.softmax = "Softmax" in tail
        for step in chain:
            reader.done.add(list(reader.graph.node).index(step))
        return
    raise CodegenError(f"node {_name(node)}: a dequantized tensor feeds {', '.join(tail) or 'nothing'} (float "
                       "computation in the middle of the model); quantize with `mnist-edge quantize MODEL --for mcu`",
                       reader.path)


def _float_chain(reader: _Reader, node: Any) -> list[Any]:
    """The single-consumer nodes after NODE up to a QuantizeLinear or the graph's end."""
    chain, current = [], node
    while True:
        after = reader.consumers.get(current.output[0], [])
        if len(after) != 1:
            return chain
        current = after[0]
        chain.append(current)
        if current.op_type == "QuantizeLinear":
            return chain


def _float_island(reader: _Reader, node: Any, chain: list[Any]) -> None:
    """DequantizeLinear -> elementwise float operators -> QuantizeLinear: one table, from onnxruntime."""
    found = reader.map_view(node) if reader.view(node).canonical else reader.view(node)
    inner = chain[:-1]
    bad = [n for n in inner if n.op_type not in FLOAT_ELEMENTWISE]
    if bad:
        raise CodegenError(f"node {_name(bad[0])} ({bad[0].op_type}) runs in float between a dequantize and a "
                           "quantize: only elementwise operators (Tanh, Sigmoid...) can be computed as a table",
                           reader.path)
    table = _table_of(reader, [node, *chain])
    last = chain[-1]
    layer = Table(_name(inner[0]) if inner else _name(node), table, "+".join(n.op_type for n in inner) or "requantize",
                  found.shape, found.shape, (found.map,), last.output[0])
    reader.layers.append(layer)
    reader.views[last.output[0]] = View(last.output[0], found.shape, found.order, found.flat)
    graph_nodes = list(reader.graph.node)
    for step in chain:
        reader.done.add(graph_nodes.index(step))


def _table_of(reader: _Reader, nodes: list[Any]) -> np.ndarray:
    """The 256 outputs onnxruntime computes for the input bytes 0-255 through NODES (one uint8
    input, one uint8 output, elementwise), with their constants."""
    from mnist_edge.codegen.ortnodes import run_nodes

    feeds = {nodes[0].input[0]: np.arange(256, dtype=np.uint8)}
    return run_nodes(nodes, feeds, nodes[-1].output[0], reader.values)


def _table_operator(reader: _Reader, node: Any, index: int) -> None:
    """QLinearLeakyRelu, QLinearSigmoid: elementwise on one byte, a table from onnxruntime."""
    found = reader.view(node)
    layer = Table(_name(node), _table_of(reader, [node]), node.op_type.removeprefix("QLinear"), found.shape,
                  found.shape, (found.map,), node.output[0])
    reader.layers.append(layer)
    reader.views[node.output[0]] = View(node.output[0], found.shape, found.order, found.flat)


def _conv(reader: _Reader, node: Any, index: int) -> None:
    found = reader.map_view(node)
    in_shape, path = found.shape, reader.path
    attrs = _attrs(node)
    weights = _weights_symmetric(reader, node, 3, 5)
    if attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise CodegenError(f"node {node.name}: grouped or dilated convolutions are not supported", path)
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise CodegenError(f"node {node.name}: auto_pad is not supported (export with explicit pads)", path)
    m, c, kh, kw = weights.shape
    if c != in_shape[0]:
        raise CodegenError(f"node {node.name}: expects {c} input channels, gets {in_shape[0]}", path)
    stride = tuple(attrs.get("strides", [1, 1]))
    top, left, bottom, right = tuple(attrs.get("pads", [0, 0, 0, 0]))
    h = (in_shape[1] + top + bottom - kh) // stride[0] + 1
    w = (in_shape[2] + left + right - kw) // stride[1] + 1
    values = reader.values
    scale = np.broadcast_to(checked_scales(requant_scale(values[node.input[1]], values[node.input[4]],
                                                         values[node.input[6]]), node, path), (m,))
    bias = values[node.input[8]].astype(np.int32) if len(node.input) > 8 and node.input[8] else np.zeros(m, np.int32)
    reader.add_layer(Conv(node.name, weights, bias, np.ascontiguousarray(scale), reader.zero(node.input[2]),
                          reader.zero(node.input[7]), stride, (top, left, bottom, right), in_shape, (m, h, w),
                          (found.map,), node.output[0]), node)


def _maxpool(reader: _Reader, node: Any, index: int) -> None:
    found = reader.map_view(node)
    in_shape, path = found.shape, reader.path
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
    reader.add_layer(MaxPool(node.name, kernel, stride, in_shape, (in_shape[0], h, w), (found.map,),
                             node.output[0]), node)


def _average_pool(reader: _Reader, node: Any, index: int) -> None:
    found = reader.map_view(node)
    in_shape, path = found.shape, reader.path
    attrs = _attrs(node)
    kernel = tuple(attrs["kernel_shape"])
    stride = tuple(attrs.get("strides", [1, 1]))
    pads = tuple(attrs.get("pads", [0, 0, 0, 0]))
    if attrs.get("ceil_mode", 0) or attrs.get("channels_last", 0) or any(pads):
        raise CodegenError(f"node {node.name}: AveragePool with pads, ceil_mode or channels_last is not supported",
                           path)
    h = (in_shape[1] - kernel[0]) // stride[0] + 1
    w = (in_shape[2] - kernel[1]) // stride[1] + 1
    layer = AveragePool(node.name, kernel, stride, pads, bool(attrs.get("count_include_pad", 0)),
                        float(reader.scalar(node.input[1])), reader.zero(node.input[2]),
                        float(reader.scalar(node.input[3])), reader.zero(node.input[4]), in_shape,
                        (in_shape[0], h, w), (found.map,), node.output[0])
    reader.add_layer(layer, node)


def _gap(reader: _Reader, node: Any, index: int) -> None:
    found = reader.map_view(node)
    in_shape = found.shape
    x_scale, y_scale = reader.scalar(node.input[1]), reader.scalar(node.input[3])
    size = np.float32(in_shape[1] * in_shape[2])
    with np.errstate(all="ignore"):
        scale = float(checked_scales(np.float32(x_scale / np.float32(y_scale * size)).reshape(1), node,
                                     reader.path)[0])
    reader.add_layer(GlobalAveragePool(node.name, scale, reader.zero(node.input[2]), reader.zero(node.input[4]),
                                       in_shape, (in_shape[0], 1, 1), (found.map,), node.output[0]), node)


def _dense_input(reader: _Reader, node: Any, k: int) -> tuple[View, tuple[str, ...]]:
    """A dense layer's input map and the order in which its columns walk the map's axes."""
    found = reader.view(node)
    if int(np.prod(found.shape)) != k:
        raise CodegenError(f"node {node.name}: expects {k} inputs, gets {int(np.prod(found.shape))}", reader.path)
    return found, found.order


def _gemm(reader: _Reader, node: Any, index: int) -> None:
    path, values = reader.path, reader.values
    attrs = _attrs(node)
    if attrs.get("alpha", 1.0) != 1.0 or attrs.get("transA", 0):
        raise CodegenError(f"node {node.name}: QGemm with alpha != 1 or transA is not supported", path)
    if len(node.input) < 9 or not node.input[7]:
        raise CodegenError(f"node {node.name}: the Gemm's output is float; quantize with --for mcu", path)
    weights = _weights_symmetric(reader, node, 3, 5)
    weights = weights if attrs.get("transB", 0) else weights.T
    n, k = weights.shape
    found, order = _dense_input(reader, node, k)
    scale = np.broadcast_to(checked_scales(requant_scale(values[node.input[1]], values[node.input[4]],
                                                         values[node.input[7]]), node, path), (n,))
    bias = values[node.input[6]].astype(np.int32) if node.input[6] else np.zeros(n, np.int32)
    reader.add_layer(Gemm(node.name, np.ascontiguousarray(weights), bias, np.ascontiguousarray(scale),
                          reader.zero(node.input[2]), reader.zero(node.input[8]), found.shape, (n, 1, 1),
                          (found.map,), node.output[0], order), node)


def _matmul(reader: _Reader, node: Any, index: int) -> None:
    """QLinearMatMul (a dense layer quantized without pre-processing): a Gemm without bias."""
    values = reader.values
    weights = _weights_symmetric(reader, node, 3, 5)
    if weights.ndim != 2:
        raise CodegenError(f"node {node.name}: QLinearMatMul with a {weights.ndim}-D weight is not supported",
                           reader.path)
    weights = weights.T
    n, k = weights.shape
    found, order = _dense_input(reader, node, k)
    scale = np.broadcast_to(checked_scales(requant_scale(values[node.input[1]], values[node.input[4]],
                                                         values[node.input[6]]), node, reader.path), (n,))
    reader.add_layer(Gemm(node.name, np.ascontiguousarray(weights), np.zeros(n, np.int32),
                          np.ascontiguousarray(scale), reader.zero(node.input[2]), reader.zero(node.input[7]),
                          found.shape, (n, 1, 1), (found.map,), node.output[0], order), node)


def _add(reader: _Reader, node: Any, index: int) -> None:
    """QLinearAdd of two maps of one shape, or of a map and a constant (a bias per channel)."""
    from mnist_edge.codegen.add import add_parameters

    a = reader.view(node, 0)
    constant = node.input[3] in reader.values
    b = None if constant else reader.view(node, 3)
    if b is not None and (b.shape != a.shape or not a.canonical and a.order != b.order):
        raise CodegenError(f"node {node.name}: QLinearAdd of maps of different shapes or layouts "
                           f"({a.shape} and {b.shape}) is not supported", reader.path)
    constant_b = None
    if constant:
        constant_b = np.asarray(reader.values[node.input[3]], np.uint8).reshape(-1)
        if constant_b.size not in (1, a.shape[0]) or a.shape[1:] != (1, 1) and constant_b.size != 1:
            raise CodegenError(f"node {node.name}: QLinearAdd with a constant of {constant_b.size} values over a "
                               f"{a.shape} map is not supported", reader.path)
    ratio_a, ratio_b, fixed = add_parameters(reader, node)
    layer = Add(node.name, ratio_a, ratio_b, fixed, a.shape, a.shape, (a.map,) if b is None else (a.map, b.map),
                node.output[0], constant_b)
    reader.layers.append(layer)
    reader.views[node.output[0]] = View(node.output[0], a.shape, a.order, a.flat)


# --- layout: no layer, a new view of the same map --------------------------------------------------------


def _alias(reader: _Reader, node: Any, index: int) -> None:
    reader.views[node.output[0]] = reader.view(node)


def _transpose(reader: _Reader, node: Any, index: int) -> None:
    found = reader.view(node)
    perm = list(_attrs(node).get("perm", []))
    if found.flat or sorted(perm) != [0, 1, 2, 3] or perm[0] != 0:
        raise CodegenError(f"node {_name(node)}: a Transpose the C generator cannot follow (perm {perm} of "
                           f"{'a flattened tensor' if found.flat else 'a map'})", reader.path)
    order = tuple(found.order[p - 1] for p in perm[1:])
    reader.views[node.output[0]] = View(found.map, found.shape, order)


def _reshape(reader: _Reader, node: Any, index: int) -> None:
    """Reshape / Flatten / Squeeze / Unsqueeze: to N x K (flattening the map in its view's order),
    or between shapes that keep the map's elements in the same order."""
    found = reader.view(node)
    dims = _output_dims(reader, node, found)
    total = int(np.prod(found.shape))
    if len(dims) == 2 and dims[1] == total:
        reader.views[node.output[0]] = View(found.map, found.shape, found.order, True)
        return
    sizes = dict(zip("chw", found.shape, strict=True))
    if len(dims) == 4 and int(np.prod(dims[1:])) == total:
        # back to a map: the flattened (or viewed) axes, those of size 1 aside, must come in the same order
        kept = [a for a in found.order if sizes[a] > 1]
        for order in (("c", "h", "w"), ("h", "w", "c")):
            if tuple(sizes[a] for a in order) == tuple(dims[1:]) and [a for a in order if sizes[a] > 1] == kept:
                reader.views[node.output[0]] = View(found.map, found.shape, order)
                return
    raise CodegenError(f"node {_name(node)} ({node.op_type}): a reshape to {['N', *dims[1:]]} the C generator "
                       "cannot follow (only a flatten to N x K, or back)", reader.path)


def _output_dims(reader: _Reader, node: Any, found: View) -> list[int]:
    total = int(np.prod(found.shape))
    if node.op_type == "Flatten":
        if _attrs(node).get("axis", 1) != 1:
            raise CodegenError(f"node {_name(node)}: Flatten with axis other than 1 is not supported", reader.path)
        return [1, total]
    if node.op_type in ("Squeeze", "Unsqueeze"):
        if found.flat:
            return [1, total]
        by_axis = dict(zip("chw", found.shape, strict=True))
        return [1, *(found.shape if found.canonical else [by_axis[a] for a in found.order])]
    target = reader.values.get(node.input[1]) if len(node.input) > 1 else None
    if target is None:
        raise CodegenError(f"node {_name(node)}: a Reshape whose shape is computed at run time (fix the batch "
                           "size or export with a constant shape)", reader.path)
    dims = [int(d) for d in np.asarray(target).reshape(-1)]
    if -1 in dims:
        known = int(np.prod([d for d in dims if d not in (-1, 0)])) or 1
        dims = [total // known if d == -1 else d for d in dims]
    return [1, *dims[1:]] if dims else dims


HANDLERS: dict[str, Callable[[_Reader, Any, int], None]] = {
    "QuantizeLinear": _quantize, "DequantizeLinear": _dequantize, "QLinearConv": _conv, "MaxPool": _maxpool,
    "QLinearAveragePool": _average_pool, "QLinearGlobalAveragePool": _gap, "QGemm": _gemm,
    "QLinearMatMul": _matmul, "QLinearAdd": _add, "QLinearLeakyRelu": _table_operator,
    "QLinearSigmoid": _table_operator, "Transpose": _transpose, "Reshape": _reshape, "Flatten": _reshape,
    "Squeeze": _reshape, "Unsqueeze": _reshape, "Identity": _alias, "Dropout": _alias,
}

__all__ = ["Add", "AveragePool", "Conv", "Gemm", "GlobalAveragePool", "HANDLERS", "INPUT", "IntegerModel", "Layer",
           "MaxPool", "OPT_LEVEL", "Table", "View", "checked_scales", "fixed_batch", "input_table", "optimized_graph",
           "read_integer_model", "requant_scale"]
