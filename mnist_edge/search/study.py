"""`mnist-edge search`: a multi-objective Optuna study over recipes, run by one or many workers.

    OUT/search.json     what this folder holds (config, study name, storage without password)
    OUT/study.db        the study, unless --storage names another one
    OUT/trial-NNNN/     each trial's run folder (a pipeline run: checkpoint, exported, bench)
    OUT/results.*       every trial of the study, Pareto trials starred, pareto.png
"""

from __future__ import annotations

import os
import shutil
import socket
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from mnist_edge.cpushare import DEFAULT_LOCK
from mnist_edge.errors import ConfigError, OutputError
from mnist_edge.fileio import atomic_write_json, ensure_dir
from mnist_edge.runlock import is_bookkeeping
from mnist_edge.search import engine, results, storage
from mnist_edge.search.space import SearchConfig
from mnist_edge.search.trial import TrialSettings, objective

MARKER = "search.json"
_OWNED_FILES = (MARKER, storage.DEFAULT_DB, "results.json", "results.csv", "results.md", "pareto.png")


@dataclass(frozen=True)
class SearchOptions:
    out: Path
    trials: int | None = None  # None: the config's
    storage_url: str | None = None  # None: OUT/study.db
    worker: bool = False  # join the study whoever made it (other workers may be running)
    resume: bool = False
    force: bool = False
    heartbeat_seconds: int = 60
    cpu_lock: Path = DEFAULT_LOCK
    data_dir: Any = None
    download: bool = True
    hooks: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchResult:
    study: str
    storage: str
    trials: list[dict[str, Any]]
    paths: dict[str, Path]
    tested: list[int]


def run_search(config: SearchConfig, options: SearchOptions) -> SearchResult:
    """Check everything, then run trials until the study holds its target; write the results."""
    _check_options(options)
    out = Path(options.out)
    url = options.storage_url or storage.default_url(out)
    # The default SQLite file is made only once every check has passed: nothing written before.
    opened = storage.open_storage(url, options.heartbeat_seconds) \
        if options.storage_url or (out / storage.DEFAULT_DB).is_file() else None
    exists = _check_storage(config, options, url, opened)
    _prepare_out(config, options, out, url, opened if exists else None)
    if options.force:
        opened = None  # --force removed the default study file: open the storage afresh
    engine.quiet_optuna()
    study = storage.load_or_create(opened or storage.open_storage(url, options.heartbeat_seconds), config.name,
                                   config.directions, config.describe(), _sampler(config, options.worker),
                                   must_exist=options.resume)
    if options.resume or options.worker:
        engine.requeue_interrupted(study)
    settings = TrialSettings(out, options.cpu_lock, options.data_dir, options.download, options.hooks)
    engine.optimize(study, objective(config, settings), options.trials or config.trials,
                    callbacks=[_trial_end(out, options.hooks)], poll_seconds=min(5.0, options.heartbeat_seconds / 2))
    tested = results.measure_test(study, out, options.cpu_lock, options.data_dir, options.download)
    paths = results.write_results(study, out)
    return SearchResult(config.name, storage.shown(url), results.rows(study), paths, tested)


def _check_options(options: SearchOptions) -> None:
    if options.trials is not None and options.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {options.trials}")
    if options.heartbeat_seconds < 1:
        raise ConfigError(f"--heartbeat must be at least 1 second, got {options.heartbeat_seconds}")
    if options.force and (options.resume or options.worker):
        raise ConfigError("--force starts over: it cannot be combined with --resume or --worker")


def _check_storage(config: SearchConfig, options: SearchOptions, url: str,
                   opened: BaseStorage | None) -> bool:
    """Whether the study exists; a study of another space fails here, before any write."""
    if opened is None:
        exists = False
    elif options.force:
        exists = True  # dropped whatever space it has
    else:
        exists = storage.check_compatible(opened, config.name, config.directions, config.describe())
    if options.resume and not exists:
        raise ConfigError(f"nothing to resume: no study {config.name!r} in {storage.shown(url)}")
    if exists and not (options.resume or options.worker or options.force):
        raise OutputError(f"study {config.name!r} already exists in {storage.shown(url)}; pass --resume to "
                          "continue it, --worker to join it, or --force to start over", Path(options.out))
    return exists


def _prepare_out(config: SearchConfig, options: SearchOptions, out: Path, url: str,
                 existing: BaseStorage | None) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError("exists and is not a directory", out)
    ours = (out / MARKER).is_file()
    if out.is_dir() and not ours and not options.force and any(not is_bookkeeping(p.name) for p in out.iterdir()):
        raise OutputError("holds other files (not a search); choose an empty or new --out, or pass --force", out)
    if options.force:
        _start_over(config, out, existing)
    ensure_dir(out)
    atomic_write_json(out / MARKER, {"config": str(config.path), "study": config.name,
                                     "storage": storage.shown(url)})


def _start_over(config: SearchConfig, out: Path, existing: BaseStorage | None) -> None:
    """--force: drop the study and what earlier searches wrote in --out (never a user's other files)."""
    if existing is not None:
        try:
            optuna.delete_study(study_name=config.name, storage=existing)
        except KeyError:
            pass  # no such study: nothing to drop
    for name in _OWNED_FILES:
        (out / name).unlink(missing_ok=True)
    if out.is_dir():
        for folder in out.glob("trial-*"):
            if folder.is_dir():
                shutil.rmtree(folder)


def _sampler(config: SearchConfig, worker: bool) -> optuna.samplers.BaseSampler:
    # One process is reproducible from the config's seed. Workers sharing a study must not all
    # draw the same recipes from the same seed, so each mixes in its host and process id.
    seed = config.seed if not worker else zlib.crc32(f"{config.seed}:{socket.gethostname()}:{os.getpid()}".encode())
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    # NSGA-II's default generation of 50 is more than a whole short search: a small one evolves.
    return optuna.samplers.NSGAIISampler(population_size=config.population, seed=seed)


def _trial_end(out: Path, hooks: dict[str, Any]) -> engine.Callback:
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        results.write_results(study, out)  # a long search's tables are current after every trial
        if "trial_end" in hooks:
            hooks["trial_end"](results.row_of(trial, False, None))

    return callback
