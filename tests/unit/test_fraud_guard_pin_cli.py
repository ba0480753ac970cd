"""``assistant pin set|status|clear`` against a database migrated by ``assistant db upgrade`` (core_0002)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assistant.cli", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    env = dict(os.environ)
    env["ASSISTANT_VAR_DIR"] = str(tmp_path / "var")
    env["ASSISTANT_STORE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'a.db'}"
    up = cli("db", "upgrade", env=env)
    assert up.returncode == 0, up.stderr
    return env


def _with_store(env, fn):
    from assistant.fraud_guard.pin import PinStore
    from assistant.platform.db import create_engine_for
    from assistant.platform.store import PlatformStore
    from assistant.settings import load_settings

    async def go():
        old = {k: os.environ.get(k) for k in ("ASSISTANT_VAR_DIR", "ASSISTANT_STORE_DATABASE_URL")}
        os.environ.update({k: env[k] for k in old})
        try:
            settings = load_settings()
        finally:
            for k, v in old.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        engine = create_engine_for(settings)
        try:
            return await fn(PlatformStore(engine=engine), PinStore.for_engine(engine, settings=settings))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_set_status_clear(cli_env):
    async def make_elder(store, pins):
        return (await store.create_elder(name="陈桂英", district="蓬江", phones=["07503331234"])).elder_id

    elder_id = str(_with_store(cli_env, make_elder))
    assert "no PIN" in cli("pin", "status", "--elder", elder_id, env=cli_env).stdout
    weak = cli("pin", "set", "--elder", elder_id, "--pin-stdin", env=cli_env, stdin="1111\n")
    assert weak.returncode == 2 and "error[fraud_pin_input]" in weak.stderr
    no_tty = cli("pin", "set", "--elder", elder_id, env=cli_env)
    assert no_tty.returncode == 2 and "--pin-stdin" in no_tty.stderr  # never from argv
    unknown = cli("pin", "set", "--elder", "999", "--pin-stdin", env=cli_env, stdin="4827\n")
    assert unknown.returncode == 2 and "error[fraud_pin_unknown_elder]" in unknown.stderr
    ok = cli("pin", "set", "--elder", elder_id, "--pin-stdin", env=cli_env, stdin="4827\n")
    assert ok.returncode == 0 and "PIN set" in ok.stdout and "4827" not in ok.stdout + ok.stderr, ok.stderr

    async def check(store, pins):
        return (await pins.check(int(elder_id), "4827")).status

    assert _with_store(cli_env, check) == "ok"
    assert "PIN set, 0 wrong" in cli("pin", "status", "--elder", elder_id, env=cli_env).stdout
    assert "PIN cleared" in cli("pin", "clear", "--elder", elder_id, "--by", "admin-li", env=cli_env).stdout
    assert "no PIN" in cli("pin", "status", "--elder", elder_id, env=cli_env).stdout

    async def audit_rows(store, pins):
        from sqlalchemy import select
        from sqlalchemy.ext.asyncio import AsyncSession

        from assistant.platform.models_console import AuditEntry

        async with AsyncSession(store.engine) as s:
            rows = (await s.scalars(select(AuditEntry).where(AuditEntry.target_type == "elder"))).all()
        return [(r.action, r.username, r.target_id, r.detail) for r in rows]

    rows = _with_store(cli_env, audit_rows)
    assert [(a, t) for a, _u, t, _d in rows] == [("pin_set", elder_id), ("pin_clear", elder_id)]
    assert rows[0][1].startswith("cli:") and rows[1][1] == "admin-li"
    assert all("4827" not in str(r) for r in rows)
