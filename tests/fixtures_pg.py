"""A throwaway PostgreSQL server for tests (importable by any area).

Use::

    from tests.fixtures_pg import pg_fresh_url, pg_server, pg_url  # noqa: F401  (fixtures)

    @pytest.mark.postgres
    async def test_x(pg_fresh_url): ...      # a new, empty database for this test

- ``pg_server`` (session): ``initdb`` + ``pg_ctl start`` in a temporary folder on a free loopback port,
  stopped and deleted at the end of the session. As root the cluster runs as the ``postgres`` system
  user through ``runuser`` (PostgreSQL refuses to run as root). Skips with a reason when the binaries
  are missing (``ASSISTANT_PG_BIN`` overrides ``/usr/lib/postgresql/15/bin``) or it cannot start.
- ``pg_url`` (session): ``postgresql+asyncpg://`` URL of one database shared by the session.
- ``pg_fresh_url`` (function): a newly created database per test, dropped afterwards.
- ``ASSISTANT_TEST_PG_URL=postgresql+asyncpg://user:pw@host:port/db`` uses an existing server instead
  (its user must be allowed to CREATE DATABASE).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("ASSISTANT_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    password: str = ""

    def url(self, database: str = "postgres", *, driver: str = "asyncpg") -> str:
        auth = f"{self.user}:{self.password}@" if self.password else f"{self.user}@"
        return f"postgresql+{driver}://{auth}{self.host}:{self.port}/{database}"

    def _admin(self):
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password or None,
            dbname="postgres", autocommit=True, connect_timeout=10,
        )

    def create_database(self, name: str | None = None) -> str:
        """Create a database; returns its asyncpg URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_pg_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root and runuser is missing: cannot start PostgreSQL as a non-root user")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' system user to run the test cluster")
    return [runuser, "-u", "postgres", "--"]


def _start_cluster() -> Iterator[PgServer]:
    initdb, pg_ctl = PG_BIN / "initdb", PG_BIN / "pg_ctl"
    if not initdb.exists() or not pg_ctl.exists():
        pytest.skip(f"PostgreSQL binaries missing in {PG_BIN} (Debian: postgresql-15; or set ASSISTANT_PG_BIN)")
    prefix = _as_pg_user()
    # not under pytest's tmp dir: that is mode 0700 and owned by root, the postgres user cannot enter it
    base = Path(tempfile.mkdtemp(prefix="assistant-pg-", dir="/tmp"))
    data = base / "data"
    if prefix:
        shutil.chown(base, user="postgres")
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    try:
        r = subprocess.run(
            [*prefix, str(initdb), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--no-sync", "--no-instructions"],
            capture_output=True, text=True, env=env, timeout=120,
        )
        if r.returncode != 0:
            pytest.skip(f"initdb failed: {r.stderr.strip()[-300:]}")
        opts = (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=50 -c shared_buffers=32MB")
        r = subprocess.run(
            [*prefix, str(pg_ctl), "-D", str(data), "-l", str(base / "server.log"), "-o", opts, "-w", "-t", "60",
             "start"],
            capture_output=True, text=True, env=env, timeout=90,
        )
        if r.returncode != 0:
            log = (base / "server.log").read_text(errors="replace")[-500:] if (base / "server.log").exists() else ""
            pytest.skip(f"PostgreSQL did not start: {r.stderr.strip()[-200:]} {log}")
        server = PgServer(host="127.0.0.1", port=port, user="postgres")
        _wait_ready(server)
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*prefix, str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def _wait_ready(server: PgServer, timeout_s: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with server._admin():
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        import asyncpg  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("asyncpg/psycopg not installed (pip install -e '.[postgres]')")
    external = os.environ.get("ASSISTANT_TEST_PG_URL")
    if external:
        from sqlalchemy.engine import make_url

        u = make_url(external)
        yield PgServer(host=u.host or "127.0.0.1", port=u.port or 5432, user=u.username or "postgres",
                       password=u.password or "")
        return
    yield from _start_cluster()


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    """One database for the whole session (``postgresql+asyncpg://...``)."""
    return pg_server.create_database(f"session_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def pg_fresh_url(pg_server: PgServer) -> Iterator[str]:
    """A new empty database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)
