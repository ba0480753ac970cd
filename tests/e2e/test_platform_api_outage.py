"""Database outages through the API (503 with a coded error, nothing half-written, recovery with the
same idempotency key), store health, and SLA alerts raised by the background watcher on a fake clock."""

from __future__ import annotations

import socket
import sqlite3

import pytest
from sqlalchemy.engine import make_url

from assistant.platform.api import create_app, store_health
from assistant.platform.migrate import upgrade_heads
from assistant.services import SERVICES_KEY
from tests.platform_data import AUTH, FakeClock, api_settings, eventually, make_family

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_platform"]


async def _counts(app) -> dict[str, int]:
    return await app[SERVICES_KEY].store.counts()


def _order(elder_id: int, key: str) -> dict:
    return {"elder_id": elder_id, "call_id": "c-1", "type": "gas", "details": {}, "idempotency_key": key}


async def test_sqlite_locked_answers_503_and_writes_nothing(aiohttp_client, tmp_path):
    path = tmp_path / "locked.db"
    url = f"sqlite+aiosqlite:///{path}"
    app = create_app(api_settings(tmp_path, url, sqlite_busy_timeout_ms=200))
    client = await aiohttp_client(app)
    elder = await make_family(app[SERVICES_KEY].store)
    before = await _counts(app)

    blocker = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock: every write times out
    try:
        r = await client.post("/api/orders", json=_order(elder.elder_id, "k-locked"), headers=AUTH)
        body = await r.json()
        assert r.status == 503 and body["error"]["code"] == "store_failed"
        assert "order_id" not in body
        r = await client.post("/api/alerts", json={"elder_id": elder.elder_id, "kind": "sos"}, headers=AUTH)
        assert r.status == 503 and (await r.json())["error"]["code"] == "store_failed"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    assert await _counts(app) == before  # no order, no alert, no outbox row
    r = await client.post("/api/orders", json=_order(elder.elder_id, "k-locked"), headers=AUTH)
    assert r.status == 201 and (await r.json())["created"] is True
    assert (await _counts(app))["open_orders"] == before["open_orders"] + 1


async def test_unreachable_postgres_answers_503(aiohttp_client, tmp_path):
    pytest.importorskip("asyncpg")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nowhere"
    app = create_app(api_settings(tmp_path, url, connect_timeout_s=2.0))
    client = await aiohttp_client(app)  # starts anyway: the outage is reported per request
    r = await client.post("/api/orders", json=_order(1, "k-down"), headers=AUTH)
    assert r.status == 503 and (await r.json())["error"]["code"] == "store_failed"
    r = await client.get("/api/elders/1", headers=AUTH)
    assert r.status == 503
    r = await client.get("/health")
    assert r.status == 503 and (await r.json())["store"] == {"ok": False, "error": "store_failed"}


@pytest.mark.postgres
async def test_postgres_outage_mid_run_then_recovery(aiohttp_client, tmp_path, pg_server):
    url = pg_server.create_database()
    name = make_url(url).database
    upgrade_heads(url)
    app = create_app(api_settings(tmp_path, url, connect_timeout_s=2.0))
    client = await aiohttp_client(app)
    elder = await make_family(app[SERVICES_KEY].store)
    r = await client.post("/api/orders", json=_order(elder.elder_id, "k-before"), headers=AUTH)
    assert r.status == 201

    with pg_server._admin() as admin:  # the database goes away: new connections refused, old ones killed
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    try:
        r = await client.post("/api/orders", json=_order(elder.elder_id, "k-during"), headers=AUTH)
        assert r.status == 503 and (await r.json())["error"]["code"] == "store_failed"
        r = await client.get("/health")
        assert r.status == 503
    finally:
        with pg_server._admin() as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')

    r = await client.post("/api/orders", json=_order(elder.elder_id, "k-during"), headers=AUTH)
    assert r.status == 201 and (await r.json())["created"] is True  # it was not placed during the outage
    orders = await app[SERVICES_KEY].store.list_orders(elder_id=elder.elder_id)
    assert sorted(o.idempotency_key for o in orders) == ["k-before", "k-during"]
    health = await store_health(app[SERVICES_KEY])
    assert health["ok"] is True and health["backend"] == "postgresql"
    await client.close()
    pg_server.drop_database(name)


async def test_sla_watcher_raises_operator_alerts_once(aiohttp_client, tmp_path, db_url):
    clock = FakeClock()
    app = create_app(api_settings(tmp_path, db_url), clock=clock)
    client = await aiohttp_client(app)
    elder = await make_family(app[SERVICES_KEY].store)
    r = await client.post("/api/orders", json=_order(elder.elder_id, "k-sla"), headers=AUTH)
    order_id = (await r.json())["order_id"]

    async def sla_alerts() -> list[dict]:
        r = await client.get("/api/alerts", params={"kind": "sla_dispatch,sla_answer"}, headers=AUTH)
        return (await r.json())["alerts"]


    watcher = app[SERVICES_KEY].sla
    clock.advance(179)
    rounds = watcher.rounds
    await eventually(lambda: watcher.rounds >= rounds + 2)
    assert await sla_alerts() == []
    clock.advance(2)
    alerts = await eventually(sla_alerts)
    assert [(a["kind"], a["order_id"]) for a in alerts] == [("sla_dispatch", order_id)]
    rounds = watcher.rounds
    await eventually(lambda: watcher.rounds >= rounds + 3)
    assert len(await sla_alerts()) == 1  # raised once
    clock.advance(1800)
    await eventually(lambda: _has(sla_alerts, "sla_answer"))
    r = await client.get("/health")
    assert r.status == 200 and (await r.json())["store"]["sla_rounds"] > 0


async def _has(fetch, kind: str) -> bool:
    return any(a["kind"] == kind for a in await fetch())
