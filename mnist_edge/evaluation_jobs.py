"""Evaluate whatever the user points at: a training run (PyTorch) or an ONNX model (onnxruntime).

Kept apart from evaluate.py (pure metrics) so the ONNX path never imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge import data
from mnist_edge.evaluate import EvalReport, evaluate_probabilities, softmax, write_artifacts


def is_onnx_target(path: Path) -> bool:
    return path.suffix == ".onnx" or (path / "manifest.json").is_file()


def checkpoint_probabilities(run_dir: Path, images: np.ndarray) -> tuple[str, np.ndarray]:
    from mnist_edge.checkpoint import load_for_inference
    from mnist_edge.evaluate import torch_logits

    model, config = load_for_inference(run_dir)
    norm = config["normalization"]
    logits = torch_logits(model, images, norm["scale"], norm["mean"], norm["std"])
    return f"{config['arch']} (PyTorch)", softmax(logits)


def onnx_probabilities(path: Path, images: np.ndarray, **convention: Any) -> tuple[str, np.ndarray]:
    from mnist_edge.runtime import Predictor

    predictor = Predictor.load(path, **convention)
    name = predictor.manifest["name"] if predictor.manifest else path.name
    return f"{name} (onnxruntime)", predictor.probabilities(images)


def evaluate_any(target: str | Path, *, out: str | Path | None = None, data_dir: Any = None,
                 download: bool = True, **convention: Any) -> tuple[EvalReport, dict[str, Path]]:
    """Evaluate on the test set; write eval.json and PNGs to `out` (a run folder's own by default)."""
    target = Path(target)
    test = data.load_split("test", data_dir, download)
    if is_onnx_target(target):
        name, probs = onnx_probabilities(target, test.images, **convention)
    else:
        name, probs = checkpoint_probabilities(target, test.images)
        out = out if out is not None else target
    report = evaluate_probabilities(name, test.labels, probs)
    artifacts = write_artifacts(report, test.images, out) if out is not None else {}
    return report, artifacts
