"""A search's Pareto trials beside the shipped int8 models, side by side in one run: validation
accuracy, batch-1 latency, file size, and which shipped model each trial dominates.

The shipped manifests hold only test accuracy, so every model here (trials and shipped alike)
is scored on the same 5,000 validation images the search judged its trials on; the shipped
models were trained with that split held out. Latencies are measured together, in one process,
each whole run repeated and the median kept. The trials' test accuracies are the search's own
(measured once, at its end).

    python scripts/search_vs_shipped.py runs/search --seconds 2 --repeat 3 --json docs/measurements/x.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from mnist_edge import manifest as manifest_io
from mnist_edge.benchmark import BenchRequest, isa_text, run_benchmark
from mnist_edge.fileio import atomic_write_json
from mnist_edge.search.trial import validation_accuracy
from mnist_edge.units import format_bytes, format_us

SHIPPED = ("cnn-int8", "tiny-int8", "strided-int8", "mlp-int8")


def candidates(search: Path, shipped: Path) -> list[dict]:
    trials = json.loads((search / "results.json").read_text())["trials"]
    rows = [{"name": f"trial {t['trial']}", "kind": "trial", "path": search / t["run"] / "exported" / "int8",
             "test_accuracy": t["test_accuracy"], "arch": t["arch"], "drawn": t["drawn"]}
            for t in trials if t["state"] == "complete" and t["pareto"]]
    for name in SHIPPED:
        folder = shipped / name
        if (folder / "model.onnx").is_file():
            manifest = manifest_io.load(folder)
            rows.append({"name": name, "kind": "shipped", "path": folder, "arch": name.split("-")[0],
                         "test_accuracy": manifest["metrics"]["test_accuracy"], "drawn": {},
                         "recipe": manifest["source"]["recipe"]})
    return rows


def measure(rows: list[dict], seconds: float, repeat: int, data_dir: str | None) -> str:
    for row in rows:
        recipe = row.get("recipe", {})
        val_size, split_seed = recipe.get("val_size", 5000), recipe.get("split_seed", 0)
        if (val_size, split_seed) != (5000, 0):
            raise SystemExit(f"{row['name']} was trained with another validation split ({val_size}, {split_seed})")
        row["val_accuracy"] = validation_accuracy(row["path"] / "model.onnx", 5000, 0, data_dir, download=False)
        row["bytes"] = (row["path"] / "model.onnx").stat().st_size
    runs = []
    for _ in range(repeat):
        request = BenchRequest(models=[r["path"] for r in rows], batch_sizes=(1,), threads=(1,), seconds=seconds,
                               no_torch=True, floor=True)
        report = run_benchmark(request).report
        runs.append([m.latency.p50_us for m in report.models[1:]])  # [0] is the floor
    for i, row in enumerate(rows):
        row["p50_us"] = statistics.median(run[i] for run in runs)
    env = report.environment
    return f"{env.cpu_model}, {env.logical_cores} logical cores, {isa_text(env)}"


def dominated(trial: dict, shipped: dict) -> bool:
    better_or_equal = trial["val_accuracy"] >= shipped["val_accuracy"] and trial["p50_us"] <= shipped["p50_us"]
    return better_or_equal and (trial["val_accuracy"] > shipped["val_accuracy"] or trial["p50_us"] < shipped["p50_us"])


def table(rows: list[dict]) -> str:
    shipped = [r for r in rows if r["kind"] == "shipped"]
    lines = ["| model | layout | int8 val acc | test acc | batch-1 p50 | file | dominates |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in sorted(rows, key=lambda r: r["p50_us"]):
        drawn = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                          for k, v in r["drawn"].items() if k != "arch" and (k.startswith(r["arch"]) or "." not in k))
        beats = [s["name"] for s in shipped if r["kind"] == "trial" and dominated(r, s)]
        test = f"{r['test_accuracy']:.2%}" if r["test_accuracy"] is not None else ""
        lines.append(f"| {r['name']} | {r['arch']}{' (' + drawn + ')' if drawn else ''} | {r['val_accuracy']:.2%} | "
                     f"{test} | {format_us(r['p50_us'])} | {format_bytes(r['bytes'])} | {', '.join(beats)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("search", type=Path, help="a search's --out folder")
    parser.add_argument("--shipped", type=Path, default=Path("exported"))
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    rows = candidates(args.search, args.shipped)
    isa = measure(rows, args.seconds, args.repeat, args.data_dir)
    print(f"CPU: {isa}; medians of {args.repeat} side-by-side runs of {args.seconds:g} s per model")
    print(table(rows))
    shipped = [r for r in rows if r["kind"] == "shipped"]
    wins = {r["name"]: [s["name"] for s in shipped if dominated(r, s)] for r in rows if r["kind"] == "trial"}
    print(f"goal 'a trial dominates a shipped model on (validation accuracy, latency)': "
          f"{'MET' if any(wins.values()) else 'NOT MET'}")
    if args.json:
        atomic_write_json(args.json, {"isa": isa, "seconds": args.seconds, "repeat": args.repeat, "dominates": wins,
                                      "models": [{k: (str(v) if isinstance(v, Path) else v) for k, v in r.items()}
                                                 for r in rows]})


if __name__ == "__main__":
    main()
