"""`Predictor` on every input convention, and the model files it must refuse."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from mnist_edge.config import MNIST_MEAN, MNIST_STD
from mnist_edge.data import load_split, normalize
from mnist_edge.errors import ConfigError, InputImageError, ManifestError, ModelFileError
from mnist_edge.runtime import Predictor, detect_layout, softmax
from tests.onnx_models import linear_model, linear_weights, save, write_exported

EXPECTED = {  # zoo name -> (layout, input dtype, batch, outputs probabilities)
    "nchw": ("NCHW", np.float32, None, False),
    "nhwc": ("NHWC", np.float32, None, False),
    "flat": ("flat", np.float32, None, False),
    "fixed1": ("NCHW", np.float32, 1, False),
    "fixed8": ("NHWC", np.float32, 8, False),
    "uint8": ("NCHW", np.uint8, None, False),
    "softmax": ("flat", np.float32, None, True),
    "external": ("NCHW", np.float32, None, False),
    "exported": ("NCHW", np.float32, None, False),
}


@pytest.fixture(scope="module")
def test_images(mnist_dir) -> tuple[np.ndarray, np.ndarray]:
    test = load_split("test", download=False)
    return test.images[:1000], test.labels[:1000]


def reference_logits(images: np.ndarray) -> np.ndarray:
    weights, bias = linear_weights()
    x = normalize(images, 255.0, MNIST_MEAN, MNIST_STD).reshape(len(images), -1)
    return x @ weights + bias


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_convention_is_detected_and_gives_the_same_answers(zoo, test_images, name):
    layout, dtype, batch, probabilities = EXPECTED[name]
    predictor = Predictor.load(zoo[name])
    assert (predictor.layout, predictor.input_dtype, predictor.batch) == (layout, dtype, batch)
    assert predictor.outputs_probabilities is probabilities
    images = test_images[0][:13]  # not a multiple of 8: the fixed-batch model pads
    expected = reference_logits(images)
    scores = predictor.logits(images)
    assert scores.shape == (13, 10) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, softmax(expected) if probabilities else expected,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(predictor.probabilities(images), softmax(expected), atol=1e-5)


def test_predict_gives_digits_confidences_and_top_k(zoo, test_images):
    images, labels = test_images
    prediction = Predictor.load(zoo["nchw"]).predict(images, chunk=300)
    assert (prediction.digits == labels).mean() > 0.75  # the linear model's accuracy
    assert np.allclose(prediction.probabilities.sum(axis=1), 1, atol=1e-5)
    indices, chances = prediction.top(3)
    assert np.array_equal(indices[:, 0], prediction.digits)
    assert np.all(np.diff(chances, axis=1) <= 0)
    np.testing.assert_allclose(chances[:, 0], prediction.confidences)


def test_prepare_matches_the_training_normalisation_exactly(zoo, test_images):
    images = test_images[0][:50]
    prepared = Predictor.load(zoo["nchw"]).prepare(images)
    assert np.array_equal(prepared, normalize(images, 255.0, MNIST_MEAN, MNIST_STD))
    assert Predictor.load(zoo["flat"]).prepare(images).shape == (50, 784)
    assert np.array_equal(Predictor.load(zoo["uint8"]).prepare(images)[:, 0], images)


def test_explicit_normalisation_overrides_the_defaults(zoo):
    predictor = Predictor.load(zoo["nchw"], scale=1.0, mean=0.0, std=1.0)
    image = np.full((1, 28, 28), 200, np.uint8)
    assert np.all(predictor.prepare(image) == 200.0)


def test_an_exported_folder_uses_its_manifest(zoo):
    predictor = Predictor.load(zoo["exported"])
    assert predictor.manifest["name"] == "linear-fp32"
    assert predictor.name == "linear-fp32" and predictor.labels == [str(d) for d in range(10)]
    # The model file named directly still finds the manifest beside it.
    assert Predictor.load(zoo["exported"] / "model.onnx").manifest["name"] == "linear-fp32"
    assert Predictor.load(zoo["nchw"]).manifest is None


def test_a_folder_without_manifest_uses_its_only_onnx_file(zoo, tmp_path):
    shutil.copy(zoo["nhwc"], tmp_path / "only.onnx")
    assert Predictor.load(tmp_path).layout == "NHWC"
    shutil.copy(zoo["flat"], tmp_path / "second.onnx")
    with pytest.raises(ModelFileError, match="no manifest.json and 2 .onnx files"):
        Predictor.load(tmp_path)


def test_a_manifest_that_disagrees_with_the_model_is_refused(tmp_path):
    folder = write_exported(tmp_path / "m", linear_model("NHWC"), layout="NCHW")
    with pytest.raises(ManifestError, match="manifest says layout NCHW but the model's input"):
        Predictor.load(folder)


def test_a_modified_model_file_fails_the_manifest_hash(zoo, tmp_path):
    folder = tmp_path / "exported"
    shutil.copytree(zoo["exported"], folder)
    save(linear_model("NCHW", output="softmax"), folder / "model.onnx")
    with pytest.raises(ManifestError, match="bytes, manifest says|sha256 does not match"):
        Predictor.load(folder)


@pytest.mark.parametrize(("setup", "message"), [
    (lambda d, zoo: d / "missing.onnx", "model file not found"),
    (lambda d, zoo: _write(d / "empty.onnx", b""), r"empty file \(0 bytes\), not an ONNX model"),
    (lambda d, zoo: _write(d / "text.onnx", b"hello, not a model\n" * 10), "not an ONNX model"),
    (lambda d, zoo: _write(d / "cut.onnx", zoo["nchw"].read_bytes()[:3000]), "not an ONNX model"),
    (lambda d, zoo: zoo["custom_op"], "unsupported operator com.example:FancyActivation"),
    (lambda d, zoo: zoo["colour"], r"input 'image' has shape \[batch,3,32,32\]: not a digit image"),
    (lambda d, zoo: zoo["escaping"], "external data location leaves the model's folder"),
])
def test_bad_model_files_are_refused_naming_the_file(zoo, tmp_path, setup, message):
    path = setup(tmp_path, zoo)
    with pytest.raises(ModelFileError, match=message) as info:
        Predictor.load(path)
    assert info.value.path == path
    assert "\n" not in str(info.value)


def test_missing_external_data_is_named(zoo, tmp_path):
    shutil.copy(zoo["external"], tmp_path / "model.onnx")  # without model.onnx.data
    with pytest.raises(ModelFileError, match="external data file is missing"):
        Predictor.load(tmp_path / "model.onnx")


def test_option_errors(zoo):
    with pytest.raises(ConfigError, match="--scale do not apply: this model takes raw uint8 pixels"):
        Predictor.load(zoo["uint8"], scale=255)
    with pytest.raises(ConfigError, match="must be positive"):
        Predictor.load(zoo["nchw"], std=0)
    with pytest.raises(ConfigError, match="unknown provider 'tpu'"):
        Predictor.load(zoo["nchw"], provider="tpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ConfigError, match="provider 'cuda' is not available in this onnxruntime build"):
            Predictor.load(zoo["nchw"], provider="cuda")


def test_images_of_the_wrong_shape_or_type_are_refused(zoo):
    predictor = Predictor.load(zoo["nchw"])
    with pytest.raises(InputImageError, match=r"expected uint8 images of shape \[N, 28, 28\]"):
        predictor.logits(np.zeros((2, 27, 27), np.uint8))
    with pytest.raises(InputImageError, match="got float32"):
        predictor.logits(np.zeros((2, 28, 28), np.float32))


@pytest.mark.parametrize(("shape", "layout"), [
    (("N", 1, 28, 28), "NCHW"), ((None, 28, 28, 1), "NHWC"), (("batch", 784), "flat"),
    ((4, 1, "h", "w"), "NCHW"), (("N", "c", "h", "w"), "NCHW"),
    (("N", 3, 32, 32), None), (("N", 28, 28), None), (("N", 10), None),
])
def test_layout_detection(shape, layout):
    assert detect_layout(shape) == layout


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
