"""The operator types an ONNX file uses, subgraphs included, read with protobuf alone.

The light install has no onnx package, but onnxruntime depends on protobuf: a four-message
description of the few ModelProto fields needed here (graph -> node -> op_type, and the
subgraphs that attributes of If/Loop/Scan carry) lets protobuf's own parser do the reading.
Every other field is skipped as unknown. Field numbers are those of onnx/onnx.proto.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

_PACKAGE = "mnist_edge_onnx_ops"


@cache
def _model_class() -> Any:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fields = {  # message: [(name, number, repeated, type name or None for string)]
        "Model": [("graph", 7, False, "Graph")],
        "Graph": [("node", 1, True, "Node")],
        "Node": [("op_type", 4, False, None), ("domain", 7, False, None), ("attribute", 5, True, "Attribute")],
        "Attribute": [("g", 6, False, "Graph"), ("graphs", 11, True, "Graph")],
    }
    file = descriptor_pb2.FileDescriptorProto(name=f"{_PACKAGE}.proto", package=_PACKAGE, syntax="proto2")
    for message, members in fields.items():
        proto = file.message_type.add(name=message)
        for name, number, repeated, type_name in members:
            field = proto.field.add(name=name, number=number)
            field.label = field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL
            if type_name is None:
                field.type = field.TYPE_STRING
            else:
                field.type, field.type_name = field.TYPE_MESSAGE, f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Model"))


def operator_types(model_path: str | Path) -> set[str] | None:
    """{"Conv", "com.microsoft:QGemm", ...} in the main graph and every subgraph; None when the
    file does not parse (onnxruntime, which loads it first, gives the better message then)."""
    from google.protobuf.message import DecodeError

    model = _model_class()()
    try:
        model.ParseFromString(Path(model_path).read_bytes())
    except (DecodeError, RuntimeError, ValueError, OSError):
        return None
    found: set[str] = set()
    pending = [model.graph]
    while pending:
        graph = pending.pop()
        for node in graph.node:
            found.add(f"{node.domain}:{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type)
            for attribute in node.attribute:
                pending += ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)
    return found
