"""Frozen configuration dataclasses and the training presets.

A `Recipe` fully describes a training run; it travels inside every checkpoint so a model and
its training can be rebuilt from the checkpoint folder alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from mnist_edge.errors import ConfigError

# Training-set pixel statistics after scaling to [0, 1] (`mnist-edge data stats` recomputes them).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
LABELS = tuple(str(d) for d in range(10))
IMAGE_SIZE = 28  # MNIST's field: 28 x 28 pixels

ARCHS = ("mlp", "lenet5", "cnn", "tiny", "strided", "micro")
# Width and depth knobs (Recipe.width/depth; 0 = the layout as named) and their ranges, so a
# search can explore layouts: mlp - hidden units and hidden layers; strided - channels of the first
# convolution (the second has twice as many) and stride-2 stages (a third takes 5x5 to 2x2);
# cnn, tiny and micro - channels of the first convolution, every later one scaled alike.
ARCH_KNOBS: dict[str, dict[str, tuple[int, int]]] = {
    "mlp": {"width": (16, 2048), "depth": (1, 6)},
    "strided": {"width": (4, 128), "depth": (2, 3)},
    "cnn": {"width": (4, 32)},
    "tiny": {"width": (4, 32)},
    "micro": {"width": (4, 32)},
}
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")

# Deployment defaults, in one place like the training recipe: the ONNX opset written, and what
# `bench` measures (batch sizes; thread counts, N = every usable core; seconds of latency timing).
OPSET = 17
BENCH_BATCH_SIZES = (1, 8, 64, 256)
BENCH_THREADS = "1,N"
BENCH_SECONDS = 2.0
# The pipeline benchmarks its two models for less time: a check of the run, not a measurement campaign.
PIPELINE_BENCH_SECONDS = 1.0
# `run --show`: a picture per input for up to SHOW_EACH_UP_TO inputs, else a contact sheet of
# at most SHOW_LIMIT (a sheet of 1,000 digits is about 1,600 x 2,900 pixels).
SHOW_EACH_UP_TO = 16
SHOW_LIMIT = 1000


@dataclass(frozen=True)
class Normalization:
    """Input convention: x = (pixel / scale - mean) / std, pixels in [0, 255]."""

    scale: float = 255.0
    mean: float = MNIST_MEAN
    std: float = MNIST_STD


# Distillation defaults (Hinton et al.'s loss; mnist_edge/distill.py): measured on MNIST with the
# shipped cnn as teacher, docs/distillation.md.
DISTILL_WEIGHT = 0.5
TEMPERATURE = 4.0
_DISTILL_KEYS = ("teacher", "distill_weight", "temperature")


@dataclass(frozen=True)
class Recipe:
    arch: str = "cnn"
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    augment: bool = True
    label_smoothing: float = 0.0
    seed: int = 0
    val_size: int = 5000
    split_seed: int = 0
    # Optional limit on training images (tests and smoke runs); 0 means all.
    train_limit: int = 0
    # Architecture knobs (models.KNOBS says which architecture takes which); 0 keeps the layout as named.
    width: int = 0
    depth: int = 0
    # Knowledge distillation (mnist_edge/distill.py): a teacher checkpoint (a training run folder or
    # an exported checkpoint such as exported/checkpoints/cnn; "" = none), the share of the loss
    # that matches the teacher's softened outputs (the rest is the labels' cross-entropy), and the
    # temperature that softens both sides. Without a teacher the two numbers are unused.
    teacher: str = ""
    distill_weight: float = DISTILL_WEIGHT
    temperature: float = TEMPERATURE

    def validate(self) -> Recipe:
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose sgd or adamw")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose onecycle or none")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be greater than 0, got {self.lr}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("weight decay must be >= 0 and momentum in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError("label smoothing must be in [0, 1)")
        if not 0 <= self.val_size < 60000:
            raise ConfigError(f"validation size must be in [0, 60000), got {self.val_size}")
        if self.train_limit < 0:
            raise ConfigError("train limit must be >= 0")
        self._check_knobs()
        self._check_distillation()
        return self

    def _check_distillation(self) -> None:
        if not isinstance(self.teacher, str):
            raise ConfigError(f"teacher must be a path (text), got {self.teacher!r}")
        if not 0 <= self.distill_weight <= 1:
            raise ConfigError(f"--distill-weight must be in [0, 1], got {self.distill_weight}")
        if not 0 < self.temperature <= 100:
            raise ConfigError(f"--temperature must be in (0, 100], got {self.temperature}")

    def _check_knobs(self) -> None:
        for knob in ("width", "depth"):
            value = getattr(self, knob)
            if value == 0:
                continue
            low, high = ARCH_KNOBS.get(self.arch, {}).get(knob, (None, None))
            if low is None:
                takes = [a for a, k in ARCH_KNOBS.items() if knob in k]
                raise ConfigError(f"architecture {self.arch!r} has no {knob} knob (those with one: "
                                  f"{', '.join(takes)}); leave --{knob} at 0")
            if not low <= value <= high:
                raise ConfigError(f"--{knob} of {self.arch} must be in [{low}, {high}] (or 0 for the named "
                                  f"layout), got {value}")

    @property
    def distilled(self) -> bool:
        return bool(self.teacher)

    def to_dict(self) -> dict[str, Any]:
        recipe = asdict(self)
        # A recipe without a teacher reads as it did before distillation existed, so checkpoints,
        # pipelines, sweeps and studies recorded earlier compare equal and resume unchanged.
        if not self.teacher and (self.distill_weight, self.temperature) == (DISTILL_WEIGHT, TEMPERATURE):
            for key in _DISTILL_KEYS:
                del recipe[key]
        return recipe

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown recipe keys: {', '.join(sorted(unknown))}")
        return cls(**data).validate()


# `seed` is the original notebook, exactly; `default` our best recipe; `fast` the best result in
# about a quarter of a minute of training on a 2-core CPU; `fast-distill` the same with a teacher.
PRESETS: dict[str, Recipe] = {
    "seed": Recipe(arch="mlp", epochs=50, batch_size=64, lr=0.01, optimizer="sgd", momentum=0.0,
                   weight_decay=0.0, schedule="none", augment=False),
    "default": Recipe(arch="cnn", epochs=30, batch_size=128, lr=0.1, optimizer="sgd",
                      momentum=0.9, weight_decay=5e-4, schedule="onecycle", augment=True,
                      label_smoothing=0.05),
    # 99.06-99.11 % test in 10-17 s of training steps on 2 CPU cores (seeds 0-2, scripts/train_targets.py)
    "fast": Recipe(arch="strided", epochs=3, batch_size=128, lr=0.01, optimizer="adamw",
                   momentum=0.9, weight_decay=1e-4, schedule="onecycle", augment=False),
    # `fast` taught by the shipped cnn (run from a checkout, where exported/ is): one epoch more at
    # twice the rate pays for the teacher's cached logits; 99.22-99.31 % test (median 99.27 %) in
    # 18-20 s of training steps, teacher included (seeds 0-2, docs/distillation.md).
    "fast-distill": Recipe(arch="strided", epochs=4, batch_size=128, lr=0.02, optimizer="adamw",
                           momentum=0.9, weight_decay=1e-4, schedule="onecycle", augment=False,
                           teacher="exported/checkpoints/cnn", distill_weight=0.7, temperature=2.0),
}


def preset(name: str, **overrides: Any) -> Recipe:
    """The named preset with explicit options (those not None) laid over it."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    chosen = {k: v for k, v in overrides.items() if v is not None}
    return replace(PRESETS[name], **chosen).validate()

