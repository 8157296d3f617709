"""Measure the training targets: train a preset over several seeds, evaluate each on the test set.

Prints a table and writes a JSON file with the figures and the machine they were measured on.

    python scripts/train_targets.py --preset default --seeds 0,1,2 --out runs/targets
    python scripts/train_targets.py --preset fast --seeds 0 --device cpu --out runs/targets-fast
    python scripts/train_targets.py --preset default --arch tiny --seeds 0 --out runs/targets-tiny
    python scripts/train_targets.py --preset fast --teacher exported/checkpoints/cnn --seeds 0,1,2 --device cpu
    python scripts/train_targets.py --preset default --arch micro --teacher exported/checkpoints/cnn --int8 mcu

--int8 cpu exports each seed's run and quantizes it with the architecture's defaults (what
exported/NAME-int8 ships), --int8 mcu with `quantize --for mcu` (every layer int8, what `codegen`
takes); the int8 model's accuracy on the 10,000 test images is measured with onnxruntime.

Training seconds are the epochs' training steps, the teacher's time included (its forward passes,
or computing its cached logits once); data loading, validation and saving are not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

import torch

from mnist_edge import data
from mnist_edge.checkpoint import checkpoint_logits
from mnist_edge.config import preset
from mnist_edge.evaluate import evaluate_probabilities
from mnist_edge.fileio import atomic_write_json
from mnist_edge.runtime import softmax
from mnist_edge.train import pick_device, train


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def run_seed(args: argparse.Namespace, seed: int, test: data.Split) -> dict:
    overrides = {"arch": args.arch, "epochs": args.epochs, "seed": seed, "lr": args.lr,
                 "weight_decay": args.weight_decay, "label_smoothing": args.label_smoothing,
                 "batch_size": args.batch_size, "optimizer": args.optimizer, "width": args.width,
                 "augment": args.augment, "teacher": args.teacher, "distill_weight": args.distill_weight,
                 "temperature": args.temperature}
    recipe = preset(args.preset, **overrides)
    out = Path(args.out) / f"{recipe.arch}-{args.preset}{args.tag}{'-kd' if recipe.distilled else ''}-seed{seed}"
    load = os.getloadavg()  # other work on the machine skews the seconds: say how busy it was
    started = time.perf_counter()
    # A finished run of this very recipe is kept (its figures are read back, nothing retrains), so
    # seeds can be trained by separate processes and summarized by one call naming them all.
    done = finished_with(out, recipe)
    result = train(recipe, out, device=args.device, data_dir=args.data_dir, force=not done, resume=done)
    reached_99 = seconds_to_99(result.history)
    wall = time.perf_counter() - started
    _, logits = checkpoint_logits(out, test.images)
    report = evaluate_probabilities(recipe.arch, test.labels, softmax(logits))
    int8 = {target: int8_accuracy(out, recipe.arch, target, test, args.data_dir) for target in args.int8}
    teacher = [h["teacher_seconds"] for h in result.history if h.get("teacher_seconds") is not None]
    return {"seed": seed, "arch": recipe.arch, "params": result.params, "test_accuracy": report.accuracy,
            "train_seconds": sum(h["seconds"] for h in result.history),
            "teacher_seconds": sum(teacher) if teacher else None, "wall_seconds": wall,
            "seconds_to_99_val": reached_99[0] if reached_99 else None, "run_dir": str(out),
            "load_average_at_start": None if done else load, "reused_finished_run": done,
            "recipe": recipe.to_dict(),
            **{f"int8_{target}_test_accuracy": accuracy for target, accuracy in int8.items()}}


def finished_with(run_dir: Path, recipe) -> bool:
    from mnist_edge.checkpoint import is_run_dir, load_config
    from mnist_edge.errors import CheckpointError

    if not is_run_dir(run_dir):
        return False
    try:
        config = load_config(run_dir, for_resume=True)
    except CheckpointError:
        return False
    return bool(config["progress"].get("completed")) and config["recipe_obj"] == recipe


def seconds_to_99(history: list[dict]) -> list[float]:
    elapsed = 0.0
    for epoch in history:
        elapsed += epoch["seconds"]
        if epoch.get("val_acc") is not None and epoch["val_acc"] >= 0.99:
            return [elapsed]
    return []


def int8_accuracy(run_dir: Path, arch: str, target: str, test: data.Split, data_dir: str | None) -> float:
    """Test accuracy of the run's int8 model as shipped (target cpu) or for a microcontroller (mcu)."""
    from mnist_edge.export import export_checkpoint
    from mnist_edge.quantize import default_options, quantize_model
    from mnist_edge.runtime import Predictor

    folder = run_dir / "exported"
    fp32 = folder / f"{arch}-fp32"
    if not fp32.is_dir():
        export_checkpoint(run_dir, fp32, name=fp32.name)
    int8 = folder / f"{arch}-{'mcu-' if target == 'mcu' else ''}int8"
    if int8.exists():
        shutil.rmtree(int8)
    options = default_options(arch, target="mcu") if target == "mcu" else default_options(arch)
    quantize_model(fp32, int8, options, name=int8.name, data_dir=data_dir)
    predicted = Predictor.load(int8).probabilities(test.images).argmax(1)
    return float((predicted == test.labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--arch", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--optimizer", default=None)
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--label-smoothing", type=float, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--teacher", default=None, help="distil from this checkpoint (train --teacher)")
    parser.add_argument("--distill-weight", type=float, default=None)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--int8", default="", help="comma-separated quantization targets to measure: cpu, mcu")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/targets")
    parser.add_argument("--tag", default="", help="suffix for the summary file name")
    args = parser.parse_args()
    test = data.load_split("test", args.data_dir)
    args.int8 = [target for target in args.int8.split(",") if target]
    if set(args.int8) - {"cpu", "mcu"}:
        parser.error("--int8 takes cpu, mcu or both (comma-separated)")
    rows = [run_seed(args, int(s), test) for s in args.seeds.split(",")]
    accs = [r["test_accuracy"] for r in rows]
    summary = {"preset": args.preset, "arch": rows[0]["arch"], "params": rows[0]["params"],
               "device": str(pick_device(args.device)), "machine": machine(),
               "recipe": rows[0]["recipe"], "load_average": os.getloadavg(),
               "mean_test_accuracy": statistics.mean(accs), "median_test_accuracy": statistics.median(accs),
               "min_test_accuracy": min(accs),
               "median_train_seconds": statistics.median(r["train_seconds"] for r in rows),
               **{f"mean_int8_{target}_test_accuracy": statistics.mean(r[f"int8_{target}_test_accuracy"] for r in rows)
                  for target in args.int8},
               "runs": rows}
    kind = f"{rows[0]['arch']}-{args.preset}{'-kd' if args.teacher else ''}"
    name = f"{kind}-{args.tag}.json" if args.tag else f"{kind}.json"
    atomic_write_json(Path(args.out) / name, summary)
    for r in rows:
        teacher = "" if r["teacher_seconds"] is None else f" (teacher {r['teacher_seconds']:.1f}s)"
        int8 = "".join(f", int8 {t} {r[f'int8_{t}_test_accuracy']:.2%}" for t in args.int8)
        reached = "never" if r["seconds_to_99_val"] is None else f"after {r['seconds_to_99_val']:.1f}s"
        print(f"{r['arch']} seed {r['seed']}: test {r['test_accuracy']:.2%}{int8}, "
              f"train {r['train_seconds']:.1f}s{teacher}, 99% val {reached}")
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
