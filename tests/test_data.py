from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from mnist_edge import data
from mnist_edge.errors import DataError


def write_idx(path: Path, array: np.ndarray) -> Path:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())
    return path


def test_read_idx_round_trip_plain_and_gzip(tmp_path: Path) -> None:
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    plain = write_idx(tmp_path / "x-idx3-ubyte", images)
    gz = tmp_path / "x-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert np.array_equal(data.read_idx(plain), images)
    assert np.array_equal(data.read_idx(gz), images)


@pytest.mark.parametrize("content, message", [
    (b"", "bad magic"),
    (b"\x89PNG\r\n\x1a\n", "bad magic"),
    (bytes([0, 0, 8, 2]) + b"\0" * 8, "dimensions"),
    (bytes([0, 0, 8, 3, 0, 0]), "truncated IDX header"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]), "truncated"),
])
def test_read_idx_rejects_foreign_and_truncated(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


def test_locate_names_places_looked_in(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="MNIST files not found") as info:
        data.locate(tmp_path, download=False)
    assert str(tmp_path) in str(info.value) and "--data-dir" in str(info.value)


def test_location_order_option_then_env_then_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    assert data.candidate_dirs(tmp_path / "opt") == [tmp_path / "opt"]
    assert data.candidate_dirs(None) == [tmp_path / "env"]
    monkeypatch.delenv(data.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.candidate_dirs(None) == [tmp_path / "cache" / "mnist-edge"]


def test_real_data_shapes_and_counts(mnist_dir: Path) -> None:
    train, test = data.load_split("train", mnist_dir, False), data.load_split("test", mnist_dir, False)
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert np.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_validation_split_is_fixed_disjoint_and_complete(mnist_dir: Path) -> None:
    full = data.load_split("train", mnist_dir, False)
    train_a, val_a = data.train_val_split(full, 5000, seed=0)
    train_b, val_b = data.train_val_split(full, 5000, seed=0)
    _, val_c = data.train_val_split(full, 5000, seed=1)
    assert len(val_a) == 5000 and len(train_a) == 55000
    assert np.array_equal(val_a.images, val_b.images) and np.array_equal(train_a.labels, train_b.labels)
    assert not np.array_equal(val_a.images, val_c.images)
    # Every training image lands in exactly one of the two parts.
    keys = lambda split: {img.tobytes() + bytes([lab]) for img, lab in zip(split.images, split.labels, strict=True)}  # noqa: E731
    assert sum(np.bincount(val_a.labels)) + sum(np.bincount(train_a.labels)) == 60000
    assert len(keys(val_a) & keys(data.Split(train_a.images[:5000], train_a.labels[:5000]))) == 0


def test_corrupt_file_in_data_dir_is_named(tmp_path: Path, mnist_dir: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    source = data.locate(mnist_dir, download=False)
    for name in data.FILES.values():
        os.symlink(source / name, raw / name)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw / "t10k-labels-idx1-ubyte").write_bytes((source / "t10k-labels-idx1-ubyte").read_bytes()[:5000])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*truncated"):
        data.load_split("test", tmp_path, download=False)


def test_failed_download_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torchvision_datasets = pytest.importorskip("torchvision.datasets")

    def offline(*_args, **_kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(torchvision_datasets, "MNIST", offline)
    with pytest.raises(DataError, match="download failed: ConnectionError: no route to host") as info:
        data.locate(tmp_path, download=True)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "--data-dir" in message


def test_no_download_is_named_as_the_reason(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="downloading is off"):
        data.locate(tmp_path, download=False)


def mnist_copy_with(tmp_path: Path, mnist_dir: Path, name: str, content: bytes) -> Path:
    """A data folder linking the real MNIST files, with `name` replaced by `content`."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    source = data.locate(mnist_dir, download=False)
    for file in data.FILES.values():
        if file == name:
            (raw / file).write_bytes(content)
        else:
            os.symlink(source / file, raw / file)
    return tmp_path / "data"


def test_corrupt_data_through_the_cli_is_one_line(tmp_path: Path, mnist_dir: Path) -> None:
    from typer.testing import CliRunner

    from mnist_edge.cli import app

    folder = mnist_copy_with(tmp_path, mnist_dir, "train-images-idx3-ubyte", b"\x89PNG not idx")
    result = CliRunner().invoke(app, ["data", "stats", "--data-dir", str(folder), "--no-download"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "train-images-idx3-ubyte" in lines[0] and "bad magic" in lines[0]
