"""Expand the INPUT arguments of `mnist-edge run` into named 28 x 28 uint8 digit images.

An input is an image file (made MNIST-like by `preprocess`), a directory (its supported files,
recursively, in sorted order), a `.npy` array (N x 28 x 28, N x 784 or one 28 x 28 image, uint8 or
float) or an IDX file (MNIST's own format). A bad input does not stop the others: it becomes an
InputImageError in `InputSet.errors` and the caller decides what to report.
"""

from __future__ import annotations

import gzip
import os
import tokenize
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_edge.config import IMAGE_SIZE as SIZE
from mnist_edge.data import IdxTooLarge, read_idx
from mnist_edge.errors import DataError, InputImageError, LabelsError, first_line
from mnist_edge.fileio import atomic_write, ensure_dir
from mnist_edge.preprocess import MAX_PIXELS, to_mnist

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}
)
NPY_MAGIC = b"\x93NUMPY"
IDX_IMAGES_MAGIC = b"\x00\x00\x08\x03"  # unsigned bytes, three dimensions
# Arrays are converted to uint8 in memory; refuse more images than this (784 MB) before loading.
MAX_ARRAY_IMAGES = 1_000_000
# Arrays are checked and converted this many images at a time, so a float64 memmap of many
# images never needs a full-size temporary copy.
_CHUNK = 16_384
_PIXELS = SIZE * SIZE
_IDX_HEADER = 16  # magic and three dimensions
# What numpy's .npy header parser raises for a damaged header: it evaluates the header's dict
# text with ast.literal_eval (ValueError, TypeError for an unhashable key, SyntaxError,
# RecursionError for deep nesting), and for old files first re-tokenizes it (tokenize.TokenError
# for an unterminated string or bracket); OSError for a short read.
_NPY_HEADER_ERRORS = (OSError, ValueError, TypeError, SyntaxError, RecursionError, tokenize.TokenError)


@dataclass
class InputSet:
    """Digits ready for a model: names[i] labels images[i]; errors lists the inputs skipped.

    origins[i] is the image file images[i] was made from (what `run --show` draws as given), or
    None when it is a row of an array or IDX file (given as the 28 x 28 pixels the model sees).
    """

    names: list[str] = field(default_factory=list)
    images: np.ndarray = field(default_factory=lambda: np.zeros((0, SIZE, SIZE), np.uint8))
    errors: list[InputImageError] = field(default_factory=list)
    origins: list[Path | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)


def load_inputs(paths: Sequence[str | Path], *, max_pixels: int = MAX_PIXELS) -> InputSet:
    """Load every input, in order, collecting per-input errors instead of stopping at the first.

    Sequential on purpose: for small images the time goes to Python-level work that holds the
    GIL, and a thread pool measured slower (1,400 vs 2,100 images/s on 2 cores).
    """
    files, errors = expand(paths)
    names: list[str] = []
    origins: list[Path | None] = []
    batches: list[np.ndarray] = []
    for path in files:
        try:
            kind = file_kind(path)
            file_names, images = _load_kind(path, kind, max_pixels)
        except InputImageError as exc:
            errors.append(exc)
            continue
        names.extend(file_names)
        origins.extend([path] if kind == "image" else [None] * len(file_names))
        batches.append(images)
    images = np.concatenate(batches) if batches else InputSet().images
    return InputSet(names, images, errors, origins)


def expand(paths: Iterable[str | Path]) -> tuple[list[Path], list[InputImageError]]:
    """Files named directly are kept whatever their suffix; directories give their supported files."""
    files: list[Path] = []
    errors: list[InputImageError] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = _supported_files(path)
            if found:
                files.extend(found)
            else:
                errors.append(InputImageError("no images, .npy or IDX files in this directory", path))
        elif path.exists():
            files.append(path)
        else:
            errors.append(InputImageError("no such file or directory", path))
    return files, errors


def _supported_files(folder: Path) -> list[Path]:
    found = []
    # os.walk does not follow directory symlinks, so a link loop cannot make this run forever.
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root, n) for n in sorted(names) if _is_supported_name(n))
    return found


def _is_supported_name(name: str) -> bool:
    lower = name.lower()
    if lower.startswith("."):
        return False
    return Path(lower).suffix in IMAGE_SUFFIXES | {".npy"} or _idx_name(lower)


def _idx_name(lower_name: str) -> bool:
    return lower_name.endswith(("-ubyte", "-ubyte.gz", ".idx", ".idx.gz"))


