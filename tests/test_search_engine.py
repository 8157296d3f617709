"""The runner `sweep` and `search` share (mnist_edge/search/engine.py), without training: studies in
memory or in an SQLite file of tmp_path, objectives that return at once, the chain's files written
by hand. How many trials run, which count, which are retried and in which folder, what a finished
chain's figures are."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mnist_edge import pipeline
from mnist_edge.errors import ConfigError
from mnist_edge.search import engine

TINY_INT8 = Path(__file__).resolve().parents[1] / "exported" / "tiny-int8"

pytestmark = [pytest.mark.filterwarnings("error:The distribution is specified by"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]


@pytest.fixture(autouse=True)
def quiet() -> None:
    engine.quiet_optuna()


def two_objectives() -> optuna.Study:
    return optuna.create_study(directions=["maximize", "minimize"])


def counting_objective(calls: list[int]):
    def objective(trial: optuna.Trial) -> tuple[float, float]:
        calls.append(trial.number)
        assert len(calls) < 50, "the study never stops"  # fails a runaway loop instead of hanging
        return 0.5, 1.0

    return objective


# --- how many trials --------------------------------------------------------------------------------


def test_optimize_runs_exactly_the_target_and_calls_back_after_each() -> None:
    study, calls, ended = two_objectives(), [], []
    engine.optimize(study, counting_objective(calls), 3, callbacks=[lambda s, t: ended.append(t.number)])
    assert calls == [0, 1, 2] and ended == [0, 1, 2]
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 3
    engine.optimize(study, counting_objective(calls), 3)  # already there: nothing more runs
    assert calls == [0, 1, 2]
    engine.optimize(study, counting_objective(calls), 4)  # a higher target adds what is missing
    assert calls == [0, 1, 2, 3]


def test_a_failed_trial_counts_and_the_study_goes_on() -> None:
    study = two_objectives()

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        if trial.number == 1:
            trial.set_user_attr(engine.MESSAGE_ATTR, "the chain broke")
            raise engine.TrialFailed("the chain broke")
        return 0.5, 1.0

    engine.optimize(study, objective, 3)
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    with pytest.raises(ValueError, match="another error"):  # only TrialFailed is caught
        engine.optimize(study, lambda trial: (_ for _ in ()).throw(ValueError("another error")), 4)


def test_waiting_trials_run_even_past_the_target() -> None:
    """A sweep enqueues its runs: every enqueued run is run, whatever the target."""
    study, calls = two_objectives(), []
    for lr in (0.1, 0.2, 0.3):
        study.enqueue_trial({"lr": lr})
    seen = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        seen.append(trial.suggest_float("lr", 0.0, 1.0))
        return counting_objective(calls)(trial)

    engine.optimize(study, objective, 1)
    assert seen == [0.1, 0.2, 0.3] and len(study.get_trials()) == 3


def test_counted_leaves_out_the_trials_a_retry_replaced() -> None:
    study = two_objectives()
    first = study.ask()
    study.tell(first, state=TrialState.FAIL)
    engine.requeue_interrupted(study)  # not interrupted: nothing queued
    assert engine.counted(study.get_trials()) == 1
    first_again = study.ask()
    first_again.set_user_attr(engine.INTERRUPTED_ATTR, True)
    study.tell(first_again, state=TrialState.FAIL)
    assert engine.requeue_interrupted(study) == 1
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.WAITING]
    assert trials[2].system_attrs["retry_history"] == [1]
    assert engine.counted(trials) == 2  # the first failure and the retry; the interrupted one is replaced
    engine.optimize(study, counting_objective([]), 2)  # the waiting retry runs, and the target is met
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert engine.requeue_interrupted(study) == 0  # a replaced trial is not queued again


def test_requeue_keeps_parameters_and_run_folder() -> None:
    study = two_objectives()
    trial = study.ask()
    trial.suggest_int("epochs", 1, 3)
    assert engine.run_folder(trial, "trial-0000") == "trial-0000"
    assert engine.run_folder(trial, "trial-0009") == "trial-0000"  # set once
    trial.set_user_attr(engine.INTERRUPTED_ATTR, True)
    study.tell(trial, state=TrialState.FAIL)
    engine.requeue_interrupted(study)
    retry = study.ask()
    assert retry.params == trial.params and engine.run_folder(retry, "trial-0001") == "trial-0000"


def test_a_worker_waits_for_another_workers_trial_and_runs_its_retry(tmp_path: Path) -> None:
    """Heartbeat storage: the target is reached while another worker's trial runs. That worker
    dies (its trial stops beating); this one waits, marks it failed, and runs its retry."""
    from mnist_edge.search.storage import open_storage

    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = open_storage(url, heartbeat_seconds=1)
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"])
    with pytest.warns(UserWarning, match="Heartbeat"):  # asked by hand, as optimize would in that worker
        dead = study.ask()  # another worker's trial, never told: its worker died at once
    engine.run_folder(dead, "trial-0000")
    storage.record_heartbeat(dead._trial_id)
    calls: list[int] = []
    started = time.monotonic()
    engine.optimize(study, counting_objective(calls), 1, poll_seconds=0.2)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert calls == [1] and trials[1].system_attrs["failed_trial"] == 0
    assert trials[1].user_attrs[engine.RUN_ATTR] == "trial-0000"
    assert engine.counted(trials) == 1
    assert time.monotonic() - started >= 1.5  # it waited out the grace period (twice the heartbeat)


def test_without_a_heartbeat_a_worker_does_not_wait_for_running_trials(monkeypatch) -> None:
    study = two_objectives()
    study.ask()  # running, in a storage without heartbeat: it may never end

    def no_waiting(seconds: float) -> None:
        raise AssertionError("waited for a trial that no heartbeat will ever fail")

    monkeypatch.setattr(engine.time, "sleep", no_waiting)
    calls: list[int] = []
    engine.optimize(study, counting_objective(calls), 1)
    assert calls == []  # the running trial counts; nothing to wait for


# --- the chain ---------------------------------------------------------------------------------------


class FakeCpu:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def shared(self) -> None:
        self.calls.append("shared")

    def exclusive(self) -> None:
        self.calls.append("exclusive")


def test_run_chain_holds_the_cpu_exclusive_for_the_benchmark_only(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple] = []
    cpu = FakeCpu()

    def fake_pipeline(options, hooks):
        assert options == "options" and hooks["other"] == "kept"
        for index, name in enumerate(("train", "export", "bench", "quantize")):
            hooks["step_start"](name, index, 4)
            seen.append((name, cpu.calls[-1]))

    monkeypatch.setattr(pipeline, "run_pipeline", fake_pipeline)
    outer: list[tuple] = []
    engine.run_chain("options", {"step_start": lambda *args: outer.append(args), "other": "kept"}, cpu)
    assert seen == [("train", "shared"), ("export", "shared"), ("bench", "exclusive"), ("quantize", "shared")]
    assert outer == [("train", 0, 4), ("export", 1, 4), ("bench", 2, 4), ("quantize", 3, 4)]
    engine.run_chain("options", {"other": "kept"}, None)  # no lock, no outer hook: the steps still run


# --- a finished chain's figures ----------------------------------------------------------------------


def finished_chain(tmp_path: Path) -> Path:
    run = tmp_path / "trial-0000"
    shutil.copytree(TINY_INT8, run / "exported" / "int8")
    (run / "bench").mkdir()
    (run / "checkpoint").mkdir()
    bench = {"models": [{"path": str(run / "exported" / "fp32" / "model.onnx"), "latency": {"p50_us": 99.0}},
                        {"path": str(run / "exported" / "int8" / "model.onnx"), "latency": {"p50_us": 12.5}}]}
    (run / "bench" / "bench.json").write_text(json.dumps(bench))
    (run / "checkpoint" / "metrics.json").write_text(json.dumps({"epochs": [{"seconds": 1.25}, {"seconds": 2.5}]}))
    return run


def test_chain_figures_are_the_int8_models(tmp_path: Path) -> None:
    run = finished_chain(tmp_path)
    figures = engine.chain_figures(run)
    manifest = json.loads((TINY_INT8 / "manifest.json").read_text())
    assert figures == {"params": manifest["source"]["params"], "int8_bytes": manifest["files"]["bytes"],
                       "latency_us": 12.5, "train_seconds": 3.8}  # 3.75 s, to one decimal


@pytest.mark.parametrize("file, content", [
    ("bench/bench.json", {"models": []}),
    ("bench/bench.json", {"models": [{"path": "exported/fp32/model.onnx", "latency": {"p50_us": 1.0}}]}),
    ("bench/bench.json", {"models": [{"path": "exported/int8/model.onnx", "latency": {}}]}),
    ("bench/bench.json", {"models": "none"}),
    ("bench/bench.json", []),
    ("checkpoint/metrics.json", {"epochs": [{"second": 1.0}]}),
    ("checkpoint/metrics.json", {}),
])
def test_chain_figures_of_damaged_files_are_config_errors(tmp_path: Path, file: str, content: object) -> None:
    run = finished_chain(tmp_path)
    (run / file).write_text(json.dumps(content))
    with pytest.raises(ConfigError, match="lacks an expected field") as error:
        engine.chain_figures(run)
    assert error.value.path == run


@pytest.mark.parametrize("latency", ["12", True, None])
def test_chain_figures_that_are_not_numbers_are_config_errors(tmp_path: Path, latency: object) -> None:
    run = finished_chain(tmp_path)
    bench = json.loads((run / "bench" / "bench.json").read_text())
    bench["models"][1]["latency"]["p50_us"] = latency
    (run / "bench" / "bench.json").write_text(json.dumps(bench))
    with pytest.raises(ConfigError) as error:
        engine.chain_figures(run)
    assert (error.value.reason, error.value.path) == ("manifest or bench figures are not numbers", run)


def test_a_missing_field_is_named_with_its_error(tmp_path: Path) -> None:
    run = finished_chain(tmp_path)
    (run / "checkpoint" / "metrics.json").write_text(json.dumps({"epochs": [{"second": 1.0}]}))
    with pytest.raises(ConfigError) as error:
        engine.chain_figures(run)
    assert error.value.reason == "manifest, bench or metrics file lacks an expected field (KeyError: 'seconds')"


@pytest.mark.parametrize("damage", ["{not json", None])
def test_a_bench_file_that_is_not_json_or_missing_is_a_config_error(tmp_path: Path, damage: str | None) -> None:
    run = finished_chain(tmp_path)
    if damage is None:
        (run / "bench" / "bench.json").unlink()
    else:
        (run / "bench" / "bench.json").write_text(damage)
    with pytest.raises(ConfigError) as error:
        engine.chain_figures(run)
    assert error.value.path == run / "bench" / "bench.json"


def test_chain_figures_of_a_missing_file_are_config_errors(tmp_path: Path) -> None:
    run = finished_chain(tmp_path)
    (run / "checkpoint" / "metrics.json").unlink()
    with pytest.raises(ConfigError):
        engine.chain_figures(run)
