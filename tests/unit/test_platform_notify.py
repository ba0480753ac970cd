"""Outbox delivery states (queued → sent → delivered / failed), retries with backoff, Kannel's sendsms and
delivery reports against a fake Kannel on loopback, and what the API lets the elder be told."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from assistant.errors import StoreError
from assistant.platform.api import create_app
from assistant.platform.db import create_engine_for
from assistant.platform.migrate import upgrade_heads
from assistant.platform.notify import DlrReceiver, KannelSms, OutboxDispatcher, retry_delay_s
from assistant.platform.store import OutboxItem, PlatformStore
from assistant.services import SERVICES_KEY
from assistant.settings import StoreSettings, load_settings
from tests.platform_data import FakeClock, make_family


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'n.db'}"
    upgrade_heads(url)
    return url


@pytest.fixture
async def store(sqlite_url):
    engine = create_engine_for(StoreSettings(database_url=sqlite_url))
    try:
        yield PlatformStore(engine=engine, clock=FakeClock())
    finally:
        await engine.dispose()


class Tracking:
    """A channel with delivery reports that keeps what it was given."""

    def __init__(self, *, fail: int = 0) -> None:
        self.fail = fail
        self.given: list[tuple[int, str]] = []

    async def submit(self, item: OutboxItem, *, dlr_secret: str) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("gateway down")
        self.given.append((item.outbox_id, dlr_secret))


async def _one_sms(store: PlatformStore) -> int:
    return (await store.enqueue_notification(channel="sms", recipient="13900000101", body="平安通测试")).outbox_id


def test_backoff_repeats_its_last_step():
    assert [retry_delay_s((30.0, 120.0), n) for n in (1, 2, 3, 9)] == [30.0, 120.0, 120.0, 120.0]
    assert retry_delay_s((), 3) == 0.0


async def test_without_an_sms_channel_nothing_is_sent(store):
    """Today's default sender only logged family SMS and marked them sent."""
    elder = await make_family(store)
    alert = await store.raise_alert(elder_id=elder.elder_id, kind="sos")
    assert alert.notified == 3 and set(alert.notified_channels) == {"sms", "email"}
    await store.enqueue_notification(channel="log", recipient="field-team", body="派员")
    dispatcher = OutboxDispatcher(store=store)
    assert not dispatcher.can_deliver("sms") and not dispatcher.can_deliver("email")
    assert await dispatcher.deliver_pending() == 1  # only the operators' log row
    rows = await store.list_outbox()
    assert {r.channel: r.status for r in rows} == {"sms": "undeliverable", "email": "undeliverable", "log": "sent"}
    assert all(r.sent_at is None and r.attempts == 0 for r in rows if r.channel != "log")
    assert "no sms channel configured" in next(r.last_error for r in rows if r.channel == "sms")
    assert await dispatcher.deliver_pending() == 0 and await store.pending_outbox() == []
    assert (await store.counts())["undeliverable_notifications"] == 3


async def test_delivery_report_moves_sent_to_delivered(store):
    oid = await _one_sms(store)
    channel = Tracking()
    dispatcher = OutboxDispatcher(store=store, senders={"sms": channel})
    assert await dispatcher.deliver_pending() == 1
    ((given_id, secret),) = channel.given
    row = await store.get_outbox(oid)
    assert given_id == oid and row.status == "sent" and row.attempts == 1 and row.delivered_at is None
    row = await dispatcher.delivery_report(oid, secret=secret, dlr_type=8, reply="ACK/")
    assert row.status == "sent" and row.dlr_status == "8 smsc accepted: ACK/"
    with pytest.raises(StoreError) as exc:
        await dispatcher.delivery_report(oid, secret="guessed", dlr_type=1)
    assert exc.value.code == "forbidden" and (await store.get_outbox(oid)).status == "sent"
    with pytest.raises(StoreError):
        await dispatcher.delivery_report(oid + 1, secret=secret, dlr_type=1)  # the secret is per row
    row = await dispatcher.delivery_report(oid, secret=secret, dlr_type=1)
    assert row.status == "delivered" and row.delivered_at == store.now()
    row = await dispatcher.delivery_report(oid, secret=secret, dlr_type=2)  # a late report changes nothing
    assert row.status == "delivered"
    assert await store.pending_outbox() == []


