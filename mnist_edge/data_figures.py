"""The data overview figures: sample digits, class counts, class means, pixel histogram."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge.data import load_split
from mnist_edge.fileio import ensure_dir


def write_overview(out: str | Path, data_dir: Any = None, download: bool = True, *, count: int = 100,
                   seed: int = 0) -> list[Path]:
    """Write samples.png, class_counts.png, class_means.png and pixel_histogram.png into `out`."""
    from mnist_edge import plots  # matplotlib only when figures are asked for

    train = load_split("train", data_dir, download)
    test = load_split("test", data_dir, download=False)
    out = ensure_dir(out)  # only once the data is there: a failed command leaves no empty folder
    chosen = np.sort(np.random.default_rng(seed).choice(len(train), size=count, replace=False))
    return [
        plots.digit_grid(train.images[chosen], train.labels[chosen], out / "samples.png",
                         title=f"{count} random training digits (seed {seed})", max_images=count),
        plots.class_counts(np.bincount(train.labels, minlength=10), np.bincount(test.labels, minlength=10),
                           out / "class_counts.png"),
        plots.class_means(train.images, train.labels, out / "class_means.png"),
        plots.pixel_histogram(train.images, out / "pixel_histogram.png"),
    ]
