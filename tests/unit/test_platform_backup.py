"""``assistant db backup`` / ``restore`` (issue #15, data protection): create orders, back up (SQLite: online
backup while the store keeps writing; PostgreSQL: pg_dump), wipe or alter, restore, and every order is found
again. Backups are 0600 and never overwrite a file; restore refuses while serve holds the database."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat

import pytest

from assistant.errors import StoreError
from assistant.platform.backup import ServeLock, backup, restore
from assistant.platform.db import create_engine_for
from assistant.platform.migrate import upgrade_heads
from assistant.platform.store import PlatformStore
from assistant.settings import StoreSettings
from tests.platform_data import FakeClock, eventually, make_family

pytest_plugins = ["tests.fixtures_pg"]


async def _orders(url: str, n: int, *, prefix: str = "k", phone: str = "0750-1000001") -> list:
    engine = create_engine_for(StoreSettings(database_url=url))
    try:
        store = PlatformStore(engine=engine, clock=FakeClock())
        elder = await make_family(store, phone=phone)
        out = []
        for i in range(n):
            details = {"address": f"建设三路{i}号", "note": f"第{i}单"}
            r = await store.create_order(elder_id=elder.elder_id, type=("gas", "meal", "repair")[i % 3],
                                         idempotency_key=f"{prefix}-{i}", details=details)
            out.append(r.order)
        await store.update_order_status(out[0].order_id, "dispatched")
        return [await store.get_order(o.order_id) for o in out]
    finally:
        await engine.dispose()


async def _all_orders(url: str) -> dict[int, tuple]:
    from sqlalchemy import select

    from assistant.platform.models import WorkOrder

    engine = create_engine_for(StoreSettings(database_url=url))
    try:
        store = PlatformStore(engine=engine)
        async with store.session("read") as s:
            rows = (await s.scalars(select(WorkOrder).order_by(WorkOrder.id))).all()
            return {o.id: (o.type, o.status, o.idempotency_key, dict(o.details)) for o in rows}
    finally:
        await engine.dispose()


async def _wipe_and_alter(url: str) -> None:
    from sqlalchemy import delete, update

    from assistant.platform.models import WorkOrder

    engine = create_engine_for(StoreSettings(database_url=url))
    try:
        store = PlatformStore(engine=engine)
        async with store.session("wipe") as s:
            await s.execute(update(WorkOrder).where(WorkOrder.id % 2 == 0).values(status="cancelled"))
            await s.execute(delete(WorkOrder).where(WorkOrder.id % 2 == 1))
            await s.commit()
    finally:
        await engine.dispose()


def _expected(orders) -> dict[int, tuple]:
    return {o.order_id: (o.type, o.status, o.idempotency_key, o.details) for o in orders}


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'live.db'}"
    upgrade_heads(url)
    return url


async def test_sqlite_backup_while_writing_then_restore_finds_every_order(sqlite_url, tmp_path):
    orders = await _orders(sqlite_url, 30)
    engine = create_engine_for(StoreSettings(database_url=sqlite_url))
    store = PlatformStore(engine=engine, clock=FakeClock())
    elder = await make_family(store, phone="0750-9999")
    stop = asyncio.Event()
    written: list[int] = []

    async def keep_writing() -> None:  # what a running serve does meanwhile
        i = 0
        while not stop.is_set():
            r = await store.create_order(elder_id=elder.elder_id, type="meal", idempotency_key=f"live-{i}")
            written.append(r.order.order_id)
            i += 1
            await asyncio.sleep(0)

    writer = asyncio.create_task(keep_writing())
    try:
        await eventually(lambda: len(written) >= 3, timeout_s=30)
        out = tmp_path / "backups" / "b1.sqlite"
        result = await backup(sqlite_url, out)
        n_during = len(written)
        await eventually(lambda: len(written) > n_during + 2, timeout_s=30)
    finally:
        stop.set()
        await writer
        await engine.dispose()
    assert n_during > 0 and len(written) > n_during  # the store kept writing through the backup
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert result.backend == "sqlite" and result.tables is not None
    snap = sqlite3.connect(out)
    try:
        assert snap.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
        n_backup = snap.execute("SELECT count(*) FROM work_orders").fetchone()[0]
    finally:
        snap.close()
    assert result.tables["work_orders"] == n_backup >= 30

    await _wipe_and_alter(sqlite_url)
    assert len(await _all_orders(sqlite_url)) < 30
    report = await restore(sqlite_url, out)
    assert report["backend"] == "sqlite"
    restored = await _all_orders(sqlite_url)
    for oid, row in _expected(orders).items():
        assert restored[oid] == row  # every order as it was, status and details included
    assert len(restored) == n_backup
    assert stat.S_IMODE(os.stat(sqlite_url.split("///", 1)[1]).st_mode) == 0o600


async def test_backup_never_overwrites_and_restore_checks_the_file(sqlite_url, tmp_path):
    await _orders(sqlite_url, 2)
    out = tmp_path / "b.sqlite"
    out.write_bytes(b"precious")
    with pytest.raises(StoreError) as exc:
        await backup(sqlite_url, out)
    assert exc.value.code == "exists" and out.read_bytes() == b"precious"
    with pytest.raises(StoreError) as exc:
        await restore(sqlite_url, out)
    assert exc.value.code == "backup_invalid"
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as exc:
        await restore(sqlite_url, other)
    assert exc.value.code == "backup_invalid"
    assert len(await _all_orders(sqlite_url)) == 2  # the live database untouched


async def test_restore_refuses_while_serve_holds_the_database(sqlite_url, tmp_path):
    orders = await _orders(sqlite_url, 3)
    out = tmp_path / "b.sqlite"
    await backup(sqlite_url, out)
    await _wipe_and_alter(sqlite_url)
    lock = ServeLock.for_url(sqlite_url)
    assert lock is not None and lock.acquire()  # what the platform app does at start-up
    try:
        with pytest.raises(StoreError) as exc:
            await restore(sqlite_url, out)
        assert exc.value.code == "restore_refused"
        assert len(await _all_orders(sqlite_url)) < 3
        await restore(sqlite_url, out, force=True)
        assert set(await _all_orders(sqlite_url)) == {o.order_id for o in orders}
    finally:
        lock.release()


async def test_platform_app_holds_the_serve_lock(tmp_path, aiohttp_client):
    from assistant.platform.api import create_app
    from tests.platform_data import api_settings

    url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'serve.db'}"
    upgrade_heads(url)
    out = tmp_path / "b.sqlite"
    await backup(url, out)  # backup works whether or not serve runs
    client = await aiohttp_client(create_app(api_settings(tmp_path, url)))
    with pytest.raises(StoreError) as exc:
        await restore(url, out)
    assert exc.value.code == "restore_refused"
    await client.close()
    report = await restore(url, out)  # serve stopped: allowed
    assert report["tables"]["work_orders"] == 0


def test_cli_backup_and_restore(sqlite_url, tmp_path, capsys):
    import json

    from assistant.cli import main

    orders = asyncio.run(_orders(sqlite_url, 4))
    out = tmp_path / "cli.sqlite"
    assert main(["db", "--database-url", sqlite_url, "backup", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["tables"]["work_orders"] == 4
    asyncio.run(_wipe_and_alter(sqlite_url))
    assert main(["db", "--database-url", sqlite_url, "restore", "--from", str(out)]) == 0
    capsys.readouterr()
    assert asyncio.run(_all_orders(sqlite_url)) == _expected(orders)


@pytest.mark.postgres
async def test_postgres_backup_wipe_restore_finds_every_order(pg_fresh_url, tmp_path):
    await asyncio.to_thread(upgrade_heads, pg_fresh_url)
    orders = await _orders(pg_fresh_url, 25)
    out = tmp_path / "pg.dump"
    result = await backup(pg_fresh_url, out)
    assert result.backend == "postgresql" and result.size_bytes > 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_bytes()[:5] == b"PGDMP"
    await _wipe_and_alter(pg_fresh_url)
    await _orders(pg_fresh_url, 2, prefix="after", phone="0750-1000002")  # after the backup: gone after restore
    assert len(await _all_orders(pg_fresh_url)) < 25 + 2
    await restore(pg_fresh_url, out)
    restored = await _all_orders(pg_fresh_url)
    assert restored == _expected(orders)
    assert not [k for _t, _s, k, _d in restored.values() if k.startswith("after-")]


@pytest.mark.postgres
async def test_postgres_restore_refuses_while_another_session_is_connected(pg_fresh_url, tmp_path):
    from sqlalchemy import text

    await asyncio.to_thread(upgrade_heads, pg_fresh_url)
    orders = await _orders(pg_fresh_url, 3)
    out = tmp_path / "pg.dump"
    await backup(pg_fresh_url, out)
    await _wipe_and_alter(pg_fresh_url)
    engine = create_engine_for(StoreSettings(database_url=pg_fresh_url))  # a running serve's pool
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            with pytest.raises(StoreError) as exc:
                await restore(pg_fresh_url, out)
            assert exc.value.code == "restore_refused"
    finally:
        await engine.dispose()
    await restore(pg_fresh_url, out)
    assert set(await _all_orders(pg_fresh_url)) == {o.order_id for o in orders}
