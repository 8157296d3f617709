"""Shared fixtures. MNIST is read from $MNIST_EDGE_DATA (CI sets it to ../shared/data).

Rules every test lives by: under CI=true a skip is a failure (tests/ci_skips.py), and tests
write only under their tmp_path (checked once for the whole session, below).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Hypothesis keeps its example database and caches in ./.hypothesis by default: in the checkout,
# wherever pytest starts. Keep them in the temporary directory instead (set before it is imported).
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "mnist-edge-hypothesis"))

pytest_plugins = ["tests.ci_skips", "pytester"]
ROOT = Path(__file__).resolve().parents[1]
# What may change in the repository while tests run: caches and the tools' own folders.
_NOT_WRITTEN_BY_TESTS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "mutants"}


def _repository_files() -> dict[str, tuple[int, int]]:
    """Every file of the checkout (relative path -> size, mtime) outside caches and tool folders."""
    found = {}
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in _NOT_WRITTEN_BY_TESTS and not d.endswith(".egg-info")]
        for name in names:
            path = Path(folder, name)
            info = path.lstat()
            found[str(path.relative_to(ROOT))] = (info.st_size, info.st_mtime_ns)
    return found


@pytest.fixture(scope="session", autouse=True)
def tests_write_only_under_tmp_path():
    """A test that writes into the checkout (a relative --out, a default output folder) fails the run."""
    before = _repository_files()
    yield
    after = _repository_files()
    changed = sorted(path for path, stamp in after.items() if before.get(path) != stamp)
    if changed:
        pytest.fail(f"tests wrote into the repository: {', '.join(changed[:10])}")


def mnist_root() -> Path:
    value = os.environ.get("MNIST_EDGE_DATA")
    if not value:
        pytest.skip("MNIST_EDGE_DATA is not set; point it at a folder holding MNIST/raw")
    return Path(value).resolve()  # tests symlink into tmp folders: relative paths would break


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return mnist_root()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Path:
    """A `tiny` model trained for one short epoch: enough to export, quantize and evaluate."""
    pytest.importorskip("torch")
    from mnist_edge.config import preset
    from mnist_edge.train import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    recipe = preset("fast", arch="tiny", epochs=1, train_limit=4000, val_size=1000)
    train(recipe, out, device="cpu", data_dir=mnist_dir, download=False)
    return out


@pytest.fixture(scope="session")
def trained_cnn(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Path:
    """The default architecture trained for one epoch on all 55,000 training images (99.3 %,
    about 20 s): strong enough that int8 vs fp32 on the test set is stable across CPUs."""
    pytest.importorskip("torch")
    from mnist_edge.config import preset
    from mnist_edge.train import train

    out = tmp_path_factory.mktemp("runs") / "cnn"
    train(preset("fast", arch="cnn", epochs=1), out, device="cpu", data_dir=mnist_dir, download=False)
    return out


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> dict[str, Path]:
    """Small ONNX models of every supported layout and a few broken ones (tests/onnx_models.py)."""
    from tests.onnx_models import write_zoo

    return write_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (tests/webpage.py drives the page in it)."""
    from tests.webpage import launched_chromium

    yield from launched_chromium()
