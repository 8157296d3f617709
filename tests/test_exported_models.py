"""Every model shipped in exported/ does what its manifest claims, measured with onnxruntime alone.

For each NAME-*/ folder: the manifest validates, the model file's size and sha256 match it,
and the test accuracy re-measured on the 10,000 MNIST test images matches `metrics`. The
PyTorch checkpoint copies in exported/checkpoints/ must match the hash the manifests record.
No torch here: this is what a user of the light install can check.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mnist_edge import manifest as manifest_io
from mnist_edge.data import load_split
from mnist_edge.fileio import sha256_file
from mnist_edge.runtime import Predictor

ROOT = Path(__file__).resolve().parents[1]
EXPORTED = ROOT / "exported"
REQUIRED = ("cnn-fp32", "cnn-int8", "tiny-int8", "mlp-fp32", "mlp-int8", "tiny-mcu-int8", "cnn-mcu-int8",
            "tiny-mcu", "cnn-mcu")
MANIFESTS = {p.parent: json.loads(p.read_text()) for p in EXPORTED.glob("*/manifest.json")}
# ONNX model folders; the C libraries that `codegen` wrote (kind "c-library") are checked below.
FOLDERS = sorted(folder for folder, m in MANIFESTS.items() if m.get("kind") != "c-library")
LIBRARIES = sorted(folder for folder, m in MANIFESTS.items() if m.get("kind") == "c-library")
# The claims were measured on the CPU the README names. int8 kernels for other instruction sets
# (AVX2 without VNNI, VNNI, Arm dot products) may round a requantization differently and flip an image or two;
# fp32 logits move by ~1e-5 at most, which changes no prediction on MNIST's test set.
INT8_TOLERANCE_IMAGES = 2


@pytest.fixture(scope="module")
def test_set(mnist_dir):
    return load_split("test", download=False)


def test_the_required_models_are_shipped():
    assert set(REQUIRED) <= {folder.name for folder in FOLDERS + LIBRARIES}


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_a_shipped_model_matches_its_manifest(folder, test_set):
    manifest = manifest_io.load(folder)  # validates; checks the model file's size and sha256
    assert manifest["name"] == folder.name
    metrics = manifest["metrics"]
    assert metrics["test_images"] == len(test_set) == 10000
    assert metrics["measured_with"].startswith("mnist-edge parity ")
    assert metrics["parity_passed"] is True
    assert (manifest["quantization"] is not None) == folder.name.endswith("-int8")
    predictor = Predictor.load(folder, threads=1)
    correct = int((predictor.predict(test_set.images).digits == test_set.labels).sum())
    tolerance = INT8_TOLERANCE_IMAGES if manifest["quantization"] else 0
    assert abs(correct - metrics["test_correct"]) <= tolerance, (
        f"{folder.name}: measured {correct / len(test_set):.2%}, "
        f"manifest says {metrics['test_accuracy']:.2%}")
    assert metrics["test_accuracy"] == metrics["test_correct"] / metrics["test_images"]


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_the_source_checkpoint_ships_beside_it(folder):
    source = manifest_io.load(folder, verify_hash=False)["source"]
    checkpoint = ROOT / source["checkpoint"]
    assert checkpoint.parent == EXPORTED / "checkpoints"
    assert sha256_file(checkpoint / "model.safetensors") == source["checkpoint_sha256"]
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["files"] == {"model.safetensors": source["checkpoint_sha256"]}
    assert config["recipe"] == source["recipe"]


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_a_distilled_model_names_a_teacher_that_ships(folder):
    """A model trained with a teacher names it (path and weights' sha256), and that teacher is one
    of the shipped checkpoints, unchanged: anyone can retrain the student from the checkout."""
    source = manifest_io.load(folder, verify_hash=False)["source"]
    teacher = source.get("teacher")
    if teacher is None:
        assert not source.get("recipe", {}).get("teacher")
        return
    assert source["recipe"]["teacher"] == teacher["path"]
    assert (ROOT / teacher["path"]).parent == EXPORTED / "checkpoints"
    assert sha256_file(ROOT / teacher["path"] / "model.safetensors") == teacher["sha256"]


def test_the_targets_hold():
    def load(name: str) -> dict:
        return manifest_io.load(EXPORTED / name, verify_hash=False)

    cnn_fp32, cnn_int8, tiny_int8 = load("cnn-fp32"), load("cnn-int8"), load("tiny-int8")
    for name in ("cnn-fp32", "tiny-fp32"):
        metrics = load(name)["metrics"]
        assert metrics["max_abs_logit_diff"] <= 1e-5 and metrics["top1_agreement"] == 1.0
    assert cnn_int8["metrics"]["accuracy_delta_points"] >= -0.05
    assert cnn_int8["files"]["bytes"] <= cnn_fp32["files"]["bytes"] / 3
    assert tiny_int8["files"]["bytes"] <= 64 * 1024


@pytest.mark.parametrize("folder", LIBRARIES, ids=[f.name for f in LIBRARIES])
def test_a_shipped_c_library_is_what_codegen_writes_today(folder, tmp_path):
    """Regenerated from the shipped int8 model, the C files are byte-identical (generation is
    deterministic), and the manifest's hashes and proofs are those of these files."""
    pytest.importorskip("onnx")
    from mnist_edge.codegen import generate

    manifest = MANIFESTS[folder]
    source = ROOT / manifest["source_model"]["path"]
    assert sha256_file(source) == manifest["source_model"]["sha256"]
    again = generate(source.parent, tmp_path / folder.name)
    for name, described in manifest["files"].items():
        assert sha256_file(folder / name) == described["sha256"]
        assert (again.out / name).read_bytes() == (folder / name).read_bytes(), name
    checked = manifest["verification"]
    assert checked["identical"] == checked["images"] == 10000 and checked["passed"]
    assert manifest["boards"]["mps2-an386"]["passed"] and manifest["boards"]["mps2-an386"]["images"] >= 1000
    int8 = manifest_io.load(source.parent, verify_hash=False)
    assert int8["quantization"]["target"] == "mcu"
    assert int8["metrics"]["accuracy_delta_points"] >= -0.05  # every layer int8, within 0.05 points of fp32
