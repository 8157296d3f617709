"""Measure `mnist-edge run` over 1,000 PNG files: decoding, preprocessing and inference.

Writes N MNIST test digits as PNG files (and, with --photos, as larger photo-like JPEGs with a
light background), then times, side by side:
  in-process   what `run` does after start-up: load_inputs + Predictor.predict
  end to end   the whole `mnist-edge run MODEL DIR --json` process, interpreter start-up included

    python scripts/bench_run_images.py exported/cnn-int8 --count 1000 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_edge.data import load_split
from mnist_edge.inputs import load_inputs
from mnist_edge.runtime import Predictor


def write_pngs(folder: Path, images: np.ndarray) -> None:
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:05d}.png")


def write_photos(folder: Path, images: np.ndarray) -> None:
    """Dark ink on a light, slightly noisy 200 x 260 background, like a phone photo of a digit."""
    rng = np.random.default_rng(0)
    for i, image in enumerate(images):
        big = np.asarray(Image.fromarray(255 - image).resize((150, 150), Image.BILINEAR), dtype=np.float32)
        canvas = np.full((260, 200), 235.0, np.float32) + rng.normal(0, 6, (260, 200))
        canvas[50:200, 25:175] = np.minimum(canvas[50:200, 25:175], big)
        Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).convert("RGB").save(folder / f"{i:05d}.jpg")


def in_process(model: str, folder: Path, repeat: int) -> float:
    predictor = Predictor.load(model)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        loaded = load_inputs([folder])
        predictor.predict(loaded.images)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def end_to_end(model: str, folder: Path, repeat: int) -> float:
    command = [sys.executable, "-m", "mnist_edge", "run", model, str(folder), "--json"]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--photos", action="store_true", help="also time photo-like 200x260 JPEGs")
    args = parser.parse_args()
    images = load_split("test").images[: args.count]
    kinds = [("28x28 PNG", write_pngs)] + ([("200x260 JPEG photo", write_photos)] if args.photos else [])
    for label, writer in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            writer(Path(tmp), images)
            inside = in_process(args.model, Path(tmp), args.repeat)
            whole = end_to_end(args.model, Path(tmp), args.repeat)
        print(f"{label}, {args.count} files, median of {args.repeat}: in-process {inside * 1e3:.0f} ms "
              f"({args.count / inside:,.0f} images/s); end to end {whole * 1e3:.0f} ms "
              f"({args.count / whole:,.0f} images/s, interpreter start-up included)")


if __name__ == "__main__":
    main()
