"""The pipeline on a small subset: every artifact, resume skipping, a failing step; with stand-in steps:
unexpected errors, Ctrl-C, foreign --out folders and deleted outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from mnist_edge import pipeline  # noqa: E402
from mnist_edge.cli import app  # noqa: E402
from mnist_edge.config import preset  # noqa: E402
from mnist_edge.data import FILES, checksums, files_in, locate  # noqa: E402
from mnist_edge.errors import OutputError, TrainingInterrupted  # noqa: E402
from mnist_edge.pipeline import STEPS, PipelineOptions, PipelineStepError, run_pipeline  # noqa: E402

SMALL = preset("fast", arch="tiny", epochs=1, train_limit=2000, val_size=500)


def options(out: Path, mnist_dir: Path, **changes) -> PipelineOptions:
    base = {"recipe": SMALL, "out": out, "device": "cpu", "data_dir": mnist_dir, "download": False,
            "bench_seconds": 0.05, "batch_sizes": (1, 8), "threads": (1,)}
    return PipelineOptions(**{**base, **changes})


def statuses(out: Path) -> dict[str, str]:
    return {s["name"]: s["status"] for s in json.loads((out / "pipeline.json").read_text())["steps"]}


PROGRESS: list[tuple] = []  # what the progress hooks of `finished_run` were told


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("pipeline") / "run"
    hooks = {"step_start": lambda name, i, n: PROGRESS.append(("step", name, i, n)),
             "bench_model": lambda name, i, n: PROGRESS.append(("bench", name, i, n))}
    run_pipeline(options(out, mnist_dir), hooks)
    return out


def test_progress_names_each_step_and_each_benchmarked_model(finished_run: Path) -> None:
    steps = [event for event in PROGRESS if event[0] == "step"]
    assert steps == [("step", name, i, len(STEPS)) for i, name in enumerate(STEPS)]
    benched = [event for event in PROGRESS if event[0] == "bench"]
    assert [(Path(name).name, i, n) for _, name, i, n in benched[:2]] == [("fp32", 0, 3), ("int8", 1, 3)]
    assert benched[2][1].startswith("PyTorch eager") and benched[2][2:] == (2, 3)


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
    # The training images' accuracy (the 2,000 of train_limit, unaugmented) beside the test set's.
    evaluated = json.loads((finished_run / "checkpoint/eval.json").read_text())
    assert evaluated["count"] == 10000 and evaluated["beside"]["train"]["count"] == 2000
    train_accuracy = evaluated["beside"]["train"]["accuracy"]
    assert f"{train_accuracy:.2%} on 2,000 images (no augmentation, eval mode)" in html
    summary = json.loads((finished_run / "pipeline.json").read_text())["summary"]["eval"]
    assert summary == {"test_accuracy": evaluated["accuracy"], "train_accuracy": train_accuracy}


def test_resume_skips_unchanged_steps(finished_run: Path, mnist_dir: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)  # the shared run stays as the other tests expect it
    weights = (run / "checkpoint/model.safetensors").read_bytes()
    called = []
    for name in STEPS:
        monkeypatch.setitem(pipeline.STEP_FUNCTIONS, name, counting(name, pipeline.STEP_FUNCTIONS[name], called))
    run_pipeline(options(run, mnist_dir, resume=True))
    assert called == ["report"]
    status = statuses(run)
    assert all(status[name] == "skipped" for name in STEPS if name != "report")
    assert (run / "checkpoint/model.safetensors").read_bytes() == weights


def counting(name: str, step, called: list[str]):
    def wrapped(*args: object) -> str:
        called.append(name)
        return step(*args)
    return wrapped


def test_recipe_change_is_refused_on_resume(finished_run: Path, mnist_dir: Path) -> None:
    other = preset("fast", arch="tiny", epochs=2, train_limit=2000, val_size=500)
    with pytest.raises(PipelineStepError, match="cannot resume: the recipe differs"):
        run_pipeline(options(finished_run, mnist_dir, recipe=other, resume=True))
    assert statuses(finished_run) == {name: "done" for name in STEPS}


def small_mnist(folder: Path, mnist_dir: Path, changed_label: int | None = None) -> Path:
    """A copy of MNIST in `folder`; with `changed_label`, the first training label is that digit."""
    folder.mkdir(parents=True, exist_ok=True)
    source = locate(mnist_dir, download=False)
    for name, path in files_in(source).items():
        target = folder / name
        target.unlink(missing_ok=True)
        shutil.copyfile(path, target)
    if changed_label is not None:
        labels = bytearray((folder / "train-labels-idx1-ubyte").read_bytes())
        labels[8] = changed_label  # after the 8-byte IDX header
        (folder / "train-labels-idx1-ubyte").write_bytes(bytes(labels))
    return folder


def test_new_mnist_files_in_the_same_folder_start_training_over(tmp_path: Path, mnist_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data = small_mnist(tmp_path / "mnist", mnist_dir)
    first = checksums(data)
    recipe = preset("fast", arch="tiny", epochs=1, train_limit=300, val_size=100)
    out = tmp_path / "run"
    run_pipeline(options(out, data, recipe=recipe, steps=("train",)))
    called: list[str] = []
    monkeypatch.setitem(pipeline.STEP_FUNCTIONS, "train", counting("train", pipeline.STEP_FUNCTIONS["train"], called))
    run_pipeline(options(out, data, recipe=recipe, resume=True, steps=("train",)))
    assert called == [] and statuses(out)["train"] == "skipped"
    original = int(np.frombuffer((data / "train-labels-idx1-ubyte").read_bytes()[8:9], np.uint8)[0])
    small_mnist(data, mnist_dir, changed_label=(original + 1) % 10)
    run_pipeline(options(out, data, recipe=recipe, resume=True, steps=("train",)))
    assert called == ["train"] and statuses(out)["train"] == "done"
    config = json.loads((out / "checkpoint/config.json").read_text())
    assert config["data"]["checksums"] == checksums(data) != first
    assert config["progress"]["completed"] and len(config["history"]) == 1


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


def test_cli_occupied_out(finished_run: Path) -> None:
    result = CliRunner().invoke(app, ["pipeline", "--out", str(finished_run)])
    assert result.exit_code == 2 and "already holds a pipeline run" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--preset", "turbo"], "unknown preset 'turbo'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--bench-seconds", "0"], "--bench-seconds must be greater than 0"),
])
def test_cli_bad_options_exit_2_before_any_folder(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["pipeline", *args, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "x").exists()


# --- stand-in steps: the pipeline's bookkeeping without training --------------------------------


@pytest.fixture
def fake_steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace every step with one that writes the step's expected outputs; returns the calls made."""
    calls: list[str] = []

    def fake(name: str):
        def step(options: PipelineOptions, paths: pipeline.Paths, state: pipeline.PipelineState, hooks: dict) -> str:
            calls.append(name)
            for rel in pipeline.STEP_OUTPUTS[name]:
                (paths.root / rel).parent.mkdir(parents=True, exist_ok=True)
                (paths.root / rel).write_text(name)
            return "fake"
        return step

    for name in STEPS:
        monkeypatch.setitem(pipeline.STEP_FUNCTIONS, name, fake(name))
    return calls


