#!/usr/bin/env python3
"""Fault injection: SIGKILL `train`, `export`, `quantize`, `pipeline`, `sweep` and `search` workers at
random moments, then check what a killed run leaves behind and that running again finishes it exactly.

    python scripts/kill_test.py --data-dir ../shared/data            # 100 kills, about 15 minutes
    python scripts/kill_test.py --data-dir ../shared/data --kills 10 --commands train,export
    python scripts/kill_test.py --data-dir ../shared/data --kills 10 --commands search

For each command, an uninterrupted reference run first; then rounds of: start the command in a
fresh folder, kill it (half of the kills at a random moment of its run, half the moment a
temporary file of an atomic write appears, so the write phases are hit on purpose), check the
folder, start it again (`--resume` where the command has one), until a start finishes. After
every kill:
  - every file that existed before the round (the inputs, a bystander file) has its sha256;
  - every file visible under its final name is whole: JSON parses, safetensors and ONNX load,
    PNGs decode, checkpoints and exported folders match the hashes their config/manifest name;
and at the end of a round:
  - the restart that finished left no temporary file behind (export and quantize clean the
    staging folders a killed run left beside --out; the locked run folders clean theirs);
  - its result (weights, fp32 and int8 models) is bitwise the reference's.
`search` runs as two workers sharing one SQLite study (heartbeat 1 s); a killed worker is
replaced by a new one at once, at most two kills a round (a trial is retried at most twice), and
the round ends when every worker has exited. Its trials are drawn by samplers seeded per
process, so there is no bitwise reference: the round is checked on the study instead. Every
trial a kill stopped is failed and retried exactly once in its own run folder, every trial that
counts is complete, no run folder is used by two trials, and the study holds its target (at
most one trial more per other worker).
Printed: kills / damaged files / restarts that worked, per command and in all (goal 100 / 0 / 100 %).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mnist_edge.runlock import is_bookkeeping  # noqa: E402

COMMANDS = ("train", "export", "quantize", "pipeline", "sweep", "search")
# How the 100 kills of a full run are shared out: training is where most writes happen.
DEFAULT_SHARE = {"train": 25, "export": 15, "quantize": 15, "pipeline": 15, "sweep": 15, "search": 15}
TRAIN_SMALL = ["--preset", "fast", "--arch", "tiny", "--epochs", "2", "--limit", "1024", "--val-size", "256",
               "--batch-size", "128"]
TRAIN_FULL = ["--preset", "fast", "--arch", "tiny", "--epochs", "3", "--limit", "2048", "--val-size", "512",
              "--batch-size", "128"]
SWEEP_TOML = """[sweep]
name = "kill-test"
preset = "fast"
bench_seconds = 0.05
device = "cpu"

[[run]]
name = "a"
arch = "tiny"
epochs = 1
train_limit = 2048
val_size = 256

[[run]]
name = "b"
arch = "tiny"
epochs = 1
train_limit = 2048
val_size = 256
lr = 0.005
"""
SEARCH_TOML = """[search]
name = "kill-test"
trials = 3
population = 2
bench_seconds = 0.05
device = "cpu"

