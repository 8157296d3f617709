"""Training on small subsets: learning happens, CPU runs are deterministic, resume is exact."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mnist_edge import checkpoint  # noqa: E402
from mnist_edge.config import preset  # noqa: E402
from mnist_edge.errors import CheckpointError, ConfigError, OutputError, TrainingInterrupted  # noqa: E402
from mnist_edge.train import lr_at, train  # noqa: E402

SMALL = {"epochs": 2, "train_limit": 1536, "val_size": 512, "batch_size": 128}


def small_recipe(**overrides):
    return preset("fast", **{**SMALL, **overrides})


def weights_bytes(run_dir: Path) -> bytes:
    return (run_dir / checkpoint.WEIGHTS).read_bytes()


def test_learning_happens(tmp_path: Path, mnist_dir: Path) -> None:
    result = train(small_recipe(epochs=3, train_limit=3000), tmp_path / "run", device="cpu",
                   data_dir=mnist_dir, download=False)
    first, last = result.history[0], result.history[-1]
    assert last["train_loss"] < first["train_loss"]
    assert last["val_acc"] > 0.8  # chance is 0.1
    assert (tmp_path / "run" / "metrics.json").is_file() and (tmp_path / "run" / "curves.png").is_file()


def test_cpu_training_is_bitwise_deterministic(tmp_path: Path, mnist_dir: Path) -> None:
    recipe = small_recipe(augment=True, optimizer="sgd", lr=0.05)
    for name in ("a", "b"):
        train(recipe, tmp_path / name, device="cpu", data_dir=mnist_dir, download=False)
    assert weights_bytes(tmp_path / "a") == weights_bytes(tmp_path / "b")
    train(small_recipe(augment=True, optimizer="sgd", lr=0.05, seed=1), tmp_path / "c", device="cpu",
          data_dir=mnist_dir, download=False)
    assert weights_bytes(tmp_path / "a") != weights_bytes(tmp_path / "c")


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_after_interruption_reaches_the_same_weights(tmp_path: Path, mnist_dir: Path,
                                                            optimizer: str) -> None:
    recipe = small_recipe(augment=True, optimizer=optimizer)
    train(recipe, tmp_path / "straight", device="cpu", data_dir=mnist_dir, download=False)

    def interrupt(info) -> None:
        if info.epoch == 1 and info.step == 5:  # mid-epoch, as a Ctrl-C would
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(recipe, tmp_path / "resumed", device="cpu", data_dir=mnist_dir, download=False,
              on_step=interrupt)
    saved = checkpoint.load_config(tmp_path / "resumed")
    assert saved["progress"]["epoch"] == 0 and saved["progress"]["step"] == 5
    result = train(recipe, tmp_path / "resumed", device="cpu", data_dir=mnist_dir, download=False,
                   resume=True)
    assert result.resumed_from["step"] == 5
    assert weights_bytes(tmp_path / "straight") == weights_bytes(tmp_path / "resumed")


def test_existing_run_is_not_overwritten_without_force(tmp_path: Path, mnist_dir: Path) -> None:
    run = tmp_path / "run"
    train(small_recipe(epochs=1), run, device="cpu", data_dir=mnist_dir, download=False)
    before = weights_bytes(run)
    with pytest.raises(OutputError, match="--resume.*--force"):
        train(small_recipe(epochs=1, seed=3), run, device="cpu", data_dir=mnist_dir, download=False)
    assert weights_bytes(run) == before


def test_resume_with_conflicting_options_is_refused(tmp_path: Path, mnist_dir: Path) -> None:
    run = tmp_path / "run"
    train(small_recipe(epochs=1), run, device="cpu", data_dir=mnist_dir, download=False)
    with pytest.raises(ConfigError, match="lr"):
        train(small_recipe(epochs=1), run, device="cpu", data_dir=mnist_dir, download=False, resume=True,
              requested={"lr": 0.5})
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(small_recipe(epochs=1), tmp_path / "empty", device="cpu", data_dir=mnist_dir, resume=True)


def test_checkpoint_rebuilds_the_model_from_the_folder_alone(tiny_run: Path) -> None:
    model, config = checkpoint.load_for_inference(tiny_run)
    assert config["arch"] == "tiny" and config["params"] == sum(p.numel() for p in model.parameters())
    assert set(config["data"]["checksums"]) == {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}
    assert config["recipe"]["arch"] == "tiny" and config["normalization"]["mean"] == pytest.approx(0.1307)
    assert not model.training


def test_onecycle_schedule_shape() -> None:
    recipe = preset("default")
    rates = [lr_at(step, 1000, recipe) for step in range(1000)]
    peak = max(range(1000), key=rates.__getitem__)
    assert 200 <= peak <= 260 and rates[peak] == pytest.approx(recipe.lr, rel=1e-3)
    assert rates[0] < recipe.lr / 10 and rates[-1] < recipe.lr / 100
    assert lr_at(5, 1000, preset("seed")) == 0.01


def test_a_real_sigint_stops_after_the_step_and_saves(tmp_path: Path, mnist_dir: Path) -> None:
    import os
    import signal

    def press_ctrl_c(info) -> None:
        if info.epoch == 1 and info.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the handler only sets a flag: the step completes

    # pytest started from a background job inherits SIGINT ignored, which training respects:
    # give this test the interactive default, and put back whatever the process had.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(TrainingInterrupted, match="epoch 1, step 3"):
            train(small_recipe(epochs=1), tmp_path / "run", device="cpu", data_dir=mnist_dir, download=False,
                  on_step=press_ctrl_c)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    finally:
        signal.signal(signal.SIGINT, inherited)
    saved = checkpoint.load_config(tmp_path / "run", for_resume=True)
    assert saved["progress"]["step"] == 3 and not saved["progress"]["completed"]


_TRAIN_WITH_SIGINT_IGNORED = """
import os, signal, sys
from mnist_edge.config import preset
from mnist_edge.train import train
assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN, "the parent did not ignore SIGINT"
seen = []
def press_ctrl_c(info):
    if info.step == 2:
        os.kill(os.getpid(), signal.SIGINT)
    seen.append((info.epoch, info.step, signal.getsignal(signal.SIGINT) is signal.SIG_IGN))
recipe = preset("fast", epochs=1, train_limit=768, val_size=256, batch_size=128)
train(recipe, sys.argv[1], device="cpu", data_dir=sys.argv[2], download=False, on_step=press_ctrl_c)
assert all(ignored for *_, ignored in seen), "training installed a SIGINT handler over SIG_IGN"
assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
print("steps", len(seen))
"""


def test_training_started_with_sigint_ignored_keeps_it_ignored(tmp_path: Path, mnist_dir: Path) -> None:
    """A background job (`pytest &`, nohup) starts with SIGINT ignored: training neither installs
    its own handler over that nor stops at a SIGINT, and finishes every step."""
    import signal
    import subprocess
    import sys

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    done = subprocess.run([sys.executable, "-c", _TRAIN_WITH_SIGINT_IGNORED, str(tmp_path / "run"), str(mnist_dir)],
                          capture_output=True, text=True, timeout=300, preexec_fn=ignore_sigint)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["steps", "6"]  # 768 images / 128: the SIGINT at step 2 stopped nothing
    assert checkpoint.load_config(tmp_path / "run", for_resume=True)["progress"]["completed"]
