"""Sweep configs (errors name the key and line), failing runs, the CLI, and a tiny sweep with resume."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnist_edge import manifest, pipeline
from mnist_edge.cli import app
from mnist_edge.errors import ConfigError, OutputError, TrainingInterrupted
from mnist_edge.sweep import SWEEP_STEPS, RunResult, load_config, markdown_table, run_sweep


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_example_config_parses() -> None:
    config = load_config(Path(__file__).parent.parent / "sweeps" / "example.toml")
    names = [r.name for r in config.runs]
    assert "notebook-mlp" in names
    notebook = config.runs[names.index("notebook-mlp")].recipe
    assert (notebook.arch, notebook.lr, notebook.batch_size, notebook.epochs) == ("mlp", 0.01, 64, 50)
    # The documented figures are for 4-epoch runs, whatever the fast preset's epochs become.
    assert {r.recipe.epochs for r in config.runs if r.name != "notebook-mlp"} == {4}


def test_grid_expands_to_every_combination(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[grid]\narch = ["tiny", "cnn"]\nlr = [0.01, 0.05]\n'))
    assert len(config.runs) == 4
    assert {(r.recipe.arch, r.recipe.lr) for r in config.runs} == {
        ("tiny", 0.01), ("tiny", 0.05), ("cnn", 0.01), ("cnn", 0.05)}


@pytest.mark.parametrize("text, message", [
    ('[sweep]\npreset = "fast"\n[[run]]\narch = "mlp"\ndropout = 0.5\n', "line 5: key 'dropout'"),
    ('[sweep]\nbench_seconds = -1\n[[run]]\narch = "mlp"\n', "line 2: key 'bench_seconds'"),
    ('[[run]]\narch = "mlp"\nepochs = "ten"\n', "line 3: key 'epochs': expected int"),
    ('[[run]]\narch = "resnet"\n', "line 2: key 'arch': unknown architecture"),
    ('[grid]\narch = "mlp"\n', "line 2: key 'arch': a [grid] key takes a non-empty list"),
    ('[[run]]\nname = "a"\n[[run]]\nname = "a"\n', "run names must be unique"),
    ('[sweep]\npreset = "fast"\n[runs]\narch = 1\n', "line 3: key 'runs': unknown table"),
    ('[[run]]\narch = "mlp\n', "not valid TOML"),
    ('[sweep]\nname = "x"\n', "no runs"),
    # the failing key and its own line, not the first key of the run nor its first mention in the file
    ('[[run]]\nname = "a"\narch = "mlp"\nepochs = 2\n\n[[run]]\nname = "b"\narch = "mlp"\nepochs = 0\n',
     "line 9: key 'epochs': --epochs must be at least 1"),
    ('[[run]]\nname = "a"\n[[run]]\nname = "A"\n', "line 4: key 'name': run names must be unique"),
    ('[sweep]\npreset = "turbo"\n[[run]]\narch = "mlp"\n', "line 2: key 'preset': unknown preset 'turbo'"),
    ('[[run]]\narch = "mlp"\n[[run]]\npreset = "turbo"\n', "line 4: key 'preset': unknown preset"),
    ('[grid]\narch = ["tiny"]\nlr = [0.01, -1.0]\n', "line 3: key 'lr': --lr must be greater than 0"),
    ('[[run]]\nname = "../../escape"\n', "line 2: key 'name': '../../escape' is not a usable run name"),
    ('[[run]]\narch = "mlp"\n[[run]]\nname = ".."\n', "line 4: key 'name': '..' is not a usable run name"),
    ('[[run]]\nname = "results.md"\n', "line 2: key 'name': 'results.md' is not a usable run name"),
    ('[sweep]\nname = "x"\ndevice = "tpu"\n[[run]]\narch = "mlp"\n', "line 3: key 'device': unknown device 'tpu'"),
    ('[sweep]\nbench_seconds = true\n[[run]]\narch = "mlp"\n', "line 2: key 'bench_seconds'"),
    ('run = [1]\n', "line 1: key 'run': must be written as [[run]] tables"),
    ('grid = 3\n[[run]]\narch = "mlp"\n', "line 1: key 'grid': must be written as a [grid] table"),
])
def test_malformed_configs_name_key_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        load_config(write(tmp_path, text))
    assert "sweep.toml" in str(info.value)


SMALL_SWEEP = """[sweep]
bench_seconds = {seconds}
device = "cpu"
[[run]]
name = "a"
arch = "mlp"
epochs = 1
train_limit = {limit}
[[run]]
name = "b"
arch = "lenet5"
epochs = 1
train_limit = 1500
"""
# No onnxruntime call on a digit model takes under a microsecond (the call overhead alone is
# several): a smaller p50 means the timed loop did not run the model.
MIN_CALL_US = 1.0


def count_steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Wrap every pipeline step so that each one that runs is recorded as (run folder, step)."""
    called: list[tuple[str, str]] = []

    def counted(name: str, step):
        def run(options: pipeline.PipelineOptions, *args: object) -> str:
            called.append((options.out.name, name))
            return step(options, *args)
        return run

    for name, step in list(pipeline.STEP_FUNCTIONS.items()):
        monkeypatch.setitem(pipeline.STEP_FUNCTIONS, name, counted(name, step))
    return called


