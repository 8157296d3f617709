"""Real-world image -> MNIST-style 28 x 28: the accepted variants and the refused files."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from mnist_edge import preprocess as pp
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


# --- each step, exactly ------------------------------------------------------------------------
# The tests above check properties (centred, upright, correlated with the original); these pin
# every step's arithmetic, so that a changed margin, threshold, scale or rounding fails a test.


def synthetic_photo(height: int, width: int, seed: int) -> np.ndarray:
    """A grey, noisy page with a dark, anti-aliased, off-centre stroke: every step has work to do."""
    rng = np.random.default_rng(seed)
    page = rng.normal(200, 6, (height, width))
    yy, xx = np.mgrid[:height, :width]
    stroke = np.exp(-(((xx - width * 0.6) / (width * 0.06)) ** 2)) * (np.abs(yy - height * 0.45) < height * 0.3)
    return np.clip(page - 170 * stroke, 0, 255).round().astype(np.uint8)


# sha256 of to_mnist's output for fixed inputs, measured with this code (Pillow's LANCZOS
# included). An intended change of the preprocessing updates them: the failure prints the new one.
GOLDEN = {
    "photo 120x90": "8c31c420363e3bf71baabea720b8d51ef5775c37235b8ea19f3abee7ca33c735",
    "photo 37x301": "d09dbe2a95f0f9a6a60792246fbb52b306a71d1c8dc2c237a3a8572c64df1e40",
    "rgba ink on transparency": "3ff06080c5f303c49bc7b84d36d427aa8ce7dff9dfe28d4e25b7940b65e3c22f",
    "float image": "0e8ae69a68af1ee295212a13a30f996902c40d3abf8dcaf918fd331016beec54",
    "big digit 400x400": "f3902903190bebfed97940d052f632a317223093fd37da71f8776347e1f7f97e",
}


def golden_inputs() -> dict[str, Image.Image]:
    rgba = np.zeros((60, 50, 4), np.uint8)
    rgba[..., 3] = 255 - synthetic_photo(60, 50, 3)  # dark ink where the photo is dark
    return {
        "photo 120x90": Image.fromarray(synthetic_photo(120, 90, 1)),
        "photo 37x301": Image.fromarray(synthetic_photo(37, 301, 2)),
        "rgba ink on transparency": Image.fromarray(rgba, "RGBA"),
        "float image": Image.fromarray(synthetic_photo(64, 64, 4).astype(np.float32) / 255.0, "F"),
        "big digit 400x400": Image.fromarray(big_ring(400)),  # shrunk 15x: Pillow reduces first
    }


def big_ring(side: int) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side]
    radius = np.hypot(yy - side * 0.5, (xx - side * 0.45) * 1.4)
    ring = np.clip(1 - np.abs(radius - side * 0.3) / (side * 0.05), 0, 1)
    return (255 - 200 * ring).round().astype(np.uint8)


@pytest.mark.parametrize("name", GOLDEN)
def test_preprocessing_is_pinned_to_its_golden_output(name):
    result = to_mnist(golden_inputs()[name])
    digest = hashlib.sha256(result.tobytes()).hexdigest()
    assert digest == GOLDEN[name], f"{name}: new digest {digest}"


@pytest.mark.parametrize(("values", "sixteen_bit", "expected"), [
    (np.array([0, 257, 255, 65535], np.uint16), True, [0, 1, 1, 255]),  # 16-bit modes: 65535 -> 255, always
    (np.array([0, 128, 257, 33025, 65535], np.uint16), True, [0, 0, 1, 129, 255]),  # exactly 255/65535
    (np.array([0, 33025, 65536], np.int32), False, [0, 128, 255]),  # just beyond 16 bits: scaled by its maximum
    (np.array([0, 196, 50000, 100000], np.int32), False, [0, 0, 128, 255]),
    (np.array([0, 256], np.int32), False, [0, 1]),  # 256 is beyond 8 bits: the 16-bit scale
    (np.array([-2.0, 1.0], np.float32), False, [0, 1]),  # negative pixels clip to black
    (np.array([0.0, 1.5], np.float32), False, [0, 2]),  # above 1: not a [0, 1] image
    (np.array([0.0, 0.5, 1.0], np.float32), False, [0, 128, 255]),  # floats in [0, 1]
    (np.array([-0.5, 0.25, 1.0], np.float32), False, [0, 0, 1]),  # negative: not [0, 1], taken as 0-255
    (np.array([0, 128, 255], np.int32), False, [0, 128, 255]),
    (np.array([0, 256, 65535], np.int32), False, [0, 1, 255]),  # beyond 255: a 16-bit range
    (np.array([0, 50_000, 100_000], np.int32), False, [0, 128, 255]),  # beyond 16 bits: the maximum
])
def test_wide_pixels_keep_their_full_range(values, sixteen_bit, expected):
    assert pp._wide_to_uint8(values, sixteen_bit=sixteen_bit).tolist() == expected
    assert pp._wide_to_uint8(values, sixteen_bit=sixteen_bit).dtype == np.uint8


def test_wide_pixels_default_to_the_inferred_range():
    assert pp._wide_to_uint8(np.array([0, 255], np.int32)).tolist() == [0, 255]  # not 16-bit scaling
    with pytest.raises(InputImageError, match=r"^image holds NaN or infinite pixel values$"):
        pp._wide_to_uint8(np.array([0.0, np.inf], np.float32))


def test_a_sixteen_bit_image_is_scaled_from_65535():
    image = Image.fromarray(np.array([[255, 65535]], np.uint16))
    assert image.mode == "I;16"
    assert pp.grayscale(image).tolist() == [[1, 255]]
    dark = Image.fromarray(np.array([[255, 100]], np.uint16))  # dark 16-bit pixels stay dark
    assert pp.grayscale(dark).tolist() == [[1, 0]]


@pytest.mark.parametrize(("gray", "alpha", "expected"), [
    ([0, 0], [255, 0], [0, 255]),  # dark ink: composited onto white
    ([255, 255], [255, 0], [255, 0]),  # white ink: onto black
    ([128, 128], [255, 100], [128, 50]),  # mean ink exactly 128 counts as light: black background
    ([0, 0], [0, 0], [255, 255]),  # nothing opaque: white paper
    ([0, 0], [255, 128], [0, 127]),  # half transparent: half the background
])
def test_transparency_is_flattened_onto_the_contrasting_colour(gray, alpha, expected):
    la = np.stack([np.array([gray], np.uint8), np.array([alpha], np.uint8)], axis=-1)
    flat = pp._composite_alpha(Image.fromarray(la, "LA"))
    assert flat.mode == "L" and np.asarray(flat).tolist() == [expected]


def test_a_palette_with_a_transparent_index_is_flattened_like_rgba():
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, :, 3] = 255  # opaque black ink on the first row, transparent below
    palette = Image.fromarray(rgba, "RGBA").convert("P")
    palette.info["transparency"] = int(np.asarray(palette)[1, 0])
    assert np.asarray(pp._composite_alpha(palette)).tolist() == [[0, 0, 0], [255, 255, 255]]


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "La", "RGBa"])
def test_every_mode_with_alpha_is_composited(mode):
    assert pp._has_alpha(Image.new(mode, (2, 2)))


def test_transparency_in_the_info_counts_and_plain_modes_have_none():
    image = Image.new("P", (2, 2))
    assert not pp._has_alpha(image) and not pp._has_alpha(Image.new("RGB", (2, 2)))
    image.info["transparency"] = 0
    assert pp._has_alpha(image)


def test_a_mode_without_a_direct_path_to_grey_goes_through_rgb():
    lab = Image.new("LAB", (3, 2), (50, 20, 226))
    with pytest.raises(ValueError):
        lab.convert("L")
    converted = pp._convert_l(lab)
    assert converted.mode == "L" and np.array_equal(np.asarray(converted), np.asarray(lab.convert("RGB").convert("L")))


@pytest.mark.parametrize(("width", "expected_width"), [(2047, 2047), (2048, 1024), (3100, 1034)])
def test_big_images_are_reduced_by_whole_factors(width, expected_width):
    assert pp.grayscale(Image.new("L", (width, 12))).shape[1] == expected_width


def test_the_border_is_the_outermost_rows_and_columns():
    gray = np.zeros((2, 9), np.uint8)
    gray[0] = 255  # the top row: 11 of the 22 border pixels with the left and right columns
    assert pp._border_median(gray) == 255
    assert pp._border_median(np.rot90(gray).copy()) == 255  # the same with columns


def test_the_border_median_is_the_upper_middle_of_the_outer_pixels():
    rng = np.random.default_rng(7)
    for height, width in ((7, 9), (5, 5), (12, 4)):
        gray = rng.integers(0, 256, (height, width), dtype=np.uint8)
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        assert pp._border_median(gray) == sorted(border)[len(border) // 2]


@pytest.mark.parametrize(("background", "inverted"), [(127, False), (128, True)])
def test_a_background_above_127_is_light_paper(background, inverted):
    field = np.full((SIZE, SIZE), background, np.uint8)
    field[10:18, 12:16] = 255 if not inverted else 0
    result = pp.mnist_like(field)
    assert np.array_equal(result, 255 - field if inverted else field)


def test_contrast_below_the_minimum_holds_no_digit():
    gray = np.full((40, 40), 10, np.uint8)
    gray[15:25, 18:22] = 10 + pp.MIN_CONTRAST - 1
    with pytest.raises(InputImageError, match=r"^no digit found \(blank or very low-contrast image\)$"):
        pp.mnist_like(gray)
    gray[15:25, 18:22] = 10 + pp.MIN_CONTRAST
    assert pp.mnist_like(gray).max() == 255


def test_faint_pixels_are_noise_and_the_crop_keeps_one_pixel_of_margin():
    strength = np.zeros((10, 12), np.float32)
    strength[3, 4] = strength[6, 7] = 1.0  # ink: two pixels
    strength[8, 10] = pp.INK_LEVEL  # not above the ink level: not part of the box
    crop = pp._crop_to_ink(strength)
    assert crop.shape == (6, 6)  # rows 2-7, columns 3-8
    assert crop[1, 1] == 1.0 and crop[4, 4] == 1.0
    edge = np.zeros((5, 8), np.float32)
    edge[0, 0] = edge[1, 1] = edge[4, 7] = 1.0  # at the borders the margin is cut short
    assert pp._crop_to_ink(edge).shape == (5, 8)
    tall = np.zeros((9, 3), np.float32)
    tall[7, 1] = 1.0
    assert pp._crop_to_ink(tall).shape == (3, 3)  # rows 6-8 (the bottom edge), columns 0-2


@pytest.mark.parametrize("step", [pp._crop_to_ink, pp._centre_by_mass])
def test_no_ink_is_no_digit(step):
    with pytest.raises(InputImageError, match=r"^no digit found \(blank or very low-contrast image\)$"):
        step(np.zeros((5, 6), np.uint8))


@pytest.mark.parametrize(("shape", "fitted"), [((40, 1), (20, 1)), ((1, 60), (1, 20)), ((10, 5), (20, 10))])
def test_the_longer_side_is_fitted_to_the_box(shape, fitted):
    assert pp._fit_box(np.ones(shape, np.float32)).shape == fitted


def test_the_centre_of_mass_goes_to_the_centre_and_the_digit_stays_in_the_field():
    digit = np.zeros((4, 4), np.uint8)
    digit[0, 0] = 255  # all the mass in a corner
    field = pp._centre_by_mass(digit)
    assert field[14, 14] == 255 and field.sum() == 255
    wide = np.zeros((20, 20), np.uint8)
    wide[:, 0] = 255  # mass at the left edge: moved right only as far as the field allows
    field = pp._centre_by_mass(wide)
    assert field[:, SIZE - 20].sum() == 20 * 255 and field.sum() == 20 * 255
    high = np.zeros((20, 20), np.uint8)
    high[0, :] = 255
    assert pp._centre_by_mass(high)[SIZE - 20].sum() == 20 * 255
    low = np.zeros((20, 20), np.uint8)
    low[-1, :] = 255  # mass at the bottom: the digit starts at the top of the field, not below it
    assert pp._centre_by_mass(low)[19].sum() == 20 * 255
    right = np.zeros((20, 20), np.uint8)
    right[:, -1] = 255
    assert pp._centre_by_mass(right)[:, 19].sum() == 20 * 255


def test_check_size_bounds():
    pp.check_size(Image.new("L", (1, 5)))
    pp.check_size(Image.new("L", (100, 100)), max_pixels=10_000)  # exactly the limit: accepted
    for size in ((0, 5), (5, 0)):
        with pytest.raises(InputImageError, match=rf"^image is empty \({size[0]}x{size[1]} pixels\)$"):
            pp.check_size(Image.new("L", size))
    with pytest.raises(InputImageError, match=r"^image too large: 101x100 = 10,100 pixels \(limit 10,000; "):
        pp.check_size(Image.new("L", (101, 100)), max_pixels=10_000)


def test_an_oversized_file_is_refused_before_its_pixels_are_decoded(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    Image.new("L", (400, 300), 255).save(path)
    decoded = []
    monkeypatch.setattr(pp.Image.Image, "load", lambda self: decoded.append(self))
    with pytest.raises(InputImageError, match="limit 100,000") as info:
        to_mnist(path, max_pixels=100_000)
    assert decoded == [] and info.value.path == path
    with pytest.raises(InputImageError, match="limit 100,000"):
        to_mnist(Image.new("L", (400, 300), 255), max_pixels=100_000)  # a Pillow image is checked too


def test_decoding_warnings_stay_out_of_the_output(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_header(10_000, 10_000))  # above Pillow's own warning threshold
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputImageError, match="image too large"):
            to_mnist(path)
        real_open = pp.Image.open

        def noisy_open(*args, **kwargs):
            warnings.warn("Corrupt EXIF data", UserWarning, stacklevel=2)
            return real_open(*args, **kwargs)

        monkeypatch.setattr(pp.Image, "open", noisy_open)
        small = tmp_path / "small.png"
        Image.new("L", (40, 40)).save(small)
        open_image(small)
    assert not [w for w in caught if issubclass(w.category, (UserWarning, Image.DecompressionBombWarning))]


def test_exif_rotation_is_applied_to_a_png_that_carries_it(tmp_path):
    canvas = np.full((100, 200), 255, np.uint8)
    canvas[45:55, 20:180] = 0
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.png"
    Image.fromarray(canvas).save(path, exif=exif)
    assert open_image(path).size == (100, 200)


def test_missing_files_and_folders_are_named_as_such(tmp_path):
    with pytest.raises(InputImageError) as info:
        open_image(tmp_path / "missing.png")
    assert info.value.reason == "no such file" and info.value.path == tmp_path / "missing.png"
    with pytest.raises(InputImageError) as info:
        open_image(tmp_path)
    assert info.value.reason == "is a directory, not an image"


def png_declaring(width: int, height: int, depth: int = 8, colour: int = 0) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))


@pytest.mark.parametrize(("content", "reason"), [
    (png_declaring(0, 5), "image is empty (0x5 pixels)"),
    (png_declaring(5, 0), "image is empty (5x0 pixels)"),
    (png_declaring(1, 5, depth=3, colour=2), "corrupt PNG header (unreadable size or format fields)"),
    (png_declaring(5, 1, depth=3, colour=2), "corrupt PNG header (unreadable size or format fields)"),
    (b"\xff\xd8\xff" + bytes(40), "corrupt JPEG header (unreadable size or format fields)"),
    (b"GIF8" + bytes(40), "corrupt GIF header (unreadable size or format fields)"),
])
def test_refused_headers_say_what_is_wrong(tmp_path, content, reason):
    path = tmp_path / "image.bin"
    path.write_bytes(content)
    with pytest.raises(InputImageError) as info:
        open_image(path)
    assert info.value.reason == reason and info.value.path == path


def test_a_file_without_a_digit_is_named_in_the_error(tmp_path):
    path = tmp_path / "blank.png"
    Image.new("L", (60, 40), 90).save(path)
    with pytest.raises(InputImageError) as info:
        to_mnist(path)
    assert info.value.path == path and info.value.reason == "no digit found (blank or very low-contrast image)"
    with pytest.raises(InputImageError) as info:
        to_mnist(Image.new("L", (60, 40), 90))
    assert info.value.path is None


def test_a_decompression_bomb_refused_by_pillow_is_named(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_header(100_000, 100_000))
    with pytest.raises(InputImageError) as info:
        open_image(path)
    assert info.value.path == path
    assert info.value.reason == ("image too large: 10,000,000,000 pixels (limit 50,000,000; possible "
                                 "decompression bomb)")


def test_a_jpeg_is_drafted_only_above_twice_the_working_side(tmp_path):
    path = tmp_path / "exact.jpg"
    Image.new("L", (2 * pp.WORKING_SIDE, 40), 255).save(path, quality=90)
    assert open_image(path).size == (2 * pp.WORKING_SIDE, 40)


def test_an_image_refused_while_decoding_is_named(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png_with_header(10_000, 10_000))  # refused by our own cap, inside the decoding
    with pytest.raises(InputImageError) as info:
        open_image(path)
    assert info.value.path == path and info.value.reason.startswith("image too large: 10000x10000")


def test_a_bomb_whose_size_pillow_does_not_say_is_still_refused(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (4, 4)).save(path)

    def refuse(*args, **kwargs):
        raise Image.DecompressionBombError("too big")

    monkeypatch.setattr(pp.Image, "open", refuse)
    with pytest.raises(InputImageError) as info:
        open_image(path)
    assert info.value.reason == "image too large: too many pixels (limit 50,000,000; possible decompression bomb)"


@pytest.mark.parametrize(("content", "reason"), [
    (b"this is text, not an image", "not an image (unknown file format)"),
    (b"", "empty file (0 bytes), not an image"),
    (png_declaring(2**31, 0), "image is empty (2147483648x0 pixels)"),
])
def test_unidentified_files_give_the_exact_reason(tmp_path, content, reason):
    path = tmp_path / "file.png"
    path.write_bytes(content)
    with pytest.raises(InputImageError) as info:
        open_image(path)
    assert info.value.reason == reason
