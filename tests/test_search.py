"""`mnist-edge search`: config checks, one worker end to end, and several workers sharing a
study in SQLite, a journal file and a real PostgreSQL server, one of them killed with SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from mnist_edge.cli import app
from mnist_edge.errors import ConfigError
from mnist_edge.search import engine
from mnist_edge.search.space import load_search_config, recipe_for

# Optuna only warns when a range does not fit its step, then samples a shorter one: an error here.
pytestmark = [pytest.mark.filterwarnings("error:The distribution is specified by"),
              pytest.mark.filterwarnings("error:Choices for a categorical distribution")]

# Trials of a few seconds: the tiny model on 512 images for one epoch, benchmarked briefly.
SMALL = """[search]
name = "{name}"
trials = {trials}
population = 2
bench_seconds = 0.05

[search.space]
arch = ["tiny", "strided"]
epochs = 1
train_limit = 512
lr = {{low = 0.002, high = 0.03, log = true}}

[search.space.strided]
width = {{low = 8, high = 16, step = 8}}
"""


def small_config(tmp_path: Path, trials: int = 2, name: str = "small") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(SMALL.format(name=name, trials=trials))
    return path


def search_args(config: Path, out: Path, mnist_dir: Path, *extra: str) -> list[str]:
    return ["search", str(config), "--out", str(out), "--data-dir", str(mnist_dir), "--no-download",
            "--cpu-lock", str(out.parent / "cpu.lock"), *extra]


def test_example_search_config_parses() -> None:
    config = load_search_config(Path(__file__).parent.parent / "sweeps" / "search.toml")
    assert config.objectives == ("accuracy", "latency") and config.population == 8
    assert {"arch", "lr", "strided.width", "strided.depth", "cnn.width"} <= set(config.space)
    recipe = recipe_for(config, {"arch": "strided", "strided.width": 24, "strided.depth": 3, "cnn.width": 6})
    assert (recipe.arch, recipe.width, recipe.depth) == ("strided", 24, 3)
    # keys scoped to another architecture do not leak into this one
    assert recipe_for(config, {"arch": "cnn", "strided.width": 24, "cnn.width": 6}).width == 6


@pytest.mark.parametrize("space, message", [
    ('dropout = [0.1]', "line 6: key 'dropout': unknown [search.space] key"),
    ('epochs = 2', "empty search space"),
    ('lr = {low = 0.1, high = 0.01}', "line 6: key 'lr': low (0.1) is greater than high (0.01)"),
    ('weight_decay = {low = 0.0, high = 0.01, log = true}', "key 'weight_decay': a log-scale range needs low > 0"),
    ('epochs = {low = 0, high = 3}', "key 'epochs': --epochs must be at least 1"),
    ('arch = []', "key 'arch': an empty list"),
    ('arch = ["lenet5"]\nwidth = [8, 16]', "key 'width': architecture 'lenet5' has no width knob"),
    ('arch = ["tiny"]\n[search.space.cnn]\nwidth = [8]', "[search.space.cnn] can never apply"),
    ('augment = {low = 0, high = 1}', "key 'augment': takes a list of choices"),
    ('val_size = [1000, 2000]', "key 'val_size': unknown"),
])
def test_bad_space_is_one_error_line_and_writes_nothing(tmp_path: Path, space: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[search]\nname = "x"\nobjectives = ["accuracy", "latency"]\n\n[search.space]\n{space}\n')
    result = CliRunner().invoke(app, ["search", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("head, message", [
    ('objectives = ["accuracy", "energy"]', "line 3: key 'objectives': unknown objective 'energy'"),
    ('objectives = []', "key 'objectives': must be a non-empty list"),
    ('colour = "red"', "key 'colour': unknown [search] key"),
    ('population = 1', "key 'population': must be an integer of at least 2"),
    ('sampler = "grid"', "unknown sampler 'grid'"),
    ('prune_below = 1.5', "key 'prune_below'"),
])
def test_bad_search_table_is_refused(tmp_path: Path, head: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[search]\nname = "x"\n{head}\n[search.space]\nlr = [0.01, 0.02]\n')
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_search_config(path)


def test_unreachable_storage_is_one_error_line_and_writes_nothing(tmp_path: Path) -> None:
    url = "postgresql+psycopg2://nobody:secret@127.0.0.1:1/none"
    result = CliRunner().invoke(app, ["search", str(small_config(tmp_path)), "--out", str(tmp_path / "out"),
                                      "--storage", url])
    assert result.exit_code == 2 and result.stderr.startswith("error: cannot open storage postgresql")
    assert "secret" not in result.stderr  # the password is never shown
    assert result.stderr.count("\n") == 1 and not (tmp_path / "out").exists()


def test_one_worker_end_to_end_then_resume(tmp_path: Path, mnist_dir: Path) -> None:
    out = tmp_path / "out"
    config = small_config(tmp_path, trials=3)
    result = CliRunner().invoke(app, search_args(config, out, mnist_dir))
    assert result.exit_code == 0, result.output
    table = json.loads((out / "results.json").read_text())
    trials = table["trials"]
    assert [t["state"] for t in trials] == ["complete"] * 3
    assert all(0 <= t["val_accuracy"] <= 1 and t["latency_us"] > 0 and t["int8_bytes"] > 0 for t in trials)
    front = [t for t in trials if t["pareto"]]
    # the test images are used once, at the end, for the Pareto trials only
    assert front and all(t["test_accuracy"] is not None and t["parity_passed"] is not None for t in front)
    assert all(t["test_accuracy"] is None for t in trials if not t["pareto"])
    assert all((out / t["run"] / "parity" / "parity.json").is_file() == t["pareto"] for t in trials)
    for name in ("results.csv", "results.md", "pareto.png", "study.db"):
        assert (out / name).is_file()
    # the same command again is refused; --resume with a higher target adds the missing trial
    again = CliRunner().invoke(app, search_args(config, out, mnist_dir))
    assert again.exit_code == 2 and "--resume" in again.stderr
    more = CliRunner().invoke(app, search_args(config, out, mnist_dir, "--resume", "--trials", "4"))
    assert more.exit_code == 0, more.output
    assert len(json.loads((out / "results.json").read_text())["trials"]) == 4


def test_study_of_another_space_is_refused_and_nothing_written(tmp_path: Path, mnist_dir: Path) -> None:
    out = tmp_path / "out"
    assert CliRunner().invoke(app, search_args(small_config(tmp_path, trials=1), out, mnist_dir)).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    other = tmp_path / "other.toml"
    other.write_text(SMALL.format(name="small", trials=1).replace("high = 0.03", "high = 0.05"))
    result = CliRunner().invoke(app, search_args(other, out, mnist_dir, "--resume"))
    assert result.exit_code == 2 and "created with another search space" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_a_retried_trial_reuses_its_run_folder() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    first = study.ask()
    assert engine.run_folder(first, "trial-0000") == "trial-0000"
    first.set_user_attr(engine.INTERRUPTED_ATTR, True)
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    assert engine.requeue_interrupted(study) == 1 and engine.requeue_interrupted(study) == 0
    retry = study.ask()  # the waiting copy is popped first
    assert retry.number == 1 and engine.run_folder(retry, "trial-0001") == "trial-0000"
    # the interrupted original is replaced by its retry: it does not count towards the target
    assert engine.counted(study.get_trials()) == 1


# --- several workers ---------------------------------------------------------------------------


def start_worker(config: Path, out: Path, mnist_dir: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "mnist_edge", *search_args(config, out, mnist_dir, "--worker", *extra)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})


def started_trials(output: str) -> list[int]:
    return [int(line.split()[1]) for line in output.splitlines() if line.startswith("trial ")]


def check_shared_study(workers: list[subprocess.Popen[str]], storage: str, name: str, target: int) -> None:
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), "\n---\n".join(text[-3000:] for text in outputs)
    runs = [started_trials(text) for text in outputs]
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    numbers = [n for r in runs for n in r]
    assert sorted(numbers) == [t.number for t in trials]  # none run twice, none lost
    assert all(r for r in runs), f"a worker ran no trial: {runs}"  # the work was shared
    # The README's promise: the study stops at --trials, a worker more than one over only when
    # workers checked the count at the same moment: at most one extra trial per other worker.
    assert target <= len(trials) <= target + len(workers) - 1, len(trials)
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["run"] for t in trials}) == len(trials)


def test_two_workers_share_one_sqlite_study(tmp_path: Path, mnist_dir: Path) -> None:
    config, out = small_config(tmp_path, trials=4), tmp_path / "out"
    workers = [start_worker(config, out, mnist_dir) for _ in range(2)]
    check_shared_study(workers, f"sqlite:///{out / 'study.db'}", "small", 4)


def test_two_workers_share_one_journal_file(tmp_path: Path, mnist_dir: Path) -> None:
    config, journal = small_config(tmp_path, trials=4), tmp_path / "study.log"
    workers = [start_worker(config, tmp_path / "out", mnist_dir, "--storage", str(journal)) for _ in range(2)]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    check_shared_study(workers, storage, "small", 4)


def test_two_workers_share_a_postgresql_study(tmp_path: Path, mnist_dir: Path) -> None:
    from tests.postgres_server import postgres_missing, postgres_server

    missing = postgres_missing()
    if missing:
        pytest.skip(missing)
    with postgres_server(tmp_path) as url:
        config = small_config(tmp_path, trials=4)
        # two machines: each worker has its own --out, they share only the database
        workers = [start_worker(config, tmp_path / f"machine{i}", mnist_dir, "--storage", url) for i in range(2)]
        check_shared_study(workers, url, "small", 4)


def test_a_killed_workers_trial_is_retried_in_its_folder(tmp_path: Path, mnist_dir: Path) -> None:
    config, out = small_config(tmp_path, trials=2), tmp_path / "out"
    config.write_text(config.read_text().replace("train_limit = 512", "train_limit = 4096"))
    victim = start_worker(config, out, mnist_dir, "--heartbeat", "1")
    deadline = time.monotonic() + 120
    while not (out / "trial-0000" / "checkpoint").is_dir():  # killed in the middle of training
        assert time.monotonic() < deadline and victim.poll() is None
        time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    time.sleep(3)  # the heartbeat goes stale after twice its interval
    survivor = start_worker(config, out, mnist_dir, "--heartbeat", "1")
    output = survivor.communicate(timeout=600)[0]
    assert survivor.returncode == 0, output
    trials = optuna.load_study(study_name="small", storage=f"sqlite:///{out / 'study.db'}").get_trials()
    killed = trials[0]
    assert killed.state.name == "FAIL"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].user_attrs["run"] == "trial-0000"
    assert engine.counted(trials) == 2 and sum(t.state.name == "COMPLETE" for t in trials) == 2
    assert f"trial {retries[0].number} " in output and "in trial-0000" in output


def test_cpu_share_keeps_the_benchmark_apart_from_computing_steps(tmp_path: Path) -> None:
    from mnist_edge.cpushare import CpuShare

    lock = tmp_path / "cpu.lock"
    # Another process computes (holds the lock shared) for a second; the benchmark waits for it.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from mnist_edge.cpushare import CpuShare\n"
        f"c = CpuShare({str(lock)!r}); c.shared(); print('held', flush=True); time.sleep(1.0)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with CpuShare(lock) as mine:
        mine.shared()  # computing beside another computing worker is allowed at once
        mine.release()
        started = time.monotonic()
        mine.exclusive()
        waited = time.monotonic() - started
    holder.wait()
    assert waited > 0.5, f"the benchmark did not wait for the computing worker ({waited:.2f} s)"


def test_ctrl_c_stops_the_search_and_resume_reruns_that_trial(tmp_path: Path, mnist_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_edge import pipeline
    from mnist_edge.errors import TrainingInterrupted

    def interrupted(options: pipeline.PipelineOptions, hooks: dict) -> None:
        raise TrainingInterrupted("step 'train' interrupted", options.out)

    out, config = tmp_path / "out", small_config(tmp_path, trials=1)
    monkeypatch.setattr(pipeline, "run_pipeline", interrupted)
    stopped = CliRunner().invoke(app, search_args(config, out, mnist_dir))
    assert stopped.exit_code == 130 and "interrupted" in stopped.stderr
    monkeypatch.undo()
    resumed = CliRunner().invoke(app, search_args(config, out, mnist_dir, "--resume"))
    assert resumed.exit_code == 0, resumed.output
    trials = json.loads((out / "results.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["fail", "complete"]
    assert trials[1]["run"] == "trial-0000" and "retry of trial 0" in trials[1]["message"]


def test_damaged_search_configs_are_config_errors_never_tracebacks() -> None:
    hypothesis = pytest.importorskip("hypothesis", reason="needs Hypothesis: pip install -e '.[fuzz]'")
    from hypothesis import strategies as st

    text = (Path(__file__).parent.parent / "sweeps" / "search.toml").read_text()
    lines = text.splitlines()
    replacement = st.sampled_from(["", "[]", "{}", "0", "-1", "1e999", '"x"', "true", "[search]", "{low = 1}",
                                   "{low = 5, high = 1}", "[[search.space]]", "width = 8", 'arch = ["cnn"]'])

    @hypothesis.settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @hypothesis.given(st.integers(0, len(lines) - 1), st.integers(0, 80), replacement)
    def damaged(line: int, column: int, insert: str) -> None:
        edited = list(lines)
        edited[line] = edited[line][:column] + insert + edited[line][column + len(insert):]
        path = Path(tempfile.mkdtemp()) / "search.toml"
        path.write_text("\n".join(edited))
        try:
            load_search_config(path)
        except ConfigError as error:
            assert str(error).startswith(str(path)) and "\n" not in str(error)
        finally:
            shutil.rmtree(path.parent)

    damaged()


def test_force_starts_the_study_over(tmp_path: Path, mnist_dir: Path) -> None:
    out, config = tmp_path / "out", small_config(tmp_path, trials=1)
    assert CliRunner().invoke(app, search_args(config, out, mnist_dir)).exit_code == 0
    (out / "trial-0000" / "leftover").write_text("from the first search")
    (out / "notes.txt").write_text("a user's file, never removed")
    again = CliRunner().invoke(app, search_args(config, out, mnist_dir, "--force"))
    assert again.exit_code == 0, again.output
    study = optuna.load_study(study_name="small", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.number for t in study.get_trials()] == [0]  # a new study, not the old one continued
    assert not (out / "trial-0000" / "leftover").exists() and (out / "notes.txt").is_file()
    combined = CliRunner().invoke(app, search_args(config, out, mnist_dir, "--force", "--resume"))
    assert combined.exit_code == 2 and "cannot be combined" in combined.stderr
