"""The runtime's rules as pure functions, without building a model for each case: how an
onnxruntime load error becomes one line, what a declared input or output shape means, and how
a manifest that disagrees with its model is named. Each message is asserted whole, with the
file it names: these lines are what a user reads."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mnist_edge.errors import ManifestError, ModelFileError
from mnist_edge.runtime import (
    InputSpec,
    _check_manifest_agrees,
    _check_output,
    describe_load_error,
    detect_layout,
    inspect_input,
)

MODEL = Path("models/m.onnx")


@pytest.mark.parametrize(("raw", "line"), [
    ("[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:External data path escapes the model directory",
     "external data location leaves the model's folder (refused: weights must sit beside the model file)"),
    ("External data path: Absolute path not allowed",
     "external data location leaves the model's folder (refused: weights must sit beside the model file)"),
    ("[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:external data file w.bin does not exist",
     "external data file is missing (external data file w.bin does not exist)"),
    ("Load model failed:External data: No such file or directory",
     "external data file is missing (External data: No such file or directory)"),
    ("external data has a problem we do not know",
     "onnxruntime cannot load the model: external data has a problem we do not know"),
    ("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from m.onnx failed:Protobuf parsing failed.",
     "not an ONNX model (protobuf parsing failed: truncated or foreign file?)"),
    ("INVALID_PROTOBUF", "not an ONNX model (protobuf parsing failed: truncated or foreign file?)"),
    ("[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:No graph was found in the protobuf.",
     "not an ONNX model (the file holds no graph)"),
    ("Fatal error: custom.domain:Frobnicate(-1) is not a registered function/op",
     "unsupported operator custom.domain:Frobnicate: onnxruntime has no implementation for it"),
    ("No Op registered for Frobnicate with domain_version of 17",
     "unsupported operator Frobnicate: onnxruntime has no implementation for it"),
    ("Could not find an implementation for Frobnicate(17) node with name 'n'",
     "unsupported operator Frobnicate(17): onnxruntime has no implementation for it"),
    ('In Node, ("n1", Frobnicate, "my.domain", -1) : ("x": tensor(float),) -> ("y") , '
     "Error No opset import for domain my.domain",
     "unsupported operator my.domain:Frobnicate: onnxruntime has no implementation for it"),
    ("[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:Type Error: bad input\nsecond line",
     "onnxruntime cannot load the model: Type Error: bad input"),
    ("plain message", "onnxruntime cannot load the model: plain message"),
])
def test_load_errors_become_one_line(raw, line):
    assert describe_load_error(RuntimeError(raw)) == line


@pytest.mark.parametrize(("shape", "layout"), [
    ((1, 784), "flat"), (("N", 784), "flat"), ((1, -1), "flat"), ((1, "pixels"), "flat"), ((1, 785), None),
    ((1, 1, 28, 28), "NCHW"), (("N", 1, "h", "w"), "NCHW"), ((1, 1, 0, 28), "NCHW"), ((1, 1, 28, 27), None),
    ((1, 28, 28, 1), "NHWC"), ((1, "h", 28, 1), "NHWC"), ((1, 27, 28, 1), None),
    ((1, "c", "h", "w"), "NCHW"), ((1, -1, 0, "w"), "NCHW"), ((1, 3, 28, 28), None), ((1, 1, 28), None),
    ((1, 28, 28, 3), None), ((784,), None), ((1, 1, 1, 1, 784), None),
])
def test_declared_input_shapes_and_their_layout(shape, layout):
    assert detect_layout(shape) == layout


def _session(inputs=(), outputs=()) -> SimpleNamespace:
    return SimpleNamespace(get_inputs=lambda: list(inputs), get_outputs=lambda: list(outputs))


def _arg(name: str, kind: str, shape: list) -> SimpleNamespace:
    return SimpleNamespace(name=name, type=kind, shape=shape)


def test_inspect_input_reads_layout_dtype_and_fixed_batch():
    spec = inspect_input(_session([_arg("x", "tensor(uint8)", [8, 28, 28, 1])]), MODEL)
    assert spec == InputSpec("x", "NHWC", np.dtype(np.uint8), 8, (8, 28, 28, 1))
    dynamic = inspect_input(_session([_arg("x", "tensor(float)", ["N", 784])]), MODEL)
    assert (dynamic.batch, dynamic.layout, dynamic.dtype) == (None, "flat", np.dtype(np.float32))
    assert inspect_input(_session([_arg("x", "tensor(float)", [0, 784])]), MODEL).batch is None


@pytest.mark.parametrize(("inputs", "message"), [
    ([_arg("a", "tensor(float)", [1, 784]), _arg("b", "tensor(float)", [1, 784])],
     "models/m.onnx: model has 2 inputs (a, b); expected one digit-image input"),
    ([_arg("x", "tensor(int64)", [1, 784])],
     "models/m.onnx: input 'x' has type tensor(int64); expected float32 or uint8 pixels"),
    ([_arg("x", "tensor(float)", [1, 3, 32, None])],
     "models/m.onnx: input 'x' has shape [1,3,32,?]: not a digit image (expected [N,1,28,28], [N,28,28,1] "
     "or [N,784])"),
])
def test_inputs_that_are_not_one_digit_image_are_named(inputs, message):
    with pytest.raises(ModelFileError) as caught:
        inspect_input(_session(inputs), MODEL)
    assert str(caught.value) == message and caught.value.path == MODEL


@pytest.mark.parametrize(("output", "message"), [
    (_arg("y", "tensor(int64)", [1, 10]), "models/m.onnx: output 'y' has type tensor(int64); expected float scores"),
    (_arg("y", "tensor(float)", ["N", 12]),
     "models/m.onnx: output 'y' has shape [N,12]; expected 10 scores per image (one per digit)"),
])
def test_outputs_that_are_not_ten_scores_are_named(output, message):
    with pytest.raises(ModelFileError) as caught:
        _check_output(_session(outputs=[output]), 10, MODEL)
    assert str(caught.value) == message and caught.value.path == MODEL


@pytest.mark.parametrize("output", [_arg("y", "tensor(float)", ["N", 10]), _arg("y", "tensor(double)", ["N", "k"]),
                                    _arg("y", "tensor(float16)", [1, -1]), _arg("y", "tensor(float)", [])])
def test_outputs_of_ten_or_unknown_width_pass(output):
    _check_output(_session(outputs=[output]), 10, MODEL)


SPEC = InputSpec("input", "NCHW", np.dtype(np.float32), None, ("N", 1, 28, 28))


@pytest.mark.parametrize(("declared", "message"), [
    ({"name": "pixels"}, "manifest names input 'pixels' but the model's input is 'input'"),
    ({"layout": "NHWC"}, "manifest says layout NHWC but the model's input [N,1,28,28] is NCHW"),
    ({"dtype": "uint8"}, "manifest says dtype uint8 but the model takes float32"),
])
def test_a_manifest_that_disagrees_with_its_model_is_named(declared, message):
    manifest = {"input": {"name": "input", "layout": "NCHW", "dtype": "float32", **declared}}
    with pytest.raises(ManifestError) as caught:
        _check_manifest_agrees(manifest, SPEC, MODEL)
    assert caught.value.reason == message and caught.value.path == Path("models/manifest.json")


def test_a_manifest_that_agrees_passes():
    _check_manifest_agrees({"input": {"name": "input", "layout": "NCHW", "dtype": "float32"}}, SPEC, MODEL)
