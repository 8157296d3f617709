"""fp32 ONNX -> int8 ONNX: options, calibration data, reproducibility, bad model files."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from mnist_edge import manifest as manifest_io  # noqa: E402
from mnist_edge.config import ARCHS  # noqa: E402
from mnist_edge.data import load_split  # noqa: E402
from mnist_edge.errors import ConfigError, ModelFileError, OutputError  # noqa: E402
from mnist_edge.fileio import sha256_file  # noqa: E402
from mnist_edge.quantize import (  # noqa: E402
    ARCH_DEFAULTS,
    QuantizeOptions,
    calibration_images,
    default_options,
    quantize_model,
)
from mnist_edge.runtime import Predictor  # noqa: E402

QUICK = {"calib_images": 200}


@pytest.fixture(scope="module")
def fp32(tiny_run, tmp_path_factory) -> Path:
    """The tiny run exported to fp32 (folder with manifest.json)."""
    pytest.importorskip("torch")
    from mnist_edge.export import export_checkpoint

    out = tmp_path_factory.mktemp("quantize") / "quick-fp32"
    export_checkpoint(tiny_run, out)
    return out


def first_layer(fp32: Path) -> str:
    """The first node with weights (`tiny_run`'s architecture may change with the fast preset)."""
    model = onnx.load(str(fp32 / "model.onnx"))
    return next(n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm"))


def quick_options(fp32: Path, **overrides) -> QuantizeOptions:
    return QuantizeOptions(**{"calib_images": 200, "exclude": (first_layer(fp32),), **overrides})


@pytest.fixture(scope="module")
def int8(fp32, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quantize") / "quick-int8"
    quantize_model(fp32 / "model.onnx", out, quick_options(fp32))
    return out


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "message"), [
    ({"calib_images": 0}, "--calib-images must be between 1 and 60,000"),
    ({"calib_images": 60001}, "--calib-images must be between 1"),
    ({"mode": "half"}, "--mode must be static or dynamic"),
    ({"calibration": "kl"}, "--calibration must be one of minmax, entropy, percentile"),
    ({"format": "tflite"}, "--format must be one of"),
    ({"mode": "dynamic", "format": "qdq"}, "writes QOperator models only"),
    ({"activation_type": "int4"}, "--activation-type must be int8 or uint8"),
    ({"percentile": 0}, "percentile must be in"),
])
def test_bad_options_are_refused_before_any_work(options, message):
    with pytest.raises(ConfigError, match=message):
        QuantizeOptions(**options).validate()


def test_every_architecture_has_defaults_and_explicit_options_win():
    assert set(ARCH_DEFAULTS) == set(ARCHS)
    static = QuantizeOptions()  # what every static architecture starts from (docs/export.md)
    assert (static.mode, static.resolved_format, static.calibration, static.calib_images, static.seed) == (
        "static", "qdq", "minmax", 1000, 0)
    assert (static.per_channel, static.reduce_range, static.float_logits, static.preprocess) == (True, True, True, True)
    assert (static.activation_type, static.weight_type, static.op_types) == ("uint8", "int8", ())
    # The first convolution (one input channel) stays float for cnn, tiny and strided: measured faster.
    for arch in ("cnn", "tiny", "strided"):
        assert default_options(arch) == replace(static, exclude=("/0/Conv",))
    assert default_options("lenet5") == default_options(None) == static
    mlp = default_options("mlp")
    assert mlp == replace(static, mode="dynamic") and mlp.resolved_format == "qoperator"
    assert mlp.describe()["calibration"] is None and mlp.describe()["images"] == 0
    assert default_options("tiny", exclude=()).exclude == ()
    assert default_options("cnn", per_channel=False, calibration=None).per_channel is False


@pytest.mark.parametrize(("overrides", "message"), [
    ({"calibration": "entropy", "calib_images": 5000},
     "--calibration, --calib-images apply to --mode static; mlp defaults to dynamic: add --mode static"),
    ({"format": "qdq"}, "--format qdq applies to --mode static; mlp defaults to dynamic: add --mode static"),
    ({"seed": 3}, "--seed applies to --mode static; mlp defaults"),
    ({"mode": "dynamic", "calibration": "entropy"}, "--calibration applies to --mode static only, not to --mode "
                                                   "dynamic"),
    ({"mode": "dynamic", "activation_type": "int8"}, "--activation-type int8 applies to --mode static only"),
])
def test_static_only_options_with_a_dynamic_mode_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        default_options("mlp", **overrides)


def test_static_only_options_work_once_static_is_chosen():
    options = default_options("mlp", mode="static", calibration="entropy", format="qdq")
    assert (options.mode, options.calibration, options.resolved_format) == ("static", "entropy", "qdq")
    assert default_options("mlp", per_channel=False).mode == "dynamic"  # applies to both modes


def test_calibration_images_come_from_the_training_set_chosen_by_seed(mnist_dir):
    train = load_split("train", download=False)
    first, again, other = (calibration_images(50, seed) for seed in (0, 0, 1))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    flat = {image.tobytes() for image in train.images[:60000]}
    assert all(image.tobytes() in flat for image in first)


# --- quantizing -------------------------------------------------------------------------------


def test_the_int8_model_is_smaller_accurate_and_described(int8, fp32, mnist_dir):
    manifest = manifest_io.load(int8)
    q = manifest["quantization"]
    assert q["method"] == "static-qdq" and q["images"] == 200 and q["calibration"] == "minmax"
    assert q["calibration_data"].startswith("MNIST training images")
    assert q["exclude"] == [first_layer(fp32)] and q["reduce_range"] and q["float_logits"]
    assert q["fp32_model_sha256"] == sha256_file(fp32 / "model.onnx")
    assert manifest["source"] == manifest_io.load(fp32)["source"]
    assert manifest["files"]["bytes"] < manifest_io.load(fp32)["files"]["bytes"]
    test = load_split("test", download=False).subset(1000)
    fp32_top = Predictor.load(fp32).logits(test.images).argmax(axis=1)
    int8_top = Predictor.load(int8).logits(test.images).argmax(axis=1)
    assert (fp32_top == int8_top).mean() > 0.98


def test_the_logits_stay_float(int8):
    model = onnx.load(str(int8 / "model.onnx"))
    producer = next(n for n in model.graph.node if "logits" in n.output)
    assert producer.op_type in ("Gemm", "MatMul")  # fed by DequantizeLinear: fused into QGemm
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_quantization_is_reproducible_given_a_seed(fp32, int8, tmp_path):
    again = quantize_model(fp32 / "model.onnx", tmp_path / "again", quick_options(fp32))
    assert sha256_file(again.model_path) == sha256_file(int8 / "model.onnx")


def test_entropy_calibration_differs_from_minmax(fp32, int8, tmp_path):
    # onnxruntime's own entropy settings reproduce min-max exactly; ours must not.
    result = quantize_model(fp32 / "model.onnx", tmp_path / "entropy",
                            quick_options(fp32, calibration="entropy"))
    assert sha256_file(result.model_path) != sha256_file(int8 / "model.onnx")


def test_dynamic_quantization_needs_no_calibration(fp32, tmp_path):
    result = quantize_model(fp32 / "model.onnx", tmp_path / "dyn", QuantizeOptions(mode="dynamic"))
    assert manifest_io.load(tmp_path / "dyn")["quantization"]["method"] == "dynamic-qoperator"
    assert result.int8_bytes < result.fp32_bytes


def test_an_unknown_node_to_exclude_is_named(fp32, tmp_path):
    with pytest.raises(ConfigError, match="--exclude: no node named 'nope'"):
        quantize_model(fp32 / "model.onnx", tmp_path / "out", QuantizeOptions(exclude=("nope",), **QUICK))
    assert not (tmp_path / "out").exists()


def test_a_failing_quantization_leaves_no_folder_behind(fp32, tmp_path, monkeypatch):
    import mnist_edge.quantize as quantize

    def fail(*args, **kwargs):
        raise ModelFileError("quantization failed: injected", fp32 / "model.onnx")

    monkeypatch.setattr(quantize, "_quantize", fail)
    with pytest.raises(ModelFileError, match="injected"):
        quantize_model(fp32 / "model.onnx", tmp_path / "new" / "out", QuantizeOptions(**QUICK))
    assert not (tmp_path / "new").exists()


def test_a_failing_write_leaves_an_existing_folder_as_it_was(fp32, int8, tmp_path, monkeypatch):
    import mnist_edge.manifest as manifest_module

    out = tmp_path / "out"
    shutil.copytree(int8, out)
    (out / "parity.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def fail(*args, **kwargs):
        raise OutputError("cannot write (No space left on device)", out / "manifest.json")

    monkeypatch.setattr(manifest_module, "atomic_write_json", fail)
    with pytest.raises(OutputError, match="No space left"):
        quantize_model(fp32 / "model.onnx", out, quick_options(fp32, per_channel=False))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporary folder either
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_requantizing_removes_the_parity_report_of_the_old_model(fp32, int8, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(int8, out)
    for name in ("parity.json", "parity_disagreements.png", "notes.txt"):
        (out / name).write_text("about the old model")
    quantize_model(fp32 / "model.onnx", out, quick_options(fp32, per_channel=False))
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx", "notes.txt"]
    assert manifest_io.load(out)["quantization"]["per_channel"] is False


# --- bad model files ----------------------------------------------------------------------------


def bad_model(folder: Path, kind: str, fp32: Path) -> Path:
    path = folder / f"{kind}.onnx"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes((fp32 / "model.onnx").read_bytes()[:5000])
    elif kind == "foreign":
        path.write_text("this is a text file, not a model\n" * 20)
    return path  # "missing": never written


@pytest.mark.parametrize(("kind", "message"), [
    ("missing", "model file not found"),
    ("empty", "empty file"),
    ("truncated", "not an ONNX model"),
    ("foreign", "not an ONNX model"),
])
def test_a_bad_model_file_is_refused_and_nothing_is_written(fp32, tmp_path, kind, message):
    path = bad_model(tmp_path, kind, fp32)
    with pytest.raises(ModelFileError, match=message):
        quantize_model(path, tmp_path / "out", QuantizeOptions(**QUICK))
    assert not (tmp_path / "out").exists()


def test_an_unwritable_output_is_refused(fp32, tmp_path):
    (tmp_path / "file").write_text("a regular file")
    with pytest.raises(OutputError, match="cannot create directory"):
        quantize_model(fp32 / "model.onnx", tmp_path / "file" / "out", QuantizeOptions(**QUICK))


# --- the options' exact edges and messages -------------------------------------------------------


@pytest.mark.parametrize(("options", "message"), [
    ({"target": "gpu"}, "--for must be cpu or mcu, got 'gpu'"),
    ({"format": "tflite"}, "--format must be one of auto, qdq, qoperator, got 'tflite'"),
    ({"mode": "dynamic", "format": "qdq"},
     "--mode dynamic writes QOperator models only; use --format auto or qoperator"),
    ({"mode": "dynamic", "activation_type": "int8"}, "--mode dynamic quantizes activations to uint8 only"),
    ({"weight_type": "int4"}, "--weight-type must be int8 or uint8, got 'int4'"),
    ({"percentile": 100.001}, "percentile must be in (0, 100], got 100.001"),
])
def test_each_refusal_says_exactly_what_is_wrong(options, message):
    with pytest.raises(ConfigError) as caught:
        QuantizeOptions(**options).validate()
    assert caught.value.reason == message


@pytest.mark.parametrize("options", [{"calib_images": 1}, {"calib_images": 60000}, {"percentile": 100},
                                     {"percentile": 0.5}, {"mode": "static", "activation_type": "int8"}])
def test_the_edges_of_every_range_are_accepted(options):
    assert QuantizeOptions(**options).validate() == QuantizeOptions(**options)


def test_for_mcu_starts_from_the_integer_only_defaults_whatever_the_architecture():
    from mnist_edge.quantize import MCU_DEFAULTS

    for arch in (*ARCHS, None):
        options = default_options(arch, target="mcu")
        assert options == QuantizeOptions(**{**MCU_DEFAULTS, "target": "mcu"}).validate(), arch


# --- a foreign model: what its int8 manifest records ---------------------------------------------


def _bare_linear(tmp_path: Path) -> Path:
    from tests.onnx_models import linear_model, save

    model = linear_model(batch=None)
    model.graph.name = "my-linear"
    return save(model, tmp_path / "bare.onnx")


@pytest.mark.parametrize("given", [False, True], ids=["assumed", "given"])
def test_a_foreign_models_manifest_describes_the_file_itself(tmp_path, mnist_dir, given):
    import onnxruntime

    bare = _bare_linear(tmp_path)
    normalization = {"scale": 1.0, "mean": 0.5, "std": 0.25} if given else {}
    quantize_model(bare, tmp_path / "q", replace(default_options(None), calib_images=50), download=False,
                   **normalization)
    manifest = manifest_io.load(tmp_path / "q", verify_hash=True)
    spec_source = "given" if given else manifest["input"]["normalization_source"]
    assert manifest["input"] == {"name": "input", "shape": ["batch", 1, 28, 28], "dtype": "float32", "layout": "NCHW",
                                 "scale": 1.0 if given else 255.0, "mean": 0.5 if given else 0.1307,
                                 "std": 0.25 if given else 0.3081, "normalization_source": spec_source}
    assert manifest["labels"] == [str(d) for d in range(10)]
    # every value the file stores: 784 x 10 weights, 10 biases and the reshape target's 2 dims
    assert manifest["source"] == {"arch": "my-linear", "params": 7852}
    imports = onnx.load(str(tmp_path / "q" / "model.onnx")).opset_import
    opset = next(o.version for o in imports if o.domain in ("", "ai.onnx"))
    assert manifest["export"] == {"opset": opset, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    assert manifest["metrics"] is None and manifest["name"] == "q"
    assert manifest["created"].endswith("+00:00") and len(manifest["created"]) == 25
    assert manifest["quantization"]["fp32_model_sha256"] == sha256_file(bare)
