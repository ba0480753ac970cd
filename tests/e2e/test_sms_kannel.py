"""Family SMS through a real Kannel (bearerbox + smsbox started here on free loopback ports) against Kannel's
fake SMSC: an SOS alert's SMS reaches the "carrier", and Kannel's delivery report marks the outbox row
delivered. Skipped, with the reason, when Debian's kannel / kannel-extras are not installed."""

from __future__ import annotations

import asyncio

import pytest

from assistant.platform import kannel_testing
from assistant.platform.api import create_app
from assistant.platform.migrate import upgrade_heads
from assistant.services import SERVICES_KEY
from assistant.settings import load_settings
from tests.e2e.conftest import wait_for
from tests.platform_data import make_family

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(kannel_testing.missing() is not None, reason=kannel_testing.missing() or ""),
]

AUTH = {"Authorization": "Bearer sms-e2e-token"}


async def test_sos_sms_reaches_the_fake_smsc_and_is_marked_delivered(aiohttp_client, tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'sms.db'}"
    upgrade_heads(url)
    async with kannel_testing.FakeKannel(workdir=tmp_path / "kannel") as kannel:
        settings = load_settings(
            env={"ASSISTANT_VAR_DIR": str(tmp_path / "var")},
            store={"database_url": url, "outbox_interval_s": 0.2},
            server={"service_token": "sms-e2e-token"},
            sms={
                "kannel_sendsms_url": kannel.sendsms_url,
                "kannel_username": kannel.username,
                "kannel_password": kannel.password,
                "sender": "10690000",
                "dlr_listen_port": 0,  # a free loopback port; the dlr-url carries it
            },
        )
        app = create_app(settings)
        client = await aiohttp_client(app)
        health = await (await client.get("/health")).json()
        assert health["sms"]["channel"] == "kannel" and health["sms"]["dlr_listening"].startswith("127.0.0.1:")
        store = app[SERVICES_KEY].store
        elder = await make_family(store)

        r = await client.post("/api/alerts", json={"elder_id": elder.elder_id, "kind": "sos", "call_id": "sms-e2e"},
                              headers=AUTH)
        reply = await r.json()
        assert r.status == 201 and reply["family_notice"] == "on_its_way"
        alert_id = reply["alert_id"]

        # both family phones get the SMS at the fake SMSC …
        await wait_for(lambda: len(kannel.messages()) >= 2, timeout_s=30, what="2 SMS at Kannel's fake SMSC")
        got = {m.receiver: m for m in kannel.messages()}
        assert set(got) == {"13900000101", "13900000102"}
        assert all(m.sender == "10690000" and "紧急求助" in m.text for m in got.values()), got

        # … and Kannel's delivery reports (8 then 1) come back to the platform's listener
        rows: list = []
        for _ in range(300):
            rows = [o for o in await store.list_outbox(alert_id=alert_id) if o.channel == "sms"]
            if rows and all(o.status == "delivered" for o in rows):
                break
            await asyncio.sleep(0.1)
        assert [o.status for o in rows] == ["delivered", "delivered"], rows
        assert all(o.dlr_status and o.dlr_status.startswith("1 delivered") and o.attempts == 1 for o in rows)
        assert all(o.delivered_at is not None and o.sent_at is not None for o in rows)
        # the email contact has no channel here: said so, never claimed sent
        (email,) = [o for o in await store.list_outbox(alert_id=alert_id) if o.channel == "email"]
        assert email.status == "undeliverable" and email.sent_at is None
