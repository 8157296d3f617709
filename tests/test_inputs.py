"""Expanding `run`'s INPUT arguments: files, directories, .npy arrays and IDX files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_edge.data import load_split
from mnist_edge.errors import InputImageError
from mnist_edge.inputs import expand, load_inputs, load_npy, save_images, to_uint8_images
from tests.onnx_models import write_bad_inputs, write_good_inputs

BAD_MESSAGES = {
    "not_image": "not an image (unknown file format)",
    "truncated": "truncated or corrupt image",
    "empty_size": "image is empty (0x0 pixels)",
    "bomb": "image too large",
    "npy_object": "object arrays are not supported (pickled data is never loaded)",
    "npy_huge": "array holds 100,000,000 images; the limit is 1,000,000",
    "npy_nan": "array holds 1 NaN or infinite values",
    "npy_shape": "array of shape (4, 27, 27) is not N x 28 x 28 or N x 784",
    "idx_labels": "IDX file holds labels, not images",
}


@pytest.fixture(scope="module")
def digits(mnist_dir) -> np.ndarray:
    return load_split("test", download=False).images[:5]


@pytest.fixture(scope="module")
def good(tmp_path_factory, digits) -> dict[str, Path]:
    return write_good_inputs(tmp_path_factory.mktemp("good"), digits)


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    return write_bad_inputs(tmp_path_factory.mktemp("bad"))


def test_every_accepted_kind_yields_the_digits(good, digits):
    loaded = load_inputs([good[k] for k in ("png", "png16", "palette", "rgba", "npy", "npy_float", "idx")])
    assert loaded.errors == []
    assert loaded.names == ["digit.png", "digit16.png", "palette.png", "rgba.png",
                            "digits.npy[0]", "digits.npy[1]", "digits.npy[2]",
                            "digits_float.npy[0]", "digits_float.npy[1]",
                            "digits-idx3-ubyte[0]", "digits-idx3-ubyte[1]"]
    expected = np.concatenate([digits[[0, 0, 0, 0]], digits[:3], digits[:2], digits[:2]])
    assert loaded.images.dtype == np.uint8
    assert np.abs(loaded.images.astype(int) - expected).max() <= 1


def test_a_directory_gives_its_supported_files_sorted_and_recursively(tmp_path, digits):
    (tmp_path / "b").mkdir()
    for name in ("b/2.png", "10.png", "1.png", ".hidden.png"):
        Image.fromarray(digits[0]).save(tmp_path / name)
    (tmp_path / "README.txt").write_text("not an input")
    files, errors = expand([tmp_path])
    assert errors == []
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["1.png", "10.png", "b/2.png"]


def test_missing_paths_and_empty_directories_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    files, errors = expand([tmp_path / "nope.png", tmp_path / "empty"])
    assert files == []
    assert [e.reason for e in errors] == ["no such file or directory",
                                          "no images, .npy or IDX files in this directory"]


@pytest.mark.parametrize("kind", sorted(BAD_MESSAGES))
def test_each_bad_input_is_reported_and_the_good_ones_still_load(kind, good, bad, digits):
    loaded = load_inputs([good["png"], bad[kind], good["npy"]])
    assert loaded.names == ["digit.png", "digits.npy[0]", "digits.npy[1]", "digits.npy[2]"]
    (error,) = loaded.errors
    assert error.path == bad[kind]
    assert BAD_MESSAGES[kind] in error.reason
    assert "\n" not in str(error)


@pytest.mark.parametrize(("array", "expected"), [
    (np.full((2, 784), 0.5, np.float64), 128),     # floats in [0, 1] are scaled by 255
    (np.full((2, 28, 28), 200.0, np.float32), 200),  # floats in [0, 255] are kept
    (np.full((1, 1, 28, 28), 7, np.int64), 7),
    (np.ones((28, 28), bool), 255),
    (np.full((2, 28, 28, 1), 9, np.uint8), 9),
])
def test_array_shapes_and_dtypes_convert_to_uint8(tmp_path, array, expected):
    path = tmp_path / "a.npy"
    np.save(path, array)
    images = load_npy(path)
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
    assert np.all(images == expected)


def test_normalised_or_out_of_range_values_are_refused():
    with pytest.raises(InputImageError, match=r"pixel values span \[-0.42, 2.8\]"):
        to_uint8_images(np.array([-0.42, 2.8], np.float32).repeat(392).reshape(1, 28, 28))
    with pytest.raises(InputImageError, match="NaN or infinite"):
        to_uint8_images(np.full((1, 28, 28), np.inf, np.float32))


def test_a_truncated_npy_is_refused_before_loading(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InputImageError, match="truncated"):
        load_npy(path)


def test_file_kind_comes_from_the_contents(tmp_path, digits):
    path = tmp_path / "digits.bin"  # no telling suffix: sniffed as .npy
    with open(path, "wb") as handle:
        np.save(handle, digits[:2])
    assert load_inputs([path]).names == ["digits.bin[0]", "digits.bin[1]"]


def test_save_images_writes_what_the_model_saw(tmp_path, digits):
    written = save_images(tmp_path / "seen", ["a.png", "d.npy[1]"], digits[:2])
    assert [p.name for p in written] == ["00000_a.png", "00001_d_npy_1_.png"]
    assert np.array_equal(np.asarray(Image.open(written[1])), digits[1])


@pytest.mark.parametrize("suffix", ["-idx3-ubyte", "-idx3-ubyte.gz"])
def test_idx_files_over_the_image_limit_are_refused_before_reading(tmp_path, monkeypatch, suffix):
    import gzip

    from mnist_edge import inputs
    from tests.onnx_models import idx_bytes

    monkeypatch.setattr(inputs, "MAX_ARRAY_IMAGES", 2)
    for count in (2, 3):
        raw = idx_bytes(np.zeros((count, 28, 28), np.uint8))
        path = tmp_path / f"{count}{suffix}"
        path.write_bytes(gzip.compress(raw) if suffix.endswith(".gz") else raw)
        if count == 2:
            assert inputs.load_idx(path).shape == (2, 28, 28)
            continue
        with pytest.raises(InputImageError, match="more than the limit of 2 images") as caught:
            inputs.load_idx(path)
        assert caught.value.path == path


def test_preprocessed_images_are_written_atomically(tmp_path, monkeypatch):
    from mnist_edge import inputs

    calls = []
    real = inputs.atomic_write
    monkeypatch.setattr(inputs, "atomic_write", lambda path, write: calls.append(path) or real(path, write))
    written = save_images(tmp_path, ["a.png"], np.zeros((1, 28, 28), np.uint8))
    assert calls == written and Image.open(written[0]).size == (28, 28)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000_a.png"]  # no temporary file left
