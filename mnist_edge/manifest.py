"""Read, write and validate `manifest.json`, the description that travels with every exported model.

The manifest is what lets a machine without torch trust a model file: which file, its hash,
how to feed it, what it was measured to do and with which command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnist_edge.errors import ManifestError
from mnist_edge.fileio import atomic_write_json, read_json, sha256_file

SCHEMA_VERSION = 1
FILENAME = "manifest.json"
LAYOUTS = ("NCHW", "NHWC", "flat")

# Required keys of each section and the types their values must have.
_REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "files": {"model": str, "sha256": str, "bytes": int},
    "input": {"name": str, "shape": list, "dtype": str, "layout": str,
              "scale": (int, float), "mean": (int, float), "std": (int, float)},
    "source": {"arch": str, "params": int},
    "export": {"opset": int},
}


def validate(manifest: Any, path: str | Path = FILENAME) -> dict[str, Any]:
    """Check structure and types; return the manifest or raise ManifestError naming the problem."""
    if not isinstance(manifest, dict):
        raise ManifestError("manifest must be a JSON object", path)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ManifestError(f"schema_version {version!r} is not supported (expected {SCHEMA_VERSION})", path)
    for key in ("name", "labels"):
        if key not in manifest:
            raise ManifestError(f"missing key {key!r}", path)
    labels = manifest["labels"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ManifestError("'labels' must be a non-empty list of strings", path)
    for section, keys in _REQUIRED.items():
        body = manifest.get(section)
        if not isinstance(body, dict):
            raise ManifestError(f"missing section {section!r}", path)
        for key, kind in keys.items():
            if key not in body:
                raise ManifestError(f"missing key '{section}.{key}'", path)
            if not isinstance(body[key], kind) or isinstance(body[key], bool):
                raise ManifestError(f"'{section}.{key}' has the wrong type", path)
    if manifest["input"]["layout"] not in LAYOUTS:
        raise ManifestError(f"'input.layout' must be one of {', '.join(LAYOUTS)}", path)
    if manifest["input"]["std"] <= 0 or manifest["input"]["scale"] <= 0:
        raise ManifestError("'input.std' and 'input.scale' must be positive", path)
    if Path(manifest["files"]["model"]).name != manifest["files"]["model"]:
        raise ManifestError("'files.model' must be a file name inside the model's folder", path)
    _validate_optional(manifest, path)
    return manifest


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _validate_optional(manifest: dict[str, Any], path: str | Path) -> None:
    """Sections written by `export`, `quantize` and `parity`: optional, but typed when present."""
    if not _is_sha256(manifest["files"]["sha256"]):
        raise ManifestError("'files.sha256' must be 64 lowercase hexadecimal digits", path)
    source = manifest["source"]
    if "checkpoint" in source and not isinstance(source["checkpoint"], str):
        raise ManifestError("'source.checkpoint' must be a path (string)", path)
    if "checkpoint_sha256" in source and not _is_sha256(source["checkpoint_sha256"]):
        raise ManifestError("'source.checkpoint_sha256' must be 64 lowercase hexadecimal digits", path)
    quantization = manifest.get("quantization")
    if quantization is not None and not (isinstance(quantization, dict)
                                         and isinstance(quantization.get("method"), str)):
        raise ManifestError("'quantization' must be null or an object with a 'method'", path)
    metrics = manifest.get("metrics")
    if metrics is None:
        return
    if not isinstance(metrics, dict):
        raise ManifestError("'metrics' must be null or an object", path)
    accuracy = metrics.get("test_accuracy")
    if accuracy is not None and (isinstance(accuracy, bool) or not isinstance(accuracy, (int, float))
                                 or not 0 <= accuracy <= 1):
        raise ManifestError("'metrics.test_accuracy' must be a fraction between 0 and 1", path)
    if "test_accuracy" in metrics and not isinstance(metrics.get("measured_with"), str):
        raise ManifestError("'metrics.measured_with' must name the command that measured the metrics", path)


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
