"""The one runner of `sweep` and `search`: Optuna trials, each the pipeline's chain in a run folder.

`sweep` enqueues its runs as trials of an in-memory study; `search` lets a sampler propose
them in a stored study that several workers share. Either way a trial that fails is recorded
as failed and the study goes on, and a Ctrl-C stops it with the trial's work saved.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from mnist_edge import manifest as manifest_io
from mnist_edge import pipeline
from mnist_edge.cpushare import CpuShare
from mnist_edge.errors import ConfigError
from mnist_edge.fileio import read_json

RUN_ATTR = "run"
MESSAGE_ATTR = "message"
INTERRUPTED_ATTR = "interrupted"

Callback = Callable[[optuna.Study, FrozenTrial], None]


class TrialFailed(Exception):
    """A trial's chain failed: Optuna records the trial as failed and the study goes on."""


def quiet_optuna() -> None:
    # The library never prints: trials are rendered by the CLI, and failures are in the results.
    optuna.logging.set_verbosity(optuna.logging.ERROR)


@contextmanager
def _stable_enough() -> Iterator[None]:
    """Optuna marks its heartbeat helpers experimental; the warning tells our users nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def run_folder(trial: optuna.Trial, default: str) -> str:
    """The trial's run folder name; a retried trial inherits its original's, so finished steps are kept."""
    name = trial.user_attrs.get(RUN_ATTR)
    if not isinstance(name, str):
        name = default
        trial.set_user_attr(RUN_ATTR, name)
    return name


def run_chain(options: pipeline.PipelineOptions, hooks: pipeline.Hooks, cpu: CpuShare | None) -> None:
    """The pipeline, with every computing step holding the machine's CPU lock shared and the
    benchmark holding it exclusive (cpushare.py says why); the caller releases it."""
    chained = dict(hooks)
    outer = hooks.get("step_start")

    def step_start(name: str, index: int, total: int) -> None:
        if cpu is not None:
            cpu.exclusive() if name == "bench" else cpu.shared()
        if outer is not None:
            outer(name, index, total)

    chained["step_start"] = step_start
    pipeline.run_pipeline(options, chained)


def _replaced(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the trials a retry has replaced (Optuna keeps them in the retry's history)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def counted(trials: list[FrozenTrial]) -> int:
    """Trials that count towards the target: all but those a retry replaced."""
    replaced = _replaced(trials)
    return sum(1 for t in trials if t.number not in replaced)


def optimize(study: optuna.Study, objective: Callable[[optuna.Trial], Any], target: int,
             callbacks: Iterable[Callback] = (), poll_seconds: float = 2.0) -> None:
    """Run trials until the study holds `target` of them and none is waiting.

    With a heartbeat, a worker that has nothing left to start waits for the other workers'
    running trials: if one of them dies, its retry is run here instead of being left behind.
    """
    waits_for_others = is_heartbeat_enabled(study._storage)
    while True:
        with _stable_enough():
            fail_stale_trials(study)  # queues a retry of every trial whose worker stopped beating
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if counted(trials) < target or waiting:
            study.optimize(objective, n_trials=1, catch=(TrialFailed,), callbacks=list(callbacks))
        elif waits_for_others and any(t.state == TrialState.RUNNING for t in trials):
            time.sleep(poll_seconds)
        else:
            return


def requeue_interrupted(study: optuna.Study) -> int:
    """Queue again every trial a Ctrl-C stopped (on --resume); returns how many."""
    trials = study.get_trials(deepcopy=False)
    replaced = _replaced(trials)
    with _stable_enough():
        retry = RetryHeartbeatStaleTrialCallback()
    stopped = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get(INTERRUPTED_ATTR)
               and t.number not in replaced]
    for trial in stopped:
        retry(study, trial)  # a WAITING copy with the same parameters and run folder
    return len(stopped)


def chain_figures(run_dir: Path) -> dict[str, Any]:
    """The deployed int8 model's figures from a finished chain's manifest, bench and metrics files."""
    manifest = manifest_io.load(run_dir / "exported" / "int8")
    bench = read_json(run_dir / "bench" / "bench.json", ConfigError)
    metrics = read_json(run_dir / "checkpoint" / "metrics.json", ConfigError)
    try:
        int8_bench = next(m for m in bench["models"] if m["path"].endswith(str(Path("int8") / "model.onnx")))
        figures = {"params": manifest["source"]["params"], "int8_bytes": manifest["files"]["bytes"],
                   "latency_us": int8_bench["latency"]["p50_us"],
                   "train_seconds": round(sum(h["seconds"] for h in metrics["epochs"]), 1)}
    # Files edited by hand or written by another version: a key missing, a list where an object was.
    except (KeyError, IndexError, TypeError, AttributeError, StopIteration) as exc:
        raise ConfigError(f"manifest, bench or metrics file lacks an expected field ({type(exc).__name__}: "
                          f"{exc})", run_dir) from exc
    # Tables format these as numbers: a hand-edited file must fail here, for this run only.
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in figures.values()):
        raise ConfigError("manifest or bench figures are not numbers", run_dir)
    return figures
