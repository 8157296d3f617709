"""The `mnist-edge` command line: a thin Typer layer over the library.

Each command module registers its commands on `app`. Heavy libraries (torch, onnx,
matplotlib) are imported inside the commands so `--help`, `run` and `bench` stay light.
"""

from __future__ import annotations

from mnist_edge.cli import (  # noqa: F401,E402  (registration)
    commands_codegen,
    commands_data,
    commands_export,
    commands_pipeline,
    commands_report,
    commands_runtime,
    commands_search,
    commands_train,
    commands_web,
)
from mnist_edge.cli.common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