def messages(out: Path) -> dict[str, str]:
    return {s["name"]: s["message"] for s in json.loads((out / "pipeline.json").read_text())["steps"]}


def test_unexpected_error_is_recorded_then_raised(tmp_path: Path, fake_steps: list[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> str:
        raise KeyError("history")

    monkeypatch.setitem(pipeline.STEP_FUNCTIONS, "train", broken)
    with pytest.raises(KeyError):
        run_pipeline(options(tmp_path / "run", tmp_path))
    assert statuses(tmp_path / "run")["train"] == "failed"
    assert messages(tmp_path / "run")["train"] == "KeyError: 'history'"


def interrupted(*args: object) -> str:
    raise TrainingInterrupted("interrupted at epoch 1, step 3; state saved")


def test_interrupted_training_leaves_a_resumable_run(tmp_path: Path, fake_steps: list[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    train = pipeline.STEP_FUNCTIONS["train"]
    monkeypatch.setitem(pipeline.STEP_FUNCTIONS, "train", interrupted)
    with pytest.raises(TrainingInterrupted, match="step 'train' interrupted.*--resume"):
        run_pipeline(options(out, tmp_path))
    assert statuses(out)["data"] == "done" and statuses(out)["train"] == "interrupted"
    monkeypatch.setitem(pipeline.STEP_FUNCTIONS, "train", train)
    run_pipeline(options(out, tmp_path, resume=True))
    assert statuses(out) == {name: "skipped" if name == "data" else "done" for name in STEPS}


def test_cli_interrupt_exits_130(tmp_path: Path, fake_steps: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(pipeline.STEP_FUNCTIONS, "train", interrupted)
    result = CliRunner().invoke(app, ["pipeline", "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.stderr and "--resume" in result.stderr
    assert statuses(tmp_path / "run")["train"] == "interrupted"


@pytest.mark.parametrize("foreign", ["config.json", "sweep.json", "notes.txt"])
def test_out_holding_other_files_needs_force(tmp_path: Path, fake_steps: list[str], foreign: str) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / foreign).write_text("{}")
    with pytest.raises(OutputError, match=f"not a pipeline run \\({foreign}\\).*--force"):
        run_pipeline(options(out, tmp_path))
    assert not (out / "pipeline.json").exists()
    result = CliRunner().invoke(app, ["pipeline", "--out", str(out)])
    assert result.exit_code == 2 and "not a pipeline run" in result.stderr
    run_pipeline(options(out, tmp_path, force=True))
    assert (out / foreign).read_text() == "{}"  # --force never deletes what a pipeline did not write
    assert statuses(out)["report"] == "done"


def test_resume_redoes_a_done_step_whose_outputs_are_gone(tmp_path: Path, fake_steps: list[str]) -> None:
    out = tmp_path / "run"
    run_pipeline(options(out, tmp_path))
    (out / "bench" / "bench.json").unlink()
    fake_steps.clear()
    run_pipeline(options(out, tmp_path, resume=True))
    assert fake_steps == ["bench", "report"]
    assert statuses(out)["bench"] == "done" and (out / "bench" / "bench.json").is_file()


def fake_mnist(folder: Path, content: str = "v1") -> Path:
    """Four files where MNIST's belong: enough for the fingerprints (stand-in steps never read them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        (folder / name).write_text(f"{name} {content}")
    return folder


def rewrite(path: Path, text: str) -> None:
    path.write_text(text)


# What each kind of changed input redoes: a step reruns exactly when something it reads changed.
CHANGES = {
    "nothing": ({}, None, []),
    "MNIST files": ({}, lambda out, data: fake_mnist(data, "v2"), ["data", "train", "eval", "quantize", "parity"]),
    "weights": ({}, lambda out, data: rewrite(out / "checkpoint/model.safetensors", "other weights"),
                ["eval", "export", "parity"]),
    "opset": ({"opset": 18}, None, ["export"]),
    "fp32 model": ({}, lambda out, data: rewrite(out / "exported/fp32/model.onnx", "other"),
                   ["quantize", "parity", "bench"]),
    "int8 model": ({}, lambda out, data: rewrite(out / "exported/int8/model.onnx", "other"), ["parity", "bench"]),
    "bench seconds": ({"bench_seconds": 0.1}, None, ["bench"]),
    "batch sizes": ({"batch_sizes": (1, 64)}, None, ["bench"]),
    "threads": ({"threads": (1, 2)}, None, ["bench"]),
}


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_resume_redoes_exactly_the_steps_whose_inputs_changed(tmp_path: Path, fake_steps: list[str],
                                                               change: str) -> None:
    new_options, edit, redone = CHANGES[change]
    out, data = tmp_path / "run", fake_mnist(tmp_path / "mnist")
    run_pipeline(options(out, data))
    assert fake_steps == list(STEPS)
    fake_steps.clear()
    if edit:
        edit(out, data)
    run_pipeline(options(out, data, resume=True, **new_options))
    assert fake_steps == [*redone, "report"]
    assert statuses(out) == {name: "done" if name in [*redone, "report"] else "skipped" for name in STEPS}


def test_hooks_hear_every_step_that_runs_and_only_those(tmp_path: Path, fake_steps: list[str]) -> None:
    events: list[tuple] = []
    hooks = {"step_start": lambda name, i, n: events.append(("start", name, i, n)),
             "step_end": lambda record: events.append(("end", record.name, record.status))}
    run_pipeline(options(tmp_path / "run", tmp_path, steps=("data", "export")), hooks)
    assert fake_steps == ["data", "export"]
    assert events == [("start", "data", 0, len(STEPS)), ("end", "data", "done"),
                      ("start", "export", 3, len(STEPS)), ("end", "export", "done")]
    assert statuses(tmp_path / "run") == {name: "done" if name in ("data", "export") else "pending"
                                          for name in STEPS}


@pytest.mark.parametrize(("changes", "message"), [
    ({"device": "tpu"}, "unknown device 'tpu'; choose one of auto, cpu, cuda, mps"),
    ({"bench_seconds": 0}, "--bench-seconds must be greater than 0, got 0"),
    ({"bench_seconds": -1.0}, "--bench-seconds must be greater than 0, got -1.0"),
    ({"steps": ("train", "deploy", "sing")}, "unknown pipeline steps deploy, sing; the steps are data, train, eval"),
])
def test_bad_options_are_refused_before_any_folder(tmp_path: Path, changes: dict, message: str) -> None:
    from mnist_edge.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        run_pipeline(options(tmp_path / "run", tmp_path, **changes))
    assert not (tmp_path / "run").exists()


def test_a_folder_with_many_foreign_files_lists_three(tmp_path: Path, fake_steps: list[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    for name in ("a.txt", "b.txt", "c.txt", "d.txt"):
        (out / name).write_text("x")
    with pytest.raises(OutputError, match=r"not a pipeline run \(a.txt, b.txt, c.txt, \.\.\.\)"):
        run_pipeline(options(out, tmp_path))
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        run_pipeline(options(tmp_path / "file", tmp_path))


def test_resume_keeps_the_runs_summary_and_start_time(tmp_path: Path, fake_steps: list[str]) -> None:
    out = tmp_path / "run"
    run_pipeline(options(out, tmp_path))
    saved = json.loads((out / "pipeline.json").read_text())
    saved["created"], saved["summary"] = "2020-01-01T00:00:00+00:00", {"train": {"params": 7}}
    (out / "pipeline.json").write_text(json.dumps(saved))
    state = run_pipeline(options(out, tmp_path, resume=True))
    assert state.created == "2020-01-01T00:00:00+00:00" and state.summary == {"train": {"params": 7}}
    fresh = run_pipeline(options(out, tmp_path, force=True))  # --force: a new run, a new record
    assert fresh.created != "2020-01-01T00:00:00+00:00" and fresh.summary == {}


def test_a_failed_or_interrupted_step_runs_again_on_resume(tmp_path: Path, fake_steps: list[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    export = pipeline.STEP_FUNCTIONS["export"]

    def broken(*args: object) -> str:
        from mnist_edge.errors import ModelFileError

        raise ModelFileError("on purpose")

    monkeypatch.setitem(pipeline.STEP_FUNCTIONS, "export", broken)
    with pytest.raises(PipelineStepError, match="^step 'export' failed: on purpose$"):
        run_pipeline(options(out, tmp_path))
    assert statuses(out)["export"] == "failed" and messages(out)["export"] == "on purpose"
    assert (out / "report.html").is_file()  # the report of what finished
    monkeypatch.setitem(pipeline.STEP_FUNCTIONS, "export", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(TrainingInterrupted, match="step 'export' interrupted; what is done is saved"):
        run_pipeline(options(out, tmp_path, resume=True))
    assert statuses(out)["export"] == "interrupted"
    monkeypatch.setitem(pipeline.STEP_FUNCTIONS, "export", export)
    fake_steps.clear()
    run_pipeline(options(out, tmp_path, resume=True))
    assert fake_steps == ["export", "quantize", "parity", "bench", "report"]


def test_no_report_after_a_failure_when_the_report_step_is_left_out(tmp_path: Path, fake_steps: list[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_edge.errors import ModelFileError

    monkeypatch.setitem(pipeline.STEP_FUNCTIONS, "train", lambda *args: (_ for _ in ()).throw(ModelFileError("x")))
    with pytest.raises(PipelineStepError):
        run_pipeline(options(tmp_path / "run", tmp_path, steps=("data", "train")))
    assert not (tmp_path / "run" / "report.html").exists()


def test_done_steps_record_their_time_and_the_fingerprint_of_their_inputs(tmp_path: Path,
                                                                           fake_steps: list[str]) -> None:
    out = tmp_path / "run"
    run_pipeline(options(out, tmp_path))
    steps = {s["name"]: s for s in json.loads((out / "pipeline.json").read_text())["steps"]}
    paths = pipeline.Paths(out)
    for name in ("data", "train", "export", "bench"):
        assert steps[name]["fingerprint"] == pipeline._fingerprint(name, options(out, tmp_path), paths)
        assert 0 <= steps[name]["seconds"] < 5 and steps[name]["message"] == "fake"


def test_mnist_files_are_hashed_once_per_process_until_they_change(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    data = fake_mnist(tmp_path / "mnist")
    hashed: list[Path] = []
    real = pipeline.sha256_file
    monkeypatch.setattr(pipeline, "sha256_file", lambda path: hashed.append(Path(path)) or real(path))
    monkeypatch.setattr(pipeline, "_SHA256_CACHE", {})
    first = pipeline._data_checksums(options(tmp_path / "run", data))
    assert pipeline._data_checksums(options(tmp_path / "run", data)) == first and len(hashed) == 4
    labels = data / "train-labels-idx1-ubyte"
    labels.write_text("other labels")
    second = pipeline._data_checksums(options(tmp_path / "run", data))
    assert len(hashed) == 5 and hashed[-1] == labels and second != first
    assert second[labels.name] == real(labels)
    assert pipeline._data_checksums(options(tmp_path / "run", tmp_path / "nowhere")) is None


def test_bench_threads_default_to_one_then_every_core(tmp_path: Path) -> None:
    from mnist_edge.benchmark import parse_threads

    assert pipeline._bench_threads(options(tmp_path, tmp_path, threads=None)) == parse_threads("1,N")
    assert pipeline._bench_threads(options(tmp_path, tmp_path, threads=(2,))) == (2,)


def test_records_say_what_happened_and_how_long_it_took(tmp_path: Path, fake_steps: list[str]) -> None:
    out = tmp_path / "run"
    run_pipeline(options(out, tmp_path))
    saved = json.loads((out / "pipeline.json").read_text())
    assert all(0 <= s["seconds"] < 2 for s in saved["steps"] if s["status"] == "done")
    run_pipeline(options(out, tmp_path, resume=True))
    assert {messages(out)[name] for name in STEPS if name != "report"} == {"unchanged since the last run"}


@pytest.mark.parametrize("damage, reason", [
    (lambda saved: [1, 2], "not a pipeline record (expected a JSON object); start over with --force"),
    (lambda saved: {**saved, "created": 5},
     "'created' must be a string and 'summary' an object; start over with --force"),
], ids=["not-an-object", "created-not-text"])
def test_a_damaged_record_is_refused_by_name(tmp_path: Path, fake_steps: list[str], damage, reason: str) -> None:
    out = tmp_path / "run"
    run_pipeline(options(out, tmp_path))
    (out / "pipeline.json").write_text(json.dumps(damage(json.loads((out / "pipeline.json").read_text()))))
    with pytest.raises(OutputError) as caught:
        run_pipeline(options(out, tmp_path, resume=True))
    assert (caught.value.path, caught.value.reason) == (out / "pipeline.json", reason)


def test_a_record_without_a_summary_resumes(tmp_path: Path, fake_steps: list[str]) -> None:
    out = tmp_path / "run"
    run_pipeline(options(out, tmp_path))
    saved = json.loads((out / "pipeline.json").read_text())
    saved.pop("summary", None)
    (out / "pipeline.json").write_text(json.dumps(saved))
    run_pipeline(options(out, tmp_path, resume=True))
    assert statuses(out)["report"] == "done"


def test_an_out_that_is_a_file_is_refused_by_name(tmp_path: Path, fake_steps: list[str]) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError) as caught:
        run_pipeline(options(tmp_path / "file", tmp_path))
    assert (caught.value.path, caught.value.reason) == (tmp_path / "file", "exists and is not a directory")


def test_fingerprints_ignore_key_order_and_name_their_step() -> None:
    assert pipeline._hash({"a": 1, "b": [2, 3]}) == pipeline._hash({"b": [2, 3], "a": 1})
    assert pipeline._hash("export", 1) != pipeline._hash("quantize", 1)


def test_fingerprints_never_download_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []

    def locate(folder, download=True):
        asked.append(download)
        raise pipeline.DataError("not here")

    monkeypatch.setattr(pipeline.data, "locate", locate)
    assert pipeline._data_checksums(options(tmp_path / "run", tmp_path, download=True)) is None and asked == [False]


def test_the_data_a_run_was_trained_on_is_read_from_its_config(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data": {"checksums": {"train-images": "ab"}}}))
    assert pipeline._trained_on(config) == {"train-images": "ab"}
    config.write_text(json.dumps({"data": "damaged"}))
    assert pipeline._trained_on(config) is None
