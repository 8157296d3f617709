"""The `[search]` config: what to search over, what to optimize, and how.

    [search]
    name = "layouts"                       # the study's name (default: the file name)
    preset = "fast"                        # base recipe of every trial
    objectives = ["accuracy", "latency"]   # and optionally "size"
    trials = 40                            # finished trials the study stops at (--trials overrides)
    sampler = "nsga2"                      # nsga2, tpe or random
    population = 8                         # NSGA-II's generation size
    seed = 0
    bench_seconds = 1.0
    device = "auto"
    prune_below = 0.97                     # optional: see below

    [search.space]                         # recipe keys: a list is a choice, a table a range,
    arch = ["strided", "mlp"]              # a plain value is fixed for every trial
    lr = {low = 0.002, high = 0.03, log = true}
    epochs = {low = 2, high = 4}

    [search.space.strided]                 # keys drawn only when the trial's arch is strided
    width = {low = 8, high = 64, step = 8}
    depth = [2, 3]

Every value is checked against the recipe before anything runs (with each architecture it
can meet), so a trial never fails on a value the config could have refused.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)

from mnist_edge.config import ARCHS, DEVICES, PIPELINE_BENCH_SECONDS, PRESETS, Recipe, preset
from mnist_edge.errors import ConfigError
from mnist_edge.tomlconfig import Source, Table, read_toml

# name -> (Optuna direction, what it measures)
OBJECTIVES = {
    "accuracy": ("maximize", "validation accuracy of the deployed int8 model"),
    "latency": ("minimize", "batch-1 p50 latency of the int8 model, one thread"),
    "size": ("minimize", "int8 model file size"),
}
SAMPLERS = ("nsga2", "tpe", "random")
_SEARCH_KEYS = {"name", "preset", "objectives", "trials", "sampler", "population", "seed", "bench_seconds",
                "device", "prune_below", "space"}
# Not searchable: they decide which images a trial is judged on, so every trial keeps the preset's.
_FIXED_KEYS = {"val_size", "split_seed"}
_SPACE_KEYS = {f.name for f in fields(Recipe)} - _FIXED_KEYS
_RANGE_KEYS = {"low", "high", "step", "log"}


@dataclass(frozen=True)
class SearchConfig:
    path: Path
    name: str
    base: str
    objectives: tuple[str, ...]
    trials: int
    sampler: str
    population: int
    seed: int
    bench_seconds: float
    device: str
    prune_below: float
    fixed: dict[str, Any]
    space: dict[str, BaseDistribution]  # parameter name -> distribution; "ARCH.key" only for that arch

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[name][0] for name in self.objectives]

    def describe(self) -> str:
        """Canonical text of what the study optimizes: a study made from another one is refused."""
        return json.dumps({"preset": self.base, "objectives": list(self.objectives), "fixed": self.fixed,
                           "space": {k: distribution_to_json(v) for k, v in sorted(self.space.items())}},
                          sort_keys=True)


def load_search_config(path: str | Path) -> SearchConfig:
    """Parse and validate a search config; errors name the key and its line."""
    path = Path(path)
    source, raw = read_toml(path, "search config")
    for key in raw:
        if key != "search":
            raise source.fail(key, "unknown table; a search config has one [search] table")
    head = raw.get("search")
    if not isinstance(head, dict):
        raise ConfigError("no [search] table", path)
    settings = _settings(source, head)
    space_table = head.get("space", {})
    if not isinstance(space_table, dict):
        raise source.fail("space", "must be written as a [search.space] table", Table("search"))
    fixed, space = _space(source, settings["base"], space_table)
    if not space:
        raise ConfigError("empty search space: [search.space] needs at least one list or range", path)
    return SearchConfig(path=path, fixed=fixed, space=space, **settings)


def _settings(source: Source, head: dict[str, Any]) -> dict[str, Any]:
    where = Table("search")
    for key in head:
        if key not in _SEARCH_KEYS:
            raise source.fail(key, f"unknown [search] key; expected one of {', '.join(sorted(_SEARCH_KEYS))}", where)
    base = head.get("preset", "fast")
    if not isinstance(base, str) or base not in PRESETS:
        raise source.fail("preset", f"unknown preset {base!r}; choose one of {', '.join(PRESETS)}", where)
    objectives = head.get("objectives", ["accuracy", "latency"])
    if not isinstance(objectives, list) or not objectives or not all(isinstance(o, str) for o in objectives) \
            or len(set(objectives)) != len(objectives):
        raise source.fail("objectives", "must be a non-empty list of names without repeats", where)
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown:
        raise source.fail("objectives", f"unknown objective {unknown[0]!r}; choose from {', '.join(OBJECTIVES)}",
                          where)
    if head.get("sampler", "nsga2") not in SAMPLERS:
        raise source.fail("sampler", f"unknown sampler {head['sampler']!r}; choose one of {', '.join(SAMPLERS)}",
                          where)
    if head.get("device", "auto") not in DEVICES:
        raise source.fail("device", f"unknown device {head['device']!r}; choose one of {', '.join(DEVICES)}", where)
    return {"name": _name(source, head.get("name", source.path.stem)), "base": base,
            "objectives": tuple(objectives), "sampler": head.get("sampler", "nsga2"),
            "trials": _number(source, head, "trials", 40, int, 1),
            "population": _number(source, head, "population", 8, int, 2),
            "seed": _number(source, head, "seed", 0, int, 0),
            "bench_seconds": _number(source, head, "bench_seconds", PIPELINE_BENCH_SECONDS, float, 1e-3),
            "device": head.get("device", "auto"), "prune_below": _prune_floor(source, head)}


def _name(source: Source, name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise source.fail("name", "must be a non-empty string", Table("search"))
    return name


def _number(source: Source, head: dict[str, Any], key: str, default: Any, kind: type, least: float) -> Any:
    value = head.get(key, default)
    ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
    if not ok or isinstance(value, bool) or not math.isfinite(value) or value < least:
        raise source.fail(key, f"must be {'an integer' if kind is int else 'a number'} of at least {least:g}",
                          Table("search"))
    return kind(value)


def _prune_floor(source: Source, head: dict[str, Any]) -> float:
    value = head.get("prune_below", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise source.fail("prune_below", "must be a validation accuracy in [0, 1)", Table("search"))
    return float(value)


def _space(source: Source, base: str, table: dict[str, Any]) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
    where = Table("search.space")
    shared = {k: v for k, v in table.items() if not (k in ARCHS and isinstance(v, dict))}
    per_arch = {k: v for k, v in table.items() if k in ARCHS and isinstance(v, dict)}
    fixed, space = _entries(source, base, shared, where, archs=None)
    arch_values = _arch_values(fixed, space, base)
    for arch, entries in per_arch.items():
        if arch not in arch_values:
            raise source.fail(arch, f"[search.space.{arch}] can never apply: no trial has arch {arch!r}", where)
        sub_fixed, sub_space = _entries(source, base, entries, Table(f"search.space.{arch}"), archs=[arch])
        fixed.update({f"{arch}.{k}": v for k, v in sub_fixed.items()})
        space.update({f"{arch}.{k}": v for k, v in sub_space.items()})
    return fixed, space


def _arch_values(fixed: dict[str, Any], space: dict[str, BaseDistribution], base: str) -> list[str]:
    if "arch" in space:
        return list(space["arch"].choices)  # type: ignore[attr-defined]
    return [fixed.get("arch", PRESETS[base].arch)]


def _entries(source: Source, base: str, table: dict[str, Any], where: Table,
             archs: list[str] | None) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
    fixed: dict[str, Any] = {}
    space: dict[str, BaseDistribution] = {}
    if archs is None:  # the shared table: check the arch key first, then every key with every arch
        if "arch" in table:
            _distribution_or_value(source, base, "arch", table["arch"], where, [PRESETS[base].arch], fixed, space)
        archs = _arch_values(fixed, space, base)
    for key, value in table.items():
        if key == "arch" and where.name == "search.space":
            continue
        if key not in _SPACE_KEYS or key == "arch":
            raise source.fail(key, f"unknown [{where.name}] key; recipe keys are {', '.join(sorted(_SPACE_KEYS))}",
                              where)
        _distribution_or_value(source, base, key, value, where, archs, fixed, space)
    return fixed, space


def _distribution_or_value(source: Source, base: str, key: str, value: Any, where: Table, archs: list[str],
                           fixed: dict[str, Any], space: dict[str, BaseDistribution]) -> None:
    if isinstance(value, list):
        if not value:
            raise source.fail(key, "an empty list: give at least one choice", where)
        for choice in value:
            _check_value(source, base, key, choice, where, archs)
        space[key] = CategoricalDistribution(value)
    elif isinstance(value, dict):
        space[key] = _range(source, base, key, value, where, archs)
    else:
        _check_value(source, base, key, value, where, archs)
        fixed[key] = value


def _range(source: Source, base: str, key: str, spec: dict[str, Any], where: Table,
           archs: list[str]) -> BaseDistribution:
    kind = type(getattr(Recipe(), key))
    if kind not in (int, float):
        raise source.fail(key, f"takes a list of choices, not a range ({kind.__name__} values)", where)
    unknown = set(spec) - _RANGE_KEYS
    if unknown or "low" not in spec or "high" not in spec:
        raise source.fail(key, "a range is {low = ..., high = ...} with optional step and log", where)
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
    for value in (low, high):
        _check_value(source, base, key, value, where, archs)
    if low > high:
        raise source.fail(key, f"low ({low}) is greater than high ({high})", where)
    if not isinstance(log, bool):
        raise source.fail(key, "log must be true or false", where)
    if step is not None and (log or isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
        raise source.fail(key, "step must be a positive number, and cannot be combined with log", where)
    if log and low <= 0:
        raise source.fail(key, "a log-scale range needs low > 0", where)
    if step is not None and _steps_short_of_high(low, high, step):
        # Optuna would only warn and draw from a shorter range than the one written.
        raise source.fail(key, f"high ({high}) is not low ({low}) plus a whole number of steps ({step})", where)
    if kind is int:
        return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    return FloatDistribution(float(low), float(high), log=log, step=None if step is None else float(step))


def _steps_short_of_high(low: float, high: float, step: float) -> bool:
    # Decimal, as Optuna checks it: in binary floats 0.05 - 0.01 is not four steps of 0.01.
    return (Decimal(str(high)) - Decimal(str(low))) % Decimal(str(step)) != 0


def _check_value(source: Source, base: str, key: str, value: Any, where: Table, archs: list[str]) -> None:
    expected = type(getattr(Recipe(), key))
    ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
    if not ok or (expected is not bool and isinstance(value, bool)):
        raise source.fail(key, f"expected {expected.__name__}, got {value!r}", where)
    for arch in archs if key != "arch" else [value]:
        try:
            preset(base, **{"arch": arch, key: float(value) if expected is float else value})
        except ConfigError as exc:
            raise source.fail(key, exc.reason if key == "arch" else f"{exc.reason} (with arch {arch})",
                              where) from exc
    if key == "teacher" and value:
        _check_teacher(source, value, where)


def _check_teacher(source: Source, path: str, where: Table) -> None:
    # A teacher that cannot teach is refused before the study starts, not in every trial.
    from mnist_edge.distill import check_teacher

    try:
        check_teacher(path)
    except ConfigError as exc:
        raise source.fail("teacher", str(exc), where) from exc


def recipe_for(config: SearchConfig, values: dict[str, Any]) -> Recipe:
    """The recipe of one trial from its sampled values (arch-scoped keys of its arch only)."""
    arch = values.get("arch", config.fixed.get("arch", PRESETS[config.base].arch))
    chosen = {**config.fixed, **values}
    overrides = {k: v for k, v in chosen.items() if "." not in k}
    overrides.update({k.partition(".")[2]: v for k, v in chosen.items() if k.startswith(f"{arch}.")})
    recipe = replace(PRESETS[config.base], **{k: _coerce(k, v) for k, v in overrides.items()})
    return recipe.validate()


def _coerce(key: str, value: Any) -> Any:
    return float(value) if isinstance(getattr(Recipe(), key), float) else value

