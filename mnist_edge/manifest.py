"""Read, write and validate `manifest.json`, the description that travels with every exported model.

The manifest is what lets a machine without torch trust a model file: which file, its hash,
how to feed it, what it was measured to do and with which command.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from mnist_edge.config import LABELS
from mnist_edge.errors import ManifestError
from mnist_edge.fileio import atomic_write_json, read_json, sha256_file, staged_dir

SCHEMA_VERSION = 1
# The files of an exported model folder: the model, this manifest, and parity's report beside them.
FILENAME = "manifest.json"
MODEL_FILE = "model.onnx"
PARITY_REPORT = "parity.json"
PARITY_FIGURE = "parity_disagreements.png"
# What describes a folder's previous model: `export` and `quantize` remove these when they replace it.
PARITY_FILES = (PARITY_REPORT, PARITY_FIGURE)
LAYOUTS = ("NCHW", "NHWC", "flat")
# The input element types a digit model can take (runtime.py reads them with np.dtype).
DTYPES = ("float32", "uint8")

# Required keys of each section and the types their values must have.
_NUMBER = (int, float)
_REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "files": {"model": str, "sha256": str, "bytes": int},
    "input": {"name": str, "shape": list, "dtype": str, "layout": str,
              "scale": _NUMBER, "mean": _NUMBER, "std": _NUMBER},
    "source": {"arch": str, "params": int},
    "export": {"opset": int},
}
# What `mnist-edge export` records (a manifest naming `export.exporter` was written by it): the
# PyTorch original and the library versions that made the file, so a result can be reproduced.
_EXPORTED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "source": {"checkpoint": str, "checkpoint_sha256": str, "recipe": dict},
    "export": {"exporter": str, "torch": str, "onnx": str, "mnist_edge": str},
}
# What `mnist-edge quantize` records for an int8 model.
_QUANTIZED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "quantization": {"method": str, "mode": str, "format": str, "fp32_model_sha256": str},
    "export": {"onnx": str, "onnxruntime": str},
}
_QUANTIZATION_TYPES: dict[str, type | tuple[type, ...]] = {
    "per_channel": bool, "reduce_range": bool, "float_logits": bool, "activation_type": str,
    "weight_type": str, "exclude": list, "op_types": (str, list), "calibration": (str, type(None)),
    "images": int, "seed": int,
}
_FRACTIONS = ("test_accuracy", "torch_accuracy", "fp32_accuracy", "top1_agreement", "torch_top1_agreement")
_METRIC_TYPES: dict[str, type | tuple[type, ...]] = {
    "test_images": int, "test_correct": int, "disagreements": int, "accuracy_delta_points": _NUMBER,
    "max_abs_logit_diff": _NUMBER, "mean_abs_logit_diff": _NUMBER, "parity_passed": bool,
    "measured_with": str, **{key: _NUMBER for key in _FRACTIONS},
}


def validate(manifest: Any, path: str | Path = FILENAME) -> dict[str, Any]:
    """Check structure and types; return the manifest or raise ManifestError naming the problem."""
    if not isinstance(manifest, dict):
        raise ManifestError("manifest must be a JSON object", path)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ManifestError(f"schema_version {version!r} is not supported (expected {SCHEMA_VERSION})", path)
    _require_key(manifest, "name", str, path)
    _check_sections(manifest, _REQUIRED, path)
    _validate_labels(manifest, path)
    if manifest["input"]["layout"] not in LAYOUTS:
        raise ManifestError(f"'input.layout' must be one of {', '.join(LAYOUTS)}", path)
    if manifest["input"]["dtype"] not in DTYPES:
        raise ManifestError(f"'input.dtype' must be one of {', '.join(DTYPES)}", path)
    _validate_normalization(manifest["input"], path)
    if Path(manifest["files"]["model"]).name != manifest["files"]["model"]:
        raise ManifestError("'files.model' must be a file name inside the model's folder", path)
    _validate_hashes(manifest, path)
    _validate_quantization(manifest, path)
    _validate_metrics(manifest.get("metrics"), path)
    return manifest


def _validate_normalization(section: dict[str, Any], path: str | Path) -> None:
    """Finite numbers (JSON readers accept NaN and Infinity), scale and std positive."""
    if not all(_finite(section[key]) for key in ("scale", "mean", "std")):
        raise ManifestError("'input.scale', 'input.mean' and 'input.std' must be finite numbers", path)
    if section["std"] <= 0 or section["scale"] <= 0:
        raise ManifestError("'input.std' and 'input.scale' must be positive", path)


def _finite(number: int | float) -> bool:
    try:
        return math.isfinite(float(number))
    except OverflowError:  # an integer beyond the float range (JSON has no size limit)
        return False


def _require_key(body: dict[str, Any], key: str, kind: type | tuple[type, ...], path: str | Path,
                 where: str = "") -> None:
    name = f"{where}.{key}" if where else key
    if key not in body:
        raise ManifestError(f"missing key {name!r}", path)
    # bool is an int in Python, but `true` is no byte count, opset or image count.
    if not isinstance(body[key], kind) or (isinstance(body[key], bool) and bool not in _as_tuple(kind)):
        raise ManifestError(f"{name!r} has the wrong type ({type(body[key]).__name__}, expected "
                            f"{' or '.join(t.__name__ for t in _as_tuple(kind))})", path)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _check_sections(manifest: dict[str, Any], required: dict[str, dict[str, Any]], path: str | Path) -> None:
    for section, keys in required.items():
        body = manifest.get(section)
        if not isinstance(body, dict):
            raise ManifestError(f"missing section {section!r}", path)
        for key, kind in keys.items():
            _require_key(body, key, kind, path, section)


def _validate_labels(manifest: dict[str, Any], path: str | Path) -> None:
    """Ten distinct digit labels (an MNIST model), one per output when the output is described."""
    labels = manifest.get("labels")
    if labels is None:
        raise ManifestError("missing key 'labels'", path)
    if (not isinstance(labels, list) or len(labels) != len(LABELS) or len(set(map(str, labels))) != len(labels)
            or not all(isinstance(x, str) for x in labels)):
        raise ManifestError(f"'labels' must be a list of {len(LABELS)} distinct strings", path)
    output = manifest.get("output")
    if output is None:
        return
    if not isinstance(output, dict) or not isinstance(output.get("shape"), list) or not output["shape"]:
        raise ManifestError("'output' must be null or an object with a 'shape' list", path)
    if output["shape"][-1] != len(labels):
        raise ManifestError(f"'output.shape' ends in {output['shape'][-1]!r} but there are "
                            f"{len(labels)} labels", path)


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _validate_hashes(manifest: dict[str, Any], path: str | Path) -> None:
    if not _is_sha256(manifest["files"]["sha256"]):
        raise ManifestError("'files.sha256' must be 64 lowercase hexadecimal digits", path)
    source = manifest["source"]
    if "exporter" in manifest["export"]:
        _check_sections(manifest, _EXPORTED, path)
    if "checkpoint" in source and not isinstance(source["checkpoint"], str):
        raise ManifestError("'source.checkpoint' must be a path (string)", path)
    if "checkpoint_sha256" in source and not _is_sha256(source["checkpoint_sha256"]):
        raise ManifestError("'source.checkpoint_sha256' must be 64 lowercase hexadecimal digits", path)
    _validate_teacher(source.get("teacher"), path)


def _validate_teacher(teacher: Any, path: str | Path) -> None:
    """A distilled model names its teacher: the checkpoint's path and the sha256 of its weights."""
    if teacher is None:
        return
    if not isinstance(teacher, dict) or not isinstance(teacher.get("path"), str):
        raise ManifestError("'source.teacher' must be an object with the teacher's 'path' and 'sha256'", path)
    if not _is_sha256(teacher.get("sha256")):
        raise ManifestError("'source.teacher.sha256' must be 64 lowercase hexadecimal digits", path)


