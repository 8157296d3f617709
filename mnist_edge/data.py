"""Find MNIST, read its IDX files with numpy alone, and split off a validation set.

Nothing here imports torch: the light runtime evaluates ONNX models on the test set too.
torchvision is imported only to download MNIST when it is missing.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge.errors import ConfigError, DataError
from mnist_edge.fileio import sha256_file

ENV_VAR = "MNIST_EDGE_DATA"
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
# IDX magic: two zero bytes, a type code (0x08 = unsigned byte) and the number of dimensions.
_IDX_UBYTE = 0x08


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist-edge"


def candidate_dirs(data_dir: str | Path | None) -> list[Path]:
    """Where to look, in order: the option, else the env var, else the per-user cache."""
    if data_dir is not None:
        return [Path(data_dir)]
    if os.environ.get(ENV_VAR):
        return [Path(os.environ[ENV_VAR])]
    return [default_cache_dir()]


def _raw_dir(root: Path) -> Path | None:
    """The folder holding the four files: ROOT/MNIST/raw (torchvision's layout) or ROOT itself."""
    for folder in (root / "MNIST" / "raw", root):
        if all(_find_file(folder, name) for name in FILES.values()):
            return folder
    return None


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def locate(data_dir: str | Path | None = None, download: bool = True) -> Path:
    """Return the folder holding the MNIST files, downloading them with torchvision if allowed."""
    roots = candidate_dirs(data_dir)
    for root in roots:
        if found := _raw_dir(root):
            return found
    why_not = "downloading is off (--no-download)"
    if download:
        why_not = _download(roots[0])
        if found := _raw_dir(roots[0]):
            return found
    looked = ", ".join(f"{r / 'MNIST' / 'raw'} and {r}" for r in roots)
    raise DataError(
        f"MNIST files not found (looked in {looked}; {why_not}); pass --data-dir DIR or set "
        f"{ENV_VAR} to a folder holding MNIST/raw/*-ubyte, or run once online to download them"
    )


def _download(root: Path) -> str:
    """Download MNIST into `root` with torchvision; return why the files may still be missing."""
    try:
        from torchvision.datasets import MNIST
    except ImportError:
        return "torchvision, which downloads MNIST, is not installed: pip install 'mnist-edge[train]'"
    try:
        # torchvision reports download progress on stdout; the library never prints.
        with contextlib.redirect_stdout(io.StringIO()):
            for train in (True, False):
                MNIST(root=str(root), train=train, download=True)
    except Exception as exc:  # noqa: BLE001 - any network or disk failure means "not available"
        return f"download failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return "download finished but the files are incomplete"


class IdxTooLarge(DataError):
    """An IDX file (after decompression) over the size its reader allows."""


def read_idx(path: str | Path, max_bytes: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes (optionally gzipped), checking header and length.

    `max_bytes` bounds the (decompressed) size: at most one byte more is read, so neither a
    huge file nor a small .gz that expands without bound is loaded whole.
    """
    path = Path(path)
    limit = -1 if max_bytes is None else max_bytes + 1
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as stream:
            raw = stream.read(limit)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        # zlib.error: a damaged deflate stream inside a valid gzip header ("invalid distance too far back").
        raise DataError(f"cannot read IDX file ({exc})", path) from exc
    if max_bytes is not None and len(raw) > max_bytes:
        raise IdxTooLarge(f"IDX file is over {max_bytes:,} bytes", path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE:
        raise DataError("not an MNIST IDX file (bad magic number)", path)
    ndim = raw[3]
    if ndim not in (1, 3):
        raise DataError(f"unexpected number of dimensions {ndim} in IDX header", path)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError("truncated IDX header", path)
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(
            f"file is {len(raw)} bytes but its header {dims} implies {expected} (truncated?)", path
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 [N, 28, 28]
    labels: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, limit: int) -> Split:
        return self if limit <= 0 or limit >= len(self) else Split(self.images[:limit], self.labels[:limit])


def load_split(name: str, data_dir: str | Path | None = None, download: bool = True) -> Split:
    """Load 'train' or 'test' as uint8 images and int64 labels."""
    folder = locate(data_dir, download)
    images_path = _find_file(folder, FILES[(name, "images")])
    labels_path = _find_file(folder, FILES[(name, "labels")])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"expected 28x28 images, found shape {images.shape}", images_path)
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{len(labels)} labels for {len(images)} images", labels_path)
    if labels.max(initial=0) > 9:
        raise DataError("labels outside 0-9", labels_path)
    return Split(images, labels.astype(np.int64))


def train_val_split(train: Split, val_size: int, seed: int) -> tuple[Split, Split]:
    """Carve a validation set out of the training set with a fixed seed.

    The test set is never touched here: it is used only for final evaluation.
    """
    order = np.random.default_rng(seed).permutation(len(train))
    val_idx, train_idx = np.sort(order[:val_size]), np.sort(order[val_size:])
    return (
        Split(train.images[train_idx], train.labels[train_idx]),
        Split(train.images[val_idx], train.labels[val_idx]),
    )


def training_splits(val_size: int, split_seed: int, train_limit: int = 0, data_dir: str | Path | None = None,
                    download: bool = True) -> tuple[Split, Split]:
    """(the images a recipe trains on, the validation images it holds out): what training reads."""
    train, val = train_val_split(load_split("train", data_dir, download), val_size, split_seed)
    return train.subset(train_limit), val


# The sets a model can be evaluated on: the images it trained on, the test set, the validation
# images its recipe held out.
SPLITS = ("train", "test", "val")


@dataclass(frozen=True)
class SplitPlan:
    """Which images a split names for a model: the training and validation images depend on the
    recipe's hold-out (val_size, split_seed) and train_limit; `recipe_from` says where those came
    from ("checkpoint", "manifest", or "default" when the model does not say)."""

    name: str
    val_size: int = 5000
    split_seed: int = 0
    train_limit: int = 0
    recipe_from: str = "default"

    @staticmethod
    def check_name(name: str) -> str:
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return name

    def describe(self, count: int) -> str:
        """What the images are, in words, for reports."""
        if self.name == "test":
            return f"the {count:,} test images"
        held_out = f"the {self.val_size:,} validation images held out with split seed {self.split_seed}"
        source = ("the model names no recipe: the default hold-out" if self.recipe_from == "default"
                  else f"recipe from the {self.recipe_from}")
        if self.name == "val":
            return f"{held_out} ({source})"
        first = f"the first {self.train_limit:,} of " if self.train_limit else ""
        return f"the {count:,} images the model trained on: {first}the training file less {held_out} ({source})"


def load_plan(plan: SplitPlan, data_dir: str | Path | None = None, download: bool = True) -> Split:
    """The images and labels of a split, in file order."""
    if plan.name == "test":
        return load_split("test", data_dir, download)
    if plan.name == "val" and plan.val_size == 0:
        raise ConfigError("no validation images: the model's recipe trained on all 60,000 training images "
                          "(val_size 0); evaluate --split train or test")
    train, val = training_splits(plan.val_size, plan.split_seed, plan.train_limit, data_dir, download)
    return train if plan.name == "train" else val


def files_in(folder: Path) -> dict[str, Path]:
    """The four MNIST files of a folder `locate` returned, by their plain (unzipped) names."""
    return {name: _find_file(folder, name) for name in FILES.values()}


def checksums(data_dir: str | Path | None = None, download: bool = False) -> dict[str, str]:
    """sha256 of each MNIST file, recorded in checkpoints so a model names the data it saw."""
    return {name: sha256_file(path) for name, path in files_in(locate(data_dir, download)).items()}


@dataclass(frozen=True)
class DataStats:
    train_count: int
    test_count: int
    train_class_counts: list[int]
    test_class_counts: list[int]
    pixel_mean: float
    pixel_std: float
    folder: str


def stats(data_dir: str | Path | None = None, download: bool = True) -> DataStats:
    train, test = load_split("train", data_dir, download), load_split("test", data_dir, download)
    pixels = train.images.astype(np.float64) / 255.0
    return DataStats(
        train_count=len(train),
        test_count=len(test),
        train_class_counts=np.bincount(train.labels, minlength=10).tolist(),
        test_class_counts=np.bincount(test.labels, minlength=10).tolist(),
        pixel_mean=float(pixels.mean()),
        pixel_std=float(pixels.std()),
        folder=str(locate(data_dir, download=False)),
    )


def normalize(images: np.ndarray, scale: float, mean: float, std: float) -> np.ndarray:
    """uint8 [N, 28, 28] -> float32 [N, 1, 28, 28] in the model's input convention."""
    x = images.astype(np.float32) / np.float32(scale)
    x = (x - np.float32(mean)) / np.float32(std)
    return x[:, None, :, :]
