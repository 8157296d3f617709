"""Expanding `run`'s INPUT arguments: files, directories, .npy arrays and IDX files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_edge.data import load_split
from mnist_edge.errors import InputImageError
from mnist_edge.inputs import expand, load_file, load_idx, load_inputs, load_npy, save_images, to_uint8_images
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


# --- every branch, exactly ---------------------------------------------------------------------


def test_the_pixel_cap_reaches_every_image(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("L", (400, 300), 255).save(path)
    loaded = load_inputs([path], max_pixels=100_000)
    (error,) = loaded.errors
    assert "limit 100,000" in error.reason and error.path == path


def test_nothing_loaded_is_an_empty_batch(tmp_path):
    loaded = load_inputs([tmp_path / "missing.png"])
    assert loaded.images.shape == (0, 28, 28) and loaded.images.dtype == np.uint8 and len(loaded) == 0


def test_expand_errors_name_their_path(tmp_path):
    (tmp_path / "empty").mkdir()
    _, errors = expand([tmp_path / "nope.png", tmp_path / "empty"])
    assert [e.path for e in errors] == [tmp_path / "nope.png", tmp_path / "empty"]
    assert str(errors[1]) == f"{tmp_path / 'empty'}: no images, .npy or IDX files in this directory"


def test_hidden_folders_are_skipped_and_every_supported_name_is_found(tmp_path, digits):
    (tmp_path / ".cache").mkdir()
    Image.fromarray(digits[0]).save(tmp_path / ".cache" / "3.png")
    names = ["a.NPY", "b.IDX", "c-ubyte.gz", "d.idx.gz", "E-UBYTE", "f.Png"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    files, _ = expand([tmp_path])
    assert sorted(f.name for f in files) == sorted(names)


def test_a_known_image_suffix_is_trusted_without_sniffing(tmp_path, digits):
    path = tmp_path / "array.png"  # .npy bytes behind an image suffix: opened as an image
    with open(path, "wb") as handle:
        np.save(handle, digits[:2])
    with pytest.raises(InputImageError, match="not an image"):
        load_file(path)


def test_an_unreadable_input_says_why(tmp_path):
    folder = tmp_path / "folder.bin"
    folder.mkdir()
    with pytest.raises(InputImageError) as info:
        load_file(folder)
    assert info.value.path == folder and info.value.reason == "cannot read file (Is a directory)"


def test_idx_errors_name_the_file_and_the_problem(tmp_path):
    from tests.onnx_models import idx_bytes

    odd = tmp_path / "odd-idx3-ubyte"
    odd.write_bytes(idx_bytes(np.zeros((2, 27, 27), np.uint8)))
    with pytest.raises(InputImageError) as info:
        load_idx(odd)
    assert info.value.path == odd
    assert info.value.reason == "IDX file holds shape (2, 27, 27); expected N x 28 x 28 images"
    foreign = tmp_path / "foreign-idx3-ubyte"
    foreign.write_bytes(b"\x01\x02\x03\x04" + bytes(20))
    with pytest.raises(InputImageError) as info:
        load_idx(foreign)
    assert info.value.path == foreign and info.value.reason == "not an MNIST IDX file (bad magic number)"


def test_idx_over_the_limit_says_to_split_it(tmp_path, monkeypatch):
    from mnist_edge import inputs
    from tests.onnx_models import idx_bytes

    monkeypatch.setattr(inputs, "MAX_ARRAY_IMAGES", 1)
    path = tmp_path / "two-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((2, 28, 28), np.uint8)))
    with pytest.raises(InputImageError) as info:
        inputs.load_idx(path)
    assert info.value.reason == "IDX file is over 800 bytes: more than the limit of 1 images (split the file)"


def npy_with_version(path: Path, array: np.ndarray, version: tuple[int, int]) -> Path:
    with open(path, "wb") as handle:
        np.lib.format.write_array(handle, array, version=version)
    return path


def test_npy_versions_one_and_two_load_and_three_is_refused(tmp_path, digits):
    for version in ((1, 0), (2, 0)):
        assert np.array_equal(load_npy(npy_with_version(tmp_path / f"v{version[0]}.npy", digits[:2], version)),
                              digits[:2])
    path = npy_with_version(tmp_path / "v3.npy", digits[:2], (3, 0))
    with pytest.raises(InputImageError) as info:
        load_npy(path)
    assert info.value.path == path and info.value.reason == "unsupported .npy format version (3, 0)"


@pytest.mark.parametrize(("array", "reason"), [
    (np.zeros((0, 28, 28), np.uint8), "array of shape (0, 28, 28) holds no images"),
    (np.zeros((2, 28, 28), np.complex64), "unsupported array dtype complex64 (expected uint8 or float)"),
    (np.array([None] * 784, dtype=object).reshape(28, 28),
     "object arrays are not supported (pickled data is never loaded)"),
])
def test_npy_arrays_that_are_not_digits_are_refused_with_the_reason(tmp_path, array, reason):
    path = tmp_path / "a.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(InputImageError) as info:
        load_npy(path)
    assert info.value.path == path and info.value.reason == reason


def test_a_damaged_npy_header_is_refused(tmp_path):
    path = tmp_path / "damaged.npy"
    np.save(path, np.zeros((2, 28, 28), np.uint8))
    raw = bytearray(path.read_bytes())
    raw[12:20] = b"\0" * 8  # inside the header dict
    path.write_bytes(bytes(raw))
    with pytest.raises(InputImageError) as info:
        load_npy(path)
    assert info.value.path == path and info.value.reason.startswith("not a valid .npy file (")


def test_the_truncation_message_gives_both_sizes(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, np.zeros((10, 28, 28), np.uint16))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InputImageError) as info:
        load_npy(path)
    assert info.value.path == path
    assert info.value.reason == "file is 1,000 bytes but its header (10, 28, 28) implies 15,808 (truncated?)"


def test_an_array_that_cannot_be_mapped_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((1, 28, 28), np.uint8))

    def refuse(*args, **kwargs):
        raise OSError("mmap failed")

    monkeypatch.setattr(np, "load", refuse)
    with pytest.raises(InputImageError) as info:
        load_npy(path)
    assert info.value.path == path and info.value.reason == "cannot read array (mmap failed)"


def test_the_image_limit_is_inclusive(tmp_path, monkeypatch):
    from mnist_edge import inputs

    monkeypatch.setattr(inputs, "MAX_ARRAY_IMAGES", 2)
    path = tmp_path / "two.npy"
    np.save(path, np.zeros((2, 28, 28), np.uint8))
    assert load_npy(path).shape == (2, 28, 28)


@pytest.mark.parametrize(("values", "expected"), [
    ([0.0, 255.0], [0, 255]),  # exactly 255: still a pixel
    ([0.0, 1.5], [0, 2]),  # above 1: taken as 0-255, not scaled
    ([0.0, 1.0], [0, 255]),  # [0, 1]: scaled
    ([True, False], [255, 0]),
])
def test_pixel_values_convert_exactly(values, expected):
    array = np.array(values).repeat(392).reshape(1, 28, 28)
    converted = to_uint8_images(array)
    assert converted.dtype == np.uint8 and converted[0, 0, 0] == expected[0] and converted[0, -1, -1] == expected[1]


def test_values_just_above_255_are_refused_and_named():
    with pytest.raises(InputImageError) as info:
        to_uint8_images(np.full((1, 28, 28), 255.5, np.float32), "x.npy")
    assert info.value.path == Path("x.npy")
    assert info.value.reason == ("pixel values span [255.5, 255.5]; expected [0, 255] or floats in [0, 1] (pass "
                                 "raw pixels, not normalised ones)")


def test_big_arrays_are_converted_and_checked_chunk_by_chunk(monkeypatch):
    from mnist_edge import inputs

    monkeypatch.setattr(inputs, "_CHUNK", 2)
    array = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((1, 28, 28), np.float32) * 50
    assert to_uint8_images(array)[:, 0, 0].tolist() == [0, 50, 100, 150, 200]
    array[[0, 3, 4], 5, 5] = np.nan  # in three chunks
    with pytest.raises(InputImageError, match=r"^array holds 3 NaN or infinite values$"):
        to_uint8_images(array)


def test_names_and_images_must_pair_up(tmp_path, digits):
    with pytest.raises(ValueError):
        save_images(tmp_path, ["a.png"], digits[:2])


@pytest.mark.parametrize(("name", "file"), [
    ("a-b_c.png", "00000_a-b_c.png"),
    ("x.y.npy[3]", "00000_x_y_npy_3_.png"),
    ("long" * 30 + ".png", "00000_" + ("long" * 30)[:80] + ".png"),
])
def test_saved_names_keep_what_is_safe(tmp_path, digits, name, file):
    assert save_images(tmp_path, [name], digits[:1])[0].name == file