[search.space]
arch = "tiny"
epochs = 1
train_limit = 2048
lr = [0.005, 0.01]
"""
SEARCH_WORKERS = 2
SQLITE_SIDE = ("-journal", "-wal", "-shm")
# A trial whose worker dies is retried at most twice (mnist_edge.search.storage.MAX_RETRIES): at most
# two kills a round, so no trial can run out of retries and stay failed by design.
SEARCH_KILLS_PER_ROUND = 2


@dataclass
class Outcome:
    command: str
    kills: int = 0
    rounds: int = 0
    restarts: int = 0
    restarts_failed: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    rounds_equal: int = 0
    leftovers: list[str] = field(default_factory=list)
    retried: int = 0  # search: trials a kill stopped that another worker ran again

    @property
    def resumed_equal(self) -> bool:
        return self.rounds_equal == self.rounds and not self.restarts_failed and not self.leftovers


# --- the commands under test ----------------------------------------------------------------------

class Job:
    """One command: how to start it in a folder, what its result is, which files it writes."""

    def __init__(self, command: str, work: Path, data_dir: Path, small: bool):
        self.command, self.work, self.data_dir, self.small = command, work, data_dir, small
        self.data_args = ["--data-dir", str(data_dir), "--no-download"]

    def argv(self, out: Path, again: bool) -> list[str]:
        c = self.command
        if c == "train":
            resume = ["--resume"] if again and (out / "config.json").is_file() else []
            return ["train", *(TRAIN_SMALL if self.small else TRAIN_FULL), "--device", "cpu", *resume,
                    "--out", str(out), *self.data_args]
        if c == "export":
            return ["export", str(self.inputs() / "run"), "--out", str(out / "m"), "--no-parity", *self.data_args]
        if c == "quantize":
            return ["quantize", str(self.inputs() / "m-fp32"), "--out", str(out / "q"), *self.data_args]
        if c == "pipeline":
            return ["pipeline", "--preset", "fast", "--arch", "tiny", "--epochs", "1", "--device", "cpu",
                    "--bench-seconds", "0.05", *(["--resume"] if again else []), "--out", str(out), *self.data_args]
        if c == "search":  # a worker joins the study whether or not it exists yet
            return ["search", str(self.inputs() / "search.toml"), "--worker", "--heartbeat", "1", "--out", str(out),
                    "--cpu-lock", str(out.parent / f"{out.name}.cpu.lock"), *self.data_args]
        return ["sweep", str(self.inputs() / "sweep.toml"), *(["--resume"] if again else []), "--out", str(out),
                *self.data_args]

    def inputs(self) -> Path:
        """Shared inputs (a trained run, its fp32 export, the sweep file), made once."""
        folder = self.work / "inputs"
        if not (folder / "m-fp32" / "manifest.json").is_file():
            run_cli(["train", *TRAIN_SMALL, "--device", "cpu", "--out", str(folder / "run"), "--force",
                     *self.data_args])
            run_cli(["export", str(folder / "run"), "--out", str(folder / "m"), "--no-int8", "--no-parity",
                     *self.data_args])
            (folder / "sweep.toml").write_text(SWEEP_TOML)
            (folder / "search.toml").write_text(SEARCH_TOML)
        return folder

    def result(self, out: Path) -> dict[str, str]:
        """The bytes that must not depend on being killed: weights and models (by sha256)."""
        patterns = {"train": ["model.safetensors", "state.safetensors"], "export": ["m-*/model.onnx"],
                    "quantize": ["q/model.onnx"], "pipeline": ["checkpoint/*.safetensors", "exported/*/model.onnx"],
                    "sweep": ["*/checkpoint/model.safetensors", "*/exported/*/model.onnx"],
                    "search": []}[self.command]
        return {str(p.relative_to(out)): sha256(p) for pattern in patterns for p in sorted(out.glob(pattern))}


def run_cli(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "mnist_edge", *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"setup command failed: mnist-edge {' '.join(argv)}\n{done.stderr}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- one round: kills until a start finishes ------------------------------------------------------

def kill_and_resume(command: str, work: Path, data_dir: Path, kills: int, seed: int, small: bool = False) -> Outcome:
    """Kill COMMAND `kills` times over as many rounds as it takes; the Outcome says what broke."""
    rng = random.Random(seed)
    job = Job(command, Path(work), Path(data_dir), small)
    reference_dir = job.work / f"{command}-reference"
    started = time.perf_counter()
    _start(job, reference_dir, again=False).wait()
    duration = time.perf_counter() - started
    reference = job.result(reference_dir)
    outcome = Outcome(command)
    play = _search_round if command == "search" else _round
    while outcome.kills < kills:
        play(job, job.work / f"{command}-round{outcome.rounds}", reference, duration, kills, rng, outcome)
    return outcome


def _round(job: Job, out: Path, reference: dict[str, str], duration: float, kills: int, rng: random.Random,
           outcome: Outcome) -> None:
    outcome.rounds += 1
    bystander = job.work / "bystander.txt"  # a user's file beside the outputs
    bystander.write_text("a file nobody asked mnist-edge to touch\n")
    before = _snapshot(job.work, exclude=out)
    again = False
    while True:
        process = _start(job, out, again)
        killed = outcome.kills < kills and _kill_at_random(process, out, duration, rng)
        code = process.wait()
        if again:
            outcome.restarts += 1
        if killed:
            outcome.kills += 1
            outcome.damaged += _changed(before, job.work, exclude=out) + whole_file_problems(out)
            again = True
            continue
        if code != 0:
            outcome.restarts_failed.append(f"{' '.join(job.argv(out, again))}: exit {code}: "
                                           f"{process.stderr.read().strip()[-300:]}")
            return
        break
    outcome.leftovers += _temporaries(out)
    outcome.rounds_equal += job.result(out) == reference


def _temporaries(out: Path) -> list[str]:
    return [str(p) for p in out.rglob("*") if is_bookkeeping(p.name) and p.name != ".mnist-edge.lock"]


def _search_round(job: Job, out: Path, reference: dict[str, str], duration: float, kills: int,
                  rng: random.Random, outcome: Outcome) -> None:
    """Two workers on one study; each killed worker is replaced at once by a new one."""
    outcome.rounds += 1
    bystander = job.work / "bystander.txt"
    bystander.write_text("a file nobody asked mnist-edge to touch\n")
    before = _snapshot(job.work, exclude=out)
    workers = [_start(job, out, again=False) for _ in range(SEARCH_WORKERS)]
    finished: list[subprocess.Popen] = []
    killed_here = 0
    while workers:
        if outcome.kills < kills and killed_here < SEARCH_KILLS_PER_ROUND:
            victim = rng.choice(workers)
            if _kill_at_random(victim, out, duration, rng):
                outcome.kills += 1
                killed_here += 1
                outcome.damaged += _changed(before, job.work, exclude=out) + whole_file_problems(out)
                outcome.restarts += 1
                workers[workers.index(victim)] = _start(job, out, again=True)
                continue
        else:
            workers[0].wait()
        finished += [w for w in workers if w.poll() is not None]
        workers = [w for w in workers if w.poll() is None]
    for worker in finished:
        if worker.returncode != 0:
            outcome.restarts_failed.append(f"{' '.join(job.argv(out, True))}: exit {worker.returncode}: "
                                           f"{worker.stderr.read().strip()[-300:]}")
    outcome.leftovers += _temporaries(out)
    problems, retried = study_problems(out, "kill-test", target=3)
    outcome.damaged += problems
    outcome.rounds_equal += not problems
    outcome.retried += retried


def study_problems(out: Path, name: str, target: int) -> tuple[list[str], int]:
    """What breaks the search's promise (a trial lost, run twice, retried elsewhere, a wrong count),
    and how many trials were retried."""
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")
    trials = study.get_trials(deepcopy=False)
    replaced = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    counted = [t for t in trials if t.number not in replaced]
    problems = []
    if not target <= len(counted) <= target + SEARCH_WORKERS - 1:
        problems.append(f"{out}: the study holds {len(counted)} trials, target {target}")
    problems += [f"{out}: trial {t.number} lost ({t.state.name})" for t in counted if t.state.name != "COMPLETE"]
    by_number = {t.number: t for t in trials}
    for number in sorted(replaced):
        original = by_number[number]
        if original.state.name != "FAIL":
            problems.append(f"{out}: trial {number} was retried but ended {original.state.name}: run twice")
        retries = [t for t in trials if t.system_attrs.get("retry_history", [None])[-1] == number]
        if len(retries) != 1 or retries[0].user_attrs.get("run") != original.user_attrs.get("run"):
            problems.append(f"{out}: trial {number} has {len(retries)} retries, not one in its own folder")
    runs = [t.user_attrs.get("run") for t in counted]
    if len(set(runs)) != len(runs):
        problems.append(f"{out}: two trials share a run folder: {sorted(runs)}")
    return problems, len(replaced)


def _start(job: Job, out: Path, again: bool) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mnist_edge", *job.argv(out, again)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_at_random(process: subprocess.Popen, out: Path, duration: float, rng: random.Random) -> bool:
    """SIGKILL at a random moment, or (half the time) as soon as an atomic write is under way.
    False when the process finished first."""
    on_write = rng.random() < 0.5
    deadline = time.perf_counter() + rng.uniform(0.2, duration * (1.5 if on_write else 1.0))
    while process.poll() is None:
        if time.perf_counter() >= deadline or (on_write and _writing(out)):
            process.send_signal(signal.SIGKILL)
            process.wait()
            return process.returncode == -signal.SIGKILL
        time.sleep(0.002)
    return False


def _writing(out: Path) -> bool:
    try:
        return any(p.name.endswith((".tmp", ".pending")) for p in out.rglob(".*"))
    except OSError:
        return False


# --- the checks ------------------------------------------------------------------------------------

def _snapshot(root: Path, exclude: Path) -> dict[str, str]:
    return {str(p): sha256(p) for p in root.rglob("*")
            if p.is_file() and exclude not in p.parents and not is_bookkeeping(p.name) and "reference" not in str(p)
            and "round" not in p.relative_to(root).parts[0]}


def _changed(before: dict[str, str], root: Path, exclude: Path) -> list[str]:
    now = _snapshot(root, exclude)
    return [f"{path}: changed or removed" for path, digest in before.items() if now.get(path) != digest]


def whole_file_problems(folder: Path) -> list[str]:
    """Files visible under their final names that are not whole, and folders whose parts disagree."""
    problems = []
    for path in sorted(folder.rglob("*")):
        # SQLite's journals (a search's study.db) are its own crash recovery, rolled back on next open.
        if path.is_file() and not is_bookkeeping(path.name) and not path.name.endswith((".pending", *SQLITE_SIDE)):
            reason = _not_whole(path)
            if reason:
                problems.append(f"{path}: {reason}")
    return problems + _inconsistent_folders(folder)


def _not_whole(path: Path) -> str | None:
    try:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            load_file(str(path))
        elif path.suffix == ".onnx":
            import onnx

            onnx.checker.check_model(onnx.load(str(path)))
        elif path.suffix == ".db":
            import sqlite3

            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)) as db:
                (verdict,) = db.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                return f"SQLite quick_check: {verdict}"
        elif path.suffix == ".png":
            from PIL import Image

            with Image.open(path) as image:
                image.load()
        elif path.stat().st_size == 0:
            return "empty"
    except Exception as exc:  # noqa: BLE001 - any failure to read the file back is the finding
        return f"{type(exc).__name__}: {str(exc)[:120]}"
    return None


def _inconsistent_folders(folder: Path) -> list[str]:
    """Exported folders whose manifest names another model, checkpoints whose config names other
    tensors (unless a committed save is pending, which the next train finishes)."""
    problems = []
    for manifest in folder.rglob("manifest.json"):
        data = json.loads(manifest.read_text())
        model = manifest.parent / data["files"]["model"]
        if "sha256" in data["files"] and (not model.is_file() or sha256(model) != data["files"]["sha256"]):
            problems.append(f"{manifest}: names a model other than the one beside it")
    for config in folder.rglob("config.json"):
        files = json.loads(config.read_text()).get("files", {})
        for name, digest in files.items():
            candidates = (config.parent / name, config.parent / f".{name}.pending")
            if not any(c.is_file() and sha256(c) == digest for c in candidates):
                problems.append(f"{config}: names a {name} that is neither in place nor pending")
    return problems


# --- the table --------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MNIST_EDGE_DATA", "../shared/data")))
    parser.add_argument("--kills", type=int, default=100, help="kills in all, shared out over the commands")
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the outcomes here")
    args = parser.parse_args()
    commands = [c for c in args.commands.split(",") if c]
    share = {c: max(1, round(args.kills * DEFAULT_SHARE[c] / sum(DEFAULT_SHARE[k] for k in commands)))
             for c in commands}
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="mnist-edge-kill-") as work:
        for index, command in enumerate(commands):
            started = time.perf_counter()
            outcomes.append(kill_and_resume(command, Path(work), args.data_dir, share[command], args.seed + index))
            print(_row(outcomes[-1], time.perf_counter() - started), flush=True)
    _print_total(outcomes)
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=2) + "\n")


def _row(o: Outcome, seconds: float) -> str:
    worked = o.restarts - len(o.restarts_failed)
    equal = (f"studies whole {o.rounds_equal}/{o.rounds} ({o.retried} killed trials retried)" if o.command == "search"
             else f"identical to the uninterrupted run {o.rounds_equal}/{o.rounds}")
    return (f"{o.command:9} kills {o.kills:4}  damaged {len(o.damaged):3}  restarts {o.restarts:4} "
            f"(worked {worked})  rounds {o.rounds:3}  {equal}  "
            f"leftover temporaries {len(o.leftovers)}  {seconds:.0f} s"
            + "".join(f"\n    {line}" for line in (o.damaged + o.restarts_failed + o.leftovers)[:10]))


def _print_total(outcomes: list[Outcome]) -> None:
    kills = sum(o.kills for o in outcomes)
    damaged = sum(len(o.damaged) for o in outcomes)
    restarts = sum(o.restarts for o in outcomes)
    worked = restarts - sum(len(o.restarts_failed) for o in outcomes)
    rounds, equal = sum(o.rounds for o in outcomes), sum(o.rounds_equal for o in outcomes)
    share = 100 * worked / restarts if restarts else 100.0
    verdict = "met" if kills >= 100 and damaged == 0 and worked == restarts and equal == rounds else "NOT met"
    print(f"total     kills {kills} / damaged files {damaged} / restarts that worked {share:.0f} % "
          f"({worked}/{restarts}); rounds identical to the uninterrupted run {equal}/{rounds}  "
          f"[goal 100 / 0 / 100 %: {verdict}]")


if __name__ == "__main__":
    main()
