"""Accuracy, per-class precision and recall, confusion matrix and the most confident mistakes.

Works on predicted probabilities from any source (a PyTorch checkpoint or an ONNX model), so the
training side and the torch-free runtime share one evaluation. Only `torch_logits` needs torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge.config import LABELS
from mnist_edge.fileio import atomic_write, atomic_write_json, ensure_dir


@dataclass(frozen=True)
class ClassFigures:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Mistake:
    index: int
    true: int
    predicted: int
    confidence: float


@dataclass(frozen=True)
class EvalReport:
    model: str
    count: int
    correct: int
    accuracy: float
    per_class: list[ClassFigures]
    confusion: list[list[int]]
    mistakes: list[Mistake]
    params: int | None = None  # None when the source does not say (a foreign ONNX model)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int = 10) -> np.ndarray:
    """Rows are true classes, columns predicted ones."""
    return np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def per_class_figures(confusion: np.ndarray) -> list[ClassFigures]:
    true_pos = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
    recall = np.divide(true_pos, support, out=np.zeros_like(true_pos), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(true_pos), where=denom > 0)
    return [ClassFigures(LABELS[i], float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
            for i in range(len(confusion))]


def evaluate_probabilities(model: str, labels: np.ndarray, probabilities: np.ndarray,
                           max_mistakes: int = 40, params: int | None = None) -> EvalReport:
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    matrix = confusion_matrix(labels, predicted, probabilities.shape[1])
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:max_mistakes]
    correct = int(len(labels) - len(wrong))
    return EvalReport(
        model=model, count=int(len(labels)), correct=correct, accuracy=correct / len(labels),
        per_class=per_class_figures(matrix), confusion=matrix.tolist(),
        mistakes=[Mistake(int(i), int(labels[i]), int(predicted[i]), float(confidence[i])) for i in worst],
        params=params,
    )


def confusion_lines(report: EvalReport) -> list[str]:
    """The confusion matrix as aligned text rows (true class down, predicted across) for a terminal."""
    width = max(4, *(len(f"{n:,}") for row in report.confusion for n in row))
    labels = [c.label for c in report.per_class]
    lines = ["true\\pred  " + " ".join(f"{label:>{width}}" for label in labels)]
    for label, row in zip(labels, report.confusion, strict=True):
        lines.append(f"{label:>9}  " + " ".join(f"{n:>{width},}" for n in row))
    return lines


def write_artifacts(report: EvalReport, images: np.ndarray, out_dir: str | Path,
                    prefix: str = "eval") -> dict[str, Path]:
    """JSON report, confusion-matrix PNG and a gallery of the most confident mistakes."""
    out = ensure_dir(out_dir)
    idx = np.array([m.index for m in report.mistakes], dtype=np.int64)
    true = np.array([m.true for m in report.mistakes], dtype=np.int64)
    predicted = np.array([m.predicted for m in report.mistakes], dtype=np.int64)
    confidence = np.array([m.confidence for m in report.mistakes], dtype=np.float64)
    confusion_png, mistakes_png = _figure_makers()
    return {
        "json": atomic_write_json(out / f"{prefix}.json", report.to_dict()),
        "confusion": confusion_png(np.array(report.confusion), out / f"{prefix}_confusion.png",
                                   title=report.model),  # the figure adds the accuracy
        "mistakes": mistakes_png(images[idx], true, predicted, confidence, out / f"{prefix}_mistakes.png",
                                 title=f"{report.model}: most confident mistakes"),
    }


def _figure_makers() -> tuple[Any, Any]:
    """Matplotlib's figures when it is installed; else Pillow's plainer ones, so the light
    install (no matplotlib) still gets the PNGs when it evaluates an ONNX model."""
    try:
        from mnist_edge import plots
    except ImportError:
        return pillow_confusion, pillow_mistakes
    return plots.confusion_matrix, plots.mistakes_gallery


def pillow_confusion(matrix: np.ndarray, path: Path, title: str = "", cell: int = 44) -> Path:
    """Counts in cells shaded by the fraction of the true class (row), as plots.confusion_matrix."""
    from PIL import Image, ImageDraw

    n = len(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    left, top = 40, 56
    image = Image.new("RGB", (left + n * cell + 10, top + n * cell + 30), "white")
    draw = ImageDraw.Draw(image)
    accuracy = np.trace(matrix) / max(int(matrix.sum()), 1)
    draw.text((8, 6), f"{title}\naccuracy {accuracy:.2%} on {int(matrix.sum()):,} images", fill="black")
    for i in range(n):
        draw.text((left + i * cell + cell // 2, top - 8), str(i), fill="black", anchor="ms")
        draw.text((left - 8, top + i * cell + cell // 2), str(i), fill="black", anchor="rm")
        for j in range(n):
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 1, top + (i + 1) * cell - 1)
            shade = int(255 * (1 - 0.8 * share[i, j]))
            draw.rectangle(box, fill=(shade, shade, 255))
            if matrix[i, j]:
                colour = "white" if share[i, j] > 0.5 else "black"
                draw.text((box[0] + cell // 2, box[1] + cell // 2), f"{int(matrix[i, j]):,}",
                          fill=colour, anchor="mm")
    draw.text((left, top + n * cell + 8), "rows: true digit, columns: predicted", fill="black")
    return _save_png(image, path)


def pillow_mistakes(images: np.ndarray, true: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
                    path: Path, title: str = "", columns: int = 10, zoom: int = 3) -> Path:
    """The mistakes in the given order, each captioned "true->predicted p%"."""
    from PIL import Image, ImageDraw

    tile, caption = 28 * zoom, 14
    grid_rows = max(1, -(-len(images) // columns))
    image = Image.new("RGB", (columns * (tile + 4) + 4, 24 + grid_rows * (tile + caption + 4)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((4, 6), title if len(images) else f"{title}: no mistakes", fill="black")
    for k, digit in enumerate(images):
        x, y = 4 + (k % columns) * (tile + 4), 24 + (k // columns) * (tile + caption + 4)
        image.paste(Image.fromarray(digit).resize((tile, tile), Image.Resampling.NEAREST), (x, y))
        draw.text((x, y + tile + 1), f"{true[k]}->{predicted[k]} {confidence[k]:.0%}", fill=(200, 30, 30))
    return _save_png(image, path)


def _save_png(image: Any, path: Path) -> Path:
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def torch_logits(model: Any, images: np.ndarray, scale: float, mean: float, std: float,
                 device: str = "cpu", batch_size: int = 2000) -> np.ndarray:
    """Logits of a PyTorch model on uint8 images [N, 28, 28], in float32 on the CPU."""
    import torch

    from mnist_edge.data import normalize

    model = model.to(device).eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(normalize(images[start:start + batch_size], scale, mean, std))
            outputs.append(model(x.to(device)).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 10), np.float32)
