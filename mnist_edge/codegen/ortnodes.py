"""Run a few nodes of a quantized graph in onnxruntime, as they are, on chosen uint8 inputs: how
the generator learns the exact bytes onnxruntime gives for a table layer (every input byte) or an
Add (every pair of bytes), so the C reproduces them by construction."""

from __future__ import annotations

from typing import Any

import numpy as np


def run_nodes(nodes: list[Any], feeds: dict[str, np.ndarray], output: str, constants: dict[str, Any]) -> np.ndarray:
    """OUTPUT of NODES (onnxruntime, no graph optimization: the nodes run as they are) for the
    1-D uint8 FEEDS, with the CONSTANTS (name -> value) the nodes read."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from mnist_edge.ortsession import open_session

    used = {name for node in nodes for name in node.input} - set(feeds)
    inits = [numpy_helper.from_array(np.asarray(constants[name]), name) for name in sorted(used) if name in constants]
    length = len(next(iter(feeds.values())))
    inputs = [helper.make_tensor_value_info(name, TensorProto.UINT8, [length]) for name in feeds]
    graph = helper.make_graph(list(nodes), "nodes", inputs,
                              [helper.make_tensor_value_info(output, TensorProto.UINT8, [length])], inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = open_session(helper.make_model(graph, opset_imports=opsets).SerializeToString(), options)
    (values,) = session.run(None, {name: np.ascontiguousarray(v, np.uint8) for name, v in feeds.items()})
    return np.asarray(values, np.uint8).reshape(length)


__all__ = ["run_nodes"]
