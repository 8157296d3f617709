"""The library entry points a fuzz case drives, in-process: the readers and validators behind
`run`, `eval`, `bench`, `parity`, `export`, `quantize`, `train --resume`, `report`, `sweep` and
`search`.

Each target takes the case folder (a damaged copy of a seed folder) and the worker's context.
It may succeed or raise a MnistEdgeError; anything else is what the battery looks for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from mnist_edge import checkpoint, data, inputs, manifest, modelfile, parity, pipeline, report, sweep
from mnist_edge.benchmark import verdicts
from mnist_edge.config import preset
from mnist_edge.evaluate import evaluate_any
from mnist_edge.quantize import load_model
from mnist_edge.runtime import Predictor

# The recipe of the seed run folder's pipeline.json (seeds.write_run_folder).
RUN_RECIPE = preset("fast", arch="tiny", epochs=1)
# Bounds the reading of a damaged IDX file the way `run` does (inputs.load_idx).
IDX_MAX_BYTES = 16 + inputs.MAX_ARRAY_IMAGES * 28 * 28


@dataclass
class Context:
    """What a worker loads once: the seeds folder, a model to predict with, digits to feed."""

    seeds: Path
    predictor: Predictor
    digits: np.ndarray


def make_context(seeds: Path) -> Context:
    predictor = Predictor.load(seeds / "model-int8", threads=1)
    digits = inputs.load_idx(seeds / "images" / "digits.idx")
    return Context(seeds, predictor, digits)


Target = Callable[[Path, str, Context], Any]


# --- run: images, arrays, IDX ----------------------------------------------------------------


def run_input(folder: Path, file: str, ctx: Context) -> None:
    """`run`'s reading and preprocessing of one input, then a prediction on what it gave."""
    _, images = inputs.load_file(folder / file)
    ctx.predictor.predict(images)


def run_inputs(folder: Path, file: str, ctx: Context) -> None:
    """`run` given the folder: expansion, per-input errors collected (never raised)."""
    loaded = inputs.load_inputs([folder])
    if len(loaded):
        ctx.predictor.predict(loaded.images)


def read_idx(folder: Path, file: str, ctx: Context) -> None:
    data.read_idx(folder / file, max_bytes=IDX_MAX_BYTES)


# --- eval: an MNIST folder -------------------------------------------------------------------


def load_test_split(folder: Path, file: str, ctx: Context) -> None:
    data.load_split("test", folder, download=False)


def eval_on_folder(folder: Path, file: str, ctx: Context) -> None:
    """`eval` of an ONNX model on the (damaged) MNIST folder: no files written."""
    evaluate_any(ctx.seeds / "model-int8", data_dir=folder, download=False)


# --- ONNX models and manifests ----------------------------------------------------------------


def load_predictor(folder: Path, file: str, ctx: Context) -> None:
    """`run` / `eval` / `bench` loading the model (folder: through its manifest), then predicting."""
    target = folder if (folder / manifest.FILENAME).exists() else folder / file
    Predictor.load(target, threads=1).predict(ctx.digits)


def model_facts(folder: Path, file: str, ctx: Context) -> None:
    """What `bench` and `parity` read about a model without onnxruntime."""
    model_path, found = modelfile.locate_model(folder)
    modelfile.is_quantized(model_path, found)
    modelfile.model_bytes(model_path)


def quantize_reader(folder: Path, file: str, ctx: Context) -> None:
    """`quantize` reads its fp32 model with onnx and the checker."""
    load_model(folder / "model.onnx")


def read_manifest(folder: Path, file: str, ctx: Context) -> None:
    manifest.load(folder)


def parity_models(folder: Path, file: str, ctx: Context) -> None:
    """`parity` resolving which model is fp32 and which int8 (from manifests or operators)."""
    parity.resolve_models([folder])


# --- checkpoints: export, parity, eval, train --resume ----------------------------------------


def checkpoint_inference(folder: Path, file: str, ctx: Context) -> None:
    checkpoint.checkpoint_logits(folder, ctx.digits)


def checkpoint_resume(folder: Path, file: str, ctx: Context) -> None:
    """What `train --resume` reads, up to the first training step (no data is loaded)."""
    from mnist_edge.models import build_recipe
    from mnist_edge.train import Trainer, make_optimizer, resolve_resume_recipe

    config = checkpoint.load_config(folder, for_resume=True)
    recipe = resolve_resume_recipe(config, {})
    model = build_recipe(recipe)
    trainer = SimpleNamespace(model=model, optimizer=make_optimizer(model, recipe), run_dir=folder)
    Trainer.restore(trainer, config)  # type: ignore[arg-type]


# --- sweep, pipeline, report ------------------------------------------------------------------


def sweep_config(folder: Path, file: str, ctx: Context) -> None:
    sweep.load_config(folder / file)


def search_config(folder: Path, file: str, ctx: Context) -> None:
    """`search` reading its config, then the recipe of a trial drawn at every range's ends."""
    from optuna.distributions import CategoricalDistribution

    from mnist_edge.search.space import load_search_config, recipe_for

    config = load_search_config(folder / file)
    config.describe()
    for end in (0, -1):
        values = {name: dist.choices[end] if isinstance(dist, CategoricalDistribution)
                  else (dist.low, dist.high)[end] for name, dist in config.space.items()}
        recipe_for(config, values)


def pipeline_resume(folder: Path, file: str, ctx: Context) -> None:
    """`pipeline --resume` reading pipeline.json (its recipe is the seed run's)."""
    options = pipeline.PipelineOptions(recipe=RUN_RECIPE, out=folder, resume=True)
    pipeline._load_or_new_state(options, pipeline.Paths(folder))
    sweep._recipe_changed(folder, RUN_RECIPE)


def build_report(folder: Path, file: str, ctx: Context) -> None:
    report.build_report(folder, out=folder / "fuzz-report.html")
    report.missing_parts(folder)


def sweep_collect(folder: Path, file: str, ctx: Context) -> None:
    """A sweep reading one finished run's parity, manifest, bench and metrics files."""
    sweep.collect(folder, sweep.RunSpec("tiny", RUN_RECIPE))


def bench_previous(folder: Path, file: str, ctx: Context) -> None:
    """`bench --compare` checking an earlier bench.json before measuring."""
    verdicts.load_previous(folder / "bench" / "bench.json")


TARGETS: dict[str, Target] = {
    "run_input": run_input, "run_inputs": run_inputs, "read_idx": read_idx,
    "load_test_split": load_test_split, "eval_on_folder": eval_on_folder,
    "load_predictor": load_predictor, "model_facts": model_facts, "quantize_reader": quantize_reader,
    "read_manifest": read_manifest, "parity_models": parity_models,
    "checkpoint_inference": checkpoint_inference, "checkpoint_resume": checkpoint_resume,
    "sweep_config": sweep_config, "search_config": search_config, "pipeline_resume": pipeline_resume,
    "build_report": build_report,
    "sweep_collect": sweep_collect, "bench_previous": bench_previous,
}
