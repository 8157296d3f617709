"""Evaluate whatever the user points at on the test set (or the images it trained on, or its
validation images): a training run (PyTorch) or an ONNX model (onnxruntime). Accuracy,
per-class precision and recall, the confusion matrix and the most confident mistakes, computed
from predicted probabilities whatever their source, so the training side and the torch-free
runtime share one evaluation.

torch is imported only to run a checkpoint (`checkpoint_scorer`, through
`checkpoint.torch_logits`, the one place that runs a model on images: this module imports
checkpoint.py, never the other way round); matplotlib only to draw the PNGs, with Pillow's
plainer figures when it is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge import data, pillow_plots
from mnist_edge.config import LABELS, Recipe
from mnist_edge.data import SplitPlan
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
class SplitScore:
    """Accuracy on another split, measured beside a report (the training set beside the test set)."""

    count: int
    correct: int
    accuracy: float
    images: str  # what the images are, in words


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
    split: str = "test"  # train, test or val (data.SPLITS)
    images: str = ""  # what the images are, in words
    beside: dict[str, SplitScore] = field(default_factory=dict)  # other splits' accuracy, same model

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
                           max_mistakes: int = 40, params: int | None = None, split: str = "test",
                           images: str = "") -> EvalReport:
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
        params=params, split=split, images=images,
    )


def score(labels: np.ndarray, probabilities: np.ndarray, images: str = "") -> SplitScore:
    correct = int(np.count_nonzero(probabilities.argmax(axis=1) == labels))
    return SplitScore(int(len(labels)), correct, correct / max(len(labels), 1), images)


def artifact_prefix(split: str) -> str:
    """eval.json and its PNGs for the test set (as always); eval_train.json, eval_val.json... beside them."""
    return "eval" if split == "test" else f"eval_{split}"


def confusion_lines(report: EvalReport) -> list[str]:
    """The confusion matrix as aligned text rows (true class down, predicted across) for a terminal."""
    width = max(4, *(len(f"{n:,}") for row in report.confusion for n in row))
    labels = [c.label for c in report.per_class]
    lines = ["true\\pred  " + " ".join(f"{label:>{width}}" for label in labels)]
    for label, row in zip(labels, report.confusion, strict=True):
        lines.append(f"{label:>9}  " + " ".join(f"{n:>{width},}" for n in row))
    return lines


def write_artifacts(report: EvalReport, images: np.ndarray, out_dir: str | Path,
                    prefix: str | None = None) -> dict[str, Path]:
    """JSON report, confusion-matrix PNG and a gallery of the most confident mistakes."""
    out = ensure_dir(out_dir)
    prefix = prefix or artifact_prefix(report.split)
    title = report.model if report.split == "test" else f"{report.model}, {report.split} set"
    idx = np.array([m.index for m in report.mistakes], dtype=np.int64)
    true = np.array([m.true for m in report.mistakes], dtype=np.int64)
    predicted = np.array([m.predicted for m in report.mistakes], dtype=np.int64)
    confidence = np.array([m.confidence for m in report.mistakes], dtype=np.float64)
    confusion_png, mistakes_png = _figure_makers()
    return {
        "json": atomic_write_json(out / f"{prefix}.json", report.to_dict()),
        "confusion": confusion_png(np.array(report.confusion), out / f"{prefix}_confusion.png",
                                   title=title),  # the figure adds the accuracy
        "mistakes": mistakes_png(images[idx], true, predicted, confidence, out / f"{prefix}_mistakes.png",
                                 title=f"{title}: most confident mistakes"),
    }


def _figure_makers() -> tuple[Any, Any]:
    """Matplotlib's figures when it is installed; else Pillow's plainer ones, so the light
    install (no matplotlib) still gets the PNGs when it evaluates an ONNX model."""
    try:
        from mnist_edge import plots
    except ImportError:
        return pillow_plots.confusion, pillow_plots.mistakes
    return plots.confusion_matrix, plots.mistakes_gallery


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


@dataclass(frozen=True)
class Scorer:
    """A loaded model: its name, parameter count, the recipe it trained with (when known: it
    names the training and validation images) and a function from uint8 images to probabilities."""

    name: str
    params: int | None
    recipe: dict[str, Any] | None
    recipe_from: str  # checkpoint, manifest or default
    probabilities: Callable[[np.ndarray], np.ndarray]

    def plan(self, split: str) -> SplitPlan:
        """The split's images for this model: its recipe's hold-out, a key it lacks taken from the
        default recipe (older manifests have no train_limit); the default hold-out when it names
        none of them, or a value that is not a count."""
        recipe = Recipe()
        defaults = {"val_size": recipe.val_size, "split_seed": recipe.split_seed, "train_limit": recipe.train_limit}
        known = self.recipe or {}
        chosen = {key: known.get(key, value) for key, value in defaults.items()}
        counts = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in chosen.values())
        if not counts or not any(key in known for key in defaults):
            return SplitPlan(split, **defaults, recipe_from="default")
        return SplitPlan(split, **chosen, recipe_from=self.recipe_from)


def checkpoint_scorer(run_dir: Path) -> Scorer:
    from mnist_edge.checkpoint import load_checkpoint, torch_logits
    from mnist_edge.models import count_parameters

    loaded = load_checkpoint(run_dir)
    norm = loaded.normalization
    return Scorer(loaded.name, count_parameters(loaded.module), loaded.config["recipe"], "checkpoint",
                  lambda images: softmax(torch_logits(loaded.module, images, norm.scale, norm.mean, norm.std)))


def onnx_scorer(path: Path, **convention: Any) -> Scorer:
    predictor = Predictor.load(path, **convention)
    name = predictor.manifest["name"] if predictor.manifest else path.name
    source = (predictor.manifest or {}).get("source")
    recipe = source.get("recipe") if isinstance(source, dict) else None
    return Scorer(f"{name} (onnxruntime)", _manifest_params(predictor.manifest),
                  recipe if isinstance(recipe, dict) else None, "manifest", predictor.probabilities)


def checkpoint_probabilities(run_dir: Path, images: np.ndarray) -> tuple[str, np.ndarray, int]:
    scorer = checkpoint_scorer(run_dir)
    return scorer.name, scorer.probabilities(images), scorer.params


def onnx_probabilities(path: Path, images: np.ndarray,
                       **convention: Any) -> tuple[str, np.ndarray, int | None]:
    scorer = onnx_scorer(path, **convention)
    return scorer.name, scorer.probabilities(images), scorer.params


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


def evaluate_any(target: str | Path, *, split: str = "test", beside: Sequence[str] = (),
                 out: str | Path | None = None, data_dir: Any = None, download: bool = True,
                 **convention: Any) -> tuple[EvalReport, dict[str, Path]]:
    """Evaluate on a split (the test set by default); write eval.json and PNGs to `out` (a run
    folder's own by default; eval_train.json... for the other splits).

    `beside` names more splits whose accuracy the report carries too (`EvalReport.beside`): the
    pipeline puts the training set's beside the test set's, the generalisation gap in one file.
    Training and validation images are those the model's recipe used (checkpoint config or
    manifest), else the default hold-out; training images are read as they are, unaugmented.
    """
    for name in (split, *beside):
        SplitPlan.check_name(name)
    target = Path(target)
    kind = target_kind(target)
    if kind == "checkpoint":
        _check_checkpoint_options(target, convention)
        require_torch(target)
        out = out if out is not None else target
    scorer = onnx_scorer(target, **convention) if kind == "onnx" else checkpoint_scorer(target)
    plan = scorer.plan(split)
    chosen = data.load_plan(plan, data_dir, download)
    others = {name: _score_split(scorer, name, data_dir, download) for name in beside if name != split}
    report = evaluate_probabilities(scorer.name, chosen.labels, scorer.probabilities(chosen.images),
                                    params=scorer.params, split=split, images=plan.describe(len(chosen)))
    report = replace(report, beside=others)
    artifacts = write_artifacts(report, chosen.images, out) if out is not None else {}
    return report, artifacts


def _score_split(scorer: Scorer, split: str, data_dir: Any, download: bool) -> SplitScore:
    plan = scorer.plan(split)
    chosen = data.load_plan(plan, data_dir, download)
    return score(chosen.labels, scorer.probabilities(chosen.images), plan.describe(len(chosen)))

