"""Matplotlib figures saved to PNG files: data overview, training curves, confusion, benchmarks.

Every function draws one figure, writes it atomically to `path` and returns that path. Nothing
here prints. Matplotlib is imported by this module alone, with the non-interactive Agg backend,
and callers import this module lazily so the light runtime never needs matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogFormatter, MaxNLocator, PercentFormatter  # noqa: E402

from mnist_edge.data import load_split  # noqa: E402
from mnist_edge.fileio import atomic_write, ensure_dir  # noqa: E402
from mnist_edge.units import format_bytes  # noqa: E402

DPI = 120
_UNIT = 0.032  # inches per image pixel in tile grids: a 28x28 digit is 0.9 inch wide
TRAIN_COLOR, TEST_COLOR = "tab:blue", "tab:orange"
WRONG_COLOR = "tab:red"
PARETO_COLOR = "tab:green"
# boxplot's `vert` became `orientation` in Matplotlib 3.10 (and `vert` is deprecated there).
_MPL_VERSION = tuple(int(part) for part in matplotlib.__version__.split(".")[:2])
_HORIZONTAL = {"orientation": "horizontal"} if _MPL_VERSION >= (3, 10) else {"vert": False}


# --- shared helpers ---------------------------------------------------------------------------


def _save(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as PNG through a temporary file and close it, whatever happens."""
    try:
        return atomic_write(
            path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
        )
    finally:
        plt.close(fig)


def tile_grid(
    tiles: Sequence[np.ndarray],
    titles: Sequence[str],
    colors: Sequence[str],
    path: str | Path,
    title: str,
    columns: int,
    empty_note: str = "nothing to show",
) -> Path:
    """Show 28x28 images (uint8 or float in [0, 255]) in a grid, each with a small title above.

    The tiles are pasted into one mosaic drawn on a single axes: a hundred separate axes take
    seconds to lay out and draw.
    """
    columns = max(1, min(columns, len(tiles) or 1))
    rows = max(1, -(-len(tiles) // columns))
    lines = max((t.count("\n") + 1 for t in titles), default=1)
    # Sizes in mosaic pixels; a pixel is _UNIT inches, so a line of 8 pt text is about 4.4 pixels.
    side, gap_x, gap_y = 28, 4, round(3 + 4.6 * lines)
    cell_w, cell_h = side + gap_x, side + gap_y
    mosaic = np.full((rows * cell_h + 2, columns * cell_w), np.nan)  # +2: room for the frames
    head = 0.45 if title else 0.05  # inches above the mosaic for the figure title
    height = mosaic.shape[0] * _UNIT + head
    fig, ax = plt.subplots(figsize=(mosaic.shape[1] * _UNIT, height))
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1 - head / height)
    for i, (tile, text, color) in enumerate(zip(tiles, titles, colors, strict=True)):
        x, y = (i % columns) * cell_w + gap_x // 2, (i // columns) * cell_h + gap_y
        mosaic[y : y + side, x : x + side] = tile
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), side, side, fill=False, edgecolor="#d0d0d0",
                               linewidth=0.5))
        ax.text(x + side / 2, y - 1.5, text, ha="center", va="bottom", fontsize=8, color=color,
                linespacing=1.0)
    cmap = plt.get_cmap("gray_r").with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
    ax.axis("off")
    if not tiles:
        ax.text(0.5, 0.5, empty_note, ha="center", va="center", fontsize=10,
                transform=ax.transAxes)
    if title:
        fig.suptitle(title, fontsize=12)
    return _save(fig, path)


