"""One process per run folder: `train`, `pipeline` and `sweep` hold a lock on their `--out`.

The lock is an flock on `FOLDER/.mnist-edge.lock` taken through filelock: the operating system
releases it when its holder dies, so a run killed with SIGKILL never leaves a stale lock. A
second process on the same folder is refused at once with a clear message rather than left to
interleave its writes with the first one's.

Holding the lock also makes the folder's leftover temporary files (`.NAME.RANDOM.tmp`, from a
process killed in the middle of an atomic write) safe to delete: no process of ours can be
writing them any more. Folders that hold their own lock (the runs inside a sweep) are left to
their own holder.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mnist_edge.errors import FolderBusyError, OutputError
from mnist_edge.fileio import ensure_dir

LOCK_NAME = ".mnist-edge.lock"
# fileio's atomic writes and staged folders name their temporaries `.NAME.RANDOM.tmp`.
_TEMPORARY = re.compile(r"^\..+\.tmp$")


def is_bookkeeping(name: str) -> bool:
    """True for the lock file and leftover temporaries: never a user's file, never a run's output."""
    return name == LOCK_NAME or bool(_TEMPORARY.match(name))


@contextmanager
def run_folder_lock(folder: str | Path) -> Iterator[Path]:
    """Create `folder` if needed, lock it for this process, and clean its stale temporaries.

    On exit the lock is released; a folder this call created is removed again when nothing
    but the lock file ended up in it (a run refused at its first check leaves nothing behind).
    """
    from filelock import FileLock, Timeout  # with the training extra: only training commands lock

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError("exists and is not a directory", folder)
    fresh = not folder.exists()
    ensure_dir(folder)
    lock = FileLock(folder / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise FolderBusyError(
            f"another mnist-edge process is working in this folder (it holds {LOCK_NAME}); wait for it "
            "to finish or stop it, or choose another --out", folder) from None
    except OSError as exc:
        raise OutputError(f"cannot create the lock file {LOCK_NAME} ({exc.strerror or exc})", folder) from exc
    try:
        remove_stale_temporaries(folder)
        yield folder
    finally:
        lock.release()
        if fresh:
            _remove_if_only_lock(folder)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete `.NAME.RANDOM.tmp` files and folders under `folder`, except inside other locked folders."""
    removed = []
    for entry in sorted(folder.iterdir()):
        if entry.name == LOCK_NAME:
            continue
        if _TEMPORARY.match(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
        elif entry.is_dir() and not entry.is_symlink() and not (entry / LOCK_NAME).exists():
            removed += remove_stale_temporaries(entry)
    return removed


def _remove_if_only_lock(folder: Path) -> None:
    try:
        if {p.name for p in folder.iterdir()} <= {LOCK_NAME}:
            (folder / LOCK_NAME).unlink(missing_ok=True)
            folder.rmdir()
    except OSError:
        pass  # someone else's file appeared meanwhile: leave the folder to them
