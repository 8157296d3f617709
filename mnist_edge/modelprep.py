"""A model as other tools write it, made ready for the deployment half (quantize, codegen): its
nodes in topological order, and what its input expects (layout, normalization and where that
came from). No torch; onnx lazily.

Exporters store nodes in any order (onnxruntime accepts that; the ONNX checker and
onnxruntime's quantizer do not: unsorted, `quantize_static` silently leaves float operators),
and a bare .onnx file seldom says how its pixels were normalized.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mnist_edge.config import Normalization
from mnist_edge.errors import ConfigError, ModelFileError

# Where a model's normalization came from, strongest first.
GIVEN, MANIFEST, METADATA, ASSUMED = "given", "manifest", "model metadata", "assumed"
NORMALIZATION_KEYS = ("scale", "mean", "std")


def sort_nodes(graph: Any, path: Any = None) -> bool:
    """Put GRAPH's nodes in topological order, in place (stable: sorted graphs are unchanged).
    Returns whether the order changed; a graph with a cycle is a ModelFileError."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    nodes = list(graph.node)
    ordered: list[Any] = []
    waiting = nodes
    while waiting:
        ready = [n for n in waiting if all(name in available for name in n.input)]
        if not ready:
            stuck = waiting[0]
            raise ModelFileError(f"the graph has a cycle or an input nobody produces (node "
                                 f"{stuck.name or stuck.op_type}, inputs {list(stuck.input)})", path)
        for node in ready:
            available.update(node.output)
        ordered += ready
        done = {id(n) for n in ready}
        waiting = [n for n in waiting if id(n) not in done]
    changed = [id(n) for n in ordered] != [id(n) for n in nodes]
    if changed:
        copies = [type(n)() for n in ordered]
        for copy, node in zip(copies, ordered, strict=True):
            copy.CopyFrom(node)
        del graph.node[:]
        graph.node.extend(copies)
    return changed


@dataclass(frozen=True)
class InputConvention:
    name: str
    layout: str  # NCHW, NHWC or flat (runtime.detect_layout)
    normalization: Normalization
    source: str  # GIVEN, MANIFEST, METADATA or ASSUMED

    def shape(self, count: int) -> tuple[int, ...]:
        return {"NCHW": (count, 1, 28, 28), "NHWC": (count, 28, 28, 1), "flat": (count, 784)}[self.layout]

    def describe(self) -> str:
        norm = self.normalization
        text = f"(pixel / {norm.scale:g} - {norm.mean:g}) / {norm.std:g}"
        if self.source == ASSUMED:
            return (f"{text}: assumed (MNIST's mean and std; the model states none): pass --scale, --mean and "
                    "--std if it was trained otherwise")
        return f"{text} ({self.source})"


def input_convention(model: Any, manifest: dict[str, Any] | None, given: dict[str, float | None],
                     path: Any = None) -> InputConvention:
    """The model's one float image input: its layout and its normalization, from the options
    given, else the manifest, else the model's metadata (input_scale / input_mean / input_std),
    else MNIST's own, said to be assumed."""
    from mnist_edge.runtime import detect_layout

    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != 1:  # 1 = FLOAT
        raise ModelFileError("only models with one float32 image input can be quantized here", path)
    dims = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in
                 inputs[0].type.tensor_type.shape.dim)
    layout = detect_layout(dims)
    if layout is None:
        raise ModelFileError(f"the input {inputs[0].name!r} has shape {list(dims)}: not one 28 x 28 image "
                             "(N x 1 x 28 x 28, N x 28 x 28 x 1 or N x 784)", path)
    return InputConvention(inputs[0].name, layout, *_normalization(model, manifest, given))


def _normalization(model: Any, manifest: dict[str, Any] | None,
                   given: dict[str, float | None]) -> tuple[Normalization, str]:
    props = {p.key: p.value for p in model.metadata_props}
    layers = [(MANIFEST, (manifest or {}).get("input") or {}),
              (METADATA, {k: props[f"input_{k}"] for k in NORMALIZATION_KEYS if f"input_{k}" in props})]
    chosen, sources = {}, set()
    for key in NORMALIZATION_KEYS:
        if given.get(key) is not None:
            chosen[key], source = float(given[key]), GIVEN
        else:
            found = next(((name, values[key]) for name, values in layers if key in values), None)
            source, value = found if found else (ASSUMED, getattr(Normalization(), key))
            chosen[key] = float(value)
        sources.add(source)
    if not (chosen["scale"] > 0 and chosen["std"] > 0 and all(abs(v) < float("inf") for v in chosen.values())):
        raise ConfigError(f"--scale and --std must be positive and --mean finite, got {chosen}")
    # The weakest source that contributed names the whole: one assumed value is an assumption.
    order = (ASSUMED, METADATA, MANIFEST, GIVEN)
    return Normalization(**chosen), next(s for s in order if s in sources)


__all__ = ["ASSUMED", "GIVEN", "InputConvention", "MANIFEST", "METADATA", "input_convention", "sort_nodes"]