def _is_fraction(values: Sequence[float]) -> bool:
    """Accuracies may come as fractions (0.99) or percentages (99.0)."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return not finite or max(finite) <= 1.0


def _percent_axis(ax: Axes, values: Sequence[float], axis: str = "y") -> None:
    formatter = PercentFormatter(xmax=1.0 if _is_fraction(values) else 100.0)
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(formatter)


def _log_if_wide(ax: Axes, values: Sequence[float], axis: str = "x", ratio: float = 20.0) -> None:
    """Use a log scale when the positive values span more than `ratio`."""
    positive = np.asarray([v for v in values if v > 0], dtype=float)
    if positive.size and positive.max() / positive.min() > ratio:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        # Plain "300" rather than the default "3×10^2".
        target = ax.xaxis if axis == "x" else ax.yaxis
        target.set_major_formatter(LogFormatter())
        target.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _thousands(ax: Axes, axis: str = "y") -> None:
    formatter = FuncFormatter(lambda v, _pos: f"{v:,.0f}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(formatter)


def _palette(n: int) -> list[Any]:
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


# --- data ---------------------------------------------------------------------------------------


def digit_grid(
    images: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    title: str = "",
    predictions: np.ndarray | None = None,
    confidences: np.ndarray | None = None,
    columns: int = 10,
    max_images: int = 100,
) -> Path:
    """Up to `max_images` digits, each titled with its label (and prediction, red when wrong)."""
    n = min(len(images), max_images)
    titles, colors = [], []
    for i in range(n):
        label = int(labels[i])
        if predictions is None:
            titles.append(str(label))
            colors.append("black")
            continue
        pred = int(predictions[i])
        conf = "" if confidences is None else f" {float(confidences[i]):.0%}"
        titles.append(f"{label}\npred {pred}{conf}")
        colors.append("black" if pred == label else WRONG_COLOR)
    return tile_grid(list(images[:n]), titles, colors, path, title, columns)


def write_overview(out: str | Path, data_dir: Any = None, download: bool = True, *, count: int = 100,
                   seed: int = 0) -> list[Path]:
    """The data overview: samples.png, class_counts.png, class_means.png and pixel_histogram.png
    in `out`, created only once the data is there (a failed command leaves no empty folder)."""
    train = load_split("train", data_dir, download)
    test = load_split("test", data_dir, download=False)
    out = ensure_dir(out)
    chosen = np.sort(np.random.default_rng(seed).choice(len(train), size=count, replace=False))
    return [
        digit_grid(train.images[chosen], train.labels[chosen], out / "samples.png",
                   title=f"{count} random training digits (seed {seed})", max_images=count),
        class_counts(np.bincount(train.labels, minlength=10), np.bincount(test.labels, minlength=10),
                     out / "class_counts.png"),
        class_means(train.images, train.labels, out / "class_means.png"),
        pixel_histogram(train.images, out / "pixel_histogram.png"),
    ]


def class_counts(train_counts: Sequence[int], test_counts: Sequence[int], path: str | Path) -> Path:
    """Grouped bars of the images per class, train beside test, each bar annotated."""
    classes = np.arange(len(train_counts))
    width = 0.4
    fig, ax = plt.subplots(figsize=(10, 4.5), layout="constrained")
    for offset, counts, name, color in (
        (-width / 2, train_counts, "train", TRAIN_COLOR),
        (width / 2, test_counts, "test", TEST_COLOR),
    ):
        bars = ax.bar(classes + offset, counts, width, color=color,
                      label=f"{name} ({sum(counts):,} images)")
        ax.bar_label(bars, fmt="{:,.0f}", fontsize=7, padding=2)
    ax.set_xticks(classes)
    ax.set_xlabel("digit")
    ax.set_ylabel("images")
    ax.set_title("Images per class")
    ax.margins(y=0.1)
    _thousands(ax)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _save(fig, path)


def class_means(images: np.ndarray, labels: np.ndarray, path: str | Path) -> Path:
    """The mean image of each class in a 2x5 grid."""
    labels = np.asarray(labels)
    tiles, titles = [], []
    for digit in range(10):
        members = images[labels == digit]
        tiles.append(members.mean(axis=0) if len(members) else np.zeros((28, 28)))
        titles.append(f"{digit}  (n={len(members):,})")
    return tile_grid(tiles, titles, ["black"] * 10, path, "Mean image of each class", columns=5)


def pixel_histogram(images: np.ndarray, path: str | Path) -> Path:
    """Histogram of pixel intensities 0-255 on a log axis, with the share of zero pixels."""
    counts = _intensity_counts(images)
    total = max(int(counts.sum()), 1)
    levels = np.arange(256) / 255.0
    mean = float(counts @ levels) / total
    std = float(np.sqrt(counts @ (levels - mean) ** 2 / total))
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    ax.stairs(counts, np.arange(257) - 0.5, fill=True, color=TRAIN_COLOR)
    ax.set_yscale("log")
    ax.set_xlim(-1, 256)
    ax.set_xticks([0, 32, 64, 96, 128, 160, 192, 224, 255])
    ax.set_xlabel("pixel intensity (0 = background, 255 = ink)")
    ax.set_ylabel("pixels (log scale)")
    ax.set_title(f"Pixel intensities of {len(images):,} images")
    note = f"zero pixels: {counts[0] / total:.1%}\nscaled to 0-1: mean {mean:.4f}, std {std:.4f}"
    ax.text(0.98, 0.95, note, transform=ax.transAxes, ha="right", va="top", fontsize=9,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8})
    return _save(fig, path)


def _intensity_counts(images: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Pixels per intensity 0-255, a chunk of images at a time (60k images as int64 is 376 MB)."""
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, len(images), chunk):
        block = np.asarray(images[start : start + chunk]).ravel()
        if block.dtype != np.uint8:
            block = np.clip(np.rint(block), 0, 255).astype(np.uint8)
        counts += np.bincount(block, minlength=256)
    return counts


# --- training and evaluation ----------------------------------------------------------------------


