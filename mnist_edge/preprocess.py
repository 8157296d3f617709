"""Turn one real-world image (a photo, a scan, a drawing) into an MNIST-style 28 x 28 digit.

MNIST digits are white on black, fitted into a 20 x 20 box keeping their aspect ratio, and placed
in a 28 x 28 field so that their centre of mass is at the centre. A model trained on MNIST only
works on images that look like that, so `to_mnist` reproduces those steps:

    decode (pixel cap) -> grayscale (16-bit scaled, palette expanded, alpha composited)
    -> invert when the background is light -> stretch background..ink to 0..255
    -> crop to the digit -> fit into 20 x 20 -> centre of mass at the centre of 28 x 28

Pillow and numpy only (the light install has no OpenCV, no torch).
"""

from __future__ import annotations

import re
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_edge.config import IMAGE_SIZE as SIZE
from mnist_edge.errors import InputImageError, first_line

BOX = 20  # the digit is fitted into BOX x BOX inside the field
# Refuse images with more pixels than this before decoding anything: a 100 kB PNG can declare
# 100,000 x 100,000 pixels (a decompression bomb). 50 MP covers phone cameras.
MAX_PIXELS = 50_000_000
# Big photos are reduced to about this many pixels on the long side before the numpy work: the
# digit ends up 20 pixels tall, so more resolution only costs time and memory.
WORKING_SIDE = 1024
# Ink must differ from the background by this much (of 255) or there is no digit to find.
MIN_CONTRAST = 32
# After stretching to 0..1: below NOISE_FLOOR is paper texture or shadow, set to 0; the digit's
# bounding box is taken over pixels above INK_LEVEL so stray grey specks do not widen it.
NOISE_FLOOR = 0.15
INK_LEVEL = 0.3

_EXIF_FORMATS = frozenset({"JPEG", "MPO", "TIFF", "WEBP", "HEIF"})
# Pillow reports truncated or corrupt data as OSError ("image file is truncated"), SyntaxError
# (broken PNG chunks), ValueError, EOFError or struct.error (short EXIF or header fields),
# depending on the format; OSError also covers the file system's own errors.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP"}


def to_mnist(source: str | Path | Image.Image, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An image file or Pillow image -> uint8 [28, 28], white digit on black, MNIST-style.

    A 28 x 28 image is taken as already MNIST-formatted (only inverted if its background is
    light): re-fitting a digit that is already fitted would only blur it.
    Raises InputImageError (naming the file) when the image cannot be read or holds no digit.
    """
    path = None if isinstance(source, Image.Image) else Path(source)
    try:
        image = source if path is None else open_image(path, max_pixels=max_pixels)
        check_size(image, max_pixels)
        return mnist_like(grayscale(image))
    except InputImageError as exc:
        if exc.path is None and path is not None:
            raise InputImageError(exc.reason, path) from exc
        raise


def open_image(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image file, refusing oversized, truncated and non-image files with a clear reason."""
    path = Path(path)
    try:
        return _decode(path, max_pixels)
    except InputImageError as exc:
        raise InputImageError(exc.reason, path) from exc
    except Image.DecompressionBombError as exc:
        # Pillow refuses before our check when the size is far beyond its own limit.
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(declared.group(1)):,} pixels" if declared else "too many pixels"
        raise InputImageError(
            f"image too large: {size} (limit {max_pixels:,}; possible decompression bomb)", path) from exc
    except UnidentifiedImageError as exc:
        raise InputImageError(_unidentified_reason(path), path) from exc
    except _DECODE_ERRORS as exc:
        raise InputImageError(_decode_error_reason(exc), path) from exc


