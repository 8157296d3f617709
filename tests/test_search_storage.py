"""Where a study lives (mnist_edge/search/storage.py): URLs, what a message may show of them,
the heartbeat settings of RDB storages, journal files, the race of two workers creating one
database, and the check that refuses a study of another search. SQLite files in tmp_path only."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage

from mnist_edge.errors import ConfigError
from mnist_edge.search import storage
from mnist_edge.search.storage import SPACE_ATTR, StorageError

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
DIRECTIONS = ["maximize", "minimize"]


def test_the_default_study_is_an_sqlite_file_in_out(tmp_path: Path) -> None:
    assert storage.default_url(tmp_path / "out") == f"sqlite:///{(tmp_path / 'out' / 'study.db').resolve()}"
    assert storage.default_url(Path("relative")) == f"sqlite:///{Path('relative').resolve() / 'study.db'}"


@pytest.mark.parametrize("url, expected", [
    ("postgresql://search:s3cret@db.example/mnist", "postgresql://search:***@db.example/mnist"),
    ("mysql+pymysql://u:p@h:3306/d", "mysql+pymysql://u:***@h:3306/d"),
    ("sqlite:////tmp/x/study.db", "sqlite:////tmp/x/study.db"),
    ("runs/study.log", "runs/study.log"),  # a journal file is a path
    ("runs/study.jsonl", "runs/study.jsonl"),
    ("postgresql://user:pw@host:notaport/db", "postgresql://..."),  # unparsable: the scheme only
    ("postgresql://user:pw@host:notaport/db?next=http://x", "postgresql://..."),
    ("runs/study.db", "runs/study.db"),  # no scheme: nothing to hide
])
def test_shown_hides_the_password(url: str, expected: str) -> None:
    assert storage.shown(url) == expected


def test_a_journal_file_is_a_journal_storage(tmp_path: Path) -> None:
    for name in ("study.log", "study.jsonl"):
        opened = storage.open_storage(str(tmp_path / name), heartbeat_seconds=5)
        assert isinstance(opened, JournalStorage)
        optuna.create_study(storage=opened, study_name="s")
        assert (tmp_path / name).stat().st_size > 0


def test_a_journal_file_that_cannot_be_opened_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as error:
        storage.open_storage(str(tmp_path / "missing-folder" / "study.log"), heartbeat_seconds=5)
    assert error.value.path == tmp_path / "missing-folder" / "study.log"
    assert error.value.reason == "cannot open the journal file (No such file or directory)"


def test_only_a_path_ending_in_log_is_a_journal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.log'}"  # an SQLite database that happens to be named .log
    assert isinstance(storage.open_storage(url, heartbeat_seconds=5), RDBStorage)
    with pytest.raises(StorageError, match=r"^cannot open storage study.db: "):
        storage.open_storage("study.db", heartbeat_seconds=5)  # a path without a scheme is no URL
    assert not (tmp_path / "study.db").exists() and not Path("study.db").exists()


def test_workers_on_one_sqlite_file_wait_a_minute_for_each_other(tmp_path: Path, monkeypatch) -> None:
    seen: list[dict] = []
    real = storage.RDBStorage

    def spy(url, **kwargs):
        seen.append(kwargs["engine_kwargs"])
        return real(url, **kwargs)

    monkeypatch.setattr(storage, "RDBStorage", spy)
    storage.open_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_seconds=5)
    assert seen == [{"connect_args": {"timeout": 60}}]


def test_an_rdb_storage_beats_and_retries_a_dead_workers_trial_twice(tmp_path: Path) -> None:
    opened = storage.open_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_seconds=7)
    assert isinstance(opened, RDBStorage)
    assert opened.heartbeat_interval == 7 and opened.grace_period == 14
    callback = opened.failed_trial_callback
    assert isinstance(callback, optuna.storages.RetryHeartbeatStaleTrialCallback)
    assert callback._max_retry == storage.MAX_RETRIES == 2
    assert (tmp_path / "study.db").is_file()


def test_only_optunas_experimental_warnings_are_silenced(monkeypatch: pytest.MonkeyPatch) -> None:
    # The heartbeat is experimental in Optuna: that warning is expected noise. Any other warning the
    # storage raises (a database driver's deprecation, say) must still reach the user.
    import warnings

    def warning_storage(url: str, **options):
        warnings.warn("heartbeat", optuna.exceptions.ExperimentalWarning, stacklevel=1)
        warnings.warn("a driver's deprecation", DeprecationWarning, stacklevel=1)
        return "storage"

    monkeypatch.setattr(storage, "RDBStorage", warning_storage)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert storage._rdb_storage("sqlite:///x.db", 5) == "storage"
    assert [(w.category, str(w.message)) for w in seen] == [(DeprecationWarning, "a driver's deprecation")]


def test_engine_options_per_database() -> None:
    # SQLite workers wait a minute for each other's writes; a PostgreSQL server that is down fails fast.
    assert storage._engine_options("sqlite:///x.db") == {"connect_args": {"timeout": 60}}
    assert storage._engine_options("postgresql://u@h/d") == {"connect_args": {"connect_timeout": 10}}
    assert storage._engine_options("postgresql+psycopg2://u@h/d") == {"connect_args": {"connect_timeout": 10}}
    assert storage._engine_options("mysql://u@h/d") == {}


def test_an_unreachable_storage_is_one_line_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(url: str, heartbeat_seconds: int):
        raise RuntimeError("connection refused\nis the server running on host \"h\"?")

    monkeypatch.setattr(storage, "_rdb_storage", refused)
    with pytest.raises(StorageError) as error:
        storage.open_storage("postgresql://u:pw@h/d", heartbeat_seconds=5)
    assert str(error.value) == "cannot open storage postgresql://u:***@h/d: connection refused"


def test_an_error_without_a_message_is_named_by_its_type(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(url: str, heartbeat_seconds: int):
        raise TimeoutError()

    monkeypatch.setattr(storage, "_rdb_storage", refused)
    with pytest.raises(StorageError, match=r"^cannot open storage sqlite:///x.db: TimeoutError$"):
        storage.open_storage("sqlite:///x.db", heartbeat_seconds=5)


@pytest.mark.parametrize("sign", storage._CREATION_RACE)
def test_losing_the_race_to_create_the_tables_is_tried_again(monkeypatch: pytest.MonkeyPatch, sign: str) -> None:
    attempts: list[int] = []
    slept: list[float] = []

    def racing(url: str, heartbeat_seconds: int):
        attempts.append(heartbeat_seconds)
        if len(attempts) < 3:
            raise RuntimeError(f"(IntegrityError) {sign} ...")
        return "opened"

    monkeypatch.setattr(storage, "_rdb_storage", racing)
    monkeypatch.setattr(storage.time, "sleep", slept.append)
    assert storage.open_storage("sqlite:///x.db", heartbeat_seconds=3) == "opened"
    assert attempts == [3, 3, 3] and slept == [0.5, 1.0]  # longer waits each time


def test_a_race_that_never_ends_fails_after_the_last_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[int] = []

    def racing(url: str, heartbeat_seconds: int):
        attempts.append(1)
        raise RuntimeError("table alembic_version already exists")

    monkeypatch.setattr(storage, "_rdb_storage", racing)
    monkeypatch.setattr(storage.time, "sleep", lambda seconds: None)
    with pytest.raises(StorageError, match="alembic_version already exists"):
        storage.open_storage("sqlite:///x.db", heartbeat_seconds=3)
    assert len(attempts) == storage._CREATE_ATTEMPTS == 5


def test_another_error_is_not_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[int] = []

    def broken(url: str, heartbeat_seconds: int):
        attempts.append(1)
        raise RuntimeError("password authentication failed")

    monkeypatch.setattr(storage, "_rdb_storage", broken)
    with pytest.raises(StorageError, match="password authentication failed"):
        storage.open_storage("postgresql://u@h/d", heartbeat_seconds=3)
    assert attempts == [1]


def sampler() -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=0)


def test_a_new_study_records_its_space_and_an_existing_one_must_match(tmp_path: Path) -> None:
    opened = storage.open_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_seconds=5)
    assert storage.check_compatible(opened, "s", DIRECTIONS, "space-1") is False
    with pytest.raises(StorageError, match="no study named 's' to resume"):
        storage.load_or_create(opened, "s", DIRECTIONS, "space-1", sampler(), must_exist=True)
    chosen = sampler()
    study = storage.load_or_create(opened, "s", DIRECTIONS, "space-1", chosen, must_exist=False)
    assert study.user_attrs == {SPACE_ATTR: "space-1"} and study.study_name == "s" and study.sampler is chosen
    assert [d.name.lower() for d in study.directions] == DIRECTIONS
    assert storage.check_compatible(opened, "s", DIRECTIONS, "space-1") is True
    again = storage.load_or_create(opened, "s", DIRECTIONS, "space-1", sampler(), must_exist=True)
    assert again._study_id == study._study_id
    for space, directions in (("space-2", DIRECTIONS), ("space-1", ["maximize", "maximize"]),
                              ("space-1", ["maximize"])):
        with pytest.raises(ConfigError) as error:
            storage.load_or_create(opened, "s", directions, space, sampler(), must_exist=False)
        assert str(error.value) == ("study 's' was created with another search space or objectives; change "
                                    "[search] name, or use another --out or --storage")
    # another name in the same storage is another study
    assert storage.load_or_create(opened, "t", ["minimize"], "space-2", sampler(), must_exist=False).user_attrs == {
        SPACE_ATTR: "space-2"}


def test_a_study_another_worker_is_still_creating_is_joined(tmp_path: Path) -> None:
    """Two workers racing: one has created the study but not yet recorded its space. The other
    joins it (directions still checked), instead of calling it another search."""
    from mnist_edge.search.storage import check_compatible, load_or_create

    url = f"sqlite:///{tmp_path / 'race.db'}"
    optuna.create_study(storage=url, study_name="s", directions=["maximize", "minimize"])  # no space yet
    storage = optuna.storages.RDBStorage(url)
    assert check_compatible(storage, "s", ["maximize", "minimize"], "space-1") is True
    study = load_or_create(storage, "s", ["maximize", "minimize"], "space-1", optuna.samplers.RandomSampler(),
                           must_exist=True)
    assert study.user_attrs[SPACE_ATTR] == "space-1"
    with pytest.raises(ConfigError, match="another search space"):
        check_compatible(storage, "s", ["maximize", "minimize"], "space-2")
    with pytest.raises(ConfigError, match="another search space"):
        check_compatible(storage, "s", ["maximize", "maximize"], "space-1")
