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
from mnist_edge.fileio import atomic_write_json, ensure_dir


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
                           max_mistakes: int = 40) -> EvalReport:
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
    )


def write_artifacts(report: EvalReport, images: np.ndarray, out_dir: str | Path,
                    prefix: str = "eval") -> dict[str, Path]:
    """JSON report, confusion-matrix PNG and a gallery of the most confident mistakes."""
    from mnist_edge import plots  # matplotlib only when pictures are asked for

    out = ensure_dir(out_dir)
    idx = np.array([m.index for m in report.mistakes], dtype=np.int64)
    paths = {
        "json": atomic_write_json(out / f"{prefix}.json", report.to_dict()),
        "confusion": plots.confusion_matrix(np.array(report.confusion), out / f"{prefix}_confusion.png",
                                            title=report.model),  # the plot adds the accuracy
        "mistakes": plots.mistakes_gallery(
            images[idx], np.array([m.true for m in report.mistakes]),
            np.array([m.predicted for m in report.mistakes]),
            np.array([m.confidence for m in report.mistakes]),
            out / f"{prefix}_mistakes.png", title=f"{report.model}: most confident mistakes"),
    }
    return paths


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
