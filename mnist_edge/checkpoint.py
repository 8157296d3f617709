"""Training checkpoints: safetensors tensors plus a JSON config that rebuilds the model alone.

A run folder holds:
  config.json         format, versions, arch, normalization, recipe, progress, metrics, hashes
  model.safetensors   weights and batch-norm buffers
  state.safetensors   optimizer tensors (momentum, Adam moments) for --resume
No pickle anywhere: a checkpoint from an untrusted source cannot run code when loaded.
Each save is a small journal, so a process killed at any moment leaves a checkpoint that
`--resume` can use: the tensor files are first written in full under pending names
(`.model.safetensors.pending`), then config.json, which records their sha256, is replaced (the
commit point), and only then are the pending files renamed over the old ones. `recover` finishes
an interrupted save whose config.json was committed, and drops one that was not.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mnist_edge import __version__, data
from mnist_edge.config import Normalization, Recipe
from mnist_edge.errors import CheckpointError, ConfigError, OutputError
from mnist_edge.fileio import atomic_write, atomic_write_json, read_json, sha256_file
from mnist_edge.models import build_recipe

FORMAT = "mnist-edge-checkpoint"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
STATE = "state.safetensors"


@dataclass
class Progress:
    """Where training stands: `step` batches of epoch `epoch` (0-based) are done."""

    epoch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    completed: bool = False
    teacher_seconds: float = 0.0  # of `seconds`, spent in the teacher (distillation)


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def save(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, recipe: Recipe,
         progress: Progress, history: list[dict], extra: dict[str, Any]) -> None:
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _split_optimizer_state(optimizer.state_dict())
    atomic_write(_pending(run_dir, WEIGHTS), lambda tmp: save_file(weights, str(tmp)))
    atomic_write(_pending(run_dir, STATE), lambda tmp: save_file(opt_tensors, str(tmp)))
    config = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "mnist_edge": __version__,
        "arch": recipe.arch, "normalization": Normalization().__dict__, "recipe": recipe.to_dict(),
        "progress": progress.__dict__, "optimizer": opt_meta, "history": history,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "files": {name: sha256_file(_pending(run_dir, name)) for name in (WEIGHTS, STATE)},
        **extra,
    }
    atomic_write_json(run_dir / CONFIG, config)  # the commit point: it names the pending files' hashes
    _install_pending(run_dir)


def _pending(run_dir: Path, name: str) -> Path:
    return run_dir / f".{name}.pending"


def _install_pending(run_dir: Path) -> None:
    for name in (WEIGHTS, STATE):
        try:
            os.replace(_pending(run_dir, name), run_dir / name)
        except OSError as exc:
            raise OutputError(f"cannot write ({exc.strerror or exc})", run_dir / name) from exc


def recover(run_dir: str | Path) -> None:
    """Finish or drop a save that a killed process left half done (see the module's docstring).

    Call it holding the run folder's lock: a pending file is only stale when no process writes it.
    """
    run_dir = Path(run_dir)
    pending = [name for name in (WEIGHTS, STATE) if _pending(run_dir, name).is_file()]
    if not pending:
        return
    try:
        committed = read_json(run_dir / CONFIG, CheckpointError).get("files", {})
    except (CheckpointError, AttributeError):
        committed = {}  # no readable config.json: nothing was committed
    if not isinstance(committed, dict):
        committed = {}
    for name in pending:
        if committed.get(name) == sha256_file(_pending(run_dir, name)):
            os.replace(_pending(run_dir, name), run_dir / name)  # committed: roll forward
        else:
            _pending(run_dir, name).unlink()  # killed before the commit: the old files stand


def _split_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state_dict -> (flat tensors for safetensors, JSON-able rest)."""
    tensors, meta_state = {}, {}
    for param_id, slots in state["state"].items():
        meta_state[str(param_id)] = {}
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                meta_state[str(param_id)][name] = value
    return tensors, {"param_groups": state["param_groups"], "state": meta_state}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in meta["state"].items()}
    for key, value in tensors.items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def load_config(run_dir: str | Path, for_resume: bool = False) -> dict[str, Any]:
    """Read and check config.json: right format, supported version, tensor files unchanged.

    The optimizer state is needed (and checked) only to resume: a folder holding just
    config.json and the weights is a complete model for inference and export.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError("not a directory (expected a training run folder)", run_dir)
    path = run_dir / CONFIG
    if not path.is_file():
        raise CheckpointError(f"not a training run folder (no {CONFIG}); train one with mnist-edge train", run_dir)
    config = read_json(path, CheckpointError)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError("not an mnist-edge checkpoint config", path)
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format version {config.get('format_version')!r} is not supported by "
            f"mnist-edge {__version__} (expects {FORMAT_VERSION}); retrain or use a matching version",
            path)
    _check_fields(config, path)
    _check_file_hashes(run_dir, config["files"], for_resume)
    try:
        config["recipe_obj"] = Recipe.from_dict(config["recipe"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"invalid recipe in checkpoint ({exc})", path) from exc
    if config["arch"] != config["recipe_obj"].arch:
        raise CheckpointError(f"arch {config['arch']!r} disagrees with the recipe's "
                              f"{config['recipe_obj'].arch!r} (edited by hand?)", path)
    return config


# The fields later code reads, with their JSON types: a damaged but valid-JSON config.json is
# a CheckpointError here instead of a KeyError deep inside training or export.
_REQUIRED_FIELDS = {"arch": str, "recipe": dict, "normalization": dict, "progress": dict, "files": dict}


def _check_fields(config: dict[str, Any], path: Path) -> None:
    for key, kind in _REQUIRED_FIELDS.items():
        if not isinstance(config.get(key), kind):
            raise CheckpointError(f"field {key!r} is missing or not a JSON {kind.__name__}", path)
    norm = config["normalization"]
    if not all(isinstance(norm.get(k), (int, float)) for k in ("scale", "mean", "std")):
        raise CheckpointError("normalization needs numeric scale, mean and std", path)


def _check_file_hashes(run_dir: Path, files: dict[str, Any], for_resume: bool) -> None:
    for name, digest in files.items():
        if name == STATE and not for_resume:
            continue
        if name not in (WEIGHTS, STATE):
            raise CheckpointError(f"config.json names an unexpected file {name!r}", run_dir / CONFIG)
        file = run_dir / name
        if not file.is_file():
            raise CheckpointError("file named by config.json is missing", file)
        if sha256_file(file) != digest:
            if _pending(run_dir, name).is_file():
                raise CheckpointError("a save was interrupted before this file was replaced; finish it with "
                                      f"mnist-edge train --resume --out {run_dir}", file)
            raise CheckpointError("file does not match the hash in config.json (truncated or replaced)", file)


def restore_progress(config: dict[str, Any], path: Path) -> Progress:
    """The saved Progress, or a CheckpointError when its fields were damaged."""
    try:
        return Progress(**config["progress"])
    except TypeError as exc:
        raise CheckpointError(f"invalid progress in checkpoint ({exc})", path / CONFIG) from exc


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read tensors ({exc})", path) from exc


def load_weights(model: torch.nn.Module, run_dir: Path) -> None:
    path = run_dir / WEIGHTS
    try:
        model.load_state_dict(_load_tensors(path))
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not fit the architecture ({str(exc).splitlines()[0]})", path) from exc


def load_optimizer(optimizer: torch.optim.Optimizer, run_dir: Path, config: dict) -> None:
    path = run_dir / STATE
    try:
        optimizer.load_state_dict(_join_optimizer_state(_load_tensors(path), config["optimizer"]))
    # config.json's optimizer part is plain JSON: a damaged one can hold any shape (a list for
    # a mapping, a string for a list), which torch and the join report as TypeError or AttributeError.
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError, IndexError) as exc:
        raise CheckpointError(f"optimizer state does not fit ({exc})", path) from exc


def load_for_inference(run_dir: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained model in eval mode, on the CPU, and its config."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    model = build_recipe(config["recipe_obj"])
    load_weights(model, run_dir)
    return model.eval(), config


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint ready to run: the eval-mode module and the input convention it was trained with."""

    module: torch.nn.Module
    config: dict[str, Any]
    arch: str
    normalization: Normalization

    @property
    def name(self) -> str:
        return f"{self.arch} (PyTorch)"


def load_checkpoint(run_dir: str | Path) -> LoadedCheckpoint:
    """The one way evaluation, parity and bench open a checkpoint for inference."""
    module, config = load_for_inference(run_dir)
    return LoadedCheckpoint(module, config, config["arch"], Normalization(**config["normalization"]))


def checkpoint_logits(run_dir: str | Path, images: np.ndarray) -> tuple[LoadedCheckpoint, np.ndarray]:
    """The checkpoint and its float32 logits on uint8 images [N, 28, 28] (CPU)."""
    loaded = load_checkpoint(run_dir)
    norm = loaded.normalization
    return loaded, torch_logits(loaded.module, images, norm.scale, norm.mean, norm.std)


def torch_logits(model: torch.nn.Module, images: np.ndarray, scale: float, mean: float, std: float,
                 device: str = "cpu", batch_size: int = 2000) -> np.ndarray:
    """Logits of a PyTorch model on uint8 images [N, 28, 28], in float32 on the CPU."""
    model = model.to(device).eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(data.normalize(images[start:start + batch_size], scale, mean, std))
            outputs.append(model(x.to(device)).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 10), np.float32)
