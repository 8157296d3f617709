"""A study's results as files: results.json / .csv / .md and pareto.png, like the sweep's.

Everything is read from the study, not from this machine's folders, so any worker can write
the whole table. The Pareto trials (the study's `best_trials`) get their test accuracy and
parity measured once, by a worker that holds their model files, and kept in the study.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mnist_edge import parity
from mnist_edge.cpushare import CpuShare
from mnist_edge.errors import MnistEdgeError
from mnist_edge.fileio import atomic_write_json, atomic_write_text
from mnist_edge.search import engine
from mnist_edge.units import format_bytes, format_us

TEST_ATTR = "test:{number}"
FIGURES = ("val_accuracy", "latency_us", "int8_bytes", "params", "train_seconds")


def pareto_numbers(study: optuna.Study) -> set[int]:
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return set()
    best = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    return {t.number for t in best}


def measure_test(study: optuna.Study, out: Path, cpu_lock: Path, data_dir: Any = None,
                 download: bool = True) -> list[int]:
    """Test accuracy and parity of the Pareto trials whose models are in `out`; returns their numbers."""
    measured = []
    front = pareto_numbers(study)
    for trial in study.get_trials(deepcopy=False):
        key = TEST_ATTR.format(number=trial.number)
        folder = out / str(trial.user_attrs.get(engine.RUN_ATTR, ""))
        if trial.number not in front or key in study.user_attrs or \
                not (folder / "exported" / "int8" / "model.onnx").is_file():
            continue
        study.set_user_attr(key, _test_figures(folder, cpu_lock, data_dir, download))
        measured.append(trial.number)
    return measured


def _test_figures(folder: Path, cpu_lock: Path, data_dir: Any, download: bool) -> dict[str, Any]:
    try:
        with CpuShare(cpu_lock) as cpu:
            cpu.shared()
            report = parity.record_parity(folder / "checkpoint", folder / "exported" / "fp32",
                                          folder / "exported" / "int8", report_dirs=[folder / "parity"],
                                          data_dir=data_dir, download=download)
    except MnistEdgeError as exc:  # this trial's files only: the other trials and the tables go on
        return {"int8": None, "parity_passed": None, "error": str(exc)}
    scores = {m.role: m.accuracy for m in report.models}
    return {"int8": scores["int8"], "fp32": scores["fp32"], "pytorch": scores["pytorch"],
            "parity_passed": report.passed}


def rows(study: optuna.Study) -> list[dict[str, Any]]:
    front = pareto_numbers(study)
    tests = study.user_attrs
    return [row_of(t, t.number in front, tests.get(TEST_ATTR.format(number=t.number))) for t in study.get_trials()]


def row_of(trial: FrozenTrial, on_front: bool, test: dict[str, Any] | None) -> dict[str, Any]:
    recipe = trial.user_attrs.get("recipe", {})
    row = {"trial": trial.number, "state": trial.state.name.lower(), "run": trial.user_attrs.get(engine.RUN_ATTR),
           "arch": recipe.get("arch")}
    row.update({key: trial.user_attrs.get(key) for key in FIGURES})
    row.update({"test_accuracy": (test or {}).get("int8"), "parity_passed": (test or {}).get("parity_passed"),
                "pareto": on_front, "worker": trial.user_attrs.get("worker"),
                "message": trial.user_attrs.get(engine.MESSAGE_ATTR, "") or (test or {}).get("error", "")})
    retried = trial.system_attrs.get("failed_trial")
    if retried is not None:
        row["message"] = (row["message"] + f" (retry of trial {retried})").strip()
    row["drawn"] = dict(trial.params)
    return row


def write_results(study: optuna.Study, out: Path) -> dict[str, Path]:
    table = rows(study)
    paths = {"json": atomic_write_json(out / "results.json", {
                 "study": study.study_name, "directions": [d.name.lower() for d in study.directions], "trials": table}),
             "csv": atomic_write_text(out / "results.csv", _csv(table)),
             "markdown": atomic_write_text(out / "results.md", markdown_table(table))}
    done = [r for r in table if r["state"] == "complete"]
    if done:
        from mnist_edge import plots

        points = [{"name": f"#{r['trial']}", "accuracy": r["val_accuracy"], "latency_us": r["latency_us"],
                   "size_bytes": r["int8_bytes"]} for r in done]
        front = [i for i, r in enumerate(done) if r["pareto"]]
        paths["pareto"] = plots.pareto_front(points, out / "pareto.png", front=front,
                                             accuracy_label="validation accuracy, int8")
    return paths


def _csv(table: list[dict[str, Any]]) -> str:
    names = sorted({name for r in table for name in r["drawn"]})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = [k for k in (table[0] if table else {"trial": 0}) if k != "drawn"]
    writer.writerow(columns + [f"param:{n}" for n in names])
    for r in table:
        writer.writerow([r.get(c) for c in columns] + [r["drawn"].get(n, "") for n in names])
    return buffer.getvalue()


def markdown_table(table: list[dict[str, Any]]) -> str:
    lines = ["| trial | state | arch | parameters drawn | params | int8 val acc | batch-1 p50 | int8 file | "
             "train s | test acc | front |", "|---:|---|---|---|---:|---:|---:|---:|---:|---:|:-:|"]
    for r in table:
        drawn = ", ".join(f"{k}={_value(v)}" for k, v in r["drawn"].items() if k != "arch")
        if r["state"] != "complete":
            lines.append(f"| {r['trial']} | {r['state']} | {r['arch'] or ''} | {drawn} | {r['message']} ||||||")
            continue
        test = f"{r['test_accuracy']:.2%}" if r["test_accuracy"] is not None else ""
        lines.append(f"| {r['trial']} | complete | {r['arch']} | {drawn} | {r['params']:,} | "
                     f"{r['val_accuracy']:.2%} | {format_us(r['latency_us'])} | {format_bytes(r['int8_bytes'])} | "
                     f"{r['train_seconds']} | {test} | {'★' if r['pareto'] else ''} |")
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, bool) else str(value)