def _validate_quantization(manifest: dict[str, Any], path: str | Path) -> None:
    """`null` for fp32; for int8 the settings `quantize` records, typed."""
    quantization = manifest.get("quantization")
    if quantization is None:
        return
    if not isinstance(quantization, dict):
        raise ManifestError("'quantization' must be null or an object", path)
    _check_sections(manifest, _QUANTIZED, path)
    if quantization["mode"] not in ("static", "dynamic"):
        raise ManifestError("'quantization.mode' must be static or dynamic", path)
    if not _is_sha256(quantization["fp32_model_sha256"]):
        raise ManifestError("'quantization.fp32_model_sha256' must be 64 lowercase hexadecimal digits", path)
    for key, kind in _QUANTIZATION_TYPES.items():
        if key in quantization:
            _require_key(quantization, key, kind, path, "quantization")


def _validate_metrics(metrics: Any, path: str | Path) -> None:
    """`null` until parity has run; then typed figures that agree with each other."""
    if metrics is None:
        return
    if not isinstance(metrics, dict):
        raise ManifestError("'metrics' must be null or an object", path)
    for key, kind in _METRIC_TYPES.items():
        if key in metrics:
            _require_key(metrics, key, kind, path, "metrics")
    for key in _FRACTIONS:
        if key in metrics and not 0 <= metrics[key] <= 1:
            raise ManifestError(f"'metrics.{key}' must be a fraction between 0 and 1", path)
    if "test_accuracy" in metrics and "measured_with" not in metrics:
        raise ManifestError("'metrics.measured_with' must name the command that measured the metrics", path)
    _check_counts(metrics, path)


