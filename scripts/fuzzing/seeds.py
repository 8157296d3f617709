"""Valid inputs of every kind the tool reads, built in a temporary folder before fuzzing.

Each seed is a folder that a case copies and then damages: one file of it is replaced by a
mutated version. Building them runs torch (a checkpoint with optimizer state) and onnxruntime
(an eval report), so `build_in_child` runs the builder in a forked child: the fuzzing workers
are forked from the parent later, and a parent that had started torch's OpenMP threads would
hand them a thread pool that no longer exists (GNU OpenMP is not fork-safe).
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
EXPORTED = ROOT / "exported"
SWEEPS = ROOT / "sweeps"
# The smallest shipped models: fuzzing pays their load on every case.
MODELS = {"model-int8": "tiny-int8", "model-fp32": "tiny-fp32", "model-cnn": "cnn-int8"}
MODEL_FILES = ("manifest.json", "model.onnx", "parity.json")
IMAGES_IN_ARRAYS = 8  # digits in the .npy and IDX seeds
IMAGES_IN_MNIST = 64  # images in the small MNIST folder that `eval` reads
SMALL_SWEEP = """\
[sweep]
name = "small"
preset = "fast"
bench_seconds = 0.5
device = "cpu"

[[run]]
name = "tiny-a"
arch = "tiny"
lr = 0.01

[grid]
arch = ["tiny", "mlp"]
epochs = [1, 2]
"""

# A search's [search] table, a shared space with a fixed key, ranges of each kind and
# per-architecture tables: every branch of mnist_edge/search/space.py's reader.
SMALL_SEARCH = """\
[search]
name = "small"
preset = "fast"
objectives = ["accuracy", "latency", "size"]
trials = 4
sampler = "tpe"
population = 2
seed = 1
bench_seconds = 0.05
device = "cpu"
prune_below = 0.5

[search.space]
arch = ["tiny", "strided", "mlp"]
epochs = 1
batch_size = {low = 64, high = 256, step = 64}
lr = {low = 0.002, high = 0.03, log = true}
weight_decay = {low = 0.0, high = 0.001}
augment = [true, false]

[search.space.strided]
width = {low = 8, high = 16, step = 8}
depth = [2, 3]

[search.space.mlp]
width = {low = 32, high = 256, log = true}
"""

def build_in_child(folder: Path) -> Path:
    """Build the seeds in a forked child (see the module docstring) and return `folder`."""
    shutil.rmtree(folder, ignore_errors=True)  # seeds of an earlier run in the same --out
    context = multiprocessing.get_context("fork")
    child = context.Process(target=build, args=(folder,), name="fuzz-seeds")
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"building the fuzz seeds failed (exit code {child.exitcode})")
    return folder


def build(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = test_digits(IMAGES_IN_MNIST)
    write_images(folder / "images", images[:IMAGES_IN_ARRAYS])
    write_mnist(folder / "mnist", images, labels, gzipped=False)
    write_mnist(folder / "mnist-gz", images, labels, gzipped=True)
    for seed, shipped in MODELS.items():
        copy_model(EXPORTED / shipped, folder / seed)
    write_external_model(folder / "model-int8", folder / "model-external")
    write_checkpoint(folder / "checkpoint")
    write_sweeps(folder / "sweep")
    write_searches(folder / "search")
    write_run_folder(folder, folder / "run")


def test_digits(count: int) -> tuple[np.ndarray, np.ndarray]:
    """MNIST test digits when MNIST can be found (no download), else drawn ones."""
    from mnist_edge import data
    from mnist_edge.errors import DataError

    try:
        split = data.load_split("test", download=False)
        return split.images[:count].copy(), split.labels[:count].astype(np.uint8)
    except DataError:
        return drawn_digits(count), (np.arange(count) % 10).astype(np.uint8)


def drawn_digits(count: int) -> np.ndarray:
    """A white '7' on black, shifted a little per image: MNIST-like enough to preprocess."""
    out = np.zeros((count, 28, 28), np.uint8)
    for i in range(count):
        canvas = Image.new("L", (28, 28))
        shift = i % 4
        ImageDraw.Draw(canvas).line([(8 + shift, 7), (20, 7), (12 + shift, 22)], fill=255, width=3)
        out[i] = np.asarray(canvas)
    return out


def write_images(folder: Path, images: np.ndarray) -> None:
    folder.mkdir()
    # A photo-like digit: dark ink on light paper, bigger than 28 x 28, so preprocessing runs whole.
    photo = Image.fromarray(255 - images[0]).resize((84, 84), Image.Resampling.BILINEAR)
    photo.save(folder / "digit.png")
    photo.convert("RGB").save(folder / "digit.jpg", quality=90)
    photo.save(folder / "digit.bmp")
    np.save(folder / "digits.npy", images)
    np.save(folder / "digits-float.npy", images.astype(np.float32) / 255.0)
    (folder / "digits.idx").write_bytes(idx_bytes(images))


def idx_bytes(array: np.ndarray) -> bytes:
    """MNIST's IDX format: 0, 0, type 0x08 (unsigned byte), the dimension count, big-endian sizes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def write_mnist(folder: Path, images: np.ndarray, labels: np.ndarray, *, gzipped: bool) -> None:
    """A small MNIST folder: the test files hold `images`; the training files only need to exist."""
    from mnist_edge.data import FILES

    folder.mkdir()
    contents = {("test", "images"): idx_bytes(images), ("test", "labels"): idx_bytes(labels),
                ("train", "images"): idx_bytes(images[:1]), ("train", "labels"): idx_bytes(labels[:1])}
    for key, name in FILES.items():
        raw = contents[key]
        if gzipped:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw, mtime=0))
        else:
            (folder / name).write_bytes(raw)