def _decode(path: Path, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():
        # Pillow warns (on stderr) above its own limit; our cap, checked below, is lower. It
        # also warns about corrupt metadata it skips, which would clutter the CLI's output.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)
        image = Image.open(path)
        check_size(image, max_pixels)
        _draft_large_jpeg(image)
        image.load()
        # Phone photos store their rotation in EXIF; apply it so the digit stands upright. Only
        # formats that carry EXIF are asked: parsing it costs as much as decoding a small PNG.
        # Inside the caller's try: a corrupt EXIF block raises like corrupt pixel data.
        if image.format in _EXIF_FORMATS or "exif" in image.info:
            image = ImageOps.exif_transpose(image)
    return image


def _decode_error_reason(exc: BaseException) -> str:
    """File-system errors (they carry an errno) say so; Pillow's own errors mean bad data."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not an image"
    if isinstance(exc, PermissionError):
        return "cannot read (permission denied)"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"cannot read ({exc.strerror or exc})"
    return f"truncated or corrupt image ({first_line(exc)})"


def check_size(image: Image.Image, max_pixels: int = MAX_PIXELS) -> None:
    width, height = image.size
    if width == 0 or height == 0:
        raise InputImageError(f"image is empty ({width}x{height} pixels)")
    if width * height > max_pixels:
        raise InputImageError(
            f"image too large: {width}x{height} = {width * height:,} pixels "
            f"(limit {max_pixels:,}; possible decompression bomb)")


def _draft_large_jpeg(image: Image.Image) -> None:
    # JPEG can decode straight at 1/2, 1/4 or 1/8 scale: far faster than decoding then shrinking.
    if image.format == "JPEG" and max(image.size) > 2 * WORKING_SIDE:
        image.draft(image.mode, (WORKING_SIDE, WORKING_SIDE))


def _unidentified_reason(path: Path) -> str:
    """Tell a non-image apart from an image whose header Pillow refuses (such as 0x0 pixels)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(24)
    except OSError as exc:
        return f"cannot read file ({exc.strerror or exc})"
    if not head:
        return "empty file (0 bytes), not an image"
    kind = next((name for magic, name in _SIGNATURES.items() if head.startswith(magic)), None)
    if kind is None:
        return "not an image (unknown file format)"
    if kind == "PNG" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        if width == 0 or height == 0:
            return f"image is empty ({width}x{height} pixels)"
    return f"corrupt {kind} header (unreadable size or format fields)"


def grayscale(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> uint8 [H, W] luminance, large images reduced to about WORKING_SIDE."""
    if _has_alpha(image):
        image = _composite_alpha(image)
    elif image.mode.startswith("I") or image.mode == "F":
        image = Image.fromarray(_wide_to_uint8(np.asarray(image), sixteen_bit=image.mode.startswith("I;16")))
    elif image.mode != "L":
        image = _convert_l(image)
    factor = max(image.size) // WORKING_SIDE
    if factor >= 2:
        image = image.reduce(factor)  # box filter: fast and anti-aliased
    return np.asarray(image)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def _convert_l(image: Image.Image) -> Image.Image:
    try:
        return image.convert("L")
    except ValueError:  # modes such as LAB have no direct path to L
        return image.convert("RGB").convert("L")


def _wide_to_uint8(values: np.ndarray, sixteen_bit: bool = False) -> np.ndarray:
    """16-bit, 32-bit integer or float pixels -> uint8, keeping the full range.

    16-bit modes scale 65535 to 255 whatever the content; for 32-bit integer and float images
    the range is inferred from the values ([0, 1], [0, 255], [0, 65535], else the maximum).
    """
    is_float = values.dtype.kind == "f"
    values = values.astype(np.float32)
    if not np.isfinite(values).all():
        raise InputImageError("image holds NaN or infinite pixel values")
    top = float(values.max(initial=0.0))
    if sixteen_bit:
        scale = 255.0 / 65535.0
    elif top <= 1.0 and is_float and values.min(initial=0.0) >= 0.0:
        scale = 255.0  # float images in [0, 1]
    elif top <= 255.0:
        scale = 1.0
    elif top <= 65535.0:
        scale = 255.0 / 65535.0  # 16-bit: 65535 -> 255
    else:
        scale = 255.0 / top
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)


def _composite_alpha(image: Image.Image) -> Image.Image:
    """Flatten transparency onto a background that contrasts with the ink.

    Digits drawn on a transparent canvas usually have dark ink (white paper is implied), but
    white strokes on transparency exist too; compositing onto the colour opposite to the ink
    keeps the digit visible either way.
    """
    la = np.asarray(image.convert("RGBA").convert("LA"), dtype=np.float32)
    gray, alpha = la[..., 0], la[..., 1] / 255.0
    opaque = alpha > 0.5
    ink = float(gray[opaque].mean()) if opaque.any() else 0.0
    background = 255.0 if ink < 128.0 else 0.0
    flat = gray * alpha + background * (1.0 - alpha)
    return Image.fromarray(np.rint(flat).astype(np.uint8))


def mnist_like(gray: np.ndarray) -> np.ndarray:
    """uint8 [H, W] grayscale -> uint8 [28, 28] MNIST-style digit (white on black, centred)."""
    background = _border_median(gray)
    if background > 127:  # dark ink on light paper: MNIST is the other way round
        gray = 255 - gray
        background = 255 - background
    if gray.shape == (SIZE, SIZE):
        return np.ascontiguousarray(gray, dtype=np.uint8)
    ink = int(gray.max())
    if ink - background < MIN_CONTRAST:
        raise InputImageError("no digit found (blank or very low-contrast image)")
    strength = np.clip((gray.astype(np.float32) - background) / (ink - background), 0.0, 1.0)
    strength[strength < NOISE_FLOOR] = 0.0
    digit = _crop_to_ink(strength)
    return _centre_by_mass(_fit_box(digit))


def _border_median(gray: np.ndarray) -> int:
    """The background level: the median of the outermost rows and columns."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    middle = len(border) // 2
    return int(np.partition(border, middle)[middle])  # np.median's overhead is 30x this


def _crop_to_ink(strength: np.ndarray) -> np.ndarray:
    ink = strength > INK_LEVEL
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        raise InputImageError("no digit found (blank or very low-contrast image)")
    # One pixel of margin keeps the anti-aliased edge of the strokes.
    top, bottom = max(rows[0] - 1, 0), min(rows[-1] + 2, strength.shape[0])
    left, right = max(cols[0] - 1, 0), min(cols[-1] + 2, strength.shape[1])
    return strength[top:bottom, left:right]


def _fit_box(strength: np.ndarray) -> np.ndarray:
    """Scale so the longer side is BOX pixels, keeping the aspect ratio (as MNIST did)."""
    height, width = strength.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    pixels = Image.fromarray(np.rint(strength * 255.0).astype(np.uint8))
    return np.asarray(pixels.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))


def _centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Place `digit` in the 28 x 28 field with its centre of mass at the centre."""
    height, width = digit.shape
    weights = digit.astype(np.float32)
    total = float(weights.sum())
    if total == 0.0:
        raise InputImageError("no digit found (blank or very low-contrast image)")
    centre_y = float(weights.sum(axis=1) @ np.arange(height)) / total
    centre_x = float(weights.sum(axis=0) @ np.arange(width)) / total
    # MNIST's centres of mass average (14.0, 14.0) in pixel-index coordinates. Clamp so the
    # whole digit stays in the field even when its mass is far off-centre.
    top = min(max(round(SIZE / 2 - centre_y), 0), SIZE - height)
    left = min(max(round(SIZE / 2 - centre_x), 0), SIZE - width)
    field = np.zeros((SIZE, SIZE), dtype=np.uint8)
    field[top : top + height, left : left + width] = digit
    return field