def training_curves(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Loss and accuracy per epoch, train and (when present) validation, in two panels."""
    if not history:
        raise ValueError("training history is empty")
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for ax, metric, name in ((loss_ax, "loss", "Loss"), (acc_ax, "acc", "Accuracy")):
        for split, color in (("train", TRAIN_COLOR), ("val", TEST_COLOR)):
            points = [(e, row.get(f"{split}_{metric}")) for e, row in zip(epochs, history, strict=True)]
            points = [(e, v) for e, v in points if v is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", markersize=3, color=color, label=split)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no tick at 1.25
        ax.grid(alpha=0.3)
        ax.legend()
    loss_ax.set_ylabel("cross-entropy")
    accuracies = [row.get(k) for row in history for k in ("train_acc", "val_acc")]
    _percent_axis(acc_ax, [a for a in accuracies if a is not None])
    _mark_best(acc_ax, epochs, [row.get("val_acc") for row in history])
    return _save(fig, path)


def _mark_best(ax: Axes, epochs: Sequence[int], values: Sequence[float | None]) -> None:
    """Circle the best validation accuracy and write it in the panel's corner."""
    scored = [(v, e) for e, v in zip(epochs, values, strict=True) if v is not None]
    if not scored:
        return
    best, epoch = max(scored)
    text = f"{best:.2%}" if best <= 1.0 else f"{best:.2f}%"
    ax.scatter([epoch], [best], s=90, facecolors="none", edgecolors=TEST_COLOR, zorder=3)
    ax.text(0.98, 0.04, f"best val {text} at epoch {epoch}", transform=ax.transAxes,
            ha="right", va="bottom", fontsize=9)


def confusion_matrix(
    matrix: np.ndarray,
    path: str | Path,
    labels: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """Counts annotated in each cell; colour is the fraction of the true class (row)."""
    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    labels = list(labels) if labels is not None else [str(i) for i in range(n)]
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)

    fig, ax = plt.subplots(figsize=(7.5, 6.5), layout="constrained")
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            color = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, f"{count:,}", ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    heading = f"{title}\n" if title else ""
    ax.set_title(f"{heading}accuracy {accuracy:.2%} on {matrix.sum():,} images")
    fig.colorbar(image, ax=ax, label="fraction of the true class", shrink=0.85)
    return _save(fig, path)


def mistakes_gallery(
    images: np.ndarray,
    true_labels: np.ndarray,
    predicted: np.ndarray,
    confidences: np.ndarray,
    path: str | Path,
    title: str = "",
    max_images: int = 50,
    columns: int = 10,
) -> Path:
    """The most confident mistakes first, each titled "true→pred p%"."""
    true_labels, predicted = np.asarray(true_labels), np.asarray(predicted)
    confidences = np.asarray(confidences, dtype=float)
    wrong = np.flatnonzero(true_labels != predicted)
    order = wrong[np.argsort(-confidences[wrong], kind="stable")][:max_images]
    titles = [f"{true_labels[i]}→{predicted[i]} {confidences[i]:.0%}" for i in order]
    heading = title or "Most confident mistakes"
    heading += f" ({len(order)} of {len(wrong):,} shown)" if len(wrong) else ""
    return tile_grid([images[i] for i in order], titles, [WRONG_COLOR] * len(order), path,
                      heading, columns, empty_note="no mistakes")


# --- benchmarks ----------------------------------------------------------------------------------


def latency_distribution(latencies_by_model: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """One horizontal box per model (whiskers p1-p99), with p50 and p99 marked and written."""
    names = list(latencies_by_model)
    data = [np.asarray(latencies_by_model[name], dtype=float) for name in names]
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.75 * max(len(names), 1)), layout="constrained")
    if names:
        ax.boxplot(data, **_HORIZONTAL, whis=(1, 99), showfliers=False, widths=0.5,
                   patch_artist=True, boxprops={"facecolor": "#dbe9f6"},
                   medianprops={"color": TRAIN_COLOR})
        tick_labels = []
        for row, (name, values) in enumerate(zip(names, data, strict=True), start=1):
            p50, p99 = np.percentile(values, [50, 99])
            ax.plot([p50], [row], "D", color=TRAIN_COLOR, markersize=5)
            ax.plot([p99], [row], "|", color=WRONG_COLOR, markersize=14, markeredgewidth=2)
            tick_labels.append(f"{name}\np50 {p50:,.0f} µs · p99 {p99:,.0f} µs")
        ax.set_yticks(range(1, len(names) + 1), tick_labels, fontsize=9)
        _log_if_wide(ax, np.concatenate(data), axis="x")
        ax.invert_yaxis()  # first model on top
    ax.set_xlabel("latency per call (µs)")
    ax.set_title("Latency distribution (box: p25-p75, whiskers: p1-p99, ◆ p50, | p99)")
    ax.grid(axis="x", alpha=0.3, which="both")
    return _save(fig, path)


