"""Check the runtime speed goals side by side in one run, and print figures, ratios and verdicts.

Benchmarks, in one process and one run (so the ratios compare like with like on a noisy,
shared machine): onnxruntime's floor (`bench --floor`: a model that only slices its input),
the shipped fp32 and int8 models and, from the cnn manifest's source checkpoint, the PyTorch
eager cnn; batch-1 latency on one thread, throughput at batch 64 on one and on 2 threads.
Each whole run is repeated and every figure is the median over the runs. Then it states each
goal with the measured figure and a verdict:

  a shipped model at >= 99.5 % test accuracy with batch-1 p50 <= 4x the floor
  the shipped default cnn int8 within 6x the floor
  batch 64 on 2 threads >= 100,000 images/s for the fastest >= 99.5 % model
  cnn int8 at least as fast as cnn fp32 (batch 1, one thread)
  onnxruntime fp32 at least 2x faster than PyTorch eager (batch 1, one thread)
  default int8 batch-1 p50 <= 40 microseconds on one thread

Accuracies are the manifests' (`metrics.test_accuracy`, all 10,000 test images, re-measured
with the command in `metrics.measured_with`). `run` throughput over 1,000 PNG files is measured
by scripts/bench_run_images.py.

    python scripts/bench_targets.py --seconds 3 --repeat 3

Exit code 0 whatever the verdicts: this reports, it does not gate (timings here are noisy).
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from pathlib import Path

from mnist_edge import manifest as manifest_io
from mnist_edge.benchmark import BenchRequest, isa_text, run_benchmark
from mnist_edge.benchmark.floor import FLOOR_NAME
from mnist_edge.codegen.graph import optimized_graph

SHIPPED = ("cnn", "tiny", "mlp", "strided", "micro")
# A layout not shipped (yet) in this checkout is left out, not an error.
MODELS = tuple(f"exported/{name}-{kind}" for name in SHIPPED for kind in ("fp32", "int8")
               if Path(f"exported/{name}-{kind}/model.onnx").is_file())
DEFAULT = "cnn-int8"
ACCURATE = 0.995  # the accuracy a latency-first model has to keep
FLOOR_RATIO_GOAL = 4.0
DEFAULT_RATIO_GOAL = 6.0
THROUGHPUT_BATCH, THROUGHPUT_THREADS, THROUGHPUT_GOAL = 64, 2, 100_000
P50_TARGET_US = 40.0


@dataclass
class Measured:
    """One model's medians over the repeated runs."""
    kind: str
    p50_us: float
    batch64_per_s: float | None
    accuracy: float | None


def kernels(model_path: Path) -> int:
    """Nodes in the graph onnxruntime runs (ORT_ENABLE_ALL, after its fusions): the per-call
    overhead a batch-1 model pays scales with this, not with the file's node count."""
    return len(optimized_graph(model_path, "ORT_ENABLE_ALL").graph.node)


def manifest_accuracy(folder: str) -> float | None:
    if not (Path(folder) / manifest_io.FILENAME).is_file():
        return None
    return manifest_io.load(folder, verify_hash=False).get("metrics", {}).get("test_accuracy")


def ratio_goals(models: dict[str, Measured]) -> list[tuple[str, str, str]]:
    """The goals stated against onnxruntime's floor, measured in the same run."""
    floor = models[FLOOR_NAME].p50_us
    accurate = {name: m for name, m in models.items() if m.accuracy is not None and m.accuracy >= ACCURATE}
    rows = []
    if accurate:
        name, best = min(accurate.items(), key=lambda item: item[1].p50_us)
        ratio = best.p50_us / floor
        rows.append((f"a shipped model >= {ACCURATE:.1%} within {FLOOR_RATIO_GOAL:.0f}x the floor",
                     f"fastest such model {name} ({best.accuracy:.2%}): {best.p50_us:.1f} us = {ratio:.1f}x "
                     f"floor ({floor:.1f} us)", "met" if ratio <= FLOOR_RATIO_GOAL else "not met"))
        per_s = best.batch64_per_s
        rows.append((f"{name} batch {THROUGHPUT_BATCH} on {THROUGHPUT_THREADS} threads >= {THROUGHPUT_GOAL:,} images/s",
                     "not measured" if per_s is None else f"{per_s:,.0f} images/s",
                     "met" if per_s is not None and per_s >= THROUGHPUT_GOAL else "not met"))
    within = {name: m for name, m in models.items() if m.accuracy is not None
              and m.p50_us <= FLOOR_RATIO_GOAL * floor}
    if within:
        name, best = max(within.items(), key=lambda item: item[1].accuracy or 0.0)
        rows.append((f"most accurate shipped model within {FLOOR_RATIO_GOAL:.0f}x the floor",
                     f"{name}: {best.accuracy:.2%} at {best.p50_us / floor:.1f}x", "figure"))
    default = models[DEFAULT].p50_us / floor
    rows.append((f"default {DEFAULT} within {DEFAULT_RATIO_GOAL:.0f}x the floor",
                 f"{models[DEFAULT].p50_us:.1f} us = {default:.1f}x",
                 "met" if default <= DEFAULT_RATIO_GOAL else "not met"))
    return rows


