"""How sizes and durations read wherever mnist-edge shows them: the terminal, bench.md,
bench.png, report.html and the sweep tables. One model file shows one size string everywhere.

Sizes are binary, said once here: 1 KiB = 1,024 bytes, 1 MiB = 1,024 KiB (what `ls -lh` and
microcontroller flash sizes count in).
"""

from __future__ import annotations

_BINARY_UNITS = ("KiB", "MiB", "GiB")


def format_bytes(count: float | None) -> str:
    """1234567 -> '1.2 MiB'; under 1 KiB whole bytes ('512 B'); None -> '—'."""
    if count is None:
        return "—"
    if abs(count) < 1024:
        return f"{count:,.0f} B"
    value = float(count)
    for unit in _BINARY_UNITS:  # noqa: B007 - the unit the loop stops at is the one shown
        value /= 1024
        if abs(value) < 1024:
            break
    return f"{value:,.1f} {unit}"


def format_us(microseconds: float) -> str:
    """A duration given in µs, in the unit that keeps it short: '31.9 µs', '412 µs', '1.27 ms', '2.50 s'."""
    if abs(microseconds) >= 1e6:
        return f"{microseconds / 1e6:.2f} s"
    if abs(microseconds) >= 1000:
        return f"{microseconds / 1000:.2f} ms"
    return f"{microseconds:.1f} µs" if abs(microseconds) < 100 else f"{microseconds:.0f} µs"
