"""A throwaway PostgreSQL from Debian's ``postgresql`` package, for the service store tests.

``initdb`` and ``pg_ctl`` run as the ``postgres`` system user (PostgreSQL refuses
root) in a temporary directory it owns, listening on loopback only, on a free
port, with a socket directory of its own. The server is stopped and its
directory removed when the session ends. Each test gets a database of its own.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
RUN_AS = "postgres"
SUPERUSER = "certify"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*argv: str) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", RUN_AS, "--", *argv]
    return list(argv)


class PostgresServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="certify-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._names = itertools.count()
        if os.geteuid() == 0:
            user = pwd.getpwnam(RUN_AS)
            os.chown(self.root, user.pw_uid, user.pw_gid)

    def start(self) -> None:
        subprocess.run(_as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                                    "-E", "UTF8", "--no-sync", "--no-instructions"),
                       check=True, capture_output=True, text=True)
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                   f"-c fsync=off -c full_page_writes=off -c max_connections=100")
        subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                                    "-o", options, "-w", "-t", "60", "start"),
                       check=True, capture_output=True, text=True)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                           capture_output=True, text=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    try:
        server.start()
    except (OSError, subprocess.CalledProcessError) as exc:
        log = server.root / "log"
        detail = getattr(exc, "stderr", "") or (log.read_text() if log.exists() else "")
        server.stop()
        raise RuntimeError(f"could not start PostgreSQL from {PG_BIN} (apt-get install postgresql): {exc}\n{detail}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A database URL for an empty database: a file in the data directory, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'certify.db'}"
    return request.getfixturevalue("postgres_server").new_database()
