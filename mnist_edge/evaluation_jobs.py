"""Evaluate whatever the user points at: a training run (PyTorch) or an ONNX model (onnxruntime).

Kept apart from evaluate.py (pure metrics) so the ONNX path never imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge import data
from mnist_edge.errors import ConfigError, ModelFileError
from mnist_edge.evaluate import EvalReport, evaluate_probabilities, softmax, write_artifacts

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
    from mnist_edge.checkpoint import load_for_inference
    from mnist_edge.evaluate import torch_logits
    from mnist_edge.models import count_parameters

    model, config = load_for_inference(run_dir)
    norm = config["normalization"]
    logits = torch_logits(model, images, norm["scale"], norm["mean"], norm["std"])
    return f"{config['arch']} (PyTorch)", softmax(logits), count_parameters(model)


def onnx_probabilities(path: Path, images: np.ndarray,
                       **convention: Any) -> tuple[str, np.ndarray, int | None]:
    from mnist_edge.runtime import Predictor

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