async def test_failed_delivery_is_retried_with_backoff_then_given_up(store):
    oid = await _one_sms(store)
    channel = Tracking(fail=1)
    dispatcher = OutboxDispatcher(store=store, senders={"sms": channel}, max_attempts=3, retry_backoff_s=(10.0, 60.0))
    assert await dispatcher.deliver_pending() == 0  # 1: the gateway is down
    row = await store.get_outbox(oid)
    assert row.status == "queued" and row.attempts == 1 and "gateway down" in row.last_error
    assert row.next_attempt_at == store.now() + dt.timedelta(seconds=10)
    assert dispatcher.last_error and await dispatcher.deliver_pending() == 0  # not yet
    store._clock.advance(10)
    assert await dispatcher.deliver_pending() == 1  # 2: accepted …
    first_secret = channel.given[-1][1]
    row = await dispatcher.delivery_report(oid, secret=first_secret, dlr_type=16, reply="NACK/0x0b")
    assert row.status == "queued" and row.attempts == 2  # … but the SMSC rejected it: retry after 60 s
    assert row.next_attempt_at == store.now() + dt.timedelta(seconds=60) and "NACK" in row.last_error
    store._clock.advance(60)
    assert await dispatcher.deliver_pending() == 1  # 3: accepted again, with a new secret
    second_secret = channel.given[-1][1]
    assert second_secret != first_secret
    with pytest.raises(StoreError):
        await dispatcher.delivery_report(oid, secret=first_secret, dlr_type=1)  # the old attempt's secret
    row = await dispatcher.delivery_report(oid, secret=second_secret, dlr_type=2)
    assert row.status == "failed" and row.attempts == 3 and row.next_attempt_at is None  # attempts used up
    store._clock.advance(3600)
    assert await dispatcher.deliver_pending() == 0 and len(channel.given) == 2


async def test_a_report_faster_than_the_submission_is_kept(store):
    """A fake SMSC reports delivery before sendsms has answered: the row must end delivered, not sent."""
    oid = await _one_sms(store)
    dispatcher = OutboxDispatcher(store=store)

    class Fast:
        async def submit(self, item: OutboxItem, *, dlr_secret: str) -> None:
            await dispatcher.delivery_report(item.outbox_id, secret=dlr_secret, dlr_type=1)

    dispatcher.add_sender("sms", Fast())
    assert await dispatcher.deliver_pending() == 1
    row = await store.get_outbox(oid)
    assert row.status == "delivered" and row.attempts == 1 and row.sent_at is not None


# ---------------------------------------------------------------- Kannel's HTTP interfaces on loopback


@pytest.fixture
async def fake_kannel(aiohttp_server):
    """smsbox's /cgi-bin/sendsms: checks the user, answers like Kannel; keeps the requests."""
    seen: list[dict[str, str]] = []
    state = {"answer": (202, "0: Accepted for delivery")}

    async def sendsms(request: web.Request) -> web.Response:
        q = dict(request.query)
        seen.append(q)
        if (q.get("username"), q.get("password")) != ("platform", "pw"):
            return web.Response(status=403, text="Authorization failed for sendsms")
        status, text = state["answer"]
        return web.Response(status=status, text=text)

    app = web.Application()
    app.router.add_get("/cgi-bin/sendsms", sendsms)
    server = await aiohttp_server(app, host="127.0.0.1")
    return server, seen, state


async def test_kannel_submission_and_report_over_http(store, fake_kannel):
    server, seen, state = fake_kannel
    oid = await _one_sms(store)
    dispatcher = OutboxDispatcher(store=store, retry_backoff_s=(5.0,))
    dlr = DlrReceiver(dispatcher=dispatcher, host="127.0.0.1", port=0)
    await dlr.start()
    kannel = KannelSms(
        sendsms_url=str(server.make_url("/cgi-bin/sendsms")), username="platform", password="pw",
        sender="10690000", dlr_base_url=dlr.base_url,
    )
    dispatcher.add_sender("sms", kannel)
    try:
        assert await dispatcher.deliver_pending() == 1
        (q,) = seen
        assert q["to"] == "13900000101" and q["text"] == "平安通测试" and q["from"] == "10690000"
        assert q["coding"] == "2" and q["charset"] == "UTF-8" and q["dlr-mask"] == "31"
        dlr_url = q["dlr-url"]
        assert dlr_url.startswith(f"{dlr.base_url}/sms/dlr/{oid}?t=") and "type=%d" in dlr_url
        assert (await store.get_outbox(oid)).status == "sent"
        # Kannel fills in %d / %A; a request without the secret, or with another, is refused
        good = dlr_url.replace("%d", "1").replace("%A", "")
        parts = urlsplit(good)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{dlr.base_url}{parts.path}?type=1") as r:
                assert r.status == 403
            async with http.get(f"{dlr.base_url}{parts.path}?t=wrong&type=1") as r:
                assert r.status == 403
            assert (await store.get_outbox(oid)).status == "sent"
            async with http.get(good) as r:
                assert r.status == 200 and await r.text() == "delivered"
        assert parse_qs(parts.query)["t"][0] and dlr.received == 1
        assert (await store.get_outbox(oid)).status == "delivered"

        # Kannel refusing (wrong user, queue full) is a failed attempt, retried later
        oid2 = await _one_sms(store)
        state["answer"] = (503, "4: Message queue full")
        assert await dispatcher.deliver_pending() == 0
        row = await store.get_outbox(oid2)
        assert row.status == "queued" and "queue full" in row.last_error and row.attempts == 1
    finally:
        await dlr.stop()
        await kannel.close()


