"""What a teacher costs: the same recipe trained with and without its teacher, side by side.

Trains the recipe for --epochs epochs without the teacher, then with it, alternately, --repeat
times (so both see the same load on a shared machine), and prints each run's training seconds
per epoch, the teacher's part of them (its forward passes, or computing its cached logits once
for recipes without augmentation) and the load average around each run. Two ratios:

  best of runs   the fastest epoch with the teacher over the fastest without (other work only
                 ever adds time, so the minimum is the least disturbed figure);
  within a run   each run with the teacher against itself less the teacher's seconds, measured
                 in the same moments (the median over the runs), which a load that comes and
                 goes between runs cannot skew.

The goal it checks: an epoch with the teacher takes at most 1.5x an epoch without.

    MNIST_EDGE_DATA=~/data python scripts/distill_cost.py --preset default --arch strided --repeat 3
    MNIST_EDGE_DATA=~/data python scripts/distill_cost.py --preset fast --epochs 3 --repeat 3
    MNIST_EDGE_DATA=~/data python scripts/distill_cost.py --preset default --arch micro --threads 1

Exit code 0 whatever the verdict: timings on a shared machine are reported, not gated.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import torch

from mnist_edge.config import preset
from mnist_edge.train import train

GOAL_RATIO = 1.5


def run_once(recipe, out: Path, device: str) -> dict:
    load_before = os.getloadavg()[0]
    result = train(recipe, out, device=device, force=True)
    seconds = [h["seconds"] for h in result.history]
    teacher = [h["teacher_seconds"] or 0.0 for h in result.history]
    return {"teacher": recipe.distilled, "epoch_seconds": sum(seconds) / len(seconds),
            "teacher_seconds_per_epoch": sum(teacher) / len(teacher),
            "load_average": [load_before, os.getloadavg()[0]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--arch", default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--teacher", default="exported/checkpoints/cnn")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, every core)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    plain = preset(args.preset, arch=args.arch, epochs=args.epochs)
    taught = preset(args.preset, arch=args.arch, epochs=args.epochs, teacher=args.teacher)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.repeat):
            for recipe in (plain, taught):
                row = run_once(recipe, Path(tmp) / f"{'kd' if recipe.distilled else 'plain'}-{index}", args.device)
                runs.append(row)
                print(f"round {index + 1} {'with' if row['teacher'] else 'without':>7} teacher: "
                      f"{row['epoch_seconds']:.2f} s/epoch (teacher {row['teacher_seconds_per_epoch']:.2f} s), "
                      f"load average {row['load_average'][0]:.2f} -> {row['load_average'][1]:.2f}", flush=True)
    without = min(r["epoch_seconds"] for r in runs if not r["teacher"])
    with_teacher = min(r["epoch_seconds"] for r in runs if r["teacher"])
    best = with_teacher / without
    within = statistics.median(r["epoch_seconds"] / (r["epoch_seconds"] - r["teacher_seconds_per_epoch"])
                               for r in runs if r["teacher"])
    print(f"{args.preset} {taught.arch}, {args.epochs} epoch(s), augment {'on' if taught.augment else 'off'} "
          f"({'teacher on every batch' if taught.augment else 'teacher logits cached'}), {torch.get_num_threads()} "
          f"thread(s): best of runs {without:.2f} s/epoch without, {with_teacher:.2f} s/epoch with the teacher = "
          f"{best:.2f}x; within a run {within:.2f}x (goal <= {GOAL_RATIO}x: "
          f"{'met' if max(best, within) <= GOAL_RATIO else 'not met'})")
    if args.json:
        args.json.write_text(json.dumps({"recipe": taught.to_dict(), "threads": torch.get_num_threads(), "runs": runs,
                                         "best_without": without, "best_with": with_teacher, "ratio_best": best,
                                         "ratio_within": within}, indent=2) + "\n")


if __name__ == "__main__":
    main()
