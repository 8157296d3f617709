"""How one value reads on the page: numbers by kind (percent, count, duration, size...), escaped
HTML, and the status and pass/fail badges. Sizes and durations come from mnist_edge.units, so a
model file shows the same size string here as in the terminal, bench.md and the sweep tables.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from typing import Any

from mnist_edge.report.run_folder import as_number
from mnist_edge.units import format_bytes, format_us

# Display names of the model roles the pipeline compares.
ROLES = {"pytorch": "PyTorch", "fp32": "ONNX fp32", "int8": "ONNX int8"}


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


NA = '<span class="na">&mdash;</span>'


def _percent(v: float) -> str:
    return f"{v:.2%}"


def _count(v: float) -> str:
    """Counts and rates: whole numbers unless small and fractional."""
    return f"{v:,.2f}" if abs(v) < 100 and not float(v).is_integer() else f"{v:,.0f}"


def _general(v: float) -> str:
    return f"{v:.4g}"


def _millis(v: float) -> str:
    return format_us(v * 1000)


def _points(v: float) -> str:
    return f"{v:+.2f} pts"


def _times(v: float) -> str:
    return f"{v:.2f}×"


def format_seconds(v: float) -> str:
    return f"{v:.1f} s" if v < 120 else f"{v / 60:.1f} min"


FORMATS: dict[str, Callable[[float], str]] = {
    "pct": _percent, "int": _count, "num": _general, "us": format_us, "ms": _millis,
    "bytes": format_bytes, "pts": _points, "x": _times, "s": format_seconds,
}


def fmt(value: Any, kind: str = "text") -> str:
    """A value as escaped HTML: numbers through FORMATS[kind], None as a dash."""
    if value is None or value == "":
        return NA
    if isinstance(value, bool):
        return "yes" if value else "no"
    number = as_number(value)
    if number is not None and kind in FORMATS:
        return esc(FORMATS[kind](number)) if math.isfinite(number) else esc(value)
    if isinstance(value, (list, dict)):
        return f"<code>{esc(json.dumps(value))}</code>"
    return esc(value)


def badge(text: str, kind: str) -> str:
    return f'<span class="badge {esc(kind)}">{esc(text)}</span>'


def verdict(passed: Any) -> str:
    if passed is None:
        return NA
    return badge("pass", "ok") if passed else badge("fail", "bad")


STATUS_KINDS = {"done": "ok", "failed": "bad", "skipped": "muted", "pending": "warn", "running": "info"}


def status_badge(status: Any) -> str:
    text = str(status or "unknown")
    return badge(text, STATUS_KINDS.get(text, "muted"))

