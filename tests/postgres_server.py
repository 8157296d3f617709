"""A throwaway PostgreSQL server on localhost for the search tests (Debian's postgresql package).

PostgreSQL refuses to run as root, so under root the server runs as the `postgres` user, in a
data folder of its own (pytest's tmp_path is private to root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

DATABASE = "mnist_edge_test"


def _bindir() -> Path | None:
    # Debian installs major versions side by side (not on PATH); a client-only one has a bin/ without initdb.
    initdbs = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if initdbs:
        newest = max(initdbs, key=lambda p: [int(n) for n in Path(p).parts[-3].split(".") if n.isdigit()])
        return Path(newest).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def postgres_missing() -> str | None:
    """Why the server cannot be started here, or None."""
    bindir = _bindir()
    if bindir is None or not (bindir / "initdb").is_file() or not (bindir / "pg_ctl").is_file():
        return "PostgreSQL's server (initdb, pg_ctl) is not installed: apt-get install postgresql"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is missing: pip install 'mnist-edge[search]'"
    if os.geteuid() == 0 and subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
        return "running as root and there is no postgres user to run the server as"
    return None


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def postgres_server(tmp_path: Path) -> Iterator[str]:
    """Start a server, yield a SQLAlchemy URL of a fresh database, stop the server whatever happens."""
    bindir = _bindir()
    assert bindir is not None
    home = Path(tempfile.mkdtemp(prefix="mnist-edge-pg-"))
    data, port = home / "data", _free_port()
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")

    def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_as_server_user([str(bindir / tool), *args]), capture_output=True, text=True,
                              timeout=120)

    try:
        made = run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed: {made.stderr[-2000:]}")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off"
        started = run("pg_ctl", "-D", str(data), "-o", options, "-l", str(home / "server.log"), "-w", "start")
        if started.returncode != 0:
            log = (home / "server.log").read_text() if (home / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stderr[-1000:]} {log[-2000:]}")
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            connection.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{DATABASE}"
    finally:
        try:
            if (data / "postmaster.pid").exists():
                run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        finally:  # a stop that timed out still leaves no data folder behind
            shutil.rmtree(home, ignore_errors=True)
