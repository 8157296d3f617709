"""One search trial: sample a recipe, run the chain in its folder, measure the objectives."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from mnist_edge import data, pipeline
from mnist_edge.cpushare import CpuShare
from mnist_edge.errors import MnistEdgeError, TrainingInterrupted
from mnist_edge.evaluate import onnx_probabilities
from mnist_edge.search import engine
from mnist_edge.search.space import SearchConfig, recipe_for

# The test images stay out: each trial is judged on validation images, the Pareto trials get
# their test accuracy (and parity) once, at the end (results.measure_test).
SEARCH_STEPS = ("train", "export", "quantize", "bench")


@dataclass(frozen=True)
class TrialSettings:
    out: Path
    cpu_lock: Path
    data_dir: Any = None
    download: bool = True
    hooks: dict[str, Any] | None = None


def suggest(trial: optuna.Trial, config: SearchConfig) -> dict[str, Any]:
    """Draw the shared keys, then the keys scoped to the drawn architecture."""
    shared = {k: d for k, d in config.space.items() if "." not in k}
    values = {name: _draw(trial, name, dist) for name, dist in shared.items()}
    arch = values.get("arch", config.fixed.get("arch"))
    scoped = {k: d for k, d in config.space.items() if arch is not None and k.startswith(f"{arch}.")}
    values.update({name: _draw(trial, name, dist) for name, dist in scoped.items()})
    return values


def _draw(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def objective(config: SearchConfig, settings: TrialSettings) -> Any:
    hooks = settings.hooks or {}

    def run(trial: optuna.Trial) -> tuple[float, ...]:
        trial.set_user_attr(engine.INTERRUPTED_ATTR, False)  # a requeued copy starts clean
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        recipe = recipe_for(config, suggest(trial, config))
        name = engine.run_folder(trial, f"trial-{trial.number:04d}")
        trial.set_user_attr("recipe", recipe.to_dict())
        if "trial_start" in hooks:
            hooks["trial_start"](trial.number, name, recipe)
        figures = _run_measured(trial, config, settings, recipe, settings.out / name)
        for key, value in figures.items():
            trial.set_user_attr(key, value)
        return tuple(figures[key] for key in config_keys(config))

    return run


def config_keys(config: SearchConfig) -> list[str]:
    return [{"accuracy": "val_accuracy", "latency": "latency_us", "size": "int8_bytes"}[o] for o in config.objectives]


def _run_measured(trial: optuna.Trial, config: SearchConfig, settings: TrialSettings, recipe: Any,
                  folder: Path) -> dict[str, Any]:
    options = pipeline.PipelineOptions(
        recipe=recipe, out=folder, device=config.device, data_dir=settings.data_dir, download=settings.download,
        resume=True, bench_seconds=config.bench_seconds, batch_sizes=(1,), threads=(1,), torch_baseline=False,
        parity_gate=False, steps=SEARCH_STEPS)
    hooks = dict(settings.hooks or {})
    hooks["train_epoch"] = _pruning(trial, config, recipe.epochs, hooks.get("train_epoch"))
    with CpuShare(settings.cpu_lock) as cpu:
        try:
            engine.run_chain(options, hooks, cpu)
            cpu.shared()
            figures = engine.chain_figures(folder)
            figures["val_accuracy"] = validation_accuracy(folder / "exported" / "int8" / "model.onnx",
                                                          recipe.val_size, recipe.split_seed, settings.data_dir,
                                                          settings.download)
        except (TrainingInterrupted, KeyboardInterrupt) as exc:
            # Not the trial's failure: --resume runs it again, in the same folder.
            trial.set_user_attr(engine.INTERRUPTED_ATTR, True)
            if isinstance(exc, TrainingInterrupted):
                raise
            raise TrainingInterrupted(f"trial {trial.number} interrupted; continue with --resume", folder) from exc
        except MnistEdgeError as exc:
            trial.set_user_attr(engine.MESSAGE_ATTR, str(exc))
            raise engine.TrialFailed(str(exc)) from exc
    return figures


def _pruning(trial: optuna.Trial, config: SearchConfig, epochs: int, shown: Any) -> Any:
    """Stop hopeless trials after an epoch.

    Optuna's pruners compare one intermediate value, so they are sound only for a study with
    the single objective accuracy; a multi-objective study prunes only by the config's floor
    (`prune_below`), applied from the middle of training on, when a one-cycle schedule has
    done most of its climbing.
    """
    single = list(config.objectives) == ["accuracy"]

    def on_epoch(result: Any) -> None:
        if shown is not None:
            shown(result)
        if result.val_acc is None:
            return
        if single:
            trial.report(result.val_acc, result.epoch)
            if trial.should_prune():
                trial.set_user_attr(engine.MESSAGE_ATTR, f"pruned by the median rule at epoch {result.epoch}")
                raise optuna.TrialPruned()
        if config.prune_below and result.epoch >= math.ceil(epochs / 2) and result.val_acc < config.prune_below:
            trial.set_user_attr(engine.MESSAGE_ATTR, f"pruned: validation accuracy {result.val_acc:.2%} at epoch "
                                f"{result.epoch} is below prune_below {config.prune_below:.2%}")
            raise optuna.TrialPruned()

    return on_epoch


def validation_accuracy(model: Path, val_size: int, split_seed: int, data_dir: Any = None,
                        download: bool = True) -> float:
    """Top-1 accuracy of an ONNX model on the validation images a recipe with this split held out."""
    images, labels = _validation_images(data_dir, download, val_size, split_seed)
    _, probabilities, _ = onnx_probabilities(model, images)
    return float(np.mean(probabilities.argmax(axis=1) == labels))


@lru_cache(maxsize=2)
def _validation_images(data_dir: Any, download: bool, val_size: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    _, validation = data.train_val_split(data.load_split("train", data_dir, download), val_size, split_seed)
    return validation.images, validation.labels
