"""Measure `mnist-edge run --show`: the pictures of 1,000 inputs (one contact sheet) and of one
input, against the goals (1,000 inputs in at most 10 s; one input well under a second).

Times, each the median of --repeat runs into a fresh folder:
  drawing      write_pictures alone, in-process (the sheet or the one picture, PNG files included)
  end to end   the whole `mnist-edge run MODEL INPUT --labels LABELS --show DIR` process,
               interpreter start-up, model loading and inference included
Inputs: the first N MNIST test images as a .npy array with their labels, and as N PNG files
(the sheet then shows files that were decoded one by one); one photo-like JPEG for the single picture.

    python scripts/bench_run_show.py exported/cnn-int8 --count 1000 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_edge.data import load_split
from mnist_edge.inputs import load_inputs
from mnist_edge.prediction_pictures import write_pictures
from mnist_edge.runtime import Predictor

GOALS = {"sheet": 10.0, "one": 1.0}  # seconds, end to end


def photo(digit: np.ndarray) -> Image.Image:
    """Dark ink on light, slightly noisy 200 x 260 paper, like a phone photo of a digit."""
    rng = np.random.default_rng(0)
    big = np.asarray(Image.fromarray(255 - digit).resize((150, 150), Image.BILINEAR), dtype=np.float32)
    canvas = np.full((260, 200), 235.0, np.float32) + rng.normal(0, 6, (260, 200))
    canvas[50:200, 25:175] = np.minimum(canvas[50:200, 25:175], big)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).convert("RGB")


def median_seconds(action: Callable[[Path], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            action(Path(tmp) / "pictures")
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def drawing(model: str, inputs: list[Path], labels: np.ndarray, repeat: int) -> float:
    predictor = Predictor.load(model)
    loaded = load_inputs(inputs)
    probabilities = predictor.probabilities(loaded.images)
    return median_seconds(lambda folder: write_pictures(
        folder, loaded.names, loaded.images, probabilities, origins=loaded.origins, true=labels[:len(loaded)],
        labels=predictor.labels, title=predictor.name), repeat)


def end_to_end(model: str, inputs: list[Path], labels: Path, repeat: int) -> float:
    def run(folder: Path) -> None:
        command = [sys.executable, "-m", "mnist_edge", "run", model, *map(str, inputs), "--labels", str(labels),
                   "--show", str(folder), "--json"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)

    return median_seconds(run, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    test = load_split("test")
    images, labels = test.images[: args.count], test.labels[: args.count]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        np.save(folder / "digits.npy", images)
        np.save(folder / "labels.npy", labels)
        np.save(folder / "one_label.npy", labels[:1])
        (folder / "pngs").mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image).save(folder / "pngs" / f"{i:05d}.png")
        photo(images[0]).save(folder / "photo.jpg", quality=92)
        cases = [(f"{args.count:,} inputs, one .npy (a sheet)", "sheet", [folder / "digits.npy"], "labels.npy"),
                 (f"{args.count:,} inputs, PNG files (a sheet)", "sheet", [folder / "pngs"], "labels.npy"),
                 ("one input, a 200 x 260 photo (one picture)", "one", [folder / "photo.jpg"], "one_label.npy")]
        for label, goal, inputs, label_file in cases:
            inside = drawing(args.model, inputs, np.load(folder / label_file), args.repeat)
            whole = end_to_end(args.model, inputs, folder / label_file, args.repeat)
            print(f"{label}, median of {args.repeat}: drawing {inside * 1e3:.0f} ms; end to end {whole:.2f} s "
                  f"(goal <= {GOALS[goal]:g} s: {whole / GOALS[goal]:.0%} of it)")


if __name__ == "__main__":
    main()
