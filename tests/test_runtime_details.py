"""What `Predictor` decides about a model beyond its input layout: logits or probabilities (on
models whose scores are given constants), the output shapes it takes and refuses, chunking and
padding, the session it opens (threads, profiling, the shared memory arena), the memory limit
from the environment, and the one-line messages of onnxruntime's run failures."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mnist_edge import manifest as manifest_io
from mnist_edge import runtime
from mnist_edge.config import LABELS, MNIST_MEAN, MNIST_STD, Normalization
from mnist_edge.errors import ConfigError, InputImageError, ModelFileError
from mnist_edge.runtime import Prediction, Predictor, softmax
from tests.onnx_models import _model, linear_model, save, write_exported

IMAGES = np.stack([np.full((28, 28), v, np.uint8) for v in (0, 60, 120, 180, 255)])


def constant_model(values: list[float], shape: str = "NK", second_output: bool = False, dtype: int = TensorProto.FLOAT,
                   batch: int | str = "N") -> Path:
    """A model whose scores are `values` for every image, whatever its pixels: x [N,1,28,28] ->
    (sum of the pixels) x 0 + values. `shape`: NK [N,K], N1K [N,1,K] or flat [N*K]."""
    k = len(values)
    inits = [numpy_helper.from_array(np.array([values], np.float32), "values"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array([-1], np.int64), "flat_shape")]
    nodes = [helper.make_node("Flatten", ["x"], ["flat"]),
             helper.make_node("ReduceSum", ["flat", "axis1"], ["sums"], keepdims=1),
             helper.make_node("Mul", ["sums", "zero"], ["zeros"]),
             helper.make_node("Add", ["zeros", "values"], ["scores"])]
    out_shape: list = [batch, k]
    if shape == "N1K":
        nodes.append(helper.make_node("Unsqueeze", ["scores", "axis1"], ["shaped"]))
        out_shape = [batch, 1, k]
    elif shape == "flat":
        nodes.append(helper.make_node("Reshape", ["scores", "flat_shape"], ["shaped"]))
        out_shape = ["M"]
    else:
        nodes.append(helper.make_node("Identity", ["scores"], ["shaped"]))
    nodes.append(helper.make_node("Cast", ["shaped"], ["y"], to=dtype))
    outputs = [helper.make_tensor_value_info("y", dtype, out_shape)]
    if second_output:
        outputs.append(helper.make_tensor_value_info("sums", TensorProto.FLOAT, [batch, 1]))
    graph = helper.make_graph(nodes, "constant", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                [batch, 1, 28, 28])],
                              outputs, inits)
    return _model(graph)


@pytest.fixture
def models(tmp_path: Path):
    def make(name: str, model) -> Path:
        return save(model, tmp_path / f"{name}.onnx")

    return make


# --- logits or probabilities ----------------------------------------------------------------------

ONE_HOT = [1.0] + [0.0] * 9


@pytest.mark.parametrize("values, probabilities", [
    (ONE_HOT, True),  # exactly 0 and 1: still probabilities
    ([0.1] * 10, True),
    ([0.10005] * 10, True),  # summing to 1.0005 (float16 softmax, say): within 1e-3 of one
    ([0.1002] * 10, False),  # summing to 1.002: not probabilities
    ([-0.5, 0.75, 0.75] + [0.0] * 7, False),  # sums to one, but a negative score is a logit
    ([0.5] * 10, False),  # each in [0, 1], summing to 5
    ([0.15] * 10, False),  # summing to 1.5
    ([3.0, 1.0] + [-0.4] * 8, False),
])
def test_scores_are_taken_as_probabilities_only_when_they_are(models, values, probabilities) -> None:
    predictor = Predictor.load(models("constant", constant_model(values)))
    assert predictor.outputs_probabilities is probabilities
    expected = np.array([values] * len(IMAGES), np.float32)
    got = predictor.probabilities(IMAGES)
    assert np.array_equal(got, expected if probabilities else softmax(expected))
    assert np.array_equal(predictor.logits(IMAGES), expected)


def test_an_output_of_n_by_1_by_10_and_a_double_output_are_taken(models) -> None:
    values = [0.0, 2.0, 1.0] + [0.5] * 7
    for model in (constant_model(values, shape="N1K"), constant_model(values, dtype=TensorProto.DOUBLE)):
        predictor = Predictor.load(models("m", model))
        scores = predictor.logits(IMAGES)
        assert scores.dtype == np.float32 and scores.shape == (5, 10)
        assert np.array_equal(scores, np.array([values] * 5, np.float32))
        assert predictor.predict(IMAGES).digits.tolist() == [1] * 5


def test_the_first_output_is_the_scores(models) -> None:
    predictor = Predictor.load(models("two", constant_model([0.0, 0.0, 5.0] + [0.0] * 7, second_output=True)))
    assert predictor.output_name == "y" and predictor.predict(IMAGES).digits.tolist() == [2] * 5


@pytest.mark.parametrize("model, message", [
    (constant_model([0.1] * 10, shape="flat"), "model output has shape [20]; expected [2, 10] (one score per digit)"),
    (constant_model([0.1] * 11, shape="NK", batch="N"), None),
])
def test_outputs_that_are_not_ten_scores_per_image_are_refused_at_load(models, model, message) -> None:
    path = models("bad", model)
    with pytest.raises(ModelFileError) as caught:
        Predictor.load(path)
    assert caught.value.path == path
    if message:
        assert caught.value.reason == message
    else:
        assert caught.value.reason == "output 'y' has shape [N,11]; expected 10 scores per image (one per digit)"


@pytest.mark.parametrize("output, shape", [(np.zeros((2, 11), np.float32), "[2, 11]"),
                                           (np.zeros((2, 1, 11), np.float32), "[2, 1, 11]"),
                                           (np.zeros((20,), np.float32), "[20]")])
def test_scores_of_the_wrong_size_at_run_time_are_refused(models, output, shape) -> None:
    """A model whose output width onnxruntime cannot know before it runs."""
    path = models("linear", linear_model())
    predictor = Predictor.load(path)
    predictor.session = SimpleNamespace(run=lambda names, feeds: [output])
    with pytest.raises(ModelFileError) as caught:
        predictor.logits(IMAGES[:2])
    assert (caught.value.reason, caught.value.path) == (
        f"model output has shape {shape}; expected [2, 10] (one score per digit)", path)


def test_a_model_with_one_score_per_image_is_refused(models) -> None:
    path = models("one", constant_model([0.5]))
    with pytest.raises(ModelFileError) as caught:
        Predictor.load(path)
    assert caught.value.reason == "output 'y' has shape [N,1]; expected 10 scores per image (one per digit)"
    assert caught.value.path == path


def test_a_model_without_outputs_is_named() -> None:
    session = SimpleNamespace(get_outputs=lambda: [])
    with pytest.raises(ModelFileError) as caught:
        runtime._check_output(session, 10, Path("m.onnx"))
    assert str(caught.value) == "m.onnx: model has no outputs; expected one output of digit scores"
    assert caught.value.path == Path("m.onnx")


@pytest.mark.parametrize("shape", [["N", 1, 10], [1, 0], ["N", "K"]])
def test_outputs_whose_last_dimension_is_ten_or_unknown_pass(shape) -> None:
    session = SimpleNamespace(get_outputs=lambda: [SimpleNamespace(name="y", type="tensor(float)", shape=shape)])
    runtime._check_output(session, 10, Path("m.onnx"))


# --- batches ----------------------------------------------------------------------------------------


def counting_runs(predictor: Predictor) -> list[int]:
    sizes: list[int] = []
    real = predictor.session

    class Spy:
        def run(self, names, feeds):
            sizes.append(len(next(iter(feeds.values()))))
            return real.run(names, feeds)

    predictor.session = Spy()
    return sizes


def test_big_arrays_go_through_in_chunks(models) -> None:
    predictor = Predictor.load(models("linear", linear_model()))
    whole = predictor.predict(IMAGES)
    sizes = counting_runs(predictor)
    for chunk, expected in ((2, [2, 2, 1]), (1, [1] * 5), (0, [1] * 5), (512, [5])):
        sizes.clear()
        chunked = predictor.predict(IMAGES, chunk=chunk)
        assert sizes == expected, chunk
        assert np.array_equal(chunked.probabilities, whole.probabilities)
    sizes.clear()
    predictor.probabilities(IMAGES, chunk=2)
    assert sizes == [2, 2, 1]


@pytest.mark.parametrize("dtype, blank", [("float32", np.float32(-MNIST_MEAN) / np.float32(MNIST_STD)),
                                          ("uint8", 0)])
def test_a_fixed_batch_is_padded_with_blank_images(models, dtype, blank) -> None:
    predictor = Predictor.load(models(f"fixed-{dtype}", linear_model("NCHW", batch=8, dtype=dtype)))
    x = predictor.prepare(IMAGES[1:4])
    padded = predictor._padded(x)
    assert padded.shape == (8, 1, 28, 28) and padded.dtype == x.dtype
    assert np.array_equal(padded[:3], x)
    assert np.all(padded[3:] == np.asarray(blank, dtype=x.dtype))
    assert np.array_equal(padded[3:], predictor.prepare(np.zeros((5, 28, 28), np.uint8)))  # blank, normalised alike
    sizes = counting_runs(predictor)
    assert predictor.predict(IMAGES).digits.shape == (5,) and sizes == [8]


def test_predictions_are_the_most_probable_digit(models) -> None:
    prediction = Predictor.load(models("linear", linear_model())).predict(IMAGES)
    assert prediction.digits.dtype == np.int64 and prediction.confidences.dtype == np.float32
    assert np.array_equal(prediction.digits, prediction.probabilities.argmax(axis=1))
    assert np.array_equal(prediction.confidences, prediction.probabilities.max(axis=1))


def test_one_image_is_a_batch_of_one(models) -> None:
    predictor = Predictor.load(models("linear", linear_model()))
    assert predictor.prepare(IMAGES[2]).shape == (1, 1, 28, 28)
    assert np.array_equal(predictor.predict(IMAGES[2]).probabilities, predictor.predict(IMAGES[2:3]).probabilities)
    with pytest.raises(InputImageError, match=r"expected uint8 images of shape \[N, 28, 28\], got uint8 \[28\]"):
        predictor.prepare(IMAGES[2][0])


def test_top_gives_the_best_classes_first_ties_in_class_order() -> None:
    probabilities = np.array([[0.1, 0.3, 0.3, 0.05, 0.25] + [0.0] * 5, [0.0] * 9 + [1.0]], np.float32)
    order, values = Prediction(np.array([1, 9]), probabilities.max(axis=1), probabilities).top()
    assert order.tolist() == [[1, 2, 4], [9, 0, 1]]  # three by default; equal ones in class order
    assert values.tolist() == [[pytest.approx(0.3), pytest.approx(0.3), pytest.approx(0.25)], [1.0, 0.0, 0.0]]
    order, _ = Prediction(np.array([0]), np.array([0.025]), np.full((1, 40), 0.025, np.float32)).top(40)
    assert order.tolist() == [list(range(40))]
    assert Prediction(np.array([1, 9]), probabilities.max(axis=1), probabilities).top(20)[0].shape == (2, 10)


def test_softmax_is_row_by_row_and_never_overflows() -> None:
    scores = np.array([[1000.0, 999.0, 0.0], [0.0, -1.0, -1000.0]], np.float64)
    probabilities = softmax(scores)
    assert probabilities.dtype == np.float32 and np.all(np.isfinite(probabilities))
    row = np.exp([0.0, -1.0]) / np.exp([0.0, -1.0]).sum()
    assert probabilities[:, :2] == pytest.approx(np.array([row, row]), rel=1e-6)
    assert probabilities.sum(axis=1) == pytest.approx([1.0, 1.0])


# --- what a load takes from the manifest and the options ----------------------------------------------


def test_a_manifests_labels_and_normalization_are_used(tmp_path) -> None:
    folder = write_exported(tmp_path / "m", linear_model(), labels=[f"digit {d}" for d in range(10)])
    manifest = manifest_io.load(folder)
    manifest["input"].update({"scale": 127.5, "mean": 1.0, "std": 1.0})
    manifest_io.save(folder, manifest)
    predictor = Predictor.load(folder)
    assert predictor.labels == [f"digit {d}" for d in range(10)]
    assert predictor.normalization == Normalization(127.5, 1.0, 1.0)
    assert predictor.prepare(np.full((1, 28, 28), 255, np.uint8)).max() == pytest.approx(1.0)  # 255 / 127.5 - 1
    assert Predictor.load(folder, mean=0.0).normalization == Normalization(127.5, 0.0, 1.0)
    bare = tmp_path / "bare" / "model.onnx"
    bare.parent.mkdir()
    bare.write_bytes((folder / "model.onnx").read_bytes())
    assert Predictor.load(bare).labels == list(LABELS)  # no manifest: the digits
    assert Predictor.load(bare).normalization == Normalization()


def test_bad_normalizations_are_refused(tmp_path, models) -> None:
    path = models("linear", linear_model())
    for options in ({"scale": 0.0}, {"std": 0.0}, {"scale": -1.0}, {"mean": float("nan")}):
        with pytest.raises(ConfigError, match="--scale and --std must be positive and --mean finite"):
            Predictor.load(path, **options)
    uint8 = models("uint8", linear_model(dtype="uint8"))
    with pytest.raises(ConfigError) as caught:
        Predictor.load(uint8, scale=255.0, mean=0.1)
    assert str(caught.value) == "--scale, --mean do not apply: this model takes raw uint8 pixels"
    assert Predictor.load(uint8).normalization is None


def test_the_session_has_the_threads_asked_for(models) -> None:
    path = models("linear", linear_model())
    predictor = Predictor.load(path, threads=3)
    assert predictor.session.get_session_options().intra_op_num_threads == 3
    assert runtime.create_session(path).get_providers() == ["CPUExecutionProvider"]  # cpu by default


def test_session_options() -> None:
    options = runtime.session_options(3, "prof/run")
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 1)
    assert options.enable_profiling and options.profile_file_prefix == "prof/run"
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.log_severity_level == 4  # onnxruntime silent unless --verbose
    plain = runtime.session_options()
    assert plain.intra_op_num_threads == 0 and not plain.enable_profiling


def test_a_session_allocates_from_the_shared_capped_arena(models, tmp_path) -> None:
    path = models("linear", linear_model())
    session = runtime.create_session(path, threads=2, profile_prefix=str(tmp_path / "p"))
    options = session.get_session_options()
    assert options.get_session_config_entry("session.use_env_allocators") == "1"
    assert options.intra_op_num_threads == 2 and options.enable_profiling
    assert runtime._arena_registered is True


def test_a_name_onnxruntime_cannot_decode_is_a_model_file_error(monkeypatch, models) -> None:
    path = models("linear", linear_model())

    def undecodable(*args, **kwargs):
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    monkeypatch.setattr(runtime.ort, "InferenceSession", undecodable)
    with pytest.raises(ModelFileError) as caught:
        runtime.create_session(path)
    assert caught.value.reason == "not a valid ONNX model (a name or string in it is not UTF-8: damaged file?)"
    assert caught.value.path == path


def test_an_input_name_onnxruntime_cannot_decode_is_named() -> None:
    class Undecodable:
        @property
        def name(self):
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    session = SimpleNamespace(get_inputs=lambda: [Undecodable()], get_outputs=lambda: [])
    with pytest.raises(ModelFileError) as caught:
        runtime.inspect_input(session, Path("m.onnx"))
    assert str(caught.value) == "m.onnx: not a valid ONNX model (an input or output name is not UTF-8)"


def test_the_largest_fixed_batch_fed_is_the_limit() -> None:
    def session(batch: int) -> SimpleNamespace:
        arg = SimpleNamespace(name="x", type="tensor(float)", shape=[batch, 784])
        return SimpleNamespace(get_inputs=lambda: [arg], get_outputs=lambda: [])

    assert runtime.inspect_input(session(runtime.MAX_FIXED_BATCH), Path("m.onnx")).batch == 65_536
    with pytest.raises(ModelFileError) as caught:
        runtime.inspect_input(session(runtime.MAX_FIXED_BATCH + 1), Path("m.onnx"))
    assert str(caught.value) == ("m.onnx: input 'x' has a fixed batch of 65,537 images; mnist-edge feeds at most "
                                 "65,536 at a time (export it with a dynamic batch)")


@pytest.mark.parametrize("shape", [(None, 1, 1, 28), ("N", 1, 1, 1), (1, 1, 5, 28), (1, 28, 5, 1), (1, 1, 28, 5)])
def test_shapes_with_a_wrong_side_are_not_digit_images(shape) -> None:
    assert runtime.detect_layout(shape) is None


def test_providers(monkeypatch) -> None:
    assert runtime.providers_for("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="unknown provider 'tpu'; choose one of cpu, cuda"):
        runtime.providers_for("tpu")
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: ["CPUExecutionProvider", "XnnpackProvider"])
    with pytest.raises(ConfigError) as caught:
        runtime.providers_for("cuda")
    assert str(caught.value) == ("provider 'cuda' is not available in this onnxruntime build (available: "
                                 "CPUExecutionProvider, XnnpackProvider); install onnxruntime-gpu for cuda")


# --- the memory limit and onnxruntime's messages -----------------------------------------------------


@pytest.mark.parametrize("value, limit", [
    (None, 2 * 1024**3), ("", 2 * 1024**3), ("512", 512 * 1024**2), ("1", 1024**2), (" 64 ", 64 * 1024**2),
    ("0", 2 * 1024**3), ("-5", 2 * 1024**3), ("lots", 2 * 1024**3), ("1.5", 2 * 1024**3),
])
def test_the_memory_limit_comes_from_the_environment(monkeypatch, value, limit) -> None:
    if value is None:
        monkeypatch.delenv("MNIST_EDGE_MEMORY_LIMIT_MB", raising=False)
    else:
        monkeypatch.setenv("MNIST_EDGE_MEMORY_LIMIT_MB", value)
    assert runtime.memory_limit() == limit


@pytest.mark.parametrize("raw, line", [
    ("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Expand node. "
     "Name:'big' Status Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:359 void* "
     "onnxruntime::BFCArena::AllocateRawInternal(size_t, bool) Failed to allocate memory for requested buffer of "
     "size 14400000000\n",
     "the model asks for more memory than the limit of 2.0 GiB (operator Expand) (set MNIST_EDGE_MEMORY_LIMIT_MB "
     "to raise it)"),
    ("Available memory of 0 is smaller than requested bytes of 400",
     "the model asks for more memory than the limit of 2.0 GiB (set MNIST_EDGE_MEMORY_LIMIT_MB to raise it)"),
    ("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero status code returned while running Reshape node. "
     "Name:'r' Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/tensor/reshape_helper.h:41 "
     "onnxruntime::ReshapeHelper::ReshapeHelper(const onnxruntime::TensorShape&, bool) size != 0 was false. "
     "The input tensor cannot be reshaped to the requested shape. Input shape:{1,784}, requested shape:{5,-1}\n",
     "size != 0 was false. The input tensor cannot be reshaped to the requested shape. Input shape:{1,784}, "
     "requested shape:{5,-1} (operator Reshape)"),
    ("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: x for the following indices\n"
     " index: 0 Got: 3 Expected: 8\n",
     "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: x for the following indices"),
])
def test_run_errors_become_one_line(monkeypatch, raw, line) -> None:
    monkeypatch.delenv("MNIST_EDGE_MEMORY_LIMIT_MB", raising=False)
    assert runtime.describe_run_error(RuntimeError(raw)) == line


def test_an_inference_that_fails_is_a_model_file_error_naming_the_model(models) -> None:
    path = models("linear", linear_model())
    predictor = Predictor.load(path)

    class Failing:
        def run(self, names, feeds):
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while "
                               "running MatMul node. Name:'m' Status Message: something broke")

    predictor.session = Failing()
    with pytest.raises(ModelFileError) as caught:
        predictor.predict(IMAGES)
    assert caught.value.path == path
    assert caught.value.reason == "inference failed: something broke (operator MatMul)"


@pytest.mark.parametrize("raw, line", [
    ("Failed to allocate memory for requested buffer of size 100",
     "the model asks for more memory than the limit of 2.0 GiB (set MNIST_EDGE_MEMORY_LIMIT_MB to raise it)"),
    ("Available memory of 10 is smaller than requested bytes of 400",
     "the model asks for more memory than the limit of 2.0 GiB (set MNIST_EDGE_MEMORY_LIMIT_MB to raise it)"),
    ("Load model from m.onnx failed:Protobuf parsing failed.",
     "not an ONNX model (protobuf parsing failed: truncated or foreign file?)"),
    ('In Node, ("n1", Frobnicate, "my.domain", -1) : ("x": tensor(float),)\n-> ("y") , '
     "Error No opset import for domain my.domain",
     "unsupported operator my.domain:Frobnicate: onnxruntime has no implementation for it"),
    ("[ONNXRuntimeError] : 1 : FAIL : something odd happened",
     "onnxruntime cannot load the model: something odd happened"),
    ("Load model from /data/failed:runs/m.onnx failed:Type Error: bad input",
     "onnxruntime cannot load the model: Type Error: bad input"),
])
def test_more_load_errors_become_one_line(monkeypatch, raw, line) -> None:
    monkeypatch.delenv("MNIST_EDGE_MEMORY_LIMIT_MB", raising=False)
    assert runtime.describe_load_error(RuntimeError(raw)) == line
