"""Reading a pipeline run folder for the report: its JSON files and figures, never raising.

Every file is read as plain JSON with defensive lookups (`lookup`, `dicts_in`, `as_number`), so a
file written by an older or newer version, hand-edited or truncated, renders as far as its shape
allows; what cannot be read is remembered as a problem the page names instead of failing.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

from mnist_edge.runlock import is_bookkeeping

# The JSON files of a run: (path inside the run folder, what it holds, the step that writes it).
EXPECTED: tuple[tuple[str, str, str], ...] = (
    ("pipeline.json", "step statuses and times", "pipeline"),
    ("data/stats.json", "data statistics", "data"),
    ("checkpoint/config.json", "training configuration", "train"),
    ("checkpoint/metrics.json", "metrics per epoch", "train"),
    ("checkpoint/eval.json", "PyTorch test-set evaluation", "eval"),
    ("exported/fp32/manifest.json", "fp32 ONNX manifest", "export"),
    ("exported/int8/manifest.json", "int8 ONNX manifest", "quantize"),
    ("parity/parity.json", "parity report", "parity"),
    ("bench/bench.json", "benchmark report", "bench"),
)
_PNG = b"\x89PNG\r\n\x1a\n"
# Figures are recognised by their magic bytes, not their names: a file that is not an image is left out.
_IMAGE_TYPES = {_PNG: "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif"}


class RunFolder:
    """Cached, never-raising access to a run folder's JSON files and figures."""

    def __init__(self, root: Path):
        self.root = root
        self._json: dict[str, Any] = {}
        self._problems: dict[str, str] = {}

    def json(self, rel: str) -> Any:
        """The parsed file, or None when it is missing or unreadable (see `problem`)."""
        if rel not in self._json:
            self._json[rel] = self._read(rel)
        return self._json[rel]

    def obj(self, rel: str) -> dict[str, Any] | None:
        """Like `json`, for files that must hold a JSON object."""
        data = self.json(rel)
        if data is None or isinstance(data, dict):
            return data
        self._problems[rel] = "not a JSON object"
        return None

    def problem(self, rel: str) -> str | None:
        """Why `rel` is unusable ('missing', 'not valid JSON ...'), or None when it is fine."""
        self.obj(rel)
        return self._problems.get(rel)

    def _read(self, rel: str) -> Any:
        path = self.root / rel
        if not path.is_file():
            self._problems[rel] = "missing"
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            self._problems[rel] = f"not valid JSON ({exc})"
            return None

    def image(self, rel: str) -> tuple[str, tuple[int, int] | None] | None:
        """(data URI, (width, height) when known) of an image file, or None."""
        try:
            data = (self.root / rel).read_bytes()
        except OSError:
            return None
        mime = next((m for magic, m in _IMAGE_TYPES.items() if data.startswith(magic)), None)
        if mime is None:
            return None
        uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        return uri, _png_size(data) if mime == "image/png" else None

    def step(self, name: str) -> dict[str, Any] | None:
        steps = lookup(self.obj("pipeline.json"), "steps")
        return next((s for s in dicts_in(steps) if s.get("name") == name), None)

    def manifests(self) -> list[str]:
        return [f"exported/{d.name}/manifest.json" for d in manifest_dirs(self.root)]


def manifest_dirs(root: Path) -> list[Path]:
    """exported/fp32 and exported/int8 first, then any other exported model folder."""
    folder = root / "exported"
    if not folder.is_dir():
        return []
    # A hidden staging folder a killed export left (`.int8.RANDOM.tmp`) is half a model, not one.
    found = [d for d in folder.iterdir() if not is_bookkeeping(d.name) and (d / "manifest.json").is_file()]
    order = {"fp32": 0, "int8": 1}
    return sorted(found, key=lambda d: (order.get(d.name, 2), d.name))


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def lookup(obj: Any, *keys: Any) -> Any:
    """obj[k1][k2]... or None when any level is missing or of the wrong type."""
    for key in keys:
        if isinstance(obj, dict):
            obj = obj.get(key)
        elif isinstance(obj, list) and isinstance(key, int) and -len(obj) <= key < len(obj):
            obj = obj[key]
        else:
            return None
    return obj


def dicts_in(value: Any) -> list[dict[str, Any]]:
    """The dict items of a list (anything else: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def as_number(value: Any) -> float | None:
    """A JSON number as a float; None for anything else, booleans included (true is no count)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)

