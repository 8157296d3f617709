"""Real-world image -> MNIST-style 28 x 28: the accepted variants and the refused files."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from mnist_edge.data import load_split
from mnist_edge.errors import InputImageError
from mnist_edge.preprocess import BOX, SIZE, open_image, to_mnist
from tests.onnx_models import photo_of, png_with_header


@pytest.fixture(scope="module")
def digits(mnist_dir) -> np.ndarray:
    return load_split("test", download=False).images[:20]


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    weights = image.astype(np.float64)
    total = weights.sum()
    return (weights.sum(axis=1) @ np.arange(SIZE) / total, weights.sum(axis=0) @ np.arange(SIZE) / total)


def ink_box(image: np.ndarray, level: int = 64) -> tuple[int, int]:
    rows, cols = np.flatnonzero((image > level).any(axis=1)), np.flatnonzero((image > level).any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_an_mnist_image_passes_through_unchanged(digits):
    for digit in digits:
        assert np.array_equal(to_mnist(Image.fromarray(digit)), digit)


def test_a_light_background_28x28_image_is_only_inverted(digits):
    assert np.array_equal(to_mnist(Image.fromarray(255 - digits[0])), digits[0])


def test_a_photo_of_ink_on_paper_becomes_mnist_like(digits):
    for seed, digit in enumerate(digits[:10]):
        result = to_mnist(photo_of(digit, seed))
        assert result.dtype == np.uint8 and result.shape == (SIZE, SIZE)
        assert result[0].max() == 0 and result[:, 0].max() == 0  # black background
        cy, cx = centre_of_mass(result)
        assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1
        assert max(ink_box(result)) <= BOX + 1
        correlation = np.corrcoef(result.ravel(), digit.ravel())[0, 1]
        assert correlation > 0.6, f"digit {seed}: correlation {correlation:.2f}"


def test_a_tall_stroke_keeps_its_aspect_ratio():
    canvas = np.full((300, 300), 255, np.uint8)
    canvas[50:250, 140:160] = 0  # 200 x 20 black bar on white
    height, width = ink_box(to_mnist(Image.fromarray(canvas)))
    assert height == BOX and 1 <= width <= 3


def test_sixteen_bit_palette_and_rgba_images_match_the_plain_one(digits, tmp_path):
    digit = digits[0]
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[..., 3] = digit  # black ink on a transparent canvas
    white_ink = np.full((SIZE, SIZE, 4), 255, np.uint8)
    white_ink[..., 3] = digit  # white ink on a transparent canvas
    variants = {
        "16-bit": Image.fromarray(digit.astype(np.uint16) * 257),
        "palette": Image.fromarray(digit).convert("P"),
        "RGBA black ink": Image.fromarray(rgba, "RGBA"),
        "RGBA white ink": Image.fromarray(white_ink, "RGBA"),
        "LA": Image.fromarray(rgba, "RGBA").convert("LA"),
        "1-bit": Image.fromarray(digit).point(lambda v: 255 if v > 127 else 0).convert("1"),
    }
    for name, image in variants.items():
        path = tmp_path / f"{name}.png"
        image.save(path)  # through the file, as `run` sees it
        result = to_mnist(path)
        expected = digit if name != "1-bit" else np.where(digit > 127, 255, 0)
        assert np.abs(result.astype(int) - expected).max() <= 1, name


def test_a_palette_image_with_transparency_is_composited(digits, tmp_path):
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[..., 3] = np.where(digits[0] > 127, 255, 0)
    path = tmp_path / "p.png"
    Image.fromarray(rgba, "RGBA").convert("P").save(path, transparency=0)
    assert open_image(path).mode in ("P", "RGBA")
    result = to_mnist(path)
    assert np.corrcoef(result.ravel(), digits[0].ravel())[0, 1] > 0.9


def test_exif_rotation_is_applied(tmp_path):
    canvas = np.full((100, 200), 255, np.uint8)
    canvas[45:55, 20:180] = 0  # a horizontal bar as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees when displayed
    path = tmp_path / "rotated.jpg"
    Image.fromarray(canvas).save(path, exif=exif, quality=95)
    height, width = ink_box(to_mnist(path))
    assert height > 3 * width  # displayed upright, the bar is vertical


def test_a_large_jpeg_is_decoded_at_reduced_size(digits, tmp_path):
    big = Image.fromarray(255 - digits[1]).resize((3000, 3000), Image.Resampling.BILINEAR)
    path = tmp_path / "big.jpg"
    big.save(path, quality=90)
    assert max(open_image(path).size) < 3000  # JPEG draft mode
    assert np.corrcoef(to_mnist(path).ravel(), digits[1].ravel())[0, 1] > 0.8


@pytest.mark.parametrize(("content", "message"), [
    (b"this is text, not an image", "not an image (unknown file format)"),
    (b"", "empty file (0 bytes)"),
    (png_with_header(0, 0), "image is empty (0x0 pixels)"),
    (png_with_header(100_000, 100_000), "image too large: 10,000,000,000 pixels"),
    (png_with_header(10_000, 10_000), "image too large: 10000x10000 = 100,000,000 pixels"),
])
def test_unreadable_files_are_refused_with_the_reason(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(InputImageError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        to_mnist(path)
    assert info.value.path == path


def test_a_truncated_image_is_refused(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)).save(
        buffer, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InputImageError, match="truncated or corrupt image"):
        to_mnist(path)


def test_the_pixel_cap_is_configurable(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("L", (400, 300), 255).save(path)
    with pytest.raises(InputImageError, match="limit 100,000"):
        to_mnist(path, max_pixels=100_000)


def test_blank_and_empty_images_hold_no_digit():
    with pytest.raises(InputImageError, match="no digit found"):
        to_mnist(Image.new("L", (100, 80), 200))
    with pytest.raises(InputImageError, match=r"image is empty \(0x0 pixels\)"):
        to_mnist(Image.new("L", (0, 0)))


def test_float_images_with_nan_are_refused():
    pixels = np.ones((40, 40), np.float32)
    pixels[3, 3] = np.nan
    with pytest.raises(InputImageError, match="NaN"):
        to_mnist(Image.fromarray(pixels, "F"))


@pytest.mark.parametrize(("error", "reason"), [
    (PermissionError(13, "Permission denied"), "cannot read (permission denied)"),
    (OSError(5, "Input/output error"), "cannot read (Input/output error)"),
    (OSError("image file is truncated"), "truncated or corrupt image (image file is truncated)"),
])
def test_file_system_errors_are_told_apart_from_corrupt_data(tmp_path, monkeypatch, error, reason):
    from mnist_edge import preprocess

    path = tmp_path / "digit.png"
    Image.new("L", (40, 40)).save(path)

    def refuse(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(preprocess.Image, "open", refuse)
    with pytest.raises(InputImageError) as caught:
        open_image(path)
    assert caught.value.reason == reason and caught.value.path == path


@pytest.mark.parametrize("error", [SyntaxError("bad tag"), ValueError("bad value"),
                                   struct.error("unpack requires a buffer of 4 bytes")])
def test_corrupt_exif_is_an_input_error(tmp_path, monkeypatch, error):
    from mnist_edge import preprocess

    path = tmp_path / "photo.jpg"
    Image.new("L", (40, 40), 255).save(path, format="JPEG")

    def broken(_image):
        raise error

    monkeypatch.setattr(preprocess.ImageOps, "exif_transpose", broken)
    with pytest.raises(InputImageError, match="truncated or corrupt image") as caught:
        to_mnist(path)
    assert caught.value.path == path
