"""Files private to the service (issue #15): the SQLite store, its WAL, var/, secrets, logs and recordings are
not group/world readable even under a permissive umask; SQLite commits with ``synchronous=FULL``."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from assistant.platform.db import create_engine_for
from assistant.private_files import private_dir, private_file, secret_in_file
from assistant.settings import StoreSettings

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


async def test_sqlite_store_is_0600_with_its_wal_and_commits_synchronous_full(tmp_path: Path):
    db = tmp_path / "new" / "assistant.db"
    with umask(0o022):  # a typical login shell: files 0644, folders 0755
        engine = create_engine_for(StoreSettings(database_url=f"sqlite+aiosqlite:///{db}"))
        try:
            async with engine.begin() as conn:
                await conn.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY, what TEXT)"))
                await conn.execute(text("INSERT INTO orders (what) VALUES ('两罐煤气')"))
            async with engine.connect() as conn:
                assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 2  # FULL (NORMAL is 1)
                assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
                wal = db.with_name(db.name + "-wal")
                assert wal.exists()
                assert mode(wal) & 0o077 == 0, oct(mode(wal))
        finally:
            await engine.dispose()
    assert mode(db) == 0o600, oct(mode(db))
    assert mode(db.parent) == 0o700, oct(mode(db.parent))


def test_private_helpers_never_open_files_to_others(tmp_path: Path):
    with umask(0):
        secret = secret_in_file(tmp_path / "var" / "secrets" / "token")
        assert len(secret) >= 32 and secret_in_file(tmp_path / "var" / "secrets" / "token") == secret
        assert mode(tmp_path / "var" / "secrets" / "token") == 0o600
        assert mode(tmp_path / "var" / "secrets") == 0o700
        open_dir = tmp_path / "shared"
        open_dir.mkdir(mode=0o755)
        private_file(open_dir / "x.db")
        assert mode(open_dir / "x.db") == 0o600
        assert mode(open_dir) == 0o755  # a folder the user named is not narrowed behind their back
        loose = tmp_path / "var-loose"
        loose.mkdir(mode=0o755)
        private_dir(loose)
        assert mode(loose) == 0o700  # the assistant's own var/ is


def test_recordings_are_private(tmp_path: Path):
    from assistant.audio.recording import StreamingWavFile

    with umask(0):
        wav = StreamingWavFile(tmp_path / "calls" / "c1.wav", sample_rate_hz=8000)
        wav.append(b"\0\0" * 160)
        wav.close()
    assert mode(tmp_path / "calls" / "c1.wav") & 0o077 == 0
    assert mode(tmp_path / "calls") & 0o077 == 0


def test_cli_creates_var_and_the_database_private_whatever_the_umask(tmp_path: Path):
    """`assistant db upgrade` from a shell with umask 000: var/ 0700, the database and everything below 0600."""
    var = tmp_path / "var"
    env = {**os.environ, "ASSISTANT_VAR_DIR": str(var)}
    env.pop("ASSISTANT_STORE_DATABASE_URL", None)
    proc = subprocess.run(
        ["sh", "-c", f"umask 000 && exec {sys.executable} -m assistant.cli db upgrade"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    db = var / "assistant.db"
    assert db.exists()
    loose = [p for p in [var, *var.rglob("*")] if mode(p) & 0o077]
    assert not loose, [(str(p), oct(mode(p))) for p in loose]


@pytest.mark.parametrize("name", ["rasa_token", "actions_token"])
def test_rasa_secrets_are_private(settings, name):
    from assistant.dialogue import rasa_cli

    with umask(0):
        path = rasa_cli.rasa_token_file(settings) if name == "rasa_token" else rasa_cli.actions_token_file(settings)
        rasa_cli.write_endpoints(settings)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert mode(settings.paths.var_dir / "rasa" / "endpoints.yml") == 0o600
    assert mode(settings.paths.var_dir / "rasa") == 0o700
