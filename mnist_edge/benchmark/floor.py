"""onnxruntime's floor: a model that only flattens its input and slices 10 values from it.

Its batch-1 latency is what any call into onnxruntime costs on this machine (binding, the
executor, two trivial kernels), so "x floor" says how much of a model's latency is its own
work. The shipped file (`floor.onnx`, package data, a few hundred bytes) lets the light runtime
use it without the onnx package; `floor_model()` rebuilds it with onnx, and a test checks that
the two agree.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from mnist_edge.config import IMAGE_SIZE, OPSET

FLOOR_NAME = "floor"


def floor_path() -> Path:
    """The shipped floor model (inside the installed package)."""
    return Path(str(resources.files("mnist_edge.benchmark").joinpath("floor.onnx")))


def floor_model() -> Any:
    """The floor as an onnx.ModelProto (needs the onnx package): input [batch, 1, 28, 28] like
    every digit model, output `logits` [batch, 10]."""
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, IMAGE_SIZE, IMAGE_SIZE])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])
    bounds = [helper.make_tensor(name, TensorProto.INT64, [1], [value])
              for name, value in (("starts", 0), ("ends", 10), ("axes", 1))]
    nodes = [helper.make_node("Flatten", ["input"], ["flat"]),
             helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["logits"])]
    graph = helper.make_graph(nodes, FLOOR_NAME, [image], [logits], bounds)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mnist-edge")
    model.ir_version = 8  # what onnxruntime releases back to 1.14 read
    onnx.checker.check_model(model)
    return model