def _check_counts(metrics: dict[str, Any], path: str | Path) -> None:
    images, correct = metrics.get("test_images"), metrics.get("test_correct")
    if images is None or correct is None:
        return
    if not 0 <= correct <= images:
        raise ManifestError(f"'metrics.test_correct' {correct} is not between 0 and test_images {images}", path)
    accuracy = metrics.get("test_accuracy")
    if accuracy is not None and images and abs(correct / images - accuracy) > 1e-9:
        raise ManifestError(f"'metrics.test_accuracy' {accuracy} disagrees with {correct} of {images} correct",
                            path)


def load(folder: str | Path, verify_hash: bool = True) -> dict[str, Any]:
    """Load and validate FOLDER/manifest.json; optionally check the model file's size and hash."""
    folder = Path(folder)
    path = folder / FILENAME
    manifest = validate(read_json(path, ManifestError), path)
    if verify_hash:
        verify_files(folder, manifest)
    return manifest


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    files = manifest["files"]
    model = folder / files["model"]
    if not model.is_file():
        raise ManifestError(f"model file {files['model']!r} named by the manifest is missing", folder / FILENAME)
    size = model.stat().st_size
    if size != files["bytes"]:
        raise ManifestError(f"model file is {size} bytes, manifest says {files['bytes']}", model)
    if sha256_file(model) != files["sha256"]:
        raise ManifestError("model file sha256 does not match the manifest", model)


def save(folder: str | Path, manifest: dict[str, Any]) -> Path:
    folder = Path(folder)
    validate(manifest, folder / FILENAME)
    return atomic_write_json(folder / FILENAME, manifest)


def describe_file(model_path: str | Path) -> dict[str, Any]:
    """The `files` section for a model file: its name, sha256 and size."""
    model_path = Path(model_path)
    return {"model": model_path.name, "sha256": sha256_file(model_path),
            "bytes": model_path.stat().st_size}


def staged_model_folder(folder: str | Path) -> AbstractContextManager[Path]:
    """Build an exported model folder aside (`fileio.staged_dir`): the files describing a previous
    model (parity's) are removed, and the manifest, which names the model's hash, moves in last."""
    return staged_dir(folder, stale=PARITY_FILES, last=(FILENAME,))
