"""`run`, `bench` and `eval` of an ONNX model work from the light install: no torch, no onnx,
no matplotlib unless a PNG is asked for.

Each command runs in a fresh interpreter where importing those packages fails, as it would
where they are not installed; the script reports every attempt to import them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import mnist_root
from tests.onnx_models import linear_model, write_exported, write_zoo

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "onnx", "onnxscript", "matplotlib", "safetensors")
LIGHT_INSTALL = r"""
import importlib.abc, json, sys

HEAVY = set(sys.argv[1].split(","))
attempted = []


class LightInstall(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HEAVY:
            attempted.append(name)
            raise ImportError(f"No module named {name!r} (light install)", name=name)
        return None


sys.meta_path.insert(0, LightInstall())
from mnist_edge.cli import app

code = 0
try:
    app(sys.argv[2:], prog_name="mnist-edge")
except SystemExit as exit:
    code = exit.code or 0
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in HEAVY)
print("@@" + json.dumps({"code": code, "attempted": attempted, "loaded": loaded}))
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory, mnist_dir) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("light")
    zoo = write_zoo(folder / "zoo")
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255
    Image.fromarray(digit).save(folder / "one.png")
    np.save(folder / "two.npy", np.stack([digit, digit]))
    (folder / "run").mkdir()
    hinted = write_exported(folder / "hinted", linear_model(), name="hinted",
                            source={"arch": "linear", "params": 7850, "checkpoint": "../run"})
    return {"model": zoo["exported"], "png": folder / "one.png", "npy": folder / "two.npy",
            "out": folder / "bench", "hinted": hinted, "run": folder / "run"}


def light_run(*args: object) -> tuple[dict, str]:
    # From another folder, with MNIST's folder made absolute: the commands must not depend on
    # where pytest was started, nor write into the checkout.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MNIST_EDGE_DATA": str(mnist_root())}
    done = subprocess.run(
        [sys.executable, "-c", LIGHT_INSTALL, ",".join(HEAVY), *map(str, args)],
        capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), timeout=120)
    marker = [line for line in done.stdout.splitlines() if line.startswith("@@")]
    assert marker, f"no report from the subprocess:\n{done.stdout}\n{done.stderr}"
    return json.loads(marker[-1][2:]), done.stdout + done.stderr


def test_run_never_imports_torch_onnx_or_matplotlib(files):
    report, output = light_run("run", files["model"], files["png"], files["npy"], "--json")
    assert report["code"] == 0, output
    assert report["attempted"] == [] and report["loaded"] == []


def test_bench_imports_matplotlib_only_for_the_png_and_skips_it_without(files):
    report, output = light_run("bench", files["model"], "--seconds", "0.03", "--batch-sizes", "1",
                               "--threads", "1", "--out", files["out"])
    assert report["code"] == 0, output
    assert {name.partition(".")[0] for name in report["attempted"]} <= {"matplotlib"}
    assert report["loaded"] == []
    assert "bench.png skipped: plotting needs matplotlib" in output
    assert (files["out"] / "bench.json").is_file() and (files["out"] / "bench.md").is_file()
    report, output = light_run("bench", files["model"], "--seconds", "0.03", "--batch-sizes", "1",
                               "--threads", "1")
    assert report["code"] == 0, output
    assert report["attempted"] == []


def test_eval_of_an_onnx_model_never_imports_torch(files):
    report, output = light_run("eval", files["model"], "--json")
    assert report["code"] == 0, output
    assert not [m for m in report["attempted"] if m.partition(".")[0] in ("torch", "onnx")], output
    assert report["loaded"] == []


def test_the_torch_baseline_is_skipped_or_refused_without_torch(files):
    quick = ["--seconds", "0.02", "--batch-sizes", "1", "--threads", "1"]
    report, output = light_run("bench", files["hinted"], *quick)
    assert report["code"] == 0, output
    assert "PyTorch baseline" in output and "skipped: torch is not installed" in output
    report, output = light_run("bench", files["model"], *quick, "--torch-checkpoint", files["run"])
    assert report["code"] == 2
    assert "error: --torch-checkpoint needs PyTorch: pip install 'mnist-edge[train]'" in output
    assert report["loaded"] == []


def test_eval_with_out_writes_the_report_and_pngs_without_matplotlib(files, tmp_path):
    out = tmp_path / "eval"
    report, output = light_run("eval", files["model"], "--out", out)
    assert report["code"] == 0, output
    assert report["loaded"] == [] and "Traceback" not in output
    assert json.loads((out / "eval.json").read_text())["count"] == 10000
    for name in ("eval_confusion.png", "eval_mistakes.png"):
        assert Image.open(out / name).format == "PNG"


def test_eval_finds_a_bare_model_folder_and_names_what_a_checkpoint_needs(files, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.onnx").write_bytes((files["model"] / "model.onnx").read_bytes())
    report, output = light_run("eval", bare, "--json")
    assert report["code"] == 0, output
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    report, output = light_run("eval", run)
    assert report["code"] == 2 and report["loaded"] == [] and "Traceback" not in output
    assert f"error: {run}: eval of a PyTorch checkpoint needs torch: pip install 'mnist-edge[train]'" in output
    report, output = light_run("eval", tmp_path / "misspelled")
    assert report["code"] == 2 and "not found" in output and "Traceback" not in output


def test_run_draws_its_pictures_and_reads_labels_without_torch_or_matplotlib(files, tmp_path):
    labels = tmp_path / "labels.npy"
    np.save(labels, np.array([1, 1, 1]))
    report, output = light_run("run", files["model"], files["png"], files["npy"], "--labels", labels,
                               "--show", tmp_path / "pictures", "--json")
    assert report["code"] == 0, output
    assert report["attempted"] == [] and report["loaded"] == []
    pictures = sorted(p.name for p in (tmp_path / "pictures").iterdir())
    assert pictures == ["00000_one.png", "00001_two_npy_0_.png", "00002_two_npy_1_.png"]
    assert all(Image.open(tmp_path / "pictures" / name).format == "PNG" for name in pictures)


def test_eval_of_the_training_images_needs_no_torch(files):
    report, output = light_run("eval", files["model"], "--split", "train", "--json")
    assert report["code"] == 0, output
    assert report["attempted"] == [] and report["loaded"] == []
    evaluated = json.loads(output.split("\n@@")[0])  # the JSON, before the subprocess's own report
    assert evaluated["split"] == "train" and evaluated["count"] == 55000