def copy_model(source: Path, target: Path) -> None:
    target.mkdir()
    for name in MODEL_FILES:
        shutil.copyfile(source / name, target / name)


def write_external_model(source: Path, target: Path) -> None:
    """The int8 model again, every tensor in model.onnx.data beside it, with a manifest to match."""
    import onnx

    from mnist_edge import manifest as manifest_io

    target.mkdir()
    model = onnx.load(str(source / "model.onnx"))
    onnx.save_model(model, str(target / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["files"] = manifest_io.describe_file(target / "model.onnx")
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2))


def write_checkpoint(folder: Path) -> None:
    """The shipped tiny checkpoint, saved again with optimizer state (what `train --resume` reads)."""
    import torch

    from mnist_edge import checkpoint
    from mnist_edge.config import preset
    from mnist_edge.models import build_recipe
    from mnist_edge.train import make_optimizer

    torch.manual_seed(0)
    recipe = preset("fast", arch="tiny", epochs=2, optimizer="sgd", train_limit=64, val_size=0)
    model = build_recipe(recipe)
    optimizer = make_optimizer(model, recipe)
    # Momentum buffers as a training step leaves them, so state.safetensors holds tensors (set
    # directly: optimizer.step() would first import torch's compiler stack, seconds of start-up).
    for parameter in model.parameters():
        optimizer.state[parameter]["momentum_buffer"] = torch.randn_like(parameter) * 0.01
    progress = checkpoint.Progress(epoch=1, step=0, seen=64, seconds=0.5)
    history = [{"epoch": 1, "train_loss": 2.2, "train_acc": 0.2, "val_loss": None, "val_acc": None,
                "lr": 0.01, "seconds": 0.5, "images_per_s": 128.0}]
    folder.mkdir()
    checkpoint.save(folder, model, optimizer, recipe, progress, history, {"params": 8450, "device": "cpu"})
    (folder / "metrics.json").write_text(json.dumps({"epochs": history}, indent=2))


def write_sweeps(folder: Path) -> None:
    folder.mkdir()
    shutil.copyfile(SWEEPS / "example.toml", folder / "example.toml")
    (folder / "small.toml").write_text(SMALL_SWEEP)


def write_searches(folder: Path) -> None:
    folder.mkdir()
    shutil.copyfile(SWEEPS / "search.toml", folder / "search.toml")
    (folder / "small.toml").write_text(SMALL_SEARCH)


def write_run_folder(seeds: Path, run: Path) -> None:
    """A pipeline run folder made of the seeds above: what `report` and a sweep's `collect` read."""
    from mnist_edge.config import preset
    from mnist_edge.pipeline import STEPS, PipelineState, StepRecord

    shutil.copytree(seeds / "checkpoint", run / "checkpoint")
    shutil.copytree(seeds / "model-fp32", run / "exported" / "fp32")
    shutil.copytree(seeds / "model-int8", run / "exported" / "int8")
    (run / "parity").mkdir()
    shutil.copyfile(seeds / "model-int8" / "parity.json", run / "parity" / "parity.json")
    recipe = preset("fast", arch="tiny", epochs=1)
    steps = [StepRecord(name, "done", 1.5, f"{name} finished", f"{index:016x}") for index, name in enumerate(STEPS)]
    state = PipelineState(recipe.to_dict(), recipe.arch, "2025-01-01T00:00:00+00:00", steps,
                          {"train": {"params": 8450, "device": "cpu", "val_acc": 0.9, "seconds": 3.0}})
    (run / "pipeline.json").write_text(json.dumps(asdict(state), indent=2))
    write_stats(run / "data", seeds / "mnist")
    write_eval(seeds / "model-int8", seeds / "mnist", run / "checkpoint")
    write_bench(seeds / "model-fp32", seeds / "model-int8", run / "bench")


def write_stats(folder: Path, mnist: Path) -> None:
    from mnist_edge.data import DataStats

    folder.mkdir()
    stats = DataStats(60000, 10000, [6000] * 10, [1000] * 10, 0.1307, 0.3081, str(mnist))
    (folder / "stats.json").write_text(json.dumps(asdict(stats), indent=2))


def write_eval(model: Path, mnist: Path, out: Path) -> None:
    from mnist_edge.evaluate import evaluate_any

    evaluate_any(model, out=out, data_dir=mnist, download=False)


def write_bench(fp32: Path, int8: Path, out: Path) -> None:
    from mnist_edge.benchmark import BenchRequest, run_benchmark

    request = BenchRequest(models=(fp32, int8), batch_sizes=(1,), threads=(1,), seconds=0.02, out=out,
                           no_torch=True)
    run_benchmark(request)