async def test_kannel_down_is_a_failed_attempt(store):
    oid = await _one_sms(store)
    kannel = KannelSms(sendsms_url="http://127.0.0.1:9/cgi-bin/sendsms", username="u", password="p",
                       dlr_base_url="http://127.0.0.1:1", timeout_s=2.0)
    dispatcher = OutboxDispatcher(store=store, senders={"sms": kannel})
    try:
        assert await dispatcher.deliver_pending() == 0
    finally:
        await kannel.close()
    row = await store.get_outbox(oid)
    assert row.status == "queued" and "Kannel not reachable" in row.last_error


# ---------------------------------------------------------------- what the API says


def _settings(tmp_path, url: str, **sms):
    return load_settings(
        env={},
        store={"database_url": url, "outbox_interval_s": 60.0},
        server={"service_token": "t0ken"},
        sms={"dlr_listen_port": 0, **sms},
    )


async def test_health_and_alert_say_when_no_sms_channel_is_configured(aiohttp_client, tmp_path, sqlite_url):
    app = create_app(_settings(tmp_path, sqlite_url))
    client = await aiohttp_client(app)
    body = await (await client.get("/health")).json()
    assert body["sms"] == "not configured"
    elder = await make_family(app[SERVICES_KEY].store)
    r = await client.post("/api/alerts", json={"elder_id": elder.elder_id, "kind": "sos", "call_id": "c1"},
                          headers={"Authorization": "Bearer t0ken"})
    reply = await r.json()
    assert r.status == 201 and reply["family_notified"] is False and reply["family_notice"] == "undeliverable"
    # a family-less alert kind says "none"
    r = await client.post("/api/alerts", json={"elder_id": elder.elder_id, "kind": "nurse_callback"},
                          headers={"Authorization": "Bearer t0ken"})
    assert (await r.json())["family_notice"] == "none"


async def test_health_and_alert_with_kannel_configured(aiohttp_client, tmp_path, sqlite_url, fake_kannel):
    server, seen, _state = fake_kannel
    settings = _settings(tmp_path, sqlite_url, kannel_sendsms_url=str(server.make_url("/cgi-bin/sendsms")),
                         kannel_username="platform", kannel_password="pw")
    app = create_app(settings)
    client = await aiohttp_client(app)
    sms = (await (await client.get("/health")).json())["sms"]
    assert sms["channel"] == "kannel" and sms["delivery_reports"] is True and sms["dlr_listening"].startswith("127.0.0.1:")
    elder = await make_family(app[SERVICES_KEY].store)
    r = await client.post("/api/alerts", json={"elder_id": elder.elder_id, "kind": "sos", "call_id": "c2"},
                          headers={"Authorization": "Bearer t0ken"})
    reply = await r.json()
    assert reply["family_notified"] is True and reply["family_notice"] == "on_its_way"
    # the same SOS raised again in the call writes nothing new: nothing new to claim
    r = await client.post("/api/alerts", json={"elder_id": elder.elder_id, "kind": "sos", "call_id": "c2"},
                          headers={"Authorization": "Bearer t0ken"})
    assert (await r.json())["family_notice"] == "none"


