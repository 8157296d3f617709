"""Experiments: train, export and quantize a list or grid of recipes, then measure each deployed
int8 model (test accuracy, parameters, file size, batch-1 latency) and draw the Pareto front.

Config (TOML):

    [sweep]
    preset = "fast"          # base recipe of every run
    bench_seconds = 1.0
    device = "auto"          # training device (config.DEVICES)

    [[run]]                  # explicit runs: a name plus recipe overrides
    name = "notebook-mlp"
    preset = "seed"

    [grid]                   # and/or a grid: every combination becomes a run
    arch = ["tiny", "cnn"]
    lr = [0.01, 0.05]
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from mnist_edge import pipeline
from mnist_edge.config import DEVICES, PIPELINE_BENCH_SECONDS, PRESETS, Recipe, preset
from mnist_edge.errors import ConfigError, MnistEdgeError, OutputError, TrainingInterrupted
from mnist_edge.fileio import atomic_write_json, atomic_write_text, ensure_dir, read_json
from mnist_edge.runlock import is_bookkeeping, run_folder_lock
from mnist_edge.tomlconfig import Source, Table, read_toml
from mnist_edge.units import format_bytes, format_us

_RECIPE_KEYS = {f.name for f in fields(Recipe)}
_SWEEP_KEYS = {"name", "preset", "bench_seconds", "device"}
_RUN_KEYS = _RECIPE_KEYS | {"name", "preset"}
RESULTS = "results.json"
MARKER = "sweep.json"
# A run name becomes a folder under --out: no separators, no '..', nothing the sweep writes itself.
_NAME = re.compile(r"[A-Za-z0-9._-]+")
_RESERVED = {".", "..", MARKER, RESULTS, "results.csv", "results.md", "pareto.png"}


@dataclass(frozen=True)
class RunSpec:
    name: str
    recipe: Recipe


@dataclass(frozen=True)
class SweepConfig:
    path: Path
    name: str
    bench_seconds: float
    device: str
    runs: tuple[RunSpec, ...]


@dataclass
class RunResult:
    name: str
    arch: str
    status: str
    params: int | None = None
    int8_accuracy: float | None = None
    fp32_accuracy: float | None = None
    torch_accuracy: float | None = None
    int8_bytes: int | None = None
    latency_us: float | None = None
    train_seconds: float | None = None
    parity_passed: bool | None = None
    message: str = ""


def load_config(path: str | Path) -> SweepConfig:
    """Parse and validate a sweep config; errors name the key and its line."""
    path = Path(path)
    source, raw = read_toml(path, "sweep config")
    for key, value in raw.items():
        if key not in ("sweep", "run", "grid"):
            raise source.fail(key, "unknown table; expected [sweep], [[run]] and/or [grid]")
        tables = value if key == "run" and isinstance(value, list) else [value]
        if not all(isinstance(table, dict) for table in tables):
            raise source.fail(key, f"must be written as {'[[run]] tables' if key == 'run' else f'a [{key}] table'}")
    head = _sweep_table(source, raw.get("sweep", {}))
    base = head.get("preset", "fast")
    located = [(_explicit_run(source, base, i, entry), Table("run", i)) for i, entry in enumerate(raw.get("run", []))]
    located += [(spec, Table("grid")) for spec in _grid_runs(source, base, raw.get("grid", {}))]
    if not located:
        raise ConfigError("no runs: add [[run]] tables or a [grid]", path)
    _check_unique(source, located)
    return SweepConfig(path, str(head.get("name", path.stem)), float(head.get("bench_seconds", PIPELINE_BENCH_SECONDS)),
                       head.get("device", "auto"), tuple(spec for spec, _ in located))


def _sweep_table(source: Source, head: dict[str, Any]) -> dict[str, Any]:
    where = Table("sweep")
    for key in head:
        if key not in _SWEEP_KEYS:
            raise source.fail(key, f"unknown [sweep] key; expected one of {', '.join(sorted(_SWEEP_KEYS))}", where)
    seconds = head.get("bench_seconds", PIPELINE_BENCH_SECONDS)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise source.fail("bench_seconds", "must be a positive number", where)
    if head.get("device", "auto") not in DEVICES:
        raise source.fail("device", f"unknown device {head['device']!r}; choose one of {', '.join(DEVICES)}", where)
    _check_preset(source, head.get("preset", "fast"), where)
    return head


def _check_preset(source: Source, name: Any, where: Table) -> None:
    if not isinstance(name, str) or name not in PRESETS:
        raise source.fail("preset", f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}", where)


def _check_unique(source: Source, located: list[tuple[RunSpec, Table]]) -> None:
    # Case-insensitive: on macOS and Windows, 'A' and 'a' are the same folder.
    seen: set[str] = set()
    for spec, where in located:
        if spec.name.casefold() in seen:
            raise source.fail("name", f"run names must be unique (ignoring case): {spec.name!r} repeats an earlier "
                              "run", where)
        seen.add(spec.name.casefold())


def _check_name(source: Source, name: Any, where: Table) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in _RESERVED:
        raise source.fail("name", f"{name!r} is not a usable run name (it becomes a folder under --out): use "
                          "letters, digits, '.', '_' and '-' only, not '.', '..' or a results file name", where)
    return name


def _recipe(source: Source, base: str, overrides: dict[str, Any], where: Table) -> Recipe:
    """Check the overrides one key at a time, so that an error names the key at fault."""
    for key, value in overrides.items():
        expected = type(getattr(Recipe(), key))
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if not ok or (expected is not bool and isinstance(value, bool)):
            raise source.fail(key, f"expected {expected.__name__}, got {value!r}", where)
        try:
            preset(base, **{key: _coerce(key, value)})
        except ConfigError as exc:
            raise source.fail(key, exc.reason, where) from exc
        if key == "teacher" and value:
            _check_teacher(source, value, where)
    return preset(base, **{k: _coerce(k, v) for k, v in overrides.items()})


def _check_teacher(source: Source, path: str, where: Table) -> None:
    """A teacher that cannot teach is found before anything runs, not in every run that names it."""
    from mnist_edge.distill import check_teacher

    try:
        check_teacher(path)
    except ConfigError as exc:
        raise source.fail("teacher", str(exc), where) from exc


def _coerce(key: str, value: Any) -> Any:
    # TOML writes 1 for 1.0; a float field takes either.
    return float(value) if isinstance(getattr(Recipe(), key), float) else value


def _explicit_run(source: Source, base: str, index: int, entry: dict[str, Any]) -> RunSpec:
    where = Table("run", index)
    for key in entry:
        if key not in _RUN_KEYS:
            raise source.fail(key, f"unknown [[run]] key; recipe keys are {', '.join(sorted(_RECIPE_KEYS))}", where)
    if "preset" in entry:
        _check_preset(source, entry["preset"], where)
    overrides = {k: v for k, v in entry.items() if k not in ("name", "preset")}
    recipe = _recipe(source, entry.get("preset", base), overrides, where)
    name = _check_name(source, entry.get("name", f"run{index + 1}-{recipe.arch}"), where)
    return RunSpec(name, recipe)


def _grid_runs(source: Source, base: str, grid: dict[str, Any]) -> list[RunSpec]:
    where = Table("grid")
    for key, values in grid.items():
        if key not in _RECIPE_KEYS:
            raise source.fail(key, f"unknown [grid] key; recipe keys are {', '.join(sorted(_RECIPE_KEYS))}", where)
        if not isinstance(values, list) or not values:
            raise source.fail(key, "a [grid] key takes a non-empty list of values", where)
    keys = list(grid)
    runs = []
    for combo in itertools.product(*(grid[k] for k in keys)) if keys else []:
        overrides = dict(zip(keys, combo, strict=True))
        name = "-".join(f"{k}{v}" if k != "arch" else str(v) for k, v in overrides.items())
        recipe = _recipe(source, base, overrides, where)
        runs.append(RunSpec(_check_name(source, name, where), recipe))
    return runs


def run_sweep(config: SweepConfig, out: str | Path, *, resume: bool = False, force: bool = False,
              data_dir: Any = None, download: bool = True, hooks: dict[str, Any] | None = None) -> list[RunResult]:
    """Run every config; a failing run is recorded and the sweep goes on. Writes the results.

    An interrupted training (Ctrl-C) stops the whole sweep; `resume` continues it.
    """
    with run_folder_lock(out):  # a second sweep on this --out is refused, not interleaved
        return _run_all(config, _prepare(Path(out), config, resume, force), resume, data_dir, download, hooks or {})


def _run_all(config: SweepConfig, out: Path, resume: bool, data_dir: Any, download: bool,
             hooks: dict[str, Any]) -> list[RunResult]:
    """The runs as enqueued trials of an in-memory study, on the runner `search` uses.

    The study lives only as long as this call: `--resume` finds finished work through each
    run folder's own pipeline record, which also notices an edited recipe or bench time.
    """
    import optuna

    from mnist_edge.search import engine

    engine.quiet_optuna()
    study = optuna.create_study(directions=["maximize", "minimize"])
    names = [spec.name for spec in config.runs]
    for name in names:
        study.enqueue_trial({"run": name})
    results: list[RunResult] = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        spec = config.runs[names.index(trial.suggest_categorical("run", names))]
        result = _run_spec(config, out, spec, resume, data_dir, download, hooks, len(results))
        results.append(result)
        write_results(out, results)
        if "run_end" in hooks:
            hooks["run_end"](result)
        if result.status != "done":
            raise engine.TrialFailed(result.message)
        return result.int8_accuracy, result.latency_us

    engine.optimize(study, objective, target=len(names))
    return results


def _run_spec(config: SweepConfig, out: Path, spec: RunSpec, resume: bool, data_dir: Any, download: bool,
              hooks: dict[str, Any], index: int) -> RunResult:
    if "run_start" in hooks:
        hooks["run_start"](spec, index, len(config.runs))
    again = resume and not _recipe_changed(out / spec.name, spec.recipe)
    options = pipeline.PipelineOptions(
        recipe=spec.recipe, out=out / spec.name, device=config.device, data_dir=data_dir, download=download,
        resume=again, force=not again, bench_seconds=config.bench_seconds, batch_sizes=(1,), threads=(1,),
        torch_baseline=False, parity_gate=False, steps=SWEEP_STEPS)
    try:
        return _run_one(spec, options, hooks)
    except TrainingInterrupted as exc:
        raise TrainingInterrupted(f"run '{spec.name}' interrupted; state saved, continue with: mnist-edge "
                                  f"sweep {config.path} --resume --out {out}") from exc


def _run_one(spec: RunSpec, options: pipeline.PipelineOptions, hooks: dict[str, Any]) -> RunResult:
    try:
        pipeline.run_pipeline(options, hooks)
    except TrainingInterrupted:
        raise
    except MnistEdgeError as exc:
        return RunResult(spec.name, spec.recipe.arch, "failed", message=str(exc))
    try:
        return collect(options.out, spec)
    except MnistEdgeError as exc:
        problem = str(exc)
    except Exception as exc:  # a hand-edited or foreign result file loses this run, not the whole sweep
        problem = f"{options.out}: {type(exc).__name__}: {exc}"
    return RunResult(spec.name, spec.recipe.arch, "failed", message=f"cannot read its results: {problem}")


SWEEP_STEPS = ("train", "export", "quantize", "parity", "bench")


def _recipe_changed(run_dir: Path, recipe: Recipe) -> bool:
    """True when the run's folder holds a pipeline started with another recipe (the sweep config
    was edited since): the pipeline refuses to resume it, so `--resume` starts that run over."""
    if not (run_dir / pipeline.RECORD).is_file():
        return False
    try:
        saved = read_json(run_dir / pipeline.RECORD, OutputError)
    except OutputError:
        return True  # unreadable (edited by hand): start the run over rather than fail on it
    return not isinstance(saved, dict) or saved.get("preset_recipe") != recipe.to_dict()


def _prepare(out: Path, config: SweepConfig, resume: bool, force: bool) -> Path:
    marker = out / MARKER
    if out.exists() and not out.is_dir():
        raise OutputError("exists and is not a directory", out)
    if marker.is_file() and not (resume or force):
        raise OutputError("already holds a sweep; pass --resume to finish it or --force to start over", out)
    if out.exists() and not marker.is_file() and not force and any(
            not is_bookkeeping(p.name) for p in out.iterdir()):
        raise OutputError("holds other files (not a sweep); choose an empty or new --out, or pass --force", out)
    ensure_dir(out)
    atomic_write_json(marker, {"config": str(config.path), "name": config.name,
                               "runs": [{"name": r.name, "recipe": r.recipe.to_dict()} for r in config.runs]})
    return out


def collect(run_dir: Path, spec: RunSpec) -> RunResult:
    """Read one finished run's parity, manifest, bench and metrics files."""
    from mnist_edge.search.engine import chain_figures

    figures = chain_figures(run_dir)
    parity = read_json(run_dir / "parity" / "parity.json", ConfigError)
    try:
        scores = {m["role"]: m["accuracy"] for m in parity["models"]}
        result = RunResult(spec.name, spec.recipe.arch, "done", int8_accuracy=scores["int8"],
                           fp32_accuracy=scores["fp32"], torch_accuracy=scores["pytorch"],
                           parity_passed=parity["passed"], **figures)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ConfigError(f"parity file lacks an expected field ({type(exc).__name__}: {exc})", run_dir) from exc
    accuracies = (result.int8_accuracy, result.fp32_accuracy, result.torch_accuracy)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in accuracies):
        raise ConfigError("parity figures are not numbers", run_dir)
    return result


