"""The training loop: device choice, the whole dataset on the device, resumable checkpoints.

Determinism: every source of randomness is a generator seeded from (seed, epoch, step), and the
learning rate is a pure function of the global step. A run interrupted at any step and resumed
therefore reaches exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mnist_edge import checkpoint, data
from mnist_edge.augment import random_affine
from mnist_edge.checkpoint import Progress
from mnist_edge.config import Normalization, Recipe
from mnist_edge.distill import Teacher, TeacherLogits, check_same_teacher, distillation_loss
from mnist_edge.errors import CheckpointError, ConfigError, OutputError, TrainingInterrupted
from mnist_edge.fileio import atomic_write_json, ensure_dir
from mnist_edge.models import build_recipe, count_parameters
from mnist_edge.runlock import run_folder_lock


@dataclass(frozen=True)
class StepInfo:
    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    loss: float
    accuracy: float
    images_per_s: float


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    lr: float
    seconds: float
    images_per_s: float
    # Of `seconds`, the time the teacher took (its forward passes, or computing its cached
    # logits); None without a teacher.
    teacher_seconds: float | None = None


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    params: int
    device: str
    history: list[dict]
    resumed_from: dict | None


def pick_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but no CUDA device is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps requested but MPS is not available")
    if name not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")
    return torch.device(name)


def lr_at(step: int, total: int, recipe: Recipe) -> float:
    """Learning rate at a global step. One-cycle: cosine warm-up over 25 % then cosine anneal.

    Written as a pure function of the step (rather than torch's OneCycleLR object) so a resumed
    run needs no pickled scheduler state and lands on exactly the same rate.
    """
    if recipe.schedule == "none":
        return recipe.lr
    warm = max(1, int(0.25 * total))
    start, end = recipe.lr / 25, recipe.lr / 1e4
    if step < warm:
        return start + (recipe.lr - start) * (1 - math.cos(math.pi * step / warm)) / 2
    frac = (step - warm) / max(1, total - warm)
    return end + (recipe.lr - end) * (1 + math.cos(math.pi * frac)) / 2


def make_optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                           nesterov=recipe.momentum > 0, weight_decay=recipe.weight_decay)


def _generator(device: torch.device, *keys: int) -> torch.Generator:
    """A generator seeded from integer keys, e.g. (seed, epoch, step)."""
    mixed = 0
    for key in keys:
        mixed = (mixed * 1_000_003 + key + 1) & 0x7FFF_FFFF_FFFF_FFFF
    gen = torch.Generator(device=device)
    gen.manual_seed(mixed)
    return gen


class DeviceData:
    """A split kept as uint8 tensors on the device; batches are normalized there."""

    def __init__(self, split: data.Split, device: torch.device, norm: Normalization):
        self.images = torch.from_numpy(np.ascontiguousarray(split.images)).to(device)
        self.labels = torch.from_numpy(split.labels).to(device)
        self.norm = norm

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: torch.Tensor, augment_gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[idx].unsqueeze(1).float().div_(self.norm.scale)
        if augment_gen is not None:
            x = random_affine(x, augment_gen)
        return (x - self.norm.mean) / self.norm.std, self.labels[idx]

    def batches(self, size: int) -> Iterator[torch.Tensor]:
        """Every image, normalized and not augmented, in order, `size` at a time."""
        for start in range(0, len(self), size):
            idx = torch.arange(start, min(start + size, len(self)), device=self.images.device)
            yield self.batch(idx, None)[0]


class Trainer:
    """One training run. `run()` trains from the saved progress to the last epoch."""

    def __init__(self, recipe: Recipe, run_dir: Path, device: torch.device, data_dir: Any = None,
                 download: bool = True, compile_model: bool = False, teacher: Teacher | None = None):
        self.recipe, self.run_dir, self.device = recipe, run_dir, device
        if recipe.distilled and teacher is None:  # a Trainer made directly, not through train()
            teacher = load_teacher(recipe, run_dir, device)
        self.teacher = teacher
        self._teacher_cache: TeacherLogits | None = None  # filled at the first step (no augmentation)
        splits = _load_splits(recipe, data_dir, download)
        self.data_checksums = data.checksums(data_dir)
        self.train_data = DeviceData(splits[0], device, Normalization())
        self.val_data = DeviceData(splits[1], device, Normalization()) if len(splits[1]) else None
        torch.manual_seed(recipe.seed)
        self.model = build_recipe(recipe).to(device)
        self.params = count_parameters(self.model)
        self.step_fn = torch.compile(self.model) if compile_model else self.model
        self.optimizer = make_optimizer(self.model, recipe)
        self.steps_per_epoch = math.ceil(len(self.train_data) / recipe.batch_size)
        self.progress = Progress()
        self.history: list[dict] = []
        self._stop = threading.Event()

    def restore(self, config: dict) -> None:
        checkpoint.load_weights(self.model, self.run_dir)
        checkpoint.load_optimizer(self.optimizer, self.run_dir, config)
        self.progress = checkpoint.restore_progress(config, self.run_dir)
        self.history = list(config.get("history", []))

    def save(self) -> None:
        extra = {"params": self.params, "device": str(self.device),
                 "data": {"checksums": self.data_checksums, "train": len(self.train_data),
                          "val": len(self.val_data) if self.val_data else 0},
                 "metrics": self.history[-1] if self.history else {}}
        if self.teacher is not None:
            extra["teacher"] = self.teacher.info.to_dict()
        checkpoint.save(self.run_dir, self.model, self.optimizer, self.recipe, self.progress,
                        self.history, extra)

    def run(self, on_step: Callable[[StepInfo], None] | None = None,
            on_epoch: Callable[[EpochResult], None] | None = None) -> None:
        try:
            with _interrupt_between_steps() as stop:
                self._stop = stop
                self._run_epochs(on_step, on_epoch)
        except KeyboardInterrupt:
            self.save()  # the state after the last finished step; --resume continues from it
            raise TrainingInterrupted(
                f"interrupted at epoch {self.progress.epoch + 1}, step {self.progress.step}; "
                f"state saved, continue with: mnist-edge train --resume --out {self.run_dir}") from None

    def _run_epochs(self, on_step: Callable[[StepInfo], None] | None,
                    on_epoch: Callable[[EpochResult], None] | None) -> None:
        while self.progress.epoch < self.recipe.epochs:
            result = self._train_epoch(on_step)
            self.history.append(asdict(result))
            self.progress = Progress(epoch=self.progress.epoch + 1)
            self.progress.completed = self.progress.epoch == self.recipe.epochs
            self.save()
            self._write_metrics()
            if on_epoch:
                on_epoch(result)

    def _train_epoch(self, on_step: Callable[[StepInfo], None] | None) -> EpochResult:
        p, r = self.progress, self.recipe
        order = torch.randperm(len(self.train_data), device=self.device,
                               generator=_generator(self.device, r.seed, p.epoch))
        self.model.train()
        started = time.perf_counter() - p.seconds
        while p.step < self.steps_per_epoch:
            idx = order[p.step * r.batch_size:(p.step + 1) * r.batch_size]
            loss, correct = self._train_step(idx)
            p.loss_sum += loss * len(idx)
            p.correct += correct
            p.seen += len(idx)
            p.step += 1
            p.seconds = time.perf_counter() - started
            if on_step:
                on_step(StepInfo(p.epoch + 1, r.epochs, p.step, self.steps_per_epoch, loss,
                                 correct / len(idx), p.seen / max(p.seconds, 1e-9)))
            if self._stop.is_set():
                raise KeyboardInterrupt
        val_loss, val_acc = self._validate()
        return EpochResult(p.epoch + 1, p.loss_sum / p.seen, p.correct / p.seen, val_loss, val_acc,
                           self._current_lr(), p.seconds, p.seen / max(p.seconds, 1e-9),
                           p.teacher_seconds if self.teacher is not None else None)

    def _teacher_logits(self, idx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for this batch: from its forward pass on the (augmented) images,
        or, without augmentation, from the logits it gave every training image once."""
        assert self.teacher is not None
        started = time.perf_counter()
        if self.recipe.augment:
            logits = self.teacher.logits(x)
        else:
            if self._teacher_cache is None:
                self._teacher_cache = TeacherLogits(self.teacher, self.train_data.batches)
            logits = self._teacher_cache[idx]
        self.progress.teacher_seconds += time.perf_counter() - started
        return logits

    def _current_lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _train_step(self, idx: torch.Tensor) -> tuple[float, int]:
        p, r = self.progress, self.recipe
        global_step = p.epoch * self.steps_per_epoch + p.step
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(global_step, r.epochs * self.steps_per_epoch, r)
        gen = _generator(self.device, r.seed, p.epoch, p.step) if r.augment else None
        x, y = self.train_data.batch(idx, gen)
        with _autocast(self.device):
            logits = self.step_fn(x)
            if self.teacher is None:
                loss = F.cross_entropy(logits.float(), y, label_smoothing=r.label_smoothing)
            else:
                loss = distillation_loss(logits.float(), self._teacher_logits(idx, x), y, r.distill_weight,
                                         r.temperature, r.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), int((logits.argmax(1) == y).sum())

    @torch.no_grad()
    def _validate(self) -> tuple[float | None, float | None]:
        if self.val_data is None:
            return None, None
        self.model.eval()
        loss_sum, correct = 0.0, 0
        for start in range(0, len(self.val_data), 2000):
            idx = torch.arange(start, min(start + 2000, len(self.val_data)), device=self.device)
            x, y = self.val_data.batch(idx, None)
            with _autocast(self.device):
                logits = self.model(x).float()
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
        return loss_sum / len(self.val_data), correct / len(self.val_data)

    def _write_metrics(self) -> None:
        atomic_write_json(self.run_dir / "metrics.json", {"epochs": self.history})
        try:
            from mnist_edge import plots
        except ImportError:  # matplotlib missing: curves are a nicety, metrics.json has the data
            return
        plots.training_curves(self.history, self.run_dir / "curves.png")


@contextlib.contextmanager
def _interrupt_between_steps() -> Iterator[threading.Event]:
    """Turn Ctrl-C into a flag checked between steps, so a checkpoint never holds half a step."""
    stop = threading.Event()
    # A process started with SIGINT ignored (a background job, nohup, a service) asked not to be
    # interrupted by it: keep it ignored rather than install a handler over that choice.
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield stop
        return
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _autocast(device: torch.device) -> Any:
    # bf16 autocast on CUDA only: on CPU it would change results and break bitwise determinism.
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _load_splits(recipe: Recipe, data_dir: Any, download: bool) -> tuple[data.Split, data.Split]:
    return data.training_splits(recipe.val_size, recipe.split_seed, recipe.train_limit, data_dir, download)


def prepare_run_dir(out: str | Path, resume: bool, force: bool) -> Path:
    run_dir = Path(out)
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError("exists and is not a directory", run_dir)
    if checkpoint.is_run_dir(run_dir) and not (resume or force):
        raise OutputError("already holds a training run; pass --resume to continue it or --force to start over",
                          run_dir)
    if resume and not checkpoint.is_run_dir(run_dir):
        raise CheckpointError("nothing to resume: no config.json here", run_dir)
    return ensure_dir(run_dir)


def resolve_resume_recipe(config: dict, requested: dict[str, Any]) -> Recipe:
    """The saved recipe, after checking that options given again agree with it."""
    saved: Recipe = config["recipe_obj"]
    conflicts = [f"{k} (saved {getattr(saved, k)!r}, given {v!r})" for k, v in requested.items()
                 if v is not None and getattr(saved, k) != v]
    if conflicts:
        raise ConfigError("cannot resume with options that differ from the saved run: " + "; ".join(conflicts))
    return saved


def check_same_data(config: dict, checksums: dict[str, str], run_dir: Path) -> None:
    """Refuse to resume on MNIST files other than those the run started on."""
    saved = (config.get("data") or {}).get("checksums")
    if saved and saved != checksums:
        changed = sorted(name for name in checksums if saved.get(name) != checksums[name])
        raise ConfigError(f"cannot resume: the MNIST files differ from those this run was trained on "
                          f"({', '.join(changed)}); point --data-dir at the original data", run_dir)


def _start_trainer(recipe: Recipe, run_dir: Path, device: torch.device, config: dict | None,
                   data_dir: Any, download: bool, compile_model: bool, teacher: Teacher | None) -> Trainer:
    # No torch.use_deterministic_algorithms: the CPU kernels used here are already deterministic
    # for a fixed thread count (tests/test_train.py checks bitwise equality), and the call costs
    # seconds of start-up by importing torch's compiler stack.
    if config is not None and recipe.distilled:
        teacher = load_teacher(recipe, run_dir, device)
        check_same_teacher(config, teacher.info, run_dir)
    trainer = Trainer(recipe.validate(), run_dir, device, data_dir, download, compile_model, teacher)
    if config is not None:
        check_same_data(config, trainer.data_checksums, run_dir)
        trainer.restore(config)
    return trainer


def load_teacher(recipe: Recipe, out: str | Path, device: torch.device) -> Teacher:
    """The recipe's teacher, checked (see mnist_edge.distill) and never the run being trained."""
    if Path(recipe.teacher).resolve() == Path(out).resolve():
        raise ConfigError("a run cannot be its own teacher: give another checkpoint to --teacher", out)
    return Teacher.load(recipe.teacher, device)


def train(recipe: Recipe, out: str | Path, *, device: str = "auto", data_dir: Any = None,
          download: bool = True, resume: bool = False, force: bool = False,
          compile_model: bool = False, requested: dict[str, Any] | None = None,
          on_step: Callable[[StepInfo], None] | None = None,
          on_epoch: Callable[[EpochResult], None] | None = None,
          on_start: Callable[[Trainer], None] | None = None) -> TrainResult:
    """Train (or resume) a run in `out`. Checkpoints are written after each epoch and on Ctrl-C."""
    chosen = pick_device(device)  # before touching `out`: a bad option must leave no folder behind
    # A missing or unusable teacher, likewise (a resumed run's teacher is its saved recipe's, below).
    teacher = load_teacher(recipe, out, chosen) if recipe.distilled and not resume else None
    # The lock (mnist_edge.runlock) removes a folder it made when the run never started.
    with run_folder_lock(out) as run_dir:
        checkpoint.recover(run_dir)
        config = checkpoint.load_config(run_dir, for_resume=True) if resume and checkpoint.is_run_dir(run_dir) else None
        if config is not None:
            recipe = resolve_resume_recipe(config, requested or {})
        prepare_run_dir(run_dir, resume, force)
        trainer = _start_trainer(recipe, run_dir, chosen, config, data_dir, download, compile_model, teacher)
        if on_start:
            on_start(trainer)
        resumed = dict(config["progress"]) if config else None
        trainer.run(on_step, on_epoch)
    return TrainResult(run_dir, trainer.params, str(chosen), trainer.history, resumed)
