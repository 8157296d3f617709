"""The pipeline on a small subset: every artifact, resume skipping, a failing step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from mnist_edge.cli import app  # noqa: E402
from mnist_edge.config import preset  # noqa: E402
from mnist_edge.errors import OutputError  # noqa: E402
from mnist_edge.pipeline import STEPS, PipelineOptions, PipelineStepError, run_pipeline  # noqa: E402

SMALL = preset("fast", arch="tiny", epochs=1, train_limit=2000, val_size=500)


def options(out: Path, mnist_dir: Path, **changes) -> PipelineOptions:
    base = {"recipe": SMALL, "out": out, "device": "cpu", "data_dir": mnist_dir, "download": False,
            "bench_seconds": 0.05, "batch_sizes": "1,8", "threads": "1"}
    return PipelineOptions(**{**base, **changes})


def statuses(out: Path) -> dict[str, str]:
    return {s["name"]: s["status"] for s in json.loads((out / "pipeline.json").read_text())["steps"]}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("pipeline") / "run"
    run_pipeline(options(out, mnist_dir))
    return out


def test_every_step_leaves_its_artifacts(finished_run: Path) -> None:
    assert statuses(finished_run) == {name: "done" for name in STEPS}
    for name in ("data/stats.json", "data/samples.png", "checkpoint/config.json", "checkpoint/curves.png",
                 "checkpoint/eval.json", "exported/fp32/model.onnx", "exported/fp32/manifest.json",
                 "exported/int8/model.onnx", "exported/int8/manifest.json", "parity/parity.json",
                 "bench/bench.json", "bench/bench.md", "report.html"):
        assert (finished_run / name).is_file(), name
    manifest = json.loads((finished_run / "exported/int8/manifest.json").read_text())
    assert manifest["metrics"]["measured_with"].startswith("mnist-edge parity")
    html = (finished_run / "report.html").read_text()
    assert "data:image/png;base64," in html and "tiny" in html


def test_resume_skips_unchanged_steps(finished_run: Path, mnist_dir: Path) -> None:
    weights = (finished_run / "checkpoint/model.safetensors").read_bytes()
    run_pipeline(options(finished_run, mnist_dir, resume=True))
    status = statuses(finished_run)
    assert all(status[name] == "skipped" for name in STEPS if name != "report")
    assert (finished_run / "checkpoint/model.safetensors").read_bytes() == weights


def test_existing_run_is_not_overwritten(finished_run: Path, mnist_dir: Path) -> None:
    with pytest.raises(OutputError, match="--resume.*--force"):
        run_pipeline(options(finished_run, mnist_dir))


def test_a_failing_step_stops_keeps_earlier_steps_and_resumes(tmp_path: Path, mnist_dir: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(PipelineStepError, match="step 'export' failed: --opset 5 cannot be produced"):
        run_pipeline(options(out, mnist_dir, opset=5, steps=("data", "train", "eval", "export", "report")))
    status = statuses(out)
    assert status["train"] == "done" and status["export"] == "failed" and status["quantize"] == "pending"
    assert (out / "report.html").is_file()  # what finished is still shown
    run_pipeline(options(out, mnist_dir, resume=True, steps=("data", "train", "eval", "export")))
    status = statuses(out)
    assert status["train"] == "skipped" and status["export"] == "done"


def test_cli_bad_preset_and_occupied_out(tmp_path: Path, finished_run: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["pipeline", "--preset", "turbo", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown preset 'turbo'" in result.stderr
    assert not (tmp_path / "x").exists()
    result = runner.invoke(app, ["pipeline", "--out", str(finished_run)])
    assert result.exit_code == 2 and "already holds a pipeline run" in result.stderr