def earlier_goals(models: dict[str, Measured]) -> list[tuple[str, str, str]]:
    """The goals from before the floor existed: int8 vs fp32, onnxruntime vs PyTorch, 40 us."""
    fp32, int8 = models["cnn-fp32"].p50_us, models["cnn-int8"].p50_us
    rows = [("cnn int8 at least as fast as fp32", f"{int8:.1f} vs {fp32:.1f} us: {int8 / fp32:.2f}x",
             "met" if int8 <= fp32 else "not met")]
    torch_p50 = next((m.p50_us for m in models.values() if m.kind == "torch"), None)
    if torch_p50 is not None:
        rows.append(("onnxruntime fp32 >= 2x faster than PyTorch eager",
                     f"{fp32:.1f} vs {torch_p50:.1f} us: {torch_p50 / fp32:.1f}x",
                     "met" if torch_p50 >= 2 * fp32 else "not met"))
    rows.append((f"{DEFAULT} batch-1 p50 <= {P50_TARGET_US:.0f} us", f"{int8:.1f} us",
                 "met" if int8 <= P50_TARGET_US else "not met"))
    return rows


def measure(args: argparse.Namespace) -> tuple[dict[str, Measured], object]:
    request = BenchRequest(models=MODELS, batch_sizes=(1, THROUGHPUT_BATCH), threads=(1, THROUGHPUT_THREADS),
                           seconds=args.seconds, out=args.out, floor=True)
    p50s: dict[str, list[float]] = {}
    per_s: dict[str, list[float]] = {}
    kinds: dict[str, str] = {}
    for run in range(args.repeat):
        report = run_benchmark(request).report
        for model in report.models:
            name = Path(model.path).parent.name if model.kind == "onnx" and model.name != FLOOR_NAME else model.name
            p50s.setdefault(name, []).append(model.latency.p50_us)
            throughput = model.throughput_at(THROUGHPUT_BATCH, THROUGHPUT_THREADS)
            if throughput is not None:
                per_s.setdefault(name, []).append(throughput)
            kinds[name] = model.kind
        print(f"run {run + 1}: " + ", ".join(f"{name} {values[-1]:.1f} us" for name, values in p50s.items()),
              flush=True)
    measured = {name: Measured(kinds[name], statistics.median(values),
                               statistics.median(per_s[name]) if name in per_s else None,
                               manifest_accuracy(f"exported/{name}"))
                for name, values in p50s.items()}
    return measured, report.environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="latency measurement time per model")
    parser.add_argument("--repeat", type=int, default=3,
                        help="whole side-by-side runs; the verdicts use each model's median over them")
    parser.add_argument("--out", type=Path, help="also write the last run's bench.json, bench.md and bench.png here")
    args = parser.parse_args()
    measured, env = measure(args)
    print(f"machine: {env.cpu_model}, {env.logical_cores} logical cores, {isa_text(env)}, "
          f"onnxruntime {env.onnxruntime}")
    floor = measured[FLOOR_NAME].p50_us
    print(f"  {'model':<16} {'test acc':>8} {'p50 us':>8} {'x floor':>8} {'b64 x2 img/s':>13} {'bytes':>10} "
          f"{'kernels':>7}")
    for name, m in measured.items():
        accuracy = "" if m.accuracy is None else f"{m.accuracy:.2%}"
        per_s = "" if m.batch64_per_s is None else f"{m.batch64_per_s:,.0f}"
        path = Path(f"exported/{name}/model.onnx")
        size, count = (f"{path.stat().st_size:,}", str(kernels(path))) if path.is_file() else ("", "")
        print(f"  {name:<16} {accuracy:>8} {m.p50_us:8.1f} {m.p50_us / floor:8.1f} {per_s:>13} {size:>10} {count:>7}")
    for target, figure, verdict in ratio_goals(measured) + earlier_goals(measured):
        print(f"{verdict:>8}: {target}: {figure}")


if __name__ == "__main__":
    main()
