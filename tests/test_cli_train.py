"""`mnist-edge train` / `eval` through the CLI, every command's help, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from mnist_edge.cli import app

runner = CliRunner()


def all_commands(group, prefix: tuple[str, ...] = ()):
    """Every command and command group, the top-level app (the empty tuple) included."""
    yield prefix
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a command group (typer bundles its own click)
            yield from all_commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name)


COMMANDS = sorted(all_commands(get_command(app)))


def test_expected_commands_exist() -> None:
    assert {("train",), ("eval",), ("data", "show"), ("data", "stats"), ("run",), ("bench",)} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "mnist-edge")
def test_every_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example: mnist-edge" in result.output


def train_args(tmp_path: Path, mnist_dir: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "fast", "--epochs", "2", "--limit", "2000", "--val-size", "300",
            "--device", "cpu", "--data-dir", str(mnist_dir), "--no-download", "--out", str(tmp_path / "run"),
            *extra]


def test_train_then_eval(tmp_path: Path, mnist_dir: Path) -> None:
    result = runner.invoke(app, train_args(tmp_path, mnist_dir))
    assert result.exit_code == 0, result.output
    assert "epoch   1" in result.output and "parameters" in result.output
    result = runner.invoke(app, ["eval", str(tmp_path / "run"), "--data-dir", str(mnist_dir), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["count"] == 10000 and report["accuracy"] > 0.5
    assert len(report["per_class"]) == 10 and sum(map(sum, report["confusion"])) == 10000
    for name in ("eval.json", "eval_confusion.png", "eval_mistakes.png"):
        assert (tmp_path / "run" / name).is_file()


@pytest.mark.parametrize("extra, message", [
    (["--lr", "0"], "--lr must be greater than 0"),
    (["--lr", "-0.1"], "--lr must be greater than 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--arch", "resnet50"], "unknown architecture 'resnet50'"),
    (["--preset", "turbo"], "unknown preset 'turbo'"),
    (["--device", "cuda-ish"], "unknown device"),
])
def test_nonsensical_options(tmp_path: Path, mnist_dir: Path, extra: list[str], message: str) -> None:
    result = runner.invoke(app, train_args(tmp_path, mnist_dir, *extra))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_missing_data_names_the_places_looked_in(tmp_path: Path) -> None:
    empty = tmp_path / "nodata"
    empty.mkdir()
    result = runner.invoke(app, ["train", "--data-dir", str(empty), "--no-download", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "MNIST files not found" in result.stderr and str(empty) in result.stderr


def test_unwritable_out(tmp_path: Path, mnist_dir: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    args = train_args(tmp_path, mnist_dir)
    args[args.index("--out") + 1] = str(blocker / "run")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "cannot create directory" in result.stderr
    assert blocker.read_text() == "not a folder"


def test_checkpoint_problems_through_eval(tmp_path: Path, tiny_run: Path, mnist_dir: Path) -> None:
    result = runner.invoke(app, ["eval", str(tmp_path / "missing"), "--data-dir", str(mnist_dir)])
    assert result.exit_code == 2 and "not a directory" in result.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{truncated")
    result = runner.invoke(app, ["eval", str(bad), "--data-dir", str(mnist_dir)])
    assert result.exit_code == 2 and "config.json" in result.stderr and "not valid JSON" in result.stderr


def test_resume_conflict_and_existing_run_through_cli(tmp_path: Path, mnist_dir: Path) -> None:
    assert runner.invoke(app, train_args(tmp_path, mnist_dir)).exit_code == 0
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    again = runner.invoke(app, train_args(tmp_path, mnist_dir))
    assert again.exit_code == 2 and "already holds a training run" in again.stderr
    conflict = runner.invoke(app, train_args(tmp_path, mnist_dir, "--resume", "--lr", "0.3"))
    assert conflict.exit_code == 2 and "differ from the saved run" in conflict.stderr
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before


def one_error_line(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_failed_start_leaves_no_folder(tmp_path: Path) -> None:
    empty = tmp_path / "nodata"
    empty.mkdir()
    out = tmp_path / "new" / "run"
    result = runner.invoke(app, ["train", "--data-dir", str(empty), "--no-download", "--out", str(out)])
    one_error_line(result, "MNIST files not found")
    assert not out.exists()


def test_resume_with_another_preset_is_refused(tmp_path: Path, mnist_dir: Path) -> None:
    assert runner.invoke(app, train_args(tmp_path, mnist_dir)).exit_code == 0
    args = train_args(tmp_path, mnist_dir, "--resume")
    args[args.index("--preset") + 1] = "seed"
    one_error_line(runner.invoke(app, args), "differ from the saved run", "arch (saved 'strided', given 'mlp')")


def test_resume_on_other_data_is_refused(tmp_path: Path, mnist_dir: Path) -> None:
    from tests.test_data import mnist_copy_with

    assert runner.invoke(app, train_args(tmp_path, mnist_dir)).exit_code == 0
    labels = (mnist_dir / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes()
    changed = labels[:-1] + bytes([(labels[-1] + 1) % 10])  # still valid labels, other data
    other = mnist_copy_with(tmp_path, mnist_dir, "t10k-labels-idx1-ubyte", changed)
    args = train_args(tmp_path, mnist_dir, "--resume")
    args[args.index("--data-dir") + 1] = str(other)
    one_error_line(runner.invoke(app, args), "MNIST files differ", "t10k-labels-idx1-ubyte")


@pytest.mark.parametrize("damage, needles", [
    ("truncate-weights", ("model.safetensors", "truncated or replaced")),
    ("truncate-state", ("state.safetensors", "truncated or replaced")),
    ("other-version", ("config.json", "format version 7 is not supported")),
    ("foreign", ("config.json", "not an mnist-edge checkpoint")),
])
def test_broken_checkpoint_through_cli(tmp_path: Path, tiny_run: Path, mnist_dir: Path, damage: str,
                                       needles: tuple[str, ...]) -> None:
    import shutil

    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    if damage.startswith("truncate"):
        target = run / ("model.safetensors" if damage.endswith("weights") else "state.safetensors")
        target.write_bytes(target.read_bytes()[:64])
    elif damage == "other-version":
        (run / "config.json").write_text(json.dumps({**config, "format_version": 7}))
    else:
        (run / "config.json").write_text(json.dumps({"model_type": "bert"}))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    resume = runner.invoke(app, ["train", "--resume", "--out", str(run), "--device", "cpu",
                                 "--data-dir", str(mnist_dir), "--no-download"])
    one_error_line(resume, *needles)
    if damage != "truncate-state":  # eval needs no optimizer state
        one_error_line(runner.invoke(app, ["eval", str(run), "--data-dir", str(mnist_dir)]), *needles)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_ctrl_c_before_training_exits_130(tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_edge import data

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "load_split", interrupted)
    result = runner.invoke(app, train_args(tmp_path, mnist_dir))
    assert result.exit_code == 130 and result.stderr.strip() == "error: interrupted"
    assert not (tmp_path / "run").exists()


def test_python_dash_m_runs_the_cli() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "mnist_edge", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "Example: mnist-edge" in result.stdout


# --- eval --split: the images the checkpoint trained on, its validation images, the test set ---------


def test_eval_splits_are_the_images_the_recipe_used(tiny_run: Path, mnist_dir: Path, tmp_path: Path) -> None:
    """tiny_run trained on the first 4,000 images left after holding out 1,000 for validation:
    --split train and val evaluate exactly those, unaugmented, in eval mode."""
    import numpy as np

    from mnist_edge.checkpoint import checkpoint_logits
    from mnist_edge.data import training_splits

    train, val = training_splits(1000, 0, 4000, mnist_dir, download=False)
    shutil.copytree(tiny_run, tmp_path / "run")
    (tmp_path / "run" / "eval.json").unlink(missing_ok=True)  # another test may have evaluated tiny_run
    for split, images in (("train", train), ("val", val)):
        result = runner.invoke(app, ["eval", str(tmp_path / "run"), "--split", split, "--data-dir", str(mnist_dir),
                                     "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        _, logits = checkpoint_logits(tiny_run, images.images)
        expected = int((logits.argmax(axis=1) == images.labels).sum())
        assert (report["split"], report["count"], report["correct"]) == (split, len(images), expected)
        assert "recipe from the checkpoint" in report["images"]
        assert np.array(report["confusion"]).sum(axis=1).tolist() == np.bincount(images.labels, minlength=10).tolist()
        assert (tmp_path / "run" / f"eval_{split}.json").is_file()
        assert (tmp_path / "run" / f"eval_{split}_confusion.png").is_file()
    assert not (tmp_path / "run" / "eval.json").exists()  # the test set's report is left as it was


def test_beside_puts_the_training_accuracy_into_the_test_report(tiny_run: Path, mnist_dir: Path) -> None:
    from mnist_edge.evaluate import evaluate_any

    report, _ = evaluate_any(tiny_run, beside=("train", "test"), out=None, data_dir=mnist_dir, download=False)
    alone, _ = evaluate_any(tiny_run, split="train", data_dir=mnist_dir, download=False)
    assert report.split == "test" and list(report.beside) == ["train"]  # the split itself is not repeated
    assert (report.beside["train"].count, report.beside["train"].correct) == (alone.count, alone.correct) == (
        4000, alone.correct)


def test_eval_split_errors_exit_2_before_any_work(tiny_run: Path, mnist_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(tiny_run), "--split", "validation", "--out", str(tmp_path / "o"),
                                 "--data-dir", str(mnist_dir)])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: unknown split 'validation'; choose one of train, test, val"
    assert not (tmp_path / "o").exists()
    run = tmp_path / "all"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    config["recipe"]["val_size"] = 0
    (run / "config.json").write_text(json.dumps(config))
    result = runner.invoke(app, ["eval", str(run), "--split", "val", "--data-dir", str(mnist_dir)])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: no validation images: the model's recipe trained on all 60,000 "
                                     "training images (val_size 0); evaluate --split train or test")
    assert not (run / "eval_val.json").exists()
