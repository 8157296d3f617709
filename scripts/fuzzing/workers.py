"""Long-lived forked workers, each under an address-space limit, fed cases over a pipe.

Why forked workers: RLIMIT_AS is per process and cannot be lowered and raised again per case
(an unprivileged process cannot raise its hard limit back), and a case that segfaults or hangs
inside onnxruntime must not take the battery down with it. So each worker is forked from the
parent (which imported numpy, onnxruntime and torch once, so a fork is cheap and the pages are
shared), warms up, measures the address space it then uses, sets RLIMIT_AS to that plus a
headroom once, and runs cases until told to stop. The parent enforces the per-case timeout: a
worker that overruns is killed and replaced (a hang); a worker that dies is replaced too (a crash).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from scripts.fuzzing.cases import Case, materialize

OK, TYPED, UNCAUGHT, HANG, CRASH = "ok", "typed error", "uncaught", "hang", "crash"
OUTCOMES = (OK, TYPED, UNCAUGHT, HANG, CRASH)
_SEVERITY = {OK: 0, TYPED: 1, UNCAUGHT: 2}


@dataclass
class Result:
    """What became of one case (the worst outcome over its targets)."""

    case: Case
    outcome: str
    target: str = ""
    error: str = ""  # exception type and first line of its message
    details: str = ""  # the traceback of an uncaught exception, the signal of a crash
    seconds: float = 0.0


@dataclass
class MemoryFigures:
    """Address-space limit per worker and what the workers used, in bytes."""

    limit: int = 0
    warm_vm_peak: int = 0  # address space after the warm-up, before the limit is set
    peak_rss: int = 0  # ru_maxrss over the workers' lives
    headroom: int = 0


def vm_peak() -> int:
    """This process's peak virtual memory (bytes), from /proc."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmPeak:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- inside a worker ------------------------------------------------------------------------------


def _quiet(log: Path) -> None:
    """Send the worker's stdout and stderr (onnxruntime's C++ logging included) to a log file."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _worker(conn: Connection, number: int, setup: Callable[[], Any], run_target: Callable[..., None],
            seeds: Path, scratch: Path, headroom: int, log: Path) -> None:
    _quiet(log)
    context = setup()
    warm = vm_peak()
    limit = warm + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send(("ready", limit, warm))
    while (case := conn.recv()) is not None:
        conn.send(run_case(case, context, run_target, seeds, scratch / f"w{number}-{case.kind}-{case.index}"))


def run_case(case: Case, context: Any, run_target: Callable[..., None], seeds: Path, folder: Path) -> tuple:
    """Run every target on the case: (outcome, target, error, traceback, seconds, peak RSS)."""
    started = time.perf_counter()
    worst = (OK, "", "", "")
    try:
        materialize(case, seeds, folder)
        for target in case.targets:
            outcome = _run_target(run_target, target, folder, case.file, context)
            if _SEVERITY[outcome[0]] > _SEVERITY[worst[0]]:
                worst = outcome
            if worst[0] == UNCAUGHT:
                break
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return (*worst, time.perf_counter() - started, peak_rss())


def _run_target(run_target: Callable[..., None], target: str, folder: Path, file: str,
                context: Any) -> tuple[str, str, str, str]:
    from mnist_edge.errors import MnistEdgeError

    try:
        run_target(target, folder, file, context)
    except MnistEdgeError as exc:
        return TYPED, target, f"{type(exc).__name__}: {exc}".splitlines()[0][:300], ""
    except Exception as exc:  # noqa: BLE001 - anything else is the finding
        first = str(exc).splitlines()[0][:300] if str(exc).strip() else ""
        return UNCAUGHT, target, f"{type(exc).__name__}: {first}", traceback.format_exc(limit=12)
    return OK, target, "", ""


# --- in the parent --------------------------------------------------------------------------------


@dataclass
class _Worker:
    number: int
    process: Any
    conn: Connection
    case: Case | None = None
    started: float = 0.0


@dataclass
class Pool:
    """`size` workers; `run(cases)` yields a Result per case, in completion order."""

    size: int
    setup: Callable[[], Any]
    run_target: Callable[..., None]
    seeds: Path
    headroom: int
    timeout: float
    logs: Path
    memory: MemoryFigures = field(default_factory=MemoryFigures)
    restarts: int = 0

    def __post_init__(self) -> None:
        self.memory.headroom = self.headroom
        self._scratch = Path(tempfile.mkdtemp(prefix="mnist-edge-fuzz-"))
        self._context = multiprocessing.get_context("fork")
        self._workers = [self._start(n) for n in range(self.size)]

    def _start(self, number: int) -> _Worker:
        parent, child = self._context.Pipe()
        args = (child, number, self.setup, self.run_target, self.seeds, self._scratch, self.headroom,
                self.logs / f"worker-{number}.log")
        process = self._context.Process(target=_worker, args=args, name=f"fuzz-worker-{number}", daemon=True)
        process.start()
        child.close()  # so that the parent sees EOF when the worker dies
        _, limit, warm = parent.recv()
        self.memory.limit = max(self.memory.limit, limit)
        self.memory.warm_vm_peak = max(self.memory.warm_vm_peak, warm)
        return _Worker(number, process, parent)

    def run(self, cases: Iterator[Case]) -> Iterator[Result]:
        pending = iter(cases)
        exhausted = False
        while True:
            for worker in self._workers:
                if worker.case is None and not exhausted:
                    case = next(pending, None)
                    if case is None:
                        exhausted = True
                        break
                    worker.case, worker.started = case, time.perf_counter()
                    worker.conn.send(case)
            busy = [w for w in self._workers if w.case is not None]
            if not busy:
                return
            yield from self._collect(busy)

    def _collect(self, busy: list[_Worker]) -> Iterator[Result]:
        deadline = min(w.started for w in busy) + self.timeout
        ready = wait([w.conn for w in busy], timeout=max(0.0, deadline - time.perf_counter()))
        for worker in busy:
            if worker.conn in ready:
                yield self._receive(worker)
            elif time.perf_counter() - worker.started > self.timeout:
                yield self._replace(worker, Result(worker.case, HANG, details=f"no answer in {self.timeout:g} s",
                                                   seconds=self.timeout))

    def _receive(self, worker: _Worker) -> Result:
        case = worker.case
        try:
            outcome, target, error, details, seconds, rss = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(5)
            code = worker.process.exitcode
            why = f"worker died (signal {-code})" if code is not None and code < 0 else f"worker exited ({code})"
            return self._replace(worker, Result(case, CRASH, details=why,
                                                seconds=time.perf_counter() - worker.started))
        self.memory.peak_rss = max(self.memory.peak_rss, rss)
        worker.case = None
        return Result(case, outcome, target, error, details, seconds)

    def _replace(self, worker: _Worker, result: Result) -> Result:
        """Kill `worker` (hung or dead) and start a fresh one in its place."""
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()
        worker.conn.close()
        self.restarts += 1
        self._workers[self._workers.index(worker)] = self._start(worker.number)
        return result

    def close(self) -> None:
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self._workers:
            worker.process.join(10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        shutil.rmtree(self._scratch, ignore_errors=True)
