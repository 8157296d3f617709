"""Serve a site on localhost: the standard library's HTTP server with the MIME types a module
page needs (browsers refuse a module script served as application/octet-stream, and stream-compile
WebAssembly only when it is served as application/wasm)."""

from __future__ import annotations

import errno
import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mnist_edge.errors import WebError

TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
         ".json": "application/json", ".onnx": "application/octet-stream"}


class _QuietHandler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **TYPES}

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass  # the library never prints; the CLI says where the site is served


def bind(folder: Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server for FOLDER bound to HOST:PORT (0: any free port), not yet serving."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise WebError(f"port {port} on {host} is busy; choose another with --port") from None
        raise WebError(f"cannot serve on {host}:{port} ({exc.strerror or exc})") from None


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"
