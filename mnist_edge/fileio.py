"""Atomic file writes and hashing: a crash or Ctrl-C never leaves a half-written file behind."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mnist_edge.errors import OutputError

try:
    import fcntl
except ImportError:  # Windows: no flock, so a killed run's staging folder stays (hidden, read by nothing)
    fcntl = None  # type: ignore[assignment]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_DEFAULT_MODE = 0o666 & ~_umask()
_DIR_MODE = 0o777 & ~_umask()


def ensure_dir(path: str | Path) -> Path:
    """Create `path` (and parents) or raise OutputError naming it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create directory ({exc.strerror or exc})", path) from exc
    if not os.access(path, os.W_OK):
        raise OutputError("directory is not writable", path)
    return path


def check_creatable(path: str | Path) -> Path:
    """Fail now, naming `path`, when it could not be created as a directory later.

    Creates nothing: commands check their output folders before the work, and create them
    only once there is something complete to put in them.
    """
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists())  # "." or "/" at worst
    if not existing.is_dir():
        raise OutputError(f"cannot create directory ({os.strerror(errno.ENOTDIR)})", path)
    if not os.access(existing, os.W_OK):
        raise OutputError("directory is not writable", existing)
    return path


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, fsync, then rename over `path`.

    `write` receives a temporary path in the same directory (so the rename is atomic) and
    must create the file there; libraries that only accept a file name (safetensors, onnx,
    matplotlib) work through this. A failing write (disk full, permission denied) is an
    OutputError naming `path`, and the temporary file is removed.
    """
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write ({exc.strerror or exc})", path) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, _DEFAULT_MODE)  # mkstemp makes 0600; outputs are meant to be shared like any file
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write ({exc.strerror or exc})", path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


@contextmanager
def staged_dir(final: str | Path, stale: Iterable[str] = (), last: Iterable[str] = ()) -> Iterator[Path]:
    """A temporary sibling of `final` to build a folder in, moved into place only when the block
    succeeds; on any error (or Ctrl-C) it is deleted, with any parent folder made for it, and
    `final` is left as it was.

    A new folder appears whole with one rename. An existing folder keeps its other files: the
    `stale` names (files describing its previous content, such as a parity report) are removed,
    then each built file replaces its namesake, the `last` names (the manifest) at the end.

    The staging folder `.NAME.RANDOM.tmp` is flocked for as long as it is built, so a process
    killed with SIGKILL leaves one that nobody holds: the next build of the same `final` deletes
    those (remove_abandoned_stages) and leaves alone the ones a live process is still building.
    """
    final = check_creatable(final)
    made = [p for p in (final.parent, *final.parent.parents) if not p.exists()]
    ensure_dir(final.parent)
    # Cleaning and creating under the parent's lock: another build cannot see this stage between
    # its creation and its flock, when it would look abandoned.
    with _locked_folder(final.parent):
        remove_abandoned_stages(final)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        except OSError as exc:
            raise OutputError(f"cannot create directory ({exc.strerror or exc})", final) from exc
        held = _hold(tmp)
    try:
        yield tmp
        _publish(tmp, final, set(stale), list(last))
        made = []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if held is not None:
            os.close(held)
        _remove_empty(made)


def stage_pattern(final: Path) -> re.Pattern[str]:
    """The names staged_dir gives `final`'s staging folders (tempfile's random part in the middle)."""
    return re.compile(rf"^\.{re.escape(final.name)}\.[a-z0-9_]+\.tmp$")


def remove_abandoned_stages(final: str | Path) -> list[Path]:
    """Delete the staging folders of `final` that no live process holds (left by a killed build)."""
    final = Path(final)
    if fcntl is None or not final.parent.is_dir():
        return []
    pattern, removed = stage_pattern(final), []
    for entry in sorted(final.parent.iterdir()):
        if not pattern.match(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        held = _hold(entry)
        if held is None:  # a live build holds it (or it cannot be opened): not ours to remove
            continue
        try:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        finally:
            os.close(held)
    return removed


def _hold(folder: Path) -> int | None:
    """An open descriptor of `folder` holding its flock, or None when another process holds it."""
    if fcntl is None:
        return None
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


@contextmanager
def _locked_folder(folder: Path) -> Iterator[None]:
    """An exclusive flock on `folder` itself for a short section (waits for the holder)."""
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a folder we may write but not open or lock: build without the section lock
            if fd is not None:
                os.close(fd)
            fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders made for a failed output again, deepest first, while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _publish(tmp: Path, final: Path, stale: set[str], last: list[str]) -> None:
    try:
        if not final.exists():
            os.chmod(tmp, _DIR_MODE)  # mkdtemp makes 0700; like ensure_dir's folders instead
            os.rename(tmp, final)
            _fsync_dir(final.parent)
            return
        for name in stale:
            _remove(final / name)
        # The manifest names the model's hash: it goes last, so it never describes a missing file.
        order = {name: rank for rank, name in enumerate(last, start=1)}
        for item in sorted(tmp.iterdir(), key=lambda p: order.get(p.name, 0)):
            if item.is_dir():  # a folder (a site's ort/) replaces its namesake whole: rename cannot
                _remove(final / item.name)
            os.replace(item, final / item.name)
    except OSError as exc:
        raise OutputError(f"cannot move the new files into place ({exc.strerror or exc})", final) from exc
    _fsync_dir(final)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    # Persist the rename itself; not every platform lets a directory be opened.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path, error: type[Exception]) -> Any:
    """Read a JSON file, turning a missing or malformed file into `error` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error("file not found", path) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"not valid JSON ({exc})", path) from exc
    except RecursionError:  # nesting deeper than Python's parser follows: no file of ours is like that
        raise error("not valid JSON (nested too deeply)", path) from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