def throughput_vs_batch(
    results: Mapping[str, Mapping[int, float]], path: str | Path, threads_label: str = ""
) -> Path:
    """Images per second against batch size (log x), one line per model."""
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    batches = sorted({int(b) for series in results.values() for b in series})
    values = [v for series in results.values() for v in series.values()]
    for (name, series), color in zip(results.items(), _palette(len(results)), strict=True):
        xs = sorted(series)
        ax.plot(xs, [series[b] for b in xs], marker="o", color=color, label=name)
    ax.set_xscale("log", base=2)
    if batches:
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
    _log_if_wide(ax, values, axis="y", ratio=50.0)
    if ax.get_yscale() == "linear":
        ax.set_ylim(bottom=0)
    _thousands(ax)
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s")
    ax.set_title("Throughput vs batch size" + (f" ({threads_label})" if threads_label else ""))
    ax.grid(alpha=0.3, which="both")
    if results:
        ax.legend()
    return _save(fig, path)


def pareto_indices(points: Sequence[Mapping[str, Any]]) -> list[int]:
    """Indices of the points no other point beats on both accuracy and latency, fastest first."""
    order = sorted(range(len(points)),
                   key=lambda i: (points[i]["latency_us"], -points[i]["accuracy"]))
    front, best = [], -np.inf
    for i in order:
        if points[i]["accuracy"] > best:
            front.append(i)
            best = points[i]["accuracy"]
    return front


def _label_offsets(x: np.ndarray, y: np.ndarray) -> list[float]:
    """Vertical label offsets (points) that stack the labels of near-coincident points."""
    span_x, span_y = np.ptp(x) or 1.0, np.ptp(y) or 1.0
    offsets: list[float] = []
    for i in range(len(x)):
        close = sum(1 for j in range(i) if abs(x[i] - x[j]) < 0.08 * span_x and abs(y[i] - y[j]) < 0.08 * span_y)
        offsets.append(-22.0 * close)
    return offsets


_LABEL_ALL_UP_TO = 12


def pareto_front(points: Sequence[Mapping[str, Any]], path: str | Path, front: Sequence[int] | None = None,
                 accuracy_label: str = "test accuracy") -> Path:
    """Accuracy against latency; marker area proportional to file size; the front connected.

    `front`: indices of the Pareto-optimal points when the caller knows them (a study's
    best trials); by default those no other point beats on both accuracy and latency.
    """
    fig, ax = plt.subplots(figsize=(8, 5.5), layout="constrained")
    if points:
        accuracy = np.array([p["accuracy"] for p in points], dtype=float)
        latency = np.array([p["latency_us"] for p in points], dtype=float)
        size = np.array([p["size_bytes"] for p in points], dtype=float)
        area = 30 + 900 * size / max(size.max(), 1)
        front = sorted(pareto_indices(points) if front is None else front, key=lambda i: latency[i])
        on_front = np.isin(np.arange(len(points)), front)
        ax.plot(latency[front], accuracy[front], "--", color=PARETO_COLOR, zorder=1,
                label="Pareto front")
        ax.scatter(latency[~on_front], accuracy[~on_front], s=area[~on_front], color="tab:gray",
                   alpha=0.5, edgecolors="black", linewidths=0.5, zorder=2, label="dominated")
        ax.scatter(latency[on_front], accuracy[on_front], s=area[on_front], color=PARETO_COLOR,
                   alpha=0.7, edgecolors="black", linewidths=0.8, zorder=3, label="Pareto-optimal")
        # Many points (a search's trials): only the front is labelled, or the labels bury each other.
        labelled = np.arange(len(points)) if len(points) <= _LABEL_ALL_UP_TO else np.array(front, dtype=int)
        for i, dy in zip(labelled, _label_offsets(latency[labelled], accuracy[labelled]), strict=True):
            p, x, y, s = points[i], latency[i], accuracy[i], area[i]
            # `s` is the marker area in points², so its radius is sqrt(s) / 2 points.
            ax.annotate(f"{p['name']}\n{format_bytes(p['size_bytes'])}", (x, y),
                        textcoords="offset points", xytext=(np.sqrt(s) / 2 + 4, dy),
                        va="center", fontsize=8)
        _log_if_wide(ax, latency, axis="x", ratio=10.0)
        _percent_axis(ax, accuracy)
        ax.margins(x=0.2, y=0.15)
        ax.legend(loc="lower right", fontsize=8, markerscale=0.5)
    ax.set_xlabel("latency per image (µs, lower is better)")
    ax.set_ylabel(f"{accuracy_label} (higher is better)")
    ax.set_title("Accuracy vs latency (marker area ∝ model file size)")
    ax.grid(alpha=0.3)
    return _save(fig, path)
