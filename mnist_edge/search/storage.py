"""Where a study lives: an SQLite file in --out by default, or any storage Optuna supports.

RDB storages (SQLite, PostgreSQL, MySQL) get a heartbeat: a worker that dies stops beating,
and the next worker to start a trial marks its trial failed and queues a copy of it (Optuna's
RetryHeartbeatStaleTrialCallback), which keeps the original's user attributes and so its run
folder. Optuna's journal file (a path ending in .log) has no heartbeat: a dead worker's trial
stays running there until the study is finished by hand.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend

from mnist_edge.errors import ConfigError, MnistEdgeError

DEFAULT_DB = "study.db"
SPACE_ATTR = "mnist_edge_space"
# A trial whose worker died is tried at most this many more times before it stays failed.
MAX_RETRIES = 2
JOURNAL_SUFFIXES = (".log", ".jsonl")


class StorageError(MnistEdgeError):
    """The study's storage cannot be reached or holds another search."""


def default_url(out: Path) -> str:
    return f"sqlite:///{(out / DEFAULT_DB).resolve()}"


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    if url.endswith(JOURNAL_SUFFIXES) or "://" not in url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL has no password we could hide: show only its scheme
        return url.partition("://")[0] + "://..."


def open_storage(url: str, heartbeat_seconds: int) -> BaseStorage:
    """Connect (creating Optuna's tables when new); an unreachable URL is a StorageError."""
    if url.endswith(JOURNAL_SUFFIXES) and "://" not in url:
        try:
            return JournalStorage(JournalFileBackend(url))
        except OSError as exc:
            raise StorageError(f"cannot open the journal file ({exc.strerror or exc})", Path(url)) from exc
    attempt = 1
    while True:
        try:
            return _rdb_storage(url, heartbeat_seconds)
        except Exception as exc:  # sqlalchemy's and the drivers' errors have no common base worth naming
            # Two workers starting at once on a new database race to create Optuna's tables; the
            # loser's insert of the schema version fails, and a second try finds the tables made.
            if not any(sign in str(exc) for sign in _CREATION_RACE) or attempt == _CREATE_ATTEMPTS:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise StorageError(f"cannot open storage {shown(url)}: {first}") from exc
        time.sleep(0.5 * attempt)
        attempt += 1


_CREATE_ATTEMPTS = 5
# What losing the race to create the tables reads like in SQLite and PostgreSQL.
_CREATION_RACE = ("alembic_version", "already exists", "duplicate key")


def _rdb_storage(url: str, heartbeat_seconds: int) -> RDBStorage:
    with warnings.catch_warnings():  # the heartbeat and its retry callback are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, heartbeat_interval=heartbeat_seconds, grace_period=2 * heartbeat_seconds,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES),
                          engine_kwargs=_engine_options(url))


def _engine_options(url: str) -> dict[str, object]:
    if url.startswith("sqlite"):
        # Workers on one SQLite file wait for each other's writes instead of failing at once.
        return {"connect_args": {"timeout": 60}}
    # A server that is down or unreachable fails in seconds, not after the driver's default minutes.
    return {"connect_args": {"connect_timeout": 10}} if url.startswith("postgresql") else {}


def load_or_create(storage: BaseStorage, name: str, directions: list[str], space: str,
                   sampler: optuna.samplers.BaseSampler, *, must_exist: bool) -> optuna.Study:
    """The study `name`; a new one records its space, an existing one must have been made with it."""
    exists = check_compatible(storage, name, directions, space)
    if must_exist and not exists:
        raise StorageError(f"no study named {name!r} to resume in this storage")
    # load_if_exists: two workers creating the same new study at once both get it.
    study = optuna.create_study(storage=storage, study_name=name, directions=directions, sampler=sampler,
                                load_if_exists=True)
    if SPACE_ATTR not in study.user_attrs:
        study.set_user_attr(SPACE_ATTR, space)
    return study


def check_compatible(storage: BaseStorage, name: str, directions: list[str], space: str) -> bool:
    """True when the study exists; one made with another space is refused before anything is written."""
    summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if name not in summaries:
        return False
    summary = summaries[name]
    # A study another worker has just created may not hold its space yet (create, then set the
    # attribute): only a recorded, different space is another search.
    recorded = summary.user_attrs.get(SPACE_ATTR)
    if (recorded is not None and recorded != space) or [d.name.lower() for d in summary.directions] != directions:
        raise ConfigError(f"study {name!r} was created with another search space or objectives; change "
                          "[search] name, or use another --out or --storage")
    return True