async def test_two_workers_never_send_the_same_row(store):
    """Two `assistant serve` workers share the database: a row being submitted by one is not taken by the other."""
    import asyncio

    oid = await _one_sms(store)
    release = asyncio.Event()
    submitting = asyncio.Event()
    calls: list[str] = []

    class Slow:
        def __init__(self, name: str) -> None:
            self.name = name

        async def submit(self, item: OutboxItem, *, dlr_secret: str) -> None:
            calls.append(self.name)
            submitting.set()
            await release.wait()

    a = OutboxDispatcher(store=store, senders={"sms": Slow("a")})
    b = OutboxDispatcher(store=store, senders={"sms": Slow("b")})
    first = asyncio.create_task(a.deliver_pending())
    try:
        await asyncio.wait_for(submitting.wait(), timeout=10)
        assert await b.deliver_pending() == 0  # taken by a
    finally:
        release.set()
        assert await first == 1
    assert calls == ["a"] and (await store.get_outbox(oid)).status == "sent"
    # a worker that died mid-submit: the row comes back after the lease
    oid2 = await _one_sms(store)
    assert await store.claim_outbox(oid2, lease_s=120.0)
    assert await b.deliver_pending() == 0
    store._clock.advance(121)
    assert await b.deliver_pending() == 1 and calls == ["a", "b"]


async def test_a_taken_report_port_leaves_sms_queued_not_undeliverable(aiohttp_client, tmp_path, sqlite_url, fake_kannel):
    import socket

    server, _seen, _state = fake_kannel
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = _settings(tmp_path, sqlite_url, kannel_sendsms_url=str(server.make_url("/cgi-bin/sendsms")),
                             kannel_username="platform", kannel_password="pw", dlr_listen_port=port)
        app = create_app(settings)
        client = await aiohttp_client(app)
        sms = (await (await client.get("/health")).json())["sms"]
        assert sms["sending_here"] is False and str(port) in sms["last_error"]
        elder = await make_family(app[SERVICES_KEY].store)
        r = await client.post("/api/alerts", json={"elder_id": elder.elder_id, "kind": "sos"},
                              headers={"Authorization": "Bearer t0ken"})
        assert (await r.json())["family_notice"] == "queued"  # not claimed as on its way

        await app[SERVICES_KEY].outbox.deliver_pending()
        rows = await app[SERVICES_KEY].store.list_outbox()
        assert {o.channel: o.status for o in rows} == {"sms": "queued", "email": "undeliverable"}


async def test_service_health_says_sms_not_configured(aiohttp_client, settings):
    from assistant.server import create_app as create_service

    client = await aiohttp_client(create_service(settings))
    body = await (await client.get("/health")).json()
    assert body["sms"] == "not configured"


async def test_sent_without_a_report_becomes_no_report_and_a_late_report_still_counts(store):
    """A row Kannel accepted stayed "sent" for ever when its delivery report never came (#16)."""
    oid = await _one_sms(store)
    log_row = await store.enqueue_notification(channel="log", recipient="field-team", body="派员")
    channel = Tracking()
    dispatcher = OutboxDispatcher(store=store, senders={"sms": channel}, no_report_after_s=600.0)
    assert await dispatcher.deliver_pending() == 2  # the first SMS and the log row
    store._clock.advance(300)
    fresh = await _one_sms(store)
    assert await dispatcher.deliver_pending() == 1  # the second SMS, 5 minutes later
    store._clock.advance(300)
    swept = await dispatcher.sweep_no_report()
    assert [r.outbox_id for r in swept] == [oid]  # 600 s without a report; the other one waited 300 s
    row = await store.get_outbox(oid)
    assert row.status == "no_report" and "no delivery report within 600 s" in row.last_error
    assert (await store.get_outbox(fresh)).status == "sent"
    assert (await store.get_outbox(log_row.outbox_id)).status == "sent"  # no reports on the log channel: never swept
    assert (await store.counts())["no_report_notifications"] == 1
    assert await dispatcher.sweep_no_report() == []  # once
    secret = next(s for i, s in channel.given if i == oid)
    row = await dispatcher.delivery_report(oid, secret=secret, dlr_type=8)  # buffered / accepted: still no delivery
    assert row.status == "no_report"
    row = await dispatcher.delivery_report(oid, secret=secret, dlr_type=1)  # late, but it came
    assert row.status == "delivered" and row.delivered_at == store.now()
    store._clock.advance(600)
    assert [r.outbox_id for r in await dispatcher.sweep_no_report()] == [fresh]


async def test_no_report_is_swept_by_the_running_dispatcher(store):
    oid = await _one_sms(store)
    dispatcher = OutboxDispatcher(store=store, senders={"sms": Tracking()}, no_report_after_s=0.0)
    import asyncio

    task = asyncio.create_task(dispatcher.run(interval_s=0.05))
    try:
        for _ in range(100):
            if (await store.get_outbox(oid)).status == "no_report":
                break
            await asyncio.sleep(0.05)
    finally:
        dispatcher.stop()
        await task
    assert (await store.get_outbox(oid)).status == "no_report"
