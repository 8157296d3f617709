"""Broken checkpoints: each is a clear CheckpointError naming the file, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from mnist_edge import checkpoint  # noqa: E402
from mnist_edge.errors import CheckpointError  # noqa: E402


@pytest.fixture()
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def edit_config(run: Path, **changes) -> None:
    path = run / checkpoint.CONFIG
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_other_format_version(run_copy: Path) -> None:
    edit_config(run_copy, format_version=99)
    with pytest.raises(CheckpointError, match="format version 99 is not supported"):
        checkpoint.load_for_inference(run_copy)


def test_truncated_weights_are_detected_by_hash(run_copy: Path) -> None:
    weights = run_copy / checkpoint.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated or replaced"):
        checkpoint.load_for_inference(run_copy)


def test_truncated_weights_without_hash_are_still_an_error(run_copy: Path) -> None:
    edit_config(run_copy, files={})
    weights = run_copy / checkpoint.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot read tensors"):
        checkpoint.load_for_inference(run_copy)


def test_foreign_config_and_missing_folder(run_copy: Path, tmp_path: Path) -> None:
    (run_copy / checkpoint.CONFIG).write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointError, match="not an mnist-edge checkpoint"):
        checkpoint.load_config(run_copy)
    with pytest.raises(CheckpointError, match="not a directory"):
        checkpoint.load_config(tmp_path / "nowhere")


def test_weights_of_another_architecture(run_copy: Path) -> None:
    edit_config(run_copy, arch="cnn")
    with pytest.raises(CheckpointError, match="do not fit the architecture"):
        checkpoint.load_for_inference(run_copy)
