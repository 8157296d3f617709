"""Shared fixtures. MNIST is read from $MNIST_EDGE_DATA (CI sets it to ../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def mnist_root() -> Path:
    value = os.environ.get("MNIST_EDGE_DATA")
    if not value:
        pytest.skip("MNIST_EDGE_DATA is not set; point it at a folder holding MNIST/raw")
    return Path(value).resolve()  # tests symlink into tmp folders: relative paths would break


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return mnist_root()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Path:
    """A `tiny` model trained for one short epoch: enough to export, quantize and evaluate."""
    pytest.importorskip("torch")
    from mnist_edge.config import preset
    from mnist_edge.train import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    recipe = preset("fast", arch="tiny", epochs=1, train_limit=4000, val_size=1000)
    train(recipe, out, device="cpu", data_dir=mnist_dir, download=False)
    return out


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> dict[str, Path]:
    """Small ONNX models of every supported layout and a few broken ones (tests/onnx_models.py)."""
    from tests.onnx_models import write_zoo

    return write_zoo(tmp_path_factory.mktemp("zoo"))
