"""Bring your own model: MNIST models as Keras and PyTorch export them (scripts/foreign_builders.py,
trained briefly) through `quantize --for mcu` -> `codegen --verify` (all 10,000 test images
identical to onnxruntime) -> the mps2-an386 board -> the c engine's page in Chromium; and one
error line for each model the deployment half cannot take.

The project's own lenet5 and mlp take the same path; the accuracy figures (fp32 vs int8 after
full training) come from scripts/foreign_models.py.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from mnist_edge.cli import app  # noqa: E402
from mnist_edge.codegen import SCORES_BEFORE_SOFTMAX, load_integer_model  # noqa: E402
from mnist_edge.codegen.emit import HEADER  # noqa: E402
from mnist_edge.codegen.verify import build_harness, c_scores  # noqa: E402
from scripts.foreign_builders import BRIEF, BUILDERS, UNTRAINED, build  # noqa: E402
from scripts.foreign_models import Deployment, deploy, normalization  # noqa: E402
from tests.webpage import canvases, classify_in_page, opened  # noqa: E402

DEFAULT = ("keras-cnn", "dynamo-cnn", "flat-mlp", "residual")
TEST_IMAGES = 10_000
BOARD_IMAGES = 50
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "EP Error" not in result.stdout, result.stdout  # onnxruntime's fallback banner never reaches the user
    return lines[0]


def tools(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None:
            pytest.skip(f"{name} is not installed (see .ci/run for the packages)")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, mnist_dir) -> dict[str, Deployment]:
    """Each default model built, quantized, generated and proven on all 10,000 test images, run
    on the Cortex-M4 board (BOARD_IMAGES) and given a c engine site."""
    tools("cc", "arm-none-eabi-gcc", "qemu-system-arm", "clang", "wasm-ld")
    root = tmp_path_factory.mktemp("foreign")
    return {name: deploy(name, root / name, BRIEF, board_images=BOARD_IMAGES) for name in DEFAULT}


# --- the whole path --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DEFAULT)
def test_every_score_of_the_c_equals_onnxruntime_on_the_host_and_the_board(deployed, name):
    result = deployed[name]
    assert (result.identical, result.verified_images) == (TEST_IMAGES, TEST_IMAGES)
    assert result.board_equal is True and result.board_images == BOARD_IMAGES
    assert result.int8_accuracy > 0.2  # trained, if briefly: far above chance


@pytest.mark.parametrize("name", DEFAULT)
def test_the_int8_model_is_integer_from_input_to_scores(deployed, name):
    """quantize --for mcu on a foreign graph (unsorted, NHWC, MatMul + Add, Softmax...) leaves no
    float operator between the input's QuantizeLinear and the scores' DequantizeLinear."""
    import onnx

    model = onnx.load(str(deployed[name].int8 / "model.onnx"), load_external_data=False)
    produced_by = {out: node.op_type for node in model.graph.node for out in node.output}
    inits = {init.name for init in model.graph.initializer}
    compute = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm", "Add", "AveragePool",
                                                           "GlobalAveragePool", "MaxPool")]
    for node in compute:
        feeds = [produced_by.get(name, "initializer" if name in inits else "input") for name in node.input if name]
        assert set(feeds) <= {"DequantizeLinear", "initializer"}, (node.name, feeds)


def test_the_keras_models_nodes_are_out_of_order_and_its_input_nhwc(deployed):
    import onnx

    keras = deployed["keras-cnn"]
    model = onnx.load(str(keras.fp32))
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(model)  # what quantize said before it sorted
    manifest = json.loads((keras.int8 / "manifest.json").read_text())
    assert manifest["input"]["layout"] == "NHWC"
    assert (manifest["input"]["scale"], manifest["input"]["mean"], manifest["input"]["std"]) == (255.0, 0.0, 1.0)
    assert manifest["input"]["normalization_source"] == "given"


def test_a_final_softmax_stays_out_and_the_c_says_so(deployed):
    keras = deployed["keras-cnn"]
    manifest = json.loads((keras.library / "manifest.json").read_text())
    assert manifest["api"]["scores"] == SCORES_BEFORE_SOFTMAX
    assert "ends in a Softmax, left out here" in (keras.library / HEADER).read_text()
    assert load_integer_model(keras.int8).output_softmax


def test_external_data_counts_in_the_fp32_size(deployed, tmp_path, mnist_dir):
    dynamo = deployed["dynamo-cnn"]
    data = dynamo.fp32.with_name(dynamo.fp32.name + ".data")
    assert data.is_file() and data.stat().st_size > dynamo.fp32.stat().st_size  # the weights are outside
    result = invoke("quantize", dynamo.fp32, "--for", "mcu", "--out", tmp_path / "q", "--json")
    assert result.exit_code == 0, result.output
    sizes = json.loads(result.stdout)
    assert sizes["fp32_bytes"] == dynamo.fp32.stat().st_size + data.stat().st_size
    assert sizes["int8_bytes"] < sizes["fp32_bytes"]


def test_the_residual_nets_layers_are_read_as_a_graph(deployed):
    layers = load_integer_model(deployed["residual"].int8).layers
    kinds = [type(layer).__name__ for layer in layers]
    assert {"Add", "AveragePool", "Table"} <= set(kinds)  # Table: LeakyRelu, Sigmoid, Tanh
    assert sum(kind == "Table" for kind in kinds) == 3
    add = next(layer for layer in layers if type(layer).__name__ == "Add")
    assert len(add.inputs) == 2


@pytest.mark.parametrize("name", DEFAULT)
def test_the_c_page_gives_the_librarys_scores(browser, deployed, name, tmp_path):
    deployment = deployed[name]
    with opened(browser, deployment.library.parent / f"{name}-site") as (page, _):
        results = classify_in_page(page, canvases(20))
    inputs = np.asarray([r["input"] for r in results], dtype=np.uint8)
    expected = c_scores(build_harness(deployment.library, tmp_path, "cc"), inputs, 10)
    assert np.array_equal(np.asarray([r["scores"] for r in results], dtype=np.uint8), expected)


def test_the_site_says_what_is_over_its_budget(deployed):
    over = {name: d.site_over_budget for name, d in deployed.items()}
    sizes = {name: d.site_bytes for name, d in deployed.items()}
    from mnist_edge.web.site import C_SITE_BUDGET

    assert over == {name: size > C_SITE_BUDGET for name, size in sizes.items()}
    assert not over["keras-cnn"] and not over["dynamo-cnn"] and over["flat-mlp"]  # 54 KB of weights, twice


# --- the arithmetic alone (no compiler): every layer of the numpy model equals onnxruntime's ---------


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_layer_of_the_numpy_model_equals_onnxruntimes(name, tmp_path, mnist_dir):
    """The foreign graphs read (graph.py) and computed in numpy (reference.py) with torch's initial
    weights: each layer's output, on onnxruntime's own graph cut at that layer, byte for byte."""
    from mnist_edge.codegen import reference
    from mnist_edge.codegen.verify import onnxruntime_layer_outputs, onnxruntime_scores
    from mnist_edge.data import load_split
    from mnist_edge.quantize import default_options, quantize_model

    fp32 = build(name, tmp_path, UNTRAINED)
    quantize_model(fp32, tmp_path / "q", default_options(None, target="mcu"), download=False, **normalization(name))
    model = load_integer_model(tmp_path / "q")
    pixels = load_split("test", download=False).images[:64]
    for layer, ours, theirs in zip(model.layers, reference.layer_outputs(model, pixels, "float"),
                                   onnxruntime_layer_outputs(model, pixels), strict=True):
        assert np.array_equal(ours.reshape(-1), theirs.reshape(-1)), layer.name
    scores = onnxruntime_scores(model.source, pixels, model.normalization, layout=model.input_layout)
    assert np.array_equal(reference.scores(model, pixels, "float"), scores)


@pytest.mark.parametrize("name", ["keras-cnn", "residual", "flat-mlp"])
def test_the_generated_c_of_each_graph_equals_onnxruntime(name, tmp_path, mnist_dir):
    """The same graphs as C (portable kernels, -O2: no compiler's vector unit to lean on), every
    score equal to onnxruntime's on 300 test images."""
    from mnist_edge.codegen import generate
    from mnist_edge.quantize import default_options, quantize_model

    tools("cc")
    fp32 = build(name, tmp_path, UNTRAINED)
    quantize_model(fp32, tmp_path / "q", default_options(None, target="mcu"), download=False, **normalization(name))
    result = generate(tmp_path / "q", tmp_path / "c", verify_images=300, download=False, cflags=("-O2",))
    assert result.verification.identical == 300, result.verification


# --- what the CLI says ----------------------------------------------------------------------------


def test_codegen_states_a_bare_models_assumed_normalization(deployed, tmp_path):
    """The residual net's int8 model copied without its manifest: codegen says what it assumes,
    and records it; --scale/--mean/--std replace the assumption."""
    bare = tmp_path / "bare.onnx"
    shutil.copy(deployed["residual"].int8 / "model.onnx", bare)
    result = invoke("codegen", bare, "--out", tmp_path / "c")
    assert result.exit_code == 0, result.output
    assert "assumed (MNIST's mean and std; the model states none)" in result.stdout
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["input"]["normalization_source"] == "assumed"
    given = invoke("codegen", bare, "--out", tmp_path / "c2", "--scale", 255, "--mean", 0.1307, "--std", 0.3081)
    assert given.exit_code == 0 and "(given)" in given.stdout, given.output
    manifest = json.loads((tmp_path / "c2" / "manifest.json").read_text())
    assert "--scale 255.0 --mean 0.1307 --std 0.3081" in manifest["measured_with"]
    # The same table either way: MNIST's normalization is what the model was trained with.
    assert (tmp_path / "c" / "model.c").read_text() == (tmp_path / "c2" / "model.c").read_text()


def test_quantize_states_the_normalization_it_assumes(deployed, tmp_path, mnist_dir):
    result = invoke("quantize", deployed["flat-mlp"].fp32, "--for", "mcu", "--out", tmp_path / "q")
    assert result.exit_code == 0, result.output
    assert "assumed (MNIST's mean and std" in result.stdout
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert manifest["input"]["normalization_source"] == "assumed" and manifest["input"]["layout"] == "flat"


# --- the project's own layouts (over the site's budget: the page still works) ------------------------


@pytest.mark.parametrize("name", ["lenet5", "mlp"])
def test_the_projects_models_take_the_same_path(browser, name, tmp_path, mnist_dir):
    tools("cc", "arm-none-eabi-gcc", "qemu-system-arm", "clang", "wasm-ld")
    result = deploy(name, tmp_path, BRIEF, board_images=100)
    assert (result.identical, result.board_equal) == (TEST_IMAGES, True)
    assert result.site_over_budget  # lenet5's 70 KB of weights and the mlp's 680 KB, in both modules
    with opened(browser, tmp_path / f"{name}-site") as (page, _):
        results = classify_in_page(page, canvases(10))
    inputs = np.asarray([r["input"] for r in results], dtype=np.uint8)
    (tmp_path / "host").mkdir()
    expected = c_scores(build_harness(result.library, tmp_path / "host", "cc"), inputs, 10)
    assert np.array_equal(np.asarray([r["scores"] for r in results], dtype=np.uint8), expected)


# --- what the deployment half refuses: one error line, nothing written --------------------------------


def _save(path, nodes, inits, input_dims=("N", 1, 28, 28)):
    """A float model of NODES from input `x` to output `y` (N x 10), with initializers INITS."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(nodes, path.stem,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_dims))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _dense(path, after=(), inits=None):
    """x -> flatten -> MatMul (784 x 10) -> the nodes AFTER (from `m` to `y`)."""
    from onnx import helper

    rng = np.random.default_rng(0)
    weights = {"s": np.array([-1, 784], np.int64), "d": rng.normal(0, 0.05, (784, 10)).astype(np.float32)}
    nodes = [helper.make_node("Reshape", ["x", "s"], ["f"]),
             helper.make_node("MatMul", ["f", "d"], ["m" if after else "y"]), *after]
    return _save(path, nodes, {**weights, **(inits or {})})


def test_a_model_whose_input_is_not_one_28_by_28_image_is_refused(tmp_path, mnist_dir):
    from onnx import helper

    model = _save(tmp_path / "big.onnx", [helper.make_node("Reshape", ["x", "s"], ["f"]),
                                          helper.make_node("MatMul", ["f", "d"], ["y"])],
                  {"s": np.array([-1, 1024], np.int64), "d": np.zeros((1024, 10), np.float32)}, ("N", 1, 32, 32))
    line = one_error_line(invoke("quantize", model, "--for", "mcu", "--out", tmp_path / "q"))
    assert str(model) in line and "not one 28 x 28 image" in line
    assert not (tmp_path / "q").exists()


def test_a_loop_is_refused_before_calibration_runs_it(tmp_path, mnist_dir):
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
    loop = helper.make_node("Loop", ["trips", "go", "m"], ["y"], body=body)
    model = _dense(tmp_path / "loop.onnx", [loop], {"trips": np.array(10**12, np.int64), "go": np.array(True)})
    line = one_error_line(invoke("quantize", model, "--for", "mcu", "--out", tmp_path / "q"))
    assert "uses Loop" in line and not (tmp_path / "q").exists()


def test_an_unsupported_operator_is_named_with_the_supported_list(tmp_path, mnist_dir):
    from onnx import helper

    model = _dense(tmp_path / "erf.onnx", [helper.make_node("Erf", ["m"], ["y"])])
    assert invoke("quantize", model, "--for", "mcu", "--out", tmp_path / "q").exit_code == 0
    line = one_error_line(invoke("codegen", tmp_path / "q", "--out", tmp_path / "c"))
    assert "node Erf: operator Erf is not supported by the C generator (supported: Conv, Gemm" in line
    assert not (tmp_path / "c").exists()


def test_accumulators_that_could_overflow_int32_are_refused(tmp_path, mnist_dir):
    from onnx import helper

    bias = np.where(np.arange(10) == 0, 1e5, -1e5).astype(np.float32)  # int32 bias near 2^31 at these scales
    model = _dense(tmp_path / "bias.onnx", [helper.make_node("Add", ["m", "b"], ["y"])], {"b": bias})
    assert invoke("quantize", model, "--for", "mcu", "--out", tmp_path / "q").exit_code == 0
    line = one_error_line(invoke("codegen", tmp_path / "q", "--out", tmp_path / "c"))
    assert str(tmp_path / "q" / "model.onnx") in line and "int32 accumulator could overflow" in line
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("command", [("eval",), ("quantize", "--for", "mcu", "--out")])
def test_names_that_are_not_utf8_are_one_error_line_without_onnxruntimes_banner(tmp_path, command, mnist_dir):
    """onnxruntime's Python wrapper prints an "EP Error ... Falling back" banner on stdout when
    a session fails to load (here: a name that is not UTF-8 in its error text)."""
    from onnx import helper

    model = _save(tmp_path / "names.onnx", [helper.make_node("Relu", ["NAMEX"], ["y"])], {})
    model.write_bytes(model.read_bytes().replace(b"NAMEX", b"\xffAMEX"))
    args = [*command, tmp_path / "out"] if command[-1] == "--out" else list(command)
    line = one_error_line(invoke(args[0], model, *args[1:]))
    assert str(model) in line and "UTF-8" in line
    assert not (tmp_path / "out").exists()


def test_codegen_refuses_an_int8_model_whose_names_are_not_utf8(tmp_path, mnist_dir):
    assert invoke("quantize", _dense(tmp_path / "dense.onnx"), "--for", "mcu", "--out", tmp_path / "q").exit_code == 0
    model = tmp_path / "bare.onnx"  # without its manifest, whose checksum it no longer matches
    model.write_bytes((tmp_path / "q" / "model.onnx").read_bytes().replace(b"f_QuantizeLinear_Output",
                                                                           b"\xff_QuantizeLinear_Output"))
    line = one_error_line(invoke("codegen", model, "--out", tmp_path / "c", "--verify", "--images", 10))
    assert str(model) in line and "not UTF-8" in line
    assert not (tmp_path / "c").exists()


def test_a_map_read_by_a_padded_convolution_and_a_dense_layer_is_refused(tmp_path, mnist_dir):
    from onnx import helper

    rng = np.random.default_rng(1)
    inits = {"w1": rng.normal(0, 0.3, (4, 1, 3, 3)).astype(np.float32),
             "w2": rng.normal(0, 0.3, (4, 4, 3, 3)).astype(np.float32),
             "s": np.array([-1, 4 * 26 * 26], np.int64),
             "d1": rng.normal(0, 0.02, (4 * 26 * 26, 10)).astype(np.float32),
             "d2": rng.normal(0, 0.02, (4 * 26 * 26, 10)).astype(np.float32), "b": np.zeros(10, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c2", "s"], ["f2"]), helper.make_node("Gemm", ["f2", "d2", "b"], ["m2"]),
             helper.make_node("Reshape", ["r1", "s"], ["f1"]), helper.make_node("Gemm", ["f1", "d1", "b"], ["m1"]),
             helper.make_node("Add", ["m1", "m2"], ["y"])]
    model = _save(tmp_path / "both.onnx", nodes, inits)
    assert invoke("quantize", model, "--for", "mcu", "--out", tmp_path / "q").exit_code == 0
    line = one_error_line(invoke("codegen", tmp_path / "q", "--out", tmp_path / "c"))
    assert "read by a padded convolution and by a dense layer" in line


def test_an_average_pooling_over_the_whole_map_is_computed_as_onnxruntime_does(tmp_path, mnist_dir):
    """onnxruntime runs a QLinearAveragePool whose kernel covers the map as a global average
    pooling (other arithmetic): the C follows it, every score identical."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
                        nn.AvgPool2d(6), nn.Flatten(), nn.Linear(16, 10)).eval()
    torch.onnx.export(net, torch.zeros(1, 1, 28, 28), str(tmp_path / "pool.onnx"), input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "N"}}, opset_version=17, dynamo=False)
    assert invoke("quantize", tmp_path / "pool.onnx", "--for", "mcu", "--out", tmp_path / "q").exit_code == 0
    result = invoke("codegen", tmp_path / "q", "--out", tmp_path / "c", "--verify", "--images", 2000)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["verification"]["identical"] == 2000
    assert any(layer.startswith("GlobalAveragePool") for layer in manifest["memory"]["layers"])
