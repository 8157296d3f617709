"""Knowledge distillation: a trained checkpoint teaches a student (Hinton, Vinyals and Dean, 2015).

The student's loss mixes the labels' cross-entropy with the KL divergence from the teacher's
softened outputs,

    loss = (1 - w) * CE(student, labels) + w * T^2 * KL(softmax(teacher / T) || softmax(student / T))

where w is the recipe's `distill_weight` and T its `temperature`; the T^2 keeps the soft term's
gradients at the scale of the hard term's whatever the temperature.

The teacher runs in eval mode without gradients on the student's own (normalized, augmented)
batch. Its forward pass is what distillation costs, so it is made cheap: batch norm folded into
the convolutions, channels-last memory, and bfloat16 arithmetic where the processor does it
natively (AVX-512 BF16 or AMX on x86, and CUDA; elsewhere float32). The shipped cnn, batch 128,
one Zen 4 core: 7.5 ms in float32 channels-last against 5.5 ms in bfloat16 (the medians of 150
alternated calls), its logits within about 0.05 of float32's, which soft targets at any
temperature do not notice. Without augmentation every epoch shows the teacher the same images, so
`TeacherLogits` computes its logits for the whole training set once and training reads them by
index.

A teacher is a training run folder or an exported checkpoint (`exported/checkpoints/cnn`):
anything `checkpoint.load_checkpoint` opens, trained to the end, on the student's input
normalization. It is identified by the sha256 of its weights, the figure export manifests call
`checkpoint_sha256`; that identity goes into the student's checkpoint and manifests, and
`train --resume` refuses a teacher whose weights changed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.fx.experimental.optimization import fuse

from mnist_edge import checkpoint
from mnist_edge.config import Normalization
from mnist_edge.errors import CheckpointError, ConfigError

CACHE_BATCH = 1024  # images per teacher call when caching: fixed, so the cache is the same every time


@dataclass(frozen=True)
class TeacherInfo:
    """What a student records about its teacher."""

    path: str  # as the recipe gives it
    sha256: str  # of the teacher's model.safetensors
    arch: str
    params: int
    precision: str = "float32"  # what its forward pass computes in on this machine (bfloat16 or float32)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_teacher(path: str | Path, student: Normalization | None = None) -> tuple[TeacherInfo, dict[str, Any]]:
    """The teacher's identity and checkpoint config, or a ConfigError naming what is wrong with it."""
    folder = Path(path)
    if not folder.exists():
        raise ConfigError("teacher not found (give a training run folder or an exported checkpoint such as "
                          "exported/checkpoints/cnn)", folder)
    if not checkpoint.is_run_dir(folder):
        raise ConfigError(f"teacher is not a model: not a training run or checkpoint folder (no {checkpoint.CONFIG})",
                          folder)
    try:
        config = checkpoint.load_config(folder)
    except CheckpointError as exc:
        raise ConfigError(f"teacher is not a usable model ({exc})", folder) from exc
    if not config["progress"].get("completed"):
        raise ConfigError("teacher has not finished training (its weights would still change); finish it with "
                          f"mnist-edge train --resume --out {folder}", folder)
    _check_normalization(config["normalization"], student or Normalization(), folder)
    info = TeacherInfo(str(path), config["files"][checkpoint.WEIGHTS], config["arch"],
                       int(config.get("params") or 0))
    return info, config


def _check_normalization(teacher: dict[str, Any], student: Normalization, folder: Path) -> None:
    # The teacher sees the student's normalized batch: another convention would feed it inputs
    # it was never trained on, and its "soft labels" would be noise.
    pairs = [(key, float(teacher[key]), float(getattr(student, key))) for key in ("scale", "mean", "std")]
    differ = [f"{key} {theirs:g} (student: {ours:g})" for key, theirs, ours in pairs
              if not math.isclose(theirs, ours, rel_tol=1e-9)]
    if differ:
        raise ConfigError("teacher was trained with another input normalization: " + ", ".join(differ)
                          + "; distillation needs the student's", folder)


def native_bfloat16(device: torch.device) -> bool:
    """Whether bfloat16 convolutions run in hardware here (else they would be emulated, slower)."""
    if device.type == "cuda":
        return True
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without the probe
        return False


class Teacher:
    """A checkpoint turned into a fast, frozen logits function on normalized batches."""

    def __init__(self, info: TeacherInfo, module: torch.nn.Module, device: torch.device):
        self.bfloat16 = native_bfloat16(device)
        self.info = replace(info, precision="bfloat16" if self.bfloat16 else "float32")
        self.device = device
        # Batch norm folded into the convolutions (eval-mode statistics, as export does) and
        # channels-last tensors: oneDNN's fastest path for small convolutions on the CPU.
        self.module = fuse(module.eval()).to(device=device, memory_format=torch.channels_last).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    @classmethod
    def load(cls, path: str | Path, device: torch.device, student: Normalization | None = None) -> Teacher:
        info, _ = check_teacher(path, student)
        try:
            loaded = checkpoint.load_checkpoint(path)
        except CheckpointError as exc:
            raise ConfigError(f"teacher is not a usable model ({exc})", path) from exc
        return cls(info, loaded.module, device)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """float32 logits [N, 10] of normalized images [N, 1, 28, 28]; no gradient flows back."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bfloat16):
            return self.module(x.contiguous(memory_format=torch.channels_last)).float()


class TeacherLogits:
    """The teacher's logits for every training image, computed once (recipes without augmentation)."""

    def __init__(self, teacher: Teacher, batches: Callable[[int], Iterator[torch.Tensor]]):
        """`batches(n)` yields every training image, normalized and in order, n at a time."""
        started = time.perf_counter()
        parts = [teacher.logits(x) for x in batches(CACHE_BATCH)]
        self.logits = torch.cat(parts) if parts else torch.zeros(0, 10, device=teacher.device)
        self.seconds = time.perf_counter() - started

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logits[idx]


def kl_to_teacher(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over the batch of KL(softmax(teacher / T) || softmax(student / T))."""
    return F.kl_div(F.log_softmax(student / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1),
                    reduction="batchmean", log_target=True)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, weight: float,
                      temperature: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """Hinton et al.'s loss (see the module's docstring); weight 0 is the labels' loss alone."""
    hard = F.cross_entropy(student, labels, label_smoothing=label_smoothing)
    if weight == 0:
        return hard
    soft = kl_to_teacher(student, teacher, temperature) * temperature ** 2
    return (1 - weight) * hard + weight * soft


def check_same_teacher(config: dict[str, Any], info: TeacherInfo, run_dir: Path) -> None:
    """Refuse to resume with a teacher other than the one this run started with."""
    saved = config.get("teacher")
    if not isinstance(saved, dict):
        raise ConfigError("cannot resume: the saved run records no teacher (edited by hand?)", run_dir)
    if saved.get("sha256") != info.sha256:
        raise ConfigError(f"cannot resume: the teacher {info.path} changed since this run started (weights "
                          f"sha256 {str(saved.get('sha256'))[:12]}... then, {info.sha256[:12]}... now); "
                          "restore it or start over with --force", run_dir)
