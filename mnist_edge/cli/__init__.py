"""The `mnist-edge` command line: a thin Typer layer over the library.

Each command module registers its commands on `app`. Heavy libraries (torch, onnx,
matplotlib) are imported inside the commands so `--help`, `run` and `bench` stay light.
"""

from __future__ import annotations

from mnist_edge.cli.common import app
from mnist_edge.cli import commands_data, commands_train  # noqa: F401,E402  (registration)
from mnist_edge.cli import commands_runtime  # noqa: F401,E402


def main() -> None:
    app()


__all__ = ["app", "main"]
