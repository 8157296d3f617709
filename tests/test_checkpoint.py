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
    config = json.loads((run_copy / checkpoint.CONFIG).read_text())
    edit_config(run_copy, arch="cnn", recipe={**config["recipe"], "arch": "cnn"})
    with pytest.raises(CheckpointError, match="do not fit the architecture"):
        checkpoint.load_for_inference(run_copy)


@pytest.mark.parametrize("changes, message", [
    ({"arch": None}, "field 'arch' is missing"),
    ({"progress": "epoch 3"}, "field 'progress' is missing or not a JSON dict"),
    ({"normalization": {"scale": 255}}, "normalization needs numeric scale, mean and std"),
    ({"files": ["model.safetensors"]}, "field 'files'"),
    ({"files": {"../../etc/passwd": "0" * 64}}, "unexpected file"),
])
def test_damaged_config_fields_are_checkpoint_errors(run_copy: Path, changes: dict, message: str) -> None:
    edit_config(run_copy, **changes)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load_for_inference(run_copy)


def test_arch_disagreeing_with_recipe(run_copy: Path) -> None:
    config = json.loads((run_copy / checkpoint.CONFIG).read_text())
    edit_config(run_copy, recipe={**config["recipe"], "arch": "mlp"})
    with pytest.raises(CheckpointError, match="disagrees with the recipe"):
        checkpoint.load_config(run_copy)


def test_damaged_progress_fields(run_copy: Path) -> None:
    edit_config(run_copy, progress={"epoch": 1, "batches": 3})
    config = checkpoint.load_config(run_copy)
    with pytest.raises(CheckpointError, match="invalid progress"):
        checkpoint.restore_progress(config, run_copy)
