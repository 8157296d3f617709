"""Evaluate whatever the user points at on the test set: a training run (PyTorch) or an ONNX
model (onnxruntime). Accuracy, per-class precision and recall, the confusion matrix and the most
confident mistakes, computed from predicted probabilities whatever their source, so the training
side and the torch-free runtime share one evaluation.

torch is imported only to run a checkpoint (`torch_logits`, `checkpoint_probabilities`);
matplotlib only to draw the PNGs, with Pillow's plainer figures when it is missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge import data, pillow_plots
from mnist_edge.config import LABELS
from mnist_edge.errors import ConfigError, ModelFileError
from mnist_edge.fileio import atomic_write_json, ensure_dir
from mnist_edge.runtime import Predictor, softmax


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
        return pillow_plots.confusion, pillow_plots.mistakes
    return plots.confusion_matrix, plots.mistakes_gallery


def torch_logits(model: Any, images: np.ndarray, scale: float, mean: float, std: float,
                 device: str = "cpu", batch_size: int = 2000) -> np.ndarray:
    """Logits of a PyTorch model on uint8 images [N, 28, 28], in float32 on the CPU."""
    import torch

    model = model.to(device).eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(data.normalize(images[start:start + batch_size], scale, mean, std))
            outputs.append(model(x.to(device)).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 10), np.float32)


# --- evaluating a model: a training run (PyTorch) or an ONNX model (onnxruntime) --------------


CHECKPOINT_CONFIG = "config.json"  # checkpoint.CONFIG, named here so no torch import is needed
TRAIN_EXTRA = "pip install 'mnist-edge[train]'"


def target_kind(path: Path) -> str:
    """'onnx' or 'checkpoint', decided the way `runtime.locate_model` finds a model.

    A file is a model; a folder is a model folder when it holds manifest.json or .onnx files
    and no checkpoint config (locate_model then names the problem if there are several).
    """
    if not path.exists():
        raise ModelFileError("not found: not a directory nor a file (give a training run folder, "
                             "an exported model folder or an .onnx file)", path)
    if path.is_file():
        return "onnx"
    if (path / "manifest.json").is_file():
        return "onnx"
    if (path / CHECKPOINT_CONFIG).is_file():
        return "checkpoint"
    if any(path.glob("*.onnx")):
        return "onnx"
    raise ModelFileError(f"neither a training run folder (no {CHECKPOINT_CONFIG}) nor a model "
                         "folder (no manifest.json, no .onnx file)", path)


def require_torch(run_dir: Path) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConfigError(f"eval of a PyTorch checkpoint needs torch: {TRAIN_EXTRA}", run_dir) from None


def checkpoint_probabilities(run_dir: Path, images: np.ndarray) -> tuple[str, np.ndarray, int]:
    from mnist_edge.checkpoint import checkpoint_logits
    from mnist_edge.models import count_parameters

    loaded, logits = checkpoint_logits(run_dir, images)
    return loaded.name, softmax(logits), count_parameters(loaded.module)


def onnx_probabilities(path: Path, images: np.ndarray,
                       **convention: Any) -> tuple[str, np.ndarray, int | None]:
    predictor = Predictor.load(path, **convention)
    name = predictor.manifest["name"] if predictor.manifest else path.name
    return f"{name} (onnxruntime)", predictor.probabilities(images), _manifest_params(predictor.manifest)


def _manifest_params(manifest: dict[str, Any] | None) -> int | None:
    # Counting initializer elements needs the onnx package; the manifest records the count.
    source = (manifest or {}).get("source")
    params = source.get("params") if isinstance(source, dict) else None
    return params if isinstance(params, int) else None


def _check_checkpoint_options(run_dir: Path, convention: dict[str, Any]) -> None:
    # A checkpoint carries its own normalisation; silently ignoring an override would mislead.
    given = [f"--{key}" for key, value in convention.items() if value is not None]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise ConfigError(f"{', '.join(given)} {verb} to ONNX models only: a checkpoint uses the "
                          "normalisation it was trained with", run_dir)


def evaluate_any(target: str | Path, *, out: str | Path | None = None, data_dir: Any = None,
                 download: bool = True, **convention: Any) -> tuple[EvalReport, dict[str, Path]]:
    """Evaluate on the test set; write eval.json and PNGs to `out` (a run folder's own by default)."""
    target = Path(target)
    kind = target_kind(target)
    if kind == "checkpoint":
        _check_checkpoint_options(target, convention)
        require_torch(target)
    test = data.load_split("test", data_dir, download)
    if kind == "onnx":
        name, probs, params = onnx_probabilities(target, test.images, **convention)
    else:
        name, probs, params = checkpoint_probabilities(target, test.images)
        out = out if out is not None else target
    report = evaluate_probabilities(name, test.labels, probs, params=params)
    artifacts = write_artifacts(report, test.images, out) if out is not None else {}
    return report, artifacts
