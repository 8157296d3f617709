"""Share one machine's cores between training and latency measurement.

Workers of a search on one machine train side by side, but a latency measured while another
worker trains measures the contention, not the model. Every step that computes holds this
lock *shared*; the benchmark holds it *exclusive*, so it runs only when no worker on the
machine is computing, and no worker starts computing while it runs.

Written on flock because filelock has no shared mode. A reader-writer lock on flock alone
lets a steady stream of shared holders starve a waiting benchmark, so every taker first
passes a turnstile (a second, exclusive flock) that a waiting benchmark keeps closed. The
operating system drops both locks when a holder dies, so a worker killed with SIGKILL never
blocks the others.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from types import TracebackType

from mnist_edge.errors import OutputError

# One lock per machine by default: the workers of one machine meet in its temporary folder.
DEFAULT_LOCK = Path(tempfile.gettempdir()) / "mnist-edge-cpu.lock"


class CpuShare:
    """`shared()` around computing steps, `exclusive()` around a latency measurement."""

    def __init__(self, path: str | Path = DEFAULT_LOCK) -> None:
        self.path = Path(path)
        self._mode: int | None = None
        try:
            self._lock = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            self._turnstile = os.open(self.path.with_name(self.path.name + ".turnstile"), os.O_RDWR | os.O_CREAT,
                                      0o666)
        except OSError as exc:
            raise OutputError(f"cannot open the CPU lock ({exc.strerror or exc})", self.path) from exc

    def shared(self) -> None:
        self._take(fcntl.LOCK_SH)

    def exclusive(self) -> None:
        self._take(fcntl.LOCK_EX)

    def release(self) -> None:
        if self._mode is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._mode = None

    def _take(self, mode: int) -> None:
        if self._mode == mode:
            return
        self.release()  # flock's in-place conversion is not atomic either: say so by releasing first
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._lock, mode)
        finally:
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)
        self._mode = mode

    def close(self) -> None:
        self.release()
        os.close(self._lock)
        os.close(self._turnstile)

    def __enter__(self) -> CpuShare:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
