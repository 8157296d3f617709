"""Facts about a model file, read without onnx or onnxruntime: where an exported folder's model
is, the manifest that describes it, whether it is quantized, and how many bytes it occupies with
its external weights. The light install has no onnx package, so these read the raw bytes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mnist_edge import manifest as manifest_io
from mnist_edge.errors import ManifestError, ModelFileError
from mnist_edge.fileio import read_json


def locate_model(path: str | Path) -> tuple[Path, dict[str, Any] | None]:
    """A folder (manifest.json, else its only .onnx file) or a file -> (model file, manifest)."""
    path = Path(path)
    if path.is_dir():
        if (path / manifest_io.FILENAME).is_file():
            manifest = manifest_io.load(path)
            return path / manifest["files"]["model"], manifest
        candidates = sorted(path.glob("*.onnx"))
        if len(candidates) != 1:
            raise ModelFileError(
                f"folder has no {manifest_io.FILENAME} and {len(candidates)} .onnx files; "
                "name the model file", path)
        path = candidates[0]
    return check_model_file(path), manifest_beside(path)


def check_model_file(path: Path) -> Path:
    """The checks every model reader needs first: the file exists, is a file, is not empty."""
    if not path.exists():
        raise ModelFileError("model file not found", path)
    if not path.is_file():
        raise ModelFileError("not a regular file", path)
    if path.stat().st_size == 0:
        raise ModelFileError("empty file (0 bytes), not an ONNX model", path)
    return path


def manifest_beside(model_path: Path) -> dict[str, Any] | None:
    """The manifest of the folder holding `model_path`, when that manifest names this file."""
    candidate = model_path.parent / manifest_io.FILENAME
    if not candidate.is_file():
        return None
    try:
        named = read_json(candidate, ManifestError).get("files", {}).get("model")
    except (ManifestError, AttributeError):
        return None
    return manifest_io.load(model_path.parent) if named == model_path.name else None


# Operator names that only appear in quantized graphs; searched in the raw model bytes when no
# manifest says how the model was made (the light install has no onnx package to parse it).
_INT8_MARKERS = (b"QuantizeLinear", b"QLinear", b"ConvInteger", b"MatMulInteger")


def is_quantized(model_path: Path, manifest: dict[str, Any] | None) -> bool:
    """What the manifest says, else whether the file holds an int8 operator."""
    if manifest is not None and "quantization" in manifest:
        return bool(manifest["quantization"])
    try:
        data = model_path.read_bytes()
    except OSError:
        return False
    return any(marker in data for marker in _INT8_MARKERS)


def model_bytes(model_path: Path) -> int:
    """The model file plus the external-data files it references."""
    return model_path.stat().st_size + sum(f.stat().st_size for f in external_data_files(model_path))


# How the ONNX protobuf stores a tensor's external-data location: a StringStringEntryProto with
# field 1 (key) = "location" (tag 0x0a, length 8), then field 2 (value, tag 0x12), its length as
# a varint and the file name. Matching these bytes finds the references without the onnx package.
_LOCATION_ENTRY = b"\x0a\x08location\x12"


def external_data_files(model_path: Path) -> list[Path]:
    """Existing files inside the model's folder that the model names as external data."""
    raw = model_path.read_bytes()
    folder = model_path.parent.resolve()
    found = set()
    for match in re.finditer(re.escape(_LOCATION_ENTRY), raw):
        name = _varint_prefixed(raw, match.end())
        candidate = _existing_file(folder / name) if name else None
        # Only files in the folder: onnxruntime refuses the others, so they were never loaded.
        if candidate is not None and folder in candidate.parents:
            found.add(candidate)
    return sorted(found)


def _existing_file(path: Path) -> Path | None:
    """PATH resolved when it is a file; None for a name no file can have (too long, NUL...)."""
    try:
        path = path.resolve()
        return path if path.is_file() else None
    except (OSError, ValueError):  # ENAMETOOLONG and friends: pathlib only swallows "not found"
        return None


def _varint_prefixed(raw: bytes, offset: int) -> str | None:
    """The UTF-8 string at `offset`, preceded by its length as a protobuf varint."""
    length, shift = 0, 0
    while offset < len(raw) and shift < 35:
        byte = raw[offset]
        length |= (byte & 0x7F) << shift
        offset, shift = offset + 1, shift + 7
        if not byte & 0x80:
            try:
                name = raw[offset : offset + length].decode("utf-8")
            except UnicodeDecodeError:
                return None
            return name if name and "\x00" not in name else None  # a NUL byte is no file name
    return None
