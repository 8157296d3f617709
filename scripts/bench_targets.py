"""Check the runtime speed targets side by side in one run, and print figures, ratios and verdicts.

Benchmarks, in one process and one run (so the ratios compare like with like on a noisy,
shared machine): the shipped cnn fp32 and int8 models, the tiny int8 model and, from the cnn
manifest's source checkpoint, the PyTorch eager cnn; all at batch 1 on one thread. Then it
states each target with the measured figure and a verdict:

  cnn int8 at least as fast as cnn fp32 (batch 1, one thread)
  onnxruntime fp32 at least 2x faster than PyTorch eager (batch 1, one thread)
  default int8 batch-1 p50 <= 40 microseconds on one thread

`run` throughput over 1,000 PNG files is measured by scripts/bench_run_images.py.

    python scripts/bench_targets.py --seconds 3 --repeat 3

Exit code 0 whatever the verdicts: this reports, it does not gate (timings here are noisy).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from mnist_edge.benchmark import BenchRequest, isa_text, run_benchmark

MODELS = ("exported/cnn-fp32", "exported/cnn-int8", "exported/tiny-int8")
P50_TARGET_US = 40.0


def verdicts(models: dict[str, dict]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) rows from {model name: {"p50": us}}."""
    fp32, int8 = models["cnn-fp32"]["p50"], models["cnn-int8"]["p50"]
    rows = [("cnn int8 at least as fast as fp32", f"{int8:.1f} vs {fp32:.1f} us: {int8 / fp32:.2f}x",
             "met" if int8 <= fp32 else "not met")]
    torch_p50 = next((m["p50"] for name, m in models.items() if m["kind"] == "torch"), None)
    if torch_p50 is not None:
        rows.append(("onnxruntime fp32 >= 2x faster than PyTorch eager",
                     f"{fp32:.1f} vs {torch_p50:.1f} us: {torch_p50 / fp32:.1f}x",
                     "met" if torch_p50 >= 2 * fp32 else "not met"))
    for name in ("cnn-int8", "tiny-int8"):
        p50 = models[name]["p50"]
        rows.append((f"{name} batch-1 p50 <= {P50_TARGET_US:.0f} us", f"{p50:.1f} us",
                     "met" if p50 <= P50_TARGET_US else "not met"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="latency measurement time per model")
    parser.add_argument("--repeat", type=int, default=3,
                        help="whole side-by-side runs; the verdicts use each model's median p50 over them")
    parser.add_argument("--out", type=Path, help="also write the last run's bench.json, bench.md and bench.png here")
    args = parser.parse_args()
    request = BenchRequest(models=MODELS, batch_sizes=(1,), threads=(1,), seconds=args.seconds, out=args.out)
    p50s: dict[str, list[float]] = {}
    kinds: dict[str, str] = {}
    for run in range(args.repeat):
        report = run_benchmark(request).report
        for model in report.models:
            name = Path(model.path).parent.name if model.kind == "onnx" else model.name
            p50s.setdefault(name, []).append(model.latency.p50_us)
            kinds[name] = model.kind
        print(f"run {run + 1}: " + ", ".join(f"{name} {values[-1]:.1f} us" for name, values in p50s.items()))
    env = report.environment
    print(f"machine: {env.cpu_model}, {env.logical_cores} logical cores, {isa_text(env)}, "
          f"onnxruntime {env.onnxruntime}")
    measured = {name: {"p50": statistics.median(values), "kind": kinds[name]} for name, values in p50s.items()}
    for name, values in p50s.items():
        print(f"  {name:<24} median p50 {measured[name]['p50']:8.1f} us  (runs: "
              + ", ".join(f"{v:.1f}" for v in values) + ")")
    for target, figure, verdict in verdicts(measured):
        print(f"{verdict:>8}: {target}: {figure}")


if __name__ == "__main__":
    main()
