"""How loud the libraries mnist-edge calls may be.

onnxruntime logs its own errors to stderr in red, with the C++ source file, above the one
`error:` line the CLI prints for the same failure; its warnings (unused initializers, fallbacks)
mean nothing to a user. So it is silent unless `mnist-edge --verbose` asks for its warnings.
"""

from __future__ import annotations

import sys
from typing import Any

# onnxruntime severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal. Only 4 silences errors.
ONNXRUNTIME_SILENT = 4
ONNXRUNTIME_VERBOSE = 2
_verbose = False


def set_verbose(on: bool) -> None:
    """Let onnxruntime print its warnings and errors (the CLI's --verbose)."""
    global _verbose
    _verbose = on
    if "onnxruntime" in sys.modules:
        quiet_onnxruntime()


def onnxruntime_severity() -> int:
    return ONNXRUNTIME_VERBOSE if _verbose else ONNXRUNTIME_SILENT


def quiet_onnxruntime(options: Any = None) -> Any:
    """Apply the severity to onnxruntime's default logger (sessions made inside other libraries,
    such as onnxruntime.quantization's, use it) and to `options` when given; returns `options`."""
    import onnxruntime as ort

    ort.set_default_logger_severity(onnxruntime_severity())
    if options is not None:
        options.log_severity_level = onnxruntime_severity()
    return options
