"""Experiments: train, export and quantize a list or grid of recipes, then measure each deployed
int8 model (test accuracy, parameters, file size, batch-1 latency) and draw the Pareto front.

Config (TOML):

    [sweep]
    preset = "fast"          # base recipe of every run
    bench_seconds = 1.0

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

import tomllib

from mnist_edge.config import Recipe, preset
from mnist_edge.errors import ConfigError, MnistEdgeError
from mnist_edge.fileio import atomic_write_json, atomic_write_text, ensure_dir, read_json

_RECIPE_KEYS = {f.name for f in fields(Recipe)}
_SWEEP_KEYS = {"name", "preset", "bench_seconds", "device"}
_RUN_KEYS = _RECIPE_KEYS | {"name", "preset"}
RESULTS = "results.json"


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


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"\s*\[*\s*{re.escape(key)}\s*[\]=]", line):
            return number
    return None


def _fail(path: Path, text: str, key: str, problem: str) -> ConfigError:
    line = _line_of(text, key)
    where = f"line {line}: " if line else ""
    return ConfigError(f"{where}key '{key}': {problem}", path)


def load_config(path: str | Path) -> SweepConfig:
    """Parse and validate a sweep config; errors name the key and its line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except FileNotFoundError as exc:
        raise ConfigError("sweep config not found", path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read sweep config ({exc})", path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path) from exc
    for key in raw:
        if key not in ("sweep", "run", "grid"):
            raise _fail(path, text, key, "unknown table; expected [sweep], [[run]] and/or [grid]")
    head = raw.get("sweep", {})
    for key in head:
        if key not in _SWEEP_KEYS:
            raise _fail(path, text, key, f"unknown [sweep] key; expected one of {', '.join(sorted(_SWEEP_KEYS))}")
    base = head.get("preset", "fast")
    runs = [_explicit_run(path, text, base, i, entry) for i, entry in enumerate(raw.get("run", []))]
    runs += _grid_runs(path, text, base, raw.get("grid", {}))
    if not runs:
        raise ConfigError("no runs: add [[run]] tables or a [grid]", path)
    names = [r.name for r in runs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _fail(path, text, "name", f"run names must be unique, repeated: {', '.join(duplicates)}")
    seconds = head.get("bench_seconds", 1.0)
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        raise _fail(path, text, "bench_seconds", "must be a positive number")
    return SweepConfig(path, str(head.get("name", path.stem)), float(seconds), str(head.get("device", "auto")),
                       tuple(runs))


def _recipe(path: Path, text: str, base: str, overrides: dict[str, Any]) -> Recipe:
    for key, value in overrides.items():
        expected = type(getattr(Recipe(), key))
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if not ok or (expected is not bool and isinstance(value, bool)):
            raise _fail(path, text, key, f"expected {expected.__name__}, got {value!r}")
    try:
        return preset(base, **{k: float(v) if isinstance(getattr(Recipe(), k), float) else v
                               for k, v in overrides.items()})
    except ConfigError as exc:
        key = next(iter(overrides), "preset")
        raise _fail(path, text, key, exc.reason) from exc


def _explicit_run(path: Path, text: str, base: str, index: int, entry: dict[str, Any]) -> RunSpec:
    for key in entry:
        if key not in _RUN_KEYS:
            raise _fail(path, text, key, f"unknown [[run]] key; recipe keys are {', '.join(sorted(_RECIPE_KEYS))}")
    overrides = {k: v for k, v in entry.items() if k not in ("name", "preset")}
    recipe = _recipe(path, text, entry.get("preset", base), overrides)
    return RunSpec(str(entry.get("name", f"run{index + 1}-{recipe.arch}")), recipe)


def _grid_runs(path: Path, text: str, base: str, grid: dict[str, Any]) -> list[RunSpec]:
    for key, values in grid.items():
        if key not in _RECIPE_KEYS:
            raise _fail(path, text, key, f"unknown [grid] key; recipe keys are {', '.join(sorted(_RECIPE_KEYS))}")
        if not isinstance(values, list) or not values:
            raise _fail(path, text, key, "a [grid] key takes a non-empty list of values")
    keys = list(grid)
    runs = []
    for combo in itertools.product(*(grid[k] for k in keys)) if keys else []:
        overrides = dict(zip(keys, combo, strict=True))
        name = "-".join(f"{k}{v}" if k != "arch" else str(v) for k, v in overrides.items())
        runs.append(RunSpec(name, _recipe(path, text, base, overrides)))
    return runs


def run_sweep(config: SweepConfig, out: str | Path, *, resume: bool = False, force: bool = False,
              data_dir: Any = None, download: bool = True, hooks: dict[str, Any] | None = None) -> list[RunResult]:
    """Run every config; a failing run is recorded and the sweep goes on. Writes the results."""
    from mnist_edge.pipeline import PipelineOptions, run_pipeline

    out = _prepare(Path(out), config, resume, force)
    hooks = hooks or {}
    results = []
    for index, spec in enumerate(config.runs):
        if "run_start" in hooks:
            hooks["run_start"](spec, index, len(config.runs))
        options = PipelineOptions(recipe=spec.recipe, out=out / spec.name, device=config.device,
                                  data_dir=data_dir, download=download, resume=resume, force=not resume,
                                  bench_seconds=config.bench_seconds, batch_sizes="1", threads="1",
                                  torch_baseline=False, parity_gate=False, steps=SWEEP_STEPS)
        try:
            run_pipeline(options, hooks)
            result = collect(out / spec.name, spec)
        except MnistEdgeError as exc:
            result = RunResult(spec.name, spec.recipe.arch, "failed", message=str(exc))
        results.append(result)
        write_results(out, results)
        if "run_end" in hooks:
            hooks["run_end"](result)
    return results


SWEEP_STEPS = ("train", "export", "quantize", "parity", "bench")


def _prepare(out: Path, config: SweepConfig, resume: bool, force: bool) -> Path:
    marker = out / "sweep.json"
    if marker.is_file() and not (resume or force):
        raise ConfigError("already holds a sweep; pass --resume to finish it or --force to start over", out)
    if (out.exists() and any(out.iterdir()) and not marker.is_file() and not force):
        raise ConfigError("holds other files; choose an empty or new --out, or pass --force", out)
    ensure_dir(out)
    atomic_write_json(marker, {"config": str(config.path), "name": config.name,
                               "runs": [{"name": r.name, "recipe": r.recipe.to_dict()} for r in config.runs]})
    return out


def collect(run_dir: Path, spec: RunSpec) -> RunResult:
    """Read one finished run's parity, manifest and bench files."""
    from mnist_edge.manifest import load as load_manifest

    parity = read_json(run_dir / "parity" / "parity.json", ConfigError)
    scores = {m["role"]: m["accuracy"] for m in parity["models"]}
    manifest = load_manifest(run_dir / "exported" / "int8")
    bench = read_json(run_dir / "bench" / "bench.json", ConfigError)
    int8_bench = next(m for m in bench["models"] if m["path"].endswith(str(Path("int8") / "model.onnx")))
    history = read_json(run_dir / "checkpoint" / "metrics.json", ConfigError)["epochs"]
    return RunResult(spec.name, spec.recipe.arch, "done", params=manifest["source"]["params"],
                     int8_accuracy=scores.get("int8"), fp32_accuracy=scores.get("fp32"),
                     torch_accuracy=scores.get("pytorch"), int8_bytes=manifest["files"]["bytes"],
                     latency_us=int8_bench["latency"]["p50_us"],
                     train_seconds=round(sum(h["seconds"] for h in history), 1), parity_passed=parity["passed"])


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
                     f"{r.torch_accuracy:.2%} | {r.int8_bytes / 1024:.1f} KiB | {r.latency_us:.1f} µs | "
                     f"{r.train_seconds} | {'pass' if r.parity_passed else 'FAIL'} | "
                     f"{'★' if r.name in front else ''} |")
    return "\n".join(lines) + "\n"