def write_results(out: Path, results: list[RunResult]) -> dict[str, Path]:
    rows = [asdict(r) for r in results]
    paths = {"json": atomic_write_json(out / RESULTS, rows),
             "csv": atomic_write_text(out / "results.csv", _csv(rows)),
             "markdown": atomic_write_text(out / "results.md", markdown_table(results))}
    points = [{"name": r.name, "accuracy": r.int8_accuracy, "latency_us": r.latency_us,
               "size_bytes": r.int8_bytes} for r in results if r.status == "done"]
    if points:
        from mnist_edge import plots

        paths["pareto"] = plots.pareto_front(points, out / "pareto.png")
    return paths


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [f.name for f in fields(RunResult)])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def markdown_table(results: list[RunResult]) -> str:
    from mnist_edge.plots import pareto_indices

    done = [r for r in results if r.status == "done"]
    front = {done[i].name for i in pareto_indices(
        [{"name": r.name, "accuracy": r.int8_accuracy, "latency_us": r.latency_us, "size_bytes": r.int8_bytes}
         for r in done])} if done else set()
    lines = ["| run | arch | params | int8 test acc | fp32 | PyTorch | int8 file | batch-1 p50 | train s | parity "
             "| front |", "|---|---|---:|---:|---:|---:|---:|---:|---:|:-:|:-:|"]
    for r in results:
        if r.status != "done":
            lines.append(f"| {r.name} | {r.arch} | failed: {r.message} ||||||||| |")
            continue
        lines.append(f"| {r.name} | {r.arch} | {r.params:,} | {r.int8_accuracy:.2%} | {r.fp32_accuracy:.2%} | "
                     f"{r.torch_accuracy:.2%} | {format_bytes(r.int8_bytes)} | {format_us(r.latency_us)} | "
                     f"{r.train_seconds} | {'pass' if r.parity_passed else 'FAIL'} | "
                     f"{'★' if r.name in front else ''} |")
    return "\n".join(lines) + "\n"
