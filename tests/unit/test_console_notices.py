"""The console's alert page shows each family notice with its delivery state, live (issue #16)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select

from assistant.console import users
from assistant.console.app import create_app
from assistant.console.seed import seed_demo
from assistant.platform.models import Outbox, utcnow
from assistant.platform.models_console import AuditEntry
from assistant.services import SERVICES_KEY
from tests.unit.console_helpers import PASSWORD, login, write_wav


@pytest.fixture
async def env(aiohttp_client, settings):
    app = create_app(settings)
    client = await aiohttp_client(app)
    wav = write_wav(settings.paths.var_dir / "calls" / "demo.wav")
    async with app[SERVICES_KEY].sessions() as db:
        ids = await seed_demo(db, audio_path=wav)
        await users.create_user(db, username="op", role="operator", password=PASSWORD)
        await users.create_user(db, username="fam_a", role="family", password=PASSWORD, elder_ids=(ids.elder_a,),
                               contact_ids={ids.elder_a: ids.contact_a})
        now = utcnow()
        rows = [
            Outbox(channel="sms", recipient="13900000101", body="b", alert_id=ids.sos_alert, status="delivered",
                   attempts=1, sent_at=now, delivered_at=now, dlr_status="1 delivered"),
            Outbox(channel="sms", recipient="13900000102", body="b", alert_id=ids.sos_alert, status="queued",
                   attempts=1, last_error="SmsGatewayError: Kannel not reachable",
                   next_attempt_at=now + dt.timedelta(seconds=30)),
            Outbox(channel="email", recipient="chenli@example.cn", body="b", alert_id=ids.sos_alert,
                   status="undeliverable", last_error="no email channel configured"),
            Outbox(channel="sms", recipient="13900000103", body="b", alert_id=ids.sos_alert, status="sent",
                   attempts=1, sent_at=now, dlr_status="8 smsc accepted: ACK/"),
            Outbox(channel="log", recipient="field-team", subject="dispatch", body="b", alert_id=ids.sos_alert,
                   status="sent", attempts=1, sent_at=now),
            Outbox(channel="sms", recipient="13900000104", body="b", alert_id=ids.sos_alert, status="no_report",
                   attempts=1, sent_at=now, last_error="no delivery report within 600 s"),
        ]
        db.add_all(rows)
        await db.commit()
        sent_id = rows[3].id
    return client, app, ids, sent_id


async def _sign_in(client, name: str, area: str = "console") -> None:
    client.session.cookie_jar.clear()
    out = await login(client, name, area=area)
    assert out.status == 303


async def test_alert_page_shows_each_notice_state(env):
    client, app, ids, _sent = env
    await _sign_in(client, "op")
    html = await (await client.get(f"/console/alerts/{ids.sos_alert}")).text()
    assert "通知与送达" in html and 'id="notices"' in html
    for label in ("已送达", "排队中", "未发送：没有配置该通道", "已交短信网关，等待回执", "重试", "Kannel not reachable",
                  "没有收到送达回执（家属可能没有收到）", "no delivery report within 600 s"):
        assert label in html, label
    assert "已记入内部记录（不会自动送达）" in html  # a log row reaches no phone: not shown as handed to a gateway
    assert "139****0101" in html and "13900000101" not in html and "c***@example.cn" in html

    async with app[SERVICES_KEY].sessions() as db:
        views_before = len((await db.scalars(select(AuditEntry).where(AuditEntry.action == "view_transcript"))).all())
    frag = await client.get(f"/console/alerts/{ids.sos_alert}?fragment=notices")
    text = await frag.text()
    assert frag.status == 200 and text.startswith('<table class="notices">') and "已送达" in text
    async with app[SERVICES_KEY].sessions() as db:  # the fragment shows no transcript: not logged as a view
        views_after = len((await db.scalars(select(AuditEntry).where(AuditEntry.action == "view_transcript"))).all())
    assert views_after == views_before


async def test_family_cannot_read_the_notice_fragment(env):
    client, _app, ids, _sent = env
    await _sign_in(client, "fam_a", area="family")
    r = await client.get(f"/console/alerts/{ids.sos_alert}?fragment=notices", allow_redirects=False)
    assert r.status in (302, 303, 403) and "已送达" not in await r.text()


async def test_delivery_report_is_pushed_to_open_pages(env):
    client, app, _ids, sent_id = env
    await _sign_in(client, "op")
    resp = await client.get("/console/events", headers={"Accept": "text/event-stream"})
    assert (await resp.content.readuntil(b"\n\n")).startswith(b"retry:")
    async with app[SERVICES_KEY].sessions() as db:  # Kannel's report, recorded by the platform process
        row = await db.get(Outbox, sent_id)
        row.status = "delivered"
        row.delivered_at = utcnow()
        await db.commit()

    async def until_outbox() -> bytes:
        while True:
            chunk = await resp.content.readuntil(b"\n\n")
            # (the seed's rows, written after the watcher's first look, come first as new rows)
            if chunk.startswith(b"event: outbox") and f'"id": {sent_id},'.encode() in chunk and b"delivered" in chunk:
                return chunk

    chunk = await asyncio.wait_for(until_outbox(), timeout=10)
    assert b'"status": "delivered"' in chunk
    resp.close()


async def test_callback_flash_does_not_promise_a_family_sms_without_a_channel(env):
    client, _app, ids, _sent = env
    await _sign_in(client, "op")
    html = await (await client.get(f"/console/alerts/{ids.sos_alert}?done=callback&code=4821")).text()
    assert "4821" in html and "家属收不到短信" in html and "家属短信会显示" not in html


async def test_new_outbox_rows_are_published_whatever_order_the_database_returns():
    """SQLite returned the active rows first (an index on status): newer ids seen first hid older new rows."""
    from assistant.console.events import EventHub, _watch_outbox

    class Rows:
        def __init__(self, rows):
            self._rows = rows

        def all(self):
            return self._rows

    class Db:
        async def execute(self, _query):
            return Rows([(2, 7, "queued"), (5, 7, "sent"), (1, 7, "delivered"), (4, 7, "delivered")])

    hub = EventHub()
    sub = hub.subscribe(elder_ids=None)
    newest, moving = await _watch_outbox(Db(), hub, 0, {})
    published = sorted(sub.queue.get_nowait()["id"] for _ in range(sub.queue.qsize()))
    assert published == [1, 2, 4, 5] and newest == 5 and set(moving) == {2, 5}
