"""SLA watcher on a fake clock, outbox delivery through pluggable senders, engine set-up, migrations,
demo seed, service token."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import stat

import pytest
from sqlalchemy import text

from assistant.errors import StoreError
from assistant.platform.db import create_engine_for
from assistant.platform.migrate import (
    applied_revisions,
    current_revisions,
    is_up_to_date,
    script_heads,
    upgrade_heads,
)
from assistant.platform.notify import OutboxDispatcher
from assistant.platform.sla import SlaWatcher
from assistant.platform.store import PlatformStore
from assistant.settings import StoreSettings, load_settings
from tests.platform_data import FakeClock, make_family


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'p.db'}"
    upgrade_heads(url)
    return url


@pytest.fixture
async def store(sqlite_url):
    engine = create_engine_for(StoreSettings(database_url=sqlite_url))
    clock = FakeClock()
    try:
        yield PlatformStore(engine=engine, clock=clock)
    finally:
        await engine.dispose()


# ---------------------------------------------------------------- SLA watcher


async def test_sla_watcher_runs_on_a_fast_clock_and_stops_on_cancel(store):
    clock = store._clock
    elder = await make_family(store)
    order = (await store.create_order(elder_id=elder.elder_id, type="gas", idempotency_key="k")).order
    seen: list[str] = []

    enough = asyncio.Event()

    async def fast_sleep(_s: float) -> None:  # every round is 60 s of fake time
        clock.advance(60)
        if watcher.rounds >= 35:  # 35 fake minutes
            enough.set()
        await asyncio.sleep(0)

    async def on_alerts(alerts) -> None:
        seen.extend(a.kind for a in alerts)

    watcher = SlaWatcher(store=store, dispatch_sla_s=180, answer_sla_s=1800, interval_s=60,
                         clock=clock, sleep=fast_sleep, on_alerts=on_alerts)
    task = asyncio.create_task(watcher.run())
    await asyncio.wait_for(enough.wait(), timeout=20)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert seen == ["sla_dispatch", "sla_answer"]  # each once, in that order
    alerts = await store.list_alerts(kind=["sla_dispatch", "sla_answer"])
    assert {a.order_id for a in alerts} == {order.order_id}


async def test_sla_watcher_survives_a_database_outage(tmp_path):
    engine = create_engine_for(StoreSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'no-tables.db'}"))
    try:
        watcher = SlaWatcher(store=PlatformStore(engine=engine), dispatch_sla_s=1, answer_sla_s=2, interval_s=1)
        result = await watcher.check_once()  # no tables: the scan fails, the watcher does not
    finally:
        await engine.dispose()
    assert result.error == "store_failed" and result.alerts == () and watcher.rounds == 1


# ---------------------------------------------------------------- outbox


class FlakySms:
    def __init__(self) -> None:
        self.calls = 0
        self.sent: list[str] = []

    async def send(self, *, recipient: str, subject: str | None, body: str) -> None:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("SMS gateway down")
        self.sent.append(recipient)


async def test_outbox_retries_failed_deliveries(store):
    elder = await make_family(store)
    await store.raise_alert(elder_id=elder.elder_id, kind="fraud")
    sms = FlakySms()
    emails: list[str] = []

    class Mail:
        async def send(self, *, recipient, subject, body):
            emails.append(recipient)

    dispatcher = OutboxDispatcher(store=store, senders={"sms": sms, "email": Mail()}, retry_backoff_s=(30.0,))
    assert await dispatcher.deliver_pending() == 2  # first SMS failed, second SMS + email sent
    rows = {r.recipient: r for r in await store.list_outbox()}
    failed = rows["13900000101"]
    assert failed.sent_at is None and failed.attempts == 1 and "SMS gateway down" in failed.last_error
    assert failed.status == "queued" and failed.next_attempt_at == store.now() + dt.timedelta(seconds=30)
    assert await dispatcher.deliver_pending() == 0  # backing off
    store._clock.advance(30)
    assert await dispatcher.deliver_pending() == 1  # the retry
    assert sms.sent == ["13900000102", "13900000101"] and emails == ["chenli@example.cn"]
    assert await store.pending_outbox() == []
    assert {r.status for r in await store.list_outbox()} == {"sent"}
    assert "疑似诈骗" in rows["13900000101"].body


async def test_outbox_gives_up_after_max_attempts(store):
    await store.enqueue_notification(channel="sms", recipient="13900000999", body="测试")

    class Down:
        async def send(self, **_):
            raise OSError("no route")

    dispatcher = OutboxDispatcher(store=store, senders={"sms": Down()}, max_attempts=2, retry_backoff_s=(0.0,))
    for _ in range(3):
        await dispatcher.deliver_pending()
    (row,) = await store.list_outbox()
    assert row.attempts == 2 and row.sent_at is None and row.status == "failed"
    assert await store.pending_outbox(max_attempts=2) == []


# ---------------------------------------------------------------- engine and migrations


async def test_sqlite_engine_has_wal_busy_timeout_and_foreign_keys(tmp_path):
    db = tmp_path / "sub" / "dir" / "x.db"
    engine = create_engine_for(StoreSettings(database_url=f"sqlite+aiosqlite:///{db}", sqlite_busy_timeout_ms=1234))
    try:
        async with engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
            busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar()
            fks = (await conn.execute(text("PRAGMA foreign_keys"))).scalar()
    finally:
        await engine.dispose()
    assert (mode, busy, fks) == ("wal", 1234, 1)
    assert db.parent.is_dir()


def test_bad_database_urls_are_coded_errors():
    for url in ("", "mysql://x/y", "::::"):
        with pytest.raises(StoreError) as err:
            create_engine_for(StoreSettings(database_url=url))
        assert err.value.code == "store_config"


def test_importing_the_platform_creates_no_engine():
    import importlib

    import assistant.platform.api as api
    import assistant.platform.db as db

    importlib.reload(db)
    from sqlalchemy.ext.asyncio import AsyncEngine

    for module in (db, api):
        assert not [k for k, v in vars(module).items() if isinstance(v, AsyncEngine)]


def test_upgrade_is_idempotent_and_the_schema_matches_the_models(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    assert upgrade_heads(url) is True
    assert upgrade_heads(url) is False
    assert is_up_to_date(url)
    assert "core_0001" in applied_revisions(current_revisions(url)) and script_heads()

    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    from assistant.platform.models import Base

    core = {"elders", "elder_phones", "family_contacts", "calls", "call_turns", "work_orders", "alerts",
            "outbox", "care_schedules"}
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()

    def table_of(diff) -> str | None:
        for part in diff if isinstance(diff, tuple) else (diff,):
            table = getattr(part, "table", None) or getattr(part, "name", None)
            if isinstance(part, tuple):
                return table_of(part[0])
            if hasattr(table, "name"):
                return table.name
            if isinstance(table, str):
                return table
        return None

    assert [d for d in diffs if table_of(d) in core] == []


def test_db_cli_upgrade_seed_and_current(tmp_path, capsys):
    import json

    from assistant.cli import main

    env_url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    assert main(["db", "--database-url", env_url, "upgrade"]) == 0
    assert "migrated to" in capsys.readouterr().out
    assert main(["db", "--database-url", env_url, "upgrade"]) == 0
    assert "already at" in capsys.readouterr().out
    assert main(["db", "--database-url", env_url, "seed-demo"]) == 0
    first = json.loads(capsys.readouterr().out)["elders"]
    assert main(["db", "--database-url", env_url, "seed-demo"]) == 0
    second = json.loads(capsys.readouterr().out)["elders"]
    assert len(first) >= 3 and all(e["created"] for e in first)
    assert [e["elder_id"] for e in second] == [e["elder_id"] for e in first] and not any(e["created"] for e in second)
    assert main(["db", "--database-url", env_url, "current"]) == 0
    assert json.loads(capsys.readouterr().out)["up_to_date"] is True


# ---------------------------------------------------------------- service token


def test_service_token_is_created_once_with_mode_0600(tmp_path):
    from assistant.platform.api import service_token

    settings = load_settings({**os.environ, "ASSISTANT_VAR_DIR": str(tmp_path / "var")})
    first = service_token(settings)
    path = tmp_path / "var" / "service_token"
    assert len(first) >= 32 and path.read_text() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert service_token(settings) == first
    fixed = load_settings({**os.environ, "ASSISTANT_VAR_DIR": str(tmp_path / "var"),
                           "ASSISTANT_SERVER_SERVICE_TOKEN": "from-settings"})
    assert service_token(fixed) == "from-settings"