def load_file(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> tuple[list[str], np.ndarray]:
    """One file -> (names, uint8 [N, 28, 28]); the kind is taken from the contents, not the name."""
    path = Path(path)
    return _load_kind(path, file_kind(path), max_pixels)


def file_kind(path: Path) -> str:
    """'npy', 'idx' or 'image'. Known image suffixes skip the sniffing read: it would double the file opens."""
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else _sniff(path) or "image"


def _load_kind(path: Path, kind: str, max_pixels: int) -> tuple[list[str], np.ndarray]:
    if kind == "npy":
        return _named(path, load_npy(path))
    if kind == "idx":
        return _named(path, load_idx(path))
    return [path.name], to_mnist(path, max_pixels=max_pixels)[None]


def _sniff(path: Path) -> str | None:
    """'npy' or 'idx' from the file's first bytes (or an IDX name); None for anything else."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(NPY_MAGIC))
    except OSError as exc:
        raise InputImageError(f"cannot read file ({exc.strerror or exc})", path) from exc
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(IDX_IMAGES_MAGIC) or _idx_name(path.name.lower()):
        return "idx"
    return None


def _named(path: Path, images: np.ndarray) -> tuple[list[str], np.ndarray]:
    if len(images) == 1:
        return [path.name], images
    return [f"{path.name}[{i}]" for i in range(len(images))], images


def load_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        images = read_idx(path, max_bytes=_IDX_HEADER + MAX_ARRAY_IMAGES * _PIXELS)
    except IdxTooLarge as exc:
        raise InputImageError(f"{exc.reason}: more than the limit of {MAX_ARRAY_IMAGES:,} images "
                              "(split the file)", path) from exc
    except DataError as exc:
        raise InputImageError(exc.reason, path) from exc
    if images.ndim != 3 or images.shape[1:] != (SIZE, SIZE):
        what = "labels, not images" if images.ndim == 1 else f"shape {images.shape}"
        raise InputImageError(f"IDX file holds {what}; expected N x 28 x 28 images", path)
    return images


def load_npy(path: str | Path) -> np.ndarray:
    """A .npy array of digits -> uint8 [N, 28, 28], checked from its header before any loading.

    Pickled (object) arrays are never loaded: unpickling runs arbitrary code. Size, shape and
    length are checked from the header, then the data is memory-mapped and converted in chunks.
    """
    path = Path(path)
    shape, dtype, data_offset = _npy_header(path)
    if dtype.hasobject:
        raise InputImageError("object arrays are not supported (pickled data is never loaded)", path)
    count = _image_count(shape, path)
    if dtype.kind not in "biuf":
        raise InputImageError(f"unsupported array dtype {dtype} (expected uint8 or float)", path)
    expected = data_offset + count * _PIXELS * dtype.itemsize
    if path.stat().st_size < expected:
        raise InputImageError(
            f"file is {path.stat().st_size:,} bytes but its header {shape} implies {expected:,} "
            "(truncated?)", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (*_NPY_HEADER_ERRORS, OverflowError) as exc:  # OverflowError: mmap refusing the data's length
        raise InputImageError(f"cannot read array ({first_line(exc)})", path) from exc
    return to_uint8_images(array.reshape(count, SIZE, SIZE), path)


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) from the .npy header alone."""
    try:
        with open(path, "rb") as handle, warnings.catch_warnings():
            # numpy warns (on stderr) when a header needed its Python 2 repair; the CLI shows errors only.
            warnings.simplefilter("ignore", UserWarning)
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            else:  # 3.0 exists only for structured dtypes with unicode field names
                raise InputImageError(f"unsupported .npy format version {version}", path)
            return shape, dtype, handle.tell()
    except _NPY_HEADER_ERRORS as exc:
        raise InputImageError(f"not a valid .npy file (damaged header: {first_line(exc)})", path) from exc


def _image_count(shape: tuple[int, ...], path: Path) -> int:
    """How many 28 x 28 images an array shape holds, refusing shapes that are not digit batches."""
    accepted = {(SIZE, SIZE), (_PIXELS,)}
    if shape in accepted:
        count = 1
    elif len(shape) >= 2 and shape[1:] in accepted | {(1, SIZE, SIZE), (SIZE, SIZE, 1)}:
        count = shape[0]
    else:
        raise InputImageError(
            f"array of shape {shape} is not N x 28 x 28 or N x 784 (nor one 28 x 28 image)", path)
    if count <= 0:  # a damaged header can declare -1 images
        raise InputImageError(f"array of shape {shape} holds no images", path)
    if count > MAX_ARRAY_IMAGES:
        raise InputImageError(
            f"array holds {count:,} images; the limit is {MAX_ARRAY_IMAGES:,} (split the file)", path)
    return count


def to_uint8_images(array: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """[N, 28, 28] of uint8, integers, bools or floats -> uint8, refusing values that are not pixels.

    Floats in [0, 1] are scaled by 255; floats and integers in [0, 255] are rounded. Anything
    else (NaN, infinity, negative or normalised values) is an error: guessing would give
    confident wrong answers.
    """
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype.kind == "b":
        return np.ascontiguousarray(array, dtype=np.uint8) * np.uint8(255)
    low, high = _checked_range(array, path)
    if low < 0 or high > 255:
        raise InputImageError(
            f"pixel values span [{low:g}, {high:g}]; expected [0, 255] or floats in [0, 1] "
            "(pass raw pixels, not normalised ones)", path)
    scale = 255.0 if array.dtype.kind == "f" and high <= 1.0 else 1.0
    out = np.empty(array.shape, dtype=np.uint8)
    for start in range(0, len(array), _CHUNK):
        part = array[start : start + _CHUNK].astype(np.float32)
        out[start : start + _CHUNK] = np.rint(part * np.float32(scale))
    return out


def _checked_range(array: np.ndarray, path: str | Path | None) -> tuple[float, float]:
    low, high, bad = np.inf, -np.inf, 0
    for start in range(0, len(array), _CHUNK):
        part = np.asarray(array[start : start + _CHUNK])
        if part.dtype.kind == "f":
            finite = np.isfinite(part)
            if not finite.all():
                bad += int(part.size - np.count_nonzero(finite))
                continue
        low, high = min(low, float(part.min())), max(high, float(part.max()))
    if bad:
        raise InputImageError(f"array holds {bad:,} NaN or infinite values", path)
    return low, high


def load_labels(path: str | Path) -> np.ndarray:
    """The true classes of the inputs, in input order: an IDX label file (MNIST's own, gzipped or
    not) or a .npy array of integers (N or N x 1). int64 [N]."""
    path = Path(path)
    if not path.is_file():
        raise LabelsError("no such file" if not path.exists() else "not a file", path)
    try:
        kind = _sniff(path)
    except InputImageError as exc:
        raise LabelsError(exc.reason, path) from exc
    if kind == "npy":
        return _npy_labels(path)
    if kind == "idx" or path.suffix == ".gz":
        return _idx_labels(path)
    raise LabelsError("neither an IDX label file nor a .npy array of integers", path)


def _idx_labels(path: Path) -> np.ndarray:
    try:
        labels = read_idx(path, max_bytes=8 + MAX_ARRAY_IMAGES)
    except IdxTooLarge as exc:
        what = "images, not labels" if _idx_dimensions(path) == 3 else f"more than {MAX_ARRAY_IMAGES:,} labels"
        raise LabelsError(f"IDX file holds {what}", path) from exc
    except DataError as exc:
        raise LabelsError(exc.reason, path) from exc
    if labels.ndim != 1:
        raise LabelsError("IDX file holds images, not labels", path)
    return labels.astype(np.int64)


def _idx_dimensions(path: Path) -> int | None:
    """The number of dimensions an IDX header declares (its fourth byte), without reading the data."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as stream:
            head = stream.read(4)
    except (OSError, EOFError, zlib.error):
        return None
    return head[3] if len(head) == 4 else None


def _npy_labels(path: Path) -> np.ndarray:
    try:
        shape, dtype, _ = _npy_header(path)
    except InputImageError as exc:
        raise LabelsError(exc.reason, path) from exc
    if dtype.hasobject or dtype.kind not in "iu":
        raise LabelsError(f"array of dtype {dtype}; labels are integers", path)
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise LabelsError(f"array of shape {shape}; labels are one integer per input (N or N x 1)", path)
    if shape[0] > MAX_ARRAY_IMAGES:
        raise LabelsError(f"array holds {shape[0]:,} labels; the limit is {MAX_ARRAY_IMAGES:,}", path)
    try:
        return np.load(path, allow_pickle=False).reshape(-1).astype(np.int64)
    except (*_NPY_HEADER_ERRORS, OverflowError) as exc:
        raise LabelsError(f"cannot read array ({first_line(exc)})", path) from exc


def check_labels(labels: np.ndarray, path: str | Path, images: int, classes: int, skipped: int = 0) -> np.ndarray:
    """Labels that fit: one per image read, each a class of the model (0 to classes - 1)."""
    if len(labels) != images:
        because = f" ({skipped} input(s) could not be read)" if skipped else ""
        count = f"{images:,} image" + "s" * (images != 1)
        raise LabelsError(f"holds {len(labels):,} labels for {count}{because}; give one label per image, in "
                          "input order", path)
    outside = np.flatnonzero((labels < 0) | (labels >= classes))
    if len(outside):
        first = int(outside[0])
        raise LabelsError(f"label {int(labels[first])} at position {first} is not a class of the model "
                          f"(0 to {classes - 1}); {len(outside):,} such label(s)", path)
    return labels


def save_images(folder: str | Path, names: Sequence[str], images: np.ndarray) -> list[Path]:
    """Write each image as NNNNN_name.png (what the model saw), for `--save-preprocessed`."""
    folder = ensure_dir(folder)
    written = []
    for index, (name, image) in enumerate(zip(names, images, strict=True)):
        target = folder / f"{index:05d}_{safe_stem(name)}.png"
        written.append(atomic_write(target, lambda tmp, im=image: Image.fromarray(im).save(tmp, format="PNG")))
    return written


def safe_stem(name: str) -> str:
    # "digits.npy[3]" keeps its suffix and index ("digits_npy_3_"); "a.png" drops the suffix.
    stem = name if name.endswith("]") else Path(name).stem
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:80]