def test_small_sweep_measures_and_resumes(tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    config = load_config(write(tmp_path, SMALL_SWEEP.format(seconds=0.05, limit=1500)))
    out = tmp_path / "out"
    called = count_steps(monkeypatch)
    results = run_sweep(config, out, data_dir=mnist_dir, download=False)
    assert [r.status for r in results] == ["done", "done"], [r.message for r in results]
    assert called == [(run, step) for run in "ab" for step in SWEEP_STEPS]
    for result in results:
        bench = json.loads((out / result.name / "bench/bench.json").read_text())
        assert result.latency_us == bench["models"][1]["latency"]["p50_us"] >= MIN_CALL_US
        assert result.int8_accuracy > 0.3 and result.int8_bytes > 0
    assert results[0].params == 669_706 and results[1].params == 61_706
    for name in ("results.csv", "results.md", "results.json", "pareto.png"):
        assert (out / name).is_file()
    assert "★" in (out / "results.md").read_text()
    with pytest.raises(OutputError, match="already holds a sweep"):
        run_sweep(config, out, data_dir=mnist_dir, download=False)

    called.clear()
    again = run_sweep(config, out, resume=True, data_dir=mnist_dir, download=False)
    assert called == []  # nothing redone: every step of every run is skipped
    assert again == results

    longer = load_config(write(tmp_path, SMALL_SWEEP.format(seconds=0.06, limit=1500)))
    run_sweep(longer, out, resume=True, data_dir=mnist_dir, download=False)
    assert called == [("a", "bench"), ("b", "bench")]

    called.clear()
    edited = load_config(write(tmp_path, SMALL_SWEEP.format(seconds=0.06, limit=1000)))
    run_sweep(edited, out, resume=True, data_dir=mnist_dir, download=False)
    assert called == [("a", step) for step in SWEEP_STEPS]  # run a starts over; b is kept
    recorded = json.loads((out / "a/checkpoint/config.json").read_text())["recipe"]
    assert recorded["train_limit"] == 1000


def fake_pipeline(bench_models: dict[str, list], interrupt: str = "") -> object:
    """A stand-in for run_pipeline writing the files `collect` reads; a run's bench models are chosen per run."""

    def run(options: pipeline.PipelineOptions, hooks: object = None) -> None:
        name = options.out.name
        if name == interrupt:
            raise TrainingInterrupted("interrupted at epoch 1, step 3")
        for rel, obj in (("parity/parity.json", {"passed": True, "models": [
                             {"role": r, "accuracy": 0.9} for r in ("pytorch", "fp32", "int8")]}),
                         ("bench/bench.json", {"models": bench_models[name]}),
                         ("checkpoint/metrics.json", {"epochs": [{"seconds": 1.0}]})):
            (options.out / rel).parent.mkdir(parents=True, exist_ok=True)
            (options.out / rel).write_text(json.dumps(obj))

    return run


def no_torch_sweep(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run, runs: str = "good") -> Path:
    monkeypatch.setattr(pipeline, "run_pipeline", run)
    monkeypatch.setattr(manifest, "load", lambda folder: {"source": {"params": 10}, "files": {"bytes": 100}})
    return write(tmp_path, "".join(f'[[run]]\nname = "{name}"\narch = "mlp"\n' for name in runs.split()))


def test_unreadable_results_fail_that_run_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = [{"path": "x/exported/int8/model.onnx", "latency": {"p50_us": 12.0}}]
    odd = [{"path": "x/exported/int8/model.onnx"}]  # no latency: KeyError
    run = fake_pipeline({"none": [], "odd": odd, "good": good})  # no int8 model: StopIteration
    config = load_config(no_torch_sweep(monkeypatch, tmp_path, run, "none odd good"))
    results = run_sweep(config, tmp_path / "out")
    assert [r.status for r in results] == ["failed", "failed", "done"]
    assert "StopIteration" in results[0].message and "KeyError: 'latency'" in results[1].message
    assert results[2].latency_us == 12.0
    assert "failed: cannot read its results" in (tmp_path / "out" / "results.md").read_text()


def test_interrupted_training_stops_the_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = [{"path": "x/exported/int8/model.onnx", "latency": {"p50_us": 12.0}}]
    run = fake_pipeline({"a": good, "b": good}, interrupt="a")
    config = load_config(no_torch_sweep(monkeypatch, tmp_path, run, "a b"))
    with pytest.raises(TrainingInterrupted, match="run 'a' interrupted.*--resume"):
        run_sweep(config, tmp_path / "out")
    assert not (tmp_path / "out" / "b").exists()


def test_out_holding_something_else_is_refused(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[[run]]\narch = "mlp"\n'))
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        run_sweep(config, tmp_path / "file")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "pipeline.json").write_text("{}")
    with pytest.raises(OutputError, match="not a sweep"):
        run_sweep(config, tmp_path / "other")


def test_cli_malformed_config_is_one_line_naming_key_and_line(tmp_path: Path) -> None:
    config = write(tmp_path, '[[run]]\narch = "mlp"\n\n[[run]]\narch = "cnn"\nepochs = 0\n')
    result = CliRunner().invoke(app, ["sweep", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "line 6: key 'epochs'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_out_holding_another_run_needs_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(options: pipeline.PipelineOptions, hooks: object = None) -> None:
        raise pipeline.PipelineStepError("step 'train' failed: on purpose")

    config = no_torch_sweep(monkeypatch, tmp_path, failing)
    out = tmp_path / "out"
    out.mkdir()
    (out / "pipeline.json").write_text("{}")  # a pipeline run, not a sweep
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", str(config), "--out", str(out)])
    assert result.exit_code == 2 and "not a sweep" in result.stderr and "--force" in result.stderr
    result = runner.invoke(app, ["sweep", str(config), "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert "0 runs measured, 1 failed" in result.stdout and (out / "results.md").is_file()
    result = runner.invoke(app, ["sweep", str(config), "--out", str(out)])
    assert result.exit_code == 2 and "already holds a sweep" in result.stderr


# --- the runner, with a stand-in pipeline: what each run is asked to do, and what is written ----


GOOD_BENCH = [{"path": "x/exported/fp32/model.onnx", "latency": {"p50_us": 99.0}},
              {"path": "x/exported/int8/model.onnx", "latency": {"p50_us": 12.0}}]


def recording_pipeline(calls: list) -> object:
    write_files = fake_pipeline({name: GOOD_BENCH for name in "abc"})

    def run(options: pipeline.PipelineOptions, hooks: object = None) -> None:
        calls.append(options)
        write_files(options, hooks)
        (options.out / "pipeline.json").write_text(json.dumps({"preset_recipe": options.recipe.to_dict()}))

    return run


def test_each_run_gets_the_sweep_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[pipeline.PipelineOptions] = []
    config_path = no_torch_sweep(monkeypatch, tmp_path, recording_pipeline(calls), "a b")
    config_path.write_text('[sweep]\nbench_seconds = 0.3\ndevice = "cpu"\n' + config_path.read_text())
    config = load_config(config_path)
    events: list[tuple] = []
    hooks = {"run_start": lambda spec, i, n: events.append((spec.name, i, n)),
             "run_end": lambda result: events.append((result.name, result.status))}
    run_sweep(config, tmp_path / "out", data_dir=tmp_path / "mnist", download=False, hooks=hooks)
    assert events == [("a", 0, 2), ("a", "done"), ("b", 1, 2), ("b", "done")]
    first = calls[0]
    assert (first.out, first.device, first.data_dir, first.download) == (tmp_path / "out" / "a", "cpu",
                                                                        tmp_path / "mnist", False)
    assert (first.bench_seconds, first.batch_sizes, first.threads) == (0.3, (1,), (1,))
    assert (first.torch_baseline, first.parity_gate, first.steps) == (False, False, SWEEP_STEPS)
    assert (first.resume, first.force) == (False, True)  # a new sweep starts each run afresh
    marker = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert marker["config"] == str(config_path) and [r["name"] for r in marker["runs"]] == ["a", "b"]
    assert marker["runs"][0]["recipe"] == config.runs[0].recipe.to_dict()


def test_resume_continues_unchanged_runs_and_restarts_edited_ones(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[pipeline.PipelineOptions] = []
    config = load_config(no_torch_sweep(monkeypatch, tmp_path, recording_pipeline(calls), "a b c"))
    out = tmp_path / "out"
    run_sweep(config, out)
    calls.clear()
    edited = json.loads((out / "b" / "pipeline.json").read_text())
    edited["preset_recipe"]["epochs"] += 1  # as if the config had been edited since
    (out / "b" / "pipeline.json").write_text(json.dumps(edited))
    (out / "c" / "pipeline.json").write_text("{not json")  # damaged by hand
    run_sweep(config, out, resume=True)
    assert [(c.out.name, c.resume, c.force) for c in calls] == [("a", True, False), ("b", False, True),
                                                                 ("c", False, True)]
    (out / "a" / "pipeline.json").unlink()  # never started: the pipeline starts it under resume
    calls.clear()
    run_sweep(config, out, resume=True)
    assert (calls[0].resume, calls[0].force) == (True, False)


def test_results_come_from_each_runs_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def run(options: pipeline.PipelineOptions, hooks: object = None) -> None:
        fake_pipeline({"a": GOOD_BENCH})(options, hooks)
        (options.out / "parity/parity.json").write_text(json.dumps({"passed": False, "models": [
            {"role": "pytorch", "accuracy": 0.91}, {"role": "fp32", "accuracy": 0.92},
            {"role": "int8", "accuracy": 0.93}]}))
        (options.out / "checkpoint/metrics.json").write_text(json.dumps({"epochs": [{"seconds": 1.04},
                                                                                   {"seconds": 2.02}]}))

    config = load_config(no_torch_sweep(monkeypatch, tmp_path, run, "a"))
    (result,) = run_sweep(config, tmp_path / "out")
    assert result == RunResult("a", "mlp", "done", params=10, int8_accuracy=0.93, fp32_accuracy=0.92,
                               torch_accuracy=0.91, int8_bytes=100, latency_us=12.0, train_seconds=3.1,
                               parity_passed=False)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved == [asdict(result)]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "results.csv").read_text())))
    assert rows[0]["name"] == "a" and rows[0]["latency_us"] == "12.0" and rows[0]["parity_passed"] == "False"
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| a | mlp | 10 | 93.00% | 92.00% | 91.00% | 100 B | 12.0 µs | 3.1 | FAIL | ★ |" in table


def test_figures_that_are_not_numbers_fail_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def run(options: pipeline.PipelineOptions, hooks: object = None) -> None:
        fake_pipeline({"a": [{"path": "x/exported/int8/model.onnx", "latency": {"p50_us": True}}]})(options, hooks)

    config = load_config(no_torch_sweep(monkeypatch, tmp_path, run, "a"))
    (result,) = run_sweep(config, tmp_path / "out")
    assert result.status == "failed" and "figures are not numbers" in result.message
    assert not (tmp_path / "out" / "pareto.png").exists()  # nothing measured: no front to draw
    assert "| a | mlp | failed: cannot read its results:" in (tmp_path / "out" / "results.md").read_text()


def test_the_pareto_front_is_marked_in_the_table(tmp_path: Path) -> None:
    def done(name: str, accuracy: float, latency: float, size: int) -> RunResult:
        return RunResult(name, "tiny", "done", params=1, int8_accuracy=accuracy, fp32_accuracy=accuracy,
                         torch_accuracy=accuracy, int8_bytes=size, latency_us=latency, train_seconds=1.0,
                         parity_passed=True)

    table = markdown_table([done("fast", 0.98, 10.0, 2000), done("good", 0.99, 30.0, 4000),
                            done("worse", 0.97, 40.0, 5000)])
    marks = {line.split(" | ")[0].strip("| "): line.rstrip().endswith("★ |") for line in table.splitlines()[2:]}
    assert marks == {"fast": True, "good": True, "worse": False}


def test_runs_are_trials_of_the_search_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    from mnist_edge.search import engine

    studies: list[optuna.Study] = []
    real = engine.optimize
    monkeypatch.setattr(engine, "optimize", lambda study, *a, **k: (studies.append(study), real(study, *a, **k)))
    config_path = no_torch_sweep(monkeypatch, tmp_path, recording_pipeline([]), "a b c")
    run_sweep(load_config(config_path), tmp_path / "out", data_dir=tmp_path / "mnist", download=False)
    trials = studies[0].get_trials()
    # one trial per run, in the config's order, each its run's figures
    assert [t.params["run"] for t in trials] == ["a", "b", "c"]
    assert all(t.state.name == "COMPLETE" and len(t.values) == 2 for t in trials)


def test_a_failed_pipeline_is_recorded_whole_and_the_hooks_reach_it(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_edge.errors import ParityError

    seen = []

    def run(options: pipeline.PipelineOptions, hooks: object = None) -> None:
        seen.append(hooks)
        if options.out.name == "bad":
            raise ParityError("int8 dropped 2 points", options.out)
        fake_pipeline({"good": GOOD_BENCH})(options, hooks)

    config = load_config(no_torch_sweep(monkeypatch, tmp_path, run, "bad good"))
    hooks = {"on_step": lambda *a: None}
    bad, good = run_sweep(config, tmp_path / "out", hooks=hooks)
    assert bad == RunResult("bad", "mlp", "failed", message=f"{tmp_path / 'out' / 'bad'}: int8 dropped 2 points")
    assert good.status == "done" and all(h is hooks for h in seen) and len(seen) == 2
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "results.csv").read_text())))
    assert [r["status"] for r in rows] == ["failed", "done"] and (tmp_path / "out" / "pareto.png").is_file()
    table = (tmp_path / "out" / "results.md").read_text().splitlines()
    assert table[0] == ("| run | arch | params | int8 test acc | fp32 | PyTorch | int8 file | batch-1 p50 | train s "
                        "| parity | front |")
    assert table[2] == f"| bad | mlp | failed: {bad.message} ||||||||| |"
    assert table[3].startswith("| good | mlp | 10 | 90.00% |") and table[3].endswith(" | pass | ★ |")


def test_refusals_of_the_output_folder_name_it_exactly(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[[run]]\narch = "mlp"\n'))
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError) as not_a_folder:
        run_sweep(config, tmp_path / "file")
    assert (not_a_folder.value.path, not_a_folder.value.reason) == (tmp_path / "file", "exists and is not a directory")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError) as foreign:
        run_sweep(config, tmp_path / "other")
    assert (foreign.value.path, foreign.value.reason) == (
        tmp_path / "other", "holds other files (not a sweep); choose an empty or new --out, or pass --force")


def test_no_results_still_give_a_csv_with_every_column(tmp_path: Path) -> None:
    from dataclasses import fields

    from mnist_edge.sweep import write_results

    paths = write_results(tmp_path, [])
    assert (tmp_path / "results.csv").read_text().strip() == ",".join(f.name for f in fields(RunResult))
    assert "pareto" not in paths and paths["csv"] == tmp_path / "results.csv"
    assert (tmp_path / "results.md").read_text().splitlines()[2:] == []
