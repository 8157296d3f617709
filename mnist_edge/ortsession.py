"""Every onnxruntime session the project opens goes through `open_session`: quiet (the project's
log severity), and without the Python wrapper's provider fallback, which on any load failure
(a model whose names are not UTF-8, say) prints an "EP Error ... Falling back" banner on stdout
and retries the same providers; the caller's one-line error must stand alone."""

from __future__ import annotations

from typing import Any

CPU = ("CPUExecutionProvider",)


def open_session(model: str | bytes, options: Any = None, providers: tuple[str, ...] | list[str] = CPU) -> Any:
    """An onnxruntime InferenceSession of MODEL (a path, which resolves external data beside it,
    or serialized bytes)."""
    import onnxruntime as ort

    from mnist_edge.logs import quiet_onnxruntime

    options = quiet_onnxruntime(options if options is not None else ort.SessionOptions())
    return ort.InferenceSession(model, options, providers=list(providers), enable_fallback=0)


__all__ = ["CPU", "open_session"]
