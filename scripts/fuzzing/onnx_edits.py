"""Structured damage to ONNX models: a valid protobuf that says hostile things.

Random bytes in a protobuf mostly fail to parse; these edits keep the file parseable and change
what it declares: input shapes of 0, -1 or 2^31, the wrong element types, initializers whose
dimensions disagree with their bytes, unknown operators, absurd attributes and opsets, and
external-data entries that point outside the folder, past the end of the file or nowhere.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto

Edit = Callable[[Any, random.Random], str]
HUGE_DIMS = (0, -1, 2**31, 2**40, 1, 27, 785)
ELEMENT_TYPES = (TensorProto.DOUBLE, TensorProto.INT64, TensorProto.STRING, TensorProto.FLOAT16, TensorProto.BOOL,
                 TensorProto.UINT8, TensorProto.INT8, 0, 99)
LOCATIONS = ("../outside.data", "/etc/hostname", "missing.data", "model.onnx", "", ".", "sub/../model.onnx.data",
             "a" * 300, "/dev/zero")


def _dims(value_info: Any) -> Any:
    return value_info.type.tensor_type.shape.dim


def input_dim(model: Any, rng: random.Random) -> str:
    dims = _dims(model.graph.input[0])
    if not dims:
        return "input has no dims"
    index = rng.randrange(len(dims))
    value = rng.choice(HUGE_DIMS)
    dims[index].ClearField("dim_param")
    dims[index].dim_value = value
    return f"input dim {index} = {value}"


def input_rank(model: Any, rng: random.Random) -> str:
    shape = model.graph.input[0].type.tensor_type.shape
    if rng.random() < 0.5 and shape.dim:
        del shape.dim[-1]
        return "input rank minus one"
    shape.dim.add().dim_value = rng.choice((1, 28))
    return "input rank plus one"


def input_type(model: Any, rng: random.Random) -> str:
    value = rng.choice(ELEMENT_TYPES)
    model.graph.input[0].type.tensor_type.elem_type = value
    return f"input element type {value}"


def output_type(model: Any, rng: random.Random) -> str:
    if rng.random() < 0.5:
        value = rng.choice(ELEMENT_TYPES)
        model.graph.output[0].type.tensor_type.elem_type = value
        return f"output element type {value}"
    dims = _dims(model.graph.output[0])
    if dims:
        value = rng.choice(HUGE_DIMS)
        dims[-1].dim_value = value
        return f"output last dim = {value}"
    return "output has no dims"


def extra_input(model: Any, rng: random.Random) -> str:
    model.graph.input.append(onnx.helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
    return "second graph input"


def no_outputs(model: Any, rng: random.Random) -> str:
    del model.graph.output[:]
    return "graph outputs removed"


def no_nodes(model: Any, rng: random.Random) -> str:
    del model.graph.node[:]
    return "graph nodes removed"


def _initializer(model: Any, rng: random.Random) -> Any | None:
    return rng.choice(model.graph.initializer) if model.graph.initializer else None


def initializer_dims(model: Any, rng: random.Random) -> str:
    tensor = _initializer(model, rng)
    if tensor is None:
        return "no initializer"
    if tensor.dims:
        tensor.dims[rng.randrange(len(tensor.dims))] = rng.choice(HUGE_DIMS)
    else:
        tensor.dims.append(rng.choice(HUGE_DIMS))
    return f"initializer {tensor.name} dims = {list(tensor.dims)}"


def initializer_bytes(model: Any, rng: random.Random) -> str:
    tensor = _initializer(model, rng)
    if tensor is None or not tensor.raw_data:
        return "no raw initializer"
    cut = rng.randrange(len(tensor.raw_data))
    tensor.raw_data = tensor.raw_data[:cut]
    return f"initializer {tensor.name} raw data cut to {cut} bytes"


def initializer_type(model: Any, rng: random.Random) -> str:
    tensor = _initializer(model, rng)
    if tensor is None:
        return "no initializer"
    tensor.data_type = rng.choice(ELEMENT_TYPES)
    return f"initializer {tensor.name} data type {tensor.data_type}"


def initializer_nan(model: Any, rng: random.Random) -> str:
    tensor = _initializer(model, rng)
    if tensor is None or tensor.data_type != TensorProto.FLOAT or not tensor.raw_data:
        return "no float initializer"
    value = rng.choice((float("nan"), float("inf"), float("-inf")))
    array = onnx.numpy_helper.to_array(tensor).copy()
    array.flat[:] = value
    tensor.raw_data = array.tobytes()
    return f"initializer {tensor.name} all {value}"


def operator(model: Any, rng: random.Random) -> str:
    node = rng.choice(model.graph.node)
    choice = rng.randrange(3)
    if choice == 0:
        node.op_type = rng.choice(("FooBar", "", "Conv2D", "If", "Loop", "Scan"))
        return f"node {node.name} op {node.op_type!r}"
    if choice == 1:
        node.domain = rng.choice(("com.example", "ai.onnx.ml", "com.microsoft"))
        return f"node {node.name} domain {node.domain}"
    node.input.append(rng.choice(("missing", node.input[0] if node.input else "")))
    return f"node {node.name} extra input"


def attribute(model: Any, rng: random.Random) -> str:
    nodes = [n for n in model.graph.node if n.attribute]
    if not nodes:
        return "no attributes"
    node = rng.choice(nodes)
    attr = rng.choice(node.attribute)
    value = rng.choice((0, -1, 2**31, 2**62))
    if attr.ints:
        attr.ints[rng.randrange(len(attr.ints))] = value
    elif attr.type == onnx.AttributeProto.INT:
        attr.i = value
    elif attr.type == onnx.AttributeProto.FLOAT:
        attr.f = rng.choice((float("nan"), float("inf"), -1.0))
    else:
        node.attribute.remove(attr)
        return f"node {node.name} attribute {attr.name} removed"
    return f"node {node.name} attribute {attr.name} = {value}"


def opset(model: Any, rng: random.Random) -> str:
    choice = rng.randrange(3)
    if choice == 0:
        model.opset_import[0].version = rng.choice((0, 1, 7, 99, 2**40))
        return f"opset {model.opset_import[0].version}"
    if choice == 1:
        model.ir_version = rng.choice((0, 1, 3, 99, 2**40))
        return f"ir_version {model.ir_version}"
    del model.opset_import[:]
    return "opset imports removed"


def metadata(model: Any, rng: random.Random) -> str:
    entry = model.metadata_props.add()
    entry.key, entry.value = rng.choice((("", ""), ("x" * 10000, "y"), ("\x00", "\xff")))
    return "odd metadata entry"


def _external_entries(model: Any) -> list[Any]:
    return [entry for tensor in model.graph.initializer if tensor.data_location == TensorProto.EXTERNAL
            for entry in tensor.external_data]


def external_entry(model: Any, rng: random.Random) -> str:
    entries = _external_entries(model)
    if not entries:
        return initializer_dims(model, rng)
    entry = rng.choice(entries)
    if entry.key == "location":
        entry.value = rng.choice(LOCATIONS)
    else:
        entry.value = str(rng.choice((0, -1, 2**31, 2**63, 10**30))) if rng.random() < 0.8 else "abc"
    return f"external data {entry.key} = {entry.value[:40]!r}"


EDITS: tuple[Edit, ...] = (input_dim, input_dim, input_rank, input_type, output_type, extra_input, no_outputs,
                           no_nodes, initializer_dims, initializer_bytes, initializer_type, initializer_nan,
                           operator, operator, attribute, attribute, opset, metadata)
EXTERNAL_EDITS: tuple[Edit, ...] = (external_entry,) * 6 + EDITS


class OnnxEditor:
    """Loads each seed model once; `edit` returns (what was done, the serialised edited model)."""

    def __init__(self) -> None:
        self._models: dict[Path, Any] = {}

    def edit(self, path: Path, rng: random.Random, *, external: bool) -> tuple[str, bytes]:
        if path not in self._models:
            self._models[path] = onnx.load(str(path), load_external_data=False)
        model = onnx.ModelProto()
        model.CopyFrom(self._models[path])
        what = rng.choice(EXTERNAL_EDITS if external else EDITS)(model, rng)
        return what, model.SerializeToString()
