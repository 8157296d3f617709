"""A sample of the cases run through the real CLI, one `mnist-edge` process each.

The rule checked: exit 0, or exit 2 with exactly one `error:` line on stderr and no traceback.
Each process runs under the same address-space limit as the in-process workers (set by a small
launcher before it execs the CLI) and a wall-clock timeout; os.wait4 gives its peak RSS. Only
commands that cannot train run: `run`, `eval` (on a small MNIST folder), `report`, and `sweep`
and `search` with an --out that is a file, so a config that parses is refused before any run starts.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from scripts.fuzzing.cases import Case, CaseMaker, apportion, materialize
from scripts.fuzzing.workers import CRASH, HANG, OK, TYPED, UNCAUGHT, Result

ROOT = Path(__file__).resolve().parents[2]
# Sets RLIMIT_AS, then becomes the CLI: the limit holds from the CLI's first instruction.
LAUNCHER = ("import os, resource, sys; limit = int(sys.argv[1]); "
            "resource.setrlimit(resource.RLIMIT_AS, (limit, limit)); os.execv(sys.argv[2], sys.argv[2:])")
# Kinds whose CLI checks import torch (4 s a process): fewer of them.
CLI_WEIGHTS = {"checkpoint-config": 0.3, "safetensors": 0.3}


@dataclass(frozen=True)
class CliCase:
    case: Case
    args: tuple[str, ...]


def executable() -> str:
    found = Path(sys.executable).with_name("mnist-edge")
    return str(found) if found.exists() else shutil.which("mnist-edge") or "mnist-edge"


def command_for(case: Case, folder: Path, seeds: Path, rng: random.Random) -> tuple[str, ...]:
    """The CLI command that reads the case's damaged file."""
    model, mnist = str(seeds / "model-int8"), ["--data-dir", str(seeds / "mnist"), "--no-download"]
    kind = case.kind
    if kind in ("png", "jpeg", "bmp", "npy"):
        return ("run", model, str(folder / case.file))
    if kind in ("idx", "idx-gz"):
        if rng.random() < 0.5:
            return ("run", model, str(folder / case.file))
        return ("eval", model, "--data-dir", str(folder), "--no-download")
    if kind.startswith("onnx") or kind == "manifest":
        target = str(folder) if (folder / "manifest.json").exists() else str(folder / "model.onnx")
        if rng.random() < 0.5:
            return ("run", target, str(seeds / "images" / "digit.png"))
        return ("eval", target, *mnist)
    if kind in ("checkpoint-config", "safetensors"):
        return ("eval", str(folder), *mnist)
    if kind == "sweep-toml":
        occupied = folder / "occupied"
        occupied.write_text("a file, so the sweep refuses this --out after reading its config\n")
        return ("sweep", str(folder / case.file), "--out", str(occupied), "--data-dir", str(folder / "no-data"),
                "--no-download")
    if kind == "search-toml":
        occupied = folder / "occupied"
        occupied.write_text("a file, so the search refuses this --out after reading its config\n")
        return ("search", str(folder / case.file), "--out", str(occupied), "--data-dir", str(folder / "no-data"),
                "--no-download")
    return ("report", str(folder), "--out", str(folder / "fuzz-report.html"))


def plan(total: int, weights: dict[str, float]) -> dict[str, int]:
    """`total` CLI cases shared by the kinds' weights, torch-loading kinds fewer."""
    return apportion(total, {name: weight * CLI_WEIGHTS.get(name, 1.0) for name, weight in weights.items()})


def judge(code: int, stderr: str) -> tuple[str, str]:
    """(outcome, why) for one CLI process's exit status and stderr."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    if code < 0:
        return CRASH, f"killed by signal {-code}"
    if "Traceback (most recent call last)" in stderr:
        return UNCAUGHT, f"traceback on stderr (exit {code})"
    if code == 0:
        return OK, ""
    if code == 2 and len(errors) == 1:
        return TYPED, errors[0][:300]
    return UNCAUGHT, f"exit {code} with {len(errors)} error: line(s)"


def run_one(cli: CliCase, limit: int, timeout: float, env: dict[str, str]) -> tuple[Result, str, int]:
    """Run one CLI case: (result, stderr, peak RSS in bytes)."""
    argv = [sys.executable, "-c", LAUNCHER, str(limit), executable(), *cli.args]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as cwd:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                                   cwd=cwd, env=env, start_new_session=True)
        status, rss, hung = _wait(process, timeout)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    seconds = time.perf_counter() - started
    command = "mnist-edge " + " ".join(cli.args)
    if hung:
        return Result(cli.case, HANG, command, f"no exit in {timeout:g} s", stderr[-2000:], seconds), stderr, rss
    outcome, why = judge(status, stderr)
    return Result(cli.case, outcome, command, why, stderr[-4000:], seconds), stderr, rss


def _wait(process: subprocess.Popen, timeout: float) -> tuple[int, int, bool]:
    """(exit code, negative for a signal; peak RSS; whether it was killed for the timeout)."""
    deadline = time.perf_counter() + timeout
    hung = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline and not hung:
            os.killpg(process.pid, signal.SIGKILL)
            hung = True
        time.sleep(0.01)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return process.returncode, usage.ru_maxrss * 1024, hung


class CliBattery:
    """Draws CLI cases from the same case maker (other indices than the in-process ones) and runs them."""

    def __init__(self, maker: CaseMaker, seeds: Path, limit: int, timeout: float, jobs: int):
        self.maker, self.seeds, self.limit, self.timeout, self.jobs = maker, seeds, limit, timeout, jobs
        self.peak_rss = 0
        self._scratch = Path(tempfile.mkdtemp(prefix="mnist-edge-fuzz-cli-"))
        self.env = {**os.environ, "COLUMNS": "160"}

    def cases(self, shares: dict[str, int], offset: int) -> Iterator[CliCase]:
        from scripts.fuzzing.cases import KINDS_BY_NAME

        order = [(name, index) for name, count in shares.items() for index in range(count)]
        random.Random(self.maker.seed + 1).shuffle(order)
        for name, index in order:
            case = self.maker.case(KINDS_BY_NAME[name], offset + index)
            folder = materialize(case, self.seeds, self._scratch / f"{name}-{case.index}")
            rng = random.Random(f"cli:{self.maker.seed}:{name}:{index}")
            yield CliCase(case, command_for(case, folder, self.seeds, rng))

    def run(self, cli_cases: Iterator[CliCase]) -> Iterator[Result]:
        with ThreadPoolExecutor(self.jobs) as pool:
            for result, _, rss in pool.map(lambda c: run_one(c, self.limit, self.timeout, self.env), cli_cases):
                self.peak_rss = max(self.peak_rss, rss)
                yield result

    def close(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)
