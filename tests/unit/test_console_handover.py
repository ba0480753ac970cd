"""The console's alert page shows the phone gateway's live hand-over (``detail.handover``, issue #16)."""

from __future__ import annotations

from assistant.platform.models import Alert
from assistant.services import SERVICES_KEY
from tests.unit.test_console_web import env  # noqa: F401 (the console fixture)


async def test_alert_page_shows_the_hand_over_state(env):  # noqa: F811
    async with env.db() as db:
        alert = await db.get(Alert, env.ids.sos_alert)
        alert.detail = {**(alert.detail or {}), "handover": {"state": "connected_operator", "operator": "sip:op1@10.0.0.5"}}
        await db.commit()
    await env.as_user("op")
    html = await (await env.client.get(f"/console/alerts/{env.ids.sos_alert}")).text()
    assert "人工接通" in html and "已接通值班人员（sip:op1@10.0.0.5）" in html

    async with env.db() as db:
        alert = await db.get(Alert, env.ids.sos_alert)
        alert.detail = {**alert.detail, "handover": {"state": "family_acknowledged", "acknowledged_by": "family:王小明"}}
        await db.commit()
    html = await (await env.client.get(f"/console/alerts/{env.ids.sos_alert}")).text()
    assert "家属已按1确认处理（family:王小明）" in html


async def test_callback_button_dials_through_the_gateway_when_it_runs_here(env):  # noqa: F811
    import warnings

    from sqlalchemy import select

    from assistant.platform.models_fraud import LedgerEntry

    asked: list[dict] = []

    class Dialler:
        def request(self, **kw) -> bool:
            asked.append(kw)
            return True

    with warnings.catch_warnings():  # the gateway sets it on the running app, as start_gateway does
        warnings.simplefilter("ignore", DeprecationWarning)
        env.app[SERVICES_KEY].callbacks = Dialler()
    token = await env.as_user("op")
    r = await env.client.post(f"/console/alerts/{env.ids.fraud_alert}/callback", data={"_csrf": token})
    html = await r.text()
    async with env.db() as db:
        entry = (await db.execute(select(LedgerEntry))).scalar_one()
    # the ledger entry (and its code) exist before the dialler is asked; it dials the number on file
    assert asked == [{"alert_id": env.ids.fraud_alert, "elder_id": env.ids.elder_a, "number": "07503331234",
                      "code": entry.code, "dialect": asked[0]["dialect"], "requested_by": "op"}]
    assert "系统正在拨打长者电话" in html and entry.code in html


async def test_callback_button_without_a_gateway_only_records(env):  # noqa: F811
    token = await env.as_user("op")
    html = await (await env.client.post(f"/console/alerts/{env.ids.fraud_alert}/callback", data={"_csrf": token})).text()
    assert "系统正在拨打长者电话" not in html


def test_phone_uris_compare_by_user_and_host():
    from assistant.console.handover import is_mine, phone_key

    assert phone_key("sip:Op1@10.0.0.5:5060;transport=udp") == phone_key("sip:op1@10.0.0.5") == "op1@10.0.0.5"
    assert phone_key("op1") == "" and phone_key("sip:@host") == ""
    event = {"ringing": ["sip:op1@10.0.0.5:5060"], "operator": None}
    assert is_mine(event, "sip:op1@10.0.0.5") and not is_mine(event, "sip:op2@10.0.0.5") and not is_mine(event, None)
    assert is_mine({"ringing": [], "operator": "sip:op2@10.0.0.5"}, "sip:op2@10.0.0.5:5060")


async def test_operator_phone_link_refusals(env):  # noqa: F811
    import pytest

    from assistant.console import users
    from assistant.console.auth import ConsoleError

    async with env.db() as db:
        op = await users.user_by_name(db, "op")
        await users.set_phone(db, op.id, "sip:op1@10.0.0.5")
        sup = await users.user_by_name(db, "sup")
        with pytest.raises(ConsoleError) as taken:  # one phone, one user (however the URI is spelled)
            await users.set_phone(db, sup.id, "sip:OP1@10.0.0.5:5060")
        fam = await users.user_by_name(db, "fam_a")
        with pytest.raises(ConsoleError) as family:
            await users.set_phone(db, fam.id, "sip:op9@10.0.0.5")
        with pytest.raises(ConsoleError) as bad:
            await users.set_phone(db, sup.id, "op2")
    assert (taken.value.code, family.value.code, bad.value.code) == ("console_phone_taken", "console_bad_role", "console_bad_phone")
    assert [e.detail["phone_uri"] for e in await env.audit("set_phone")] == ["sip:op1@10.0.0.5"]


async def _read_event(resp, kind: str, *, timeout_s: float = 10.0) -> dict:
    import asyncio
    import json

    async def until() -> dict:
        while True:
            chunk = (await resp.content.readuntil(b"\n\n")).decode()
            if chunk.startswith(f"event: {kind}\n"):
                return json.loads(chunk.split("data: ", 1)[1])

    return await asyncio.wait_for(until(), timeout=timeout_s)


async def test_hand_over_steps_are_pushed_and_pop_up_on_the_ringing_operators_page(env):  # noqa: F811
    """Ringing, then connected: written by the gateway (store.note_alert_handover), pushed by the console's
    event watcher; only the page of the operator whose phone rings is told it is theirs."""
    from assistant.console import users

    async with env.db() as db:
        await users.set_phone(db, (await users.user_by_name(db, "op")).id, "sip:op1@10.0.0.5")
        await users.set_phone(db, (await users.user_by_name(db, "sup")).id, "sip:op2@10.0.0.5")
    store = env.app[SERVICES_KEY].store
    alert_id = env.ids.sos_alert
    await env.as_user("op")
    mine = await env.client.get("/console/events", headers={"Accept": "text/event-stream"})
    assert (await mine.content.readuntil(b"\n\n")).startswith(b"retry:")
    other_client = env.client  # the supervisor's page: a second client with its own cookie
    from aiohttp.test_utils import TestClient

    sup = TestClient(other_client.server)
    await sup.start_server()
    try:
        from tests.unit.console_helpers import login

        assert (await login(sup, "sup")).status == 303
        theirs = await sup.get("/console/events", headers={"Accept": "text/event-stream"})
        await theirs.content.readuntil(b"\n\n")
        await store.note_alert_handover(alert_id, {"state": "ringing_operators", "ringing": ["sip:op1@10.0.0.5:5060"],
                                                   "operator": None, "reason": "sos"})
        ev = await _read_event(mine, "handover")
        assert ev["alert_id"] == alert_id and ev["state"] == "ringing_operators" and ev["mine"] is True
        ev_sup = await _read_event(theirs, "handover")
        assert ev_sup["alert_id"] == alert_id and ev_sup["mine"] is False  # sup's phone (op2) does not ring

        pop = await (await env.client.get(f"/console/alerts/{alert_id}?fragment=pop")).text()
        assert "您的电话正在响铃" in pop and "李婆婆（新会）" in pop and f"紧急求助 #{alert_id}" in pop
        assert f'href="/console/alerts/{alert_id}"' in pop and "已脱敏" in pop
        assert "会城中心路" not in pop  # no address or transcript: the link leads to the (audited) alert page
        pop_sup = await (await sup.get(f"/console/alerts/{alert_id}?fragment=pop")).text()
        assert "您的电话正在响铃" not in pop_sup and "正在呼叫值班人员电话" in pop_sup

        await store.note_alert_handover(alert_id, {"state": "connected_operator", "ringing": [],
                                                   "operator": "sip:op1@10.0.0.5:5060", "reason": "sos"})
        ev = await _read_event(mine, "handover")
        assert ev["state"] == "connected_operator" and ev["mine"] is True
        pop = await (await env.client.get(f"/console/alerts/{alert_id}?fragment=pop")).text()
        assert "您已接通这位长者" in pop
        state = await (await env.client.get(f"/console/alerts/{alert_id}?fragment=handover")).text()
        assert state == "已接通值班人员（sip:op1@10.0.0.5:5060）"
        # a note that changes nothing the console shows writes no new step
        await store.note_alert_handover(alert_id, {"state": "connected_operator", "ringing": [],
                                                   "operator": "sip:op1@10.0.0.5:5060", "reason": "sos", "connected_ms": 50.0})
        from sqlalchemy import func, select

        from assistant.platform.models import HandoverEvent

        async with env.db() as db:
            assert await db.scalar(select(func.count(HandoverEvent.id))) == 2
    finally:
        mine.close()
        await sup.close()
    async with env.db() as db:  # reading the pop-up is not a transcript view
        from sqlalchemy import select

        from assistant.platform.models_console import AuditEntry

        views = (await db.scalars(select(AuditEntry).where(AuditEntry.action == "view_transcript"))).all()
    assert views == []


async def test_family_cannot_read_the_pop_up(env):  # noqa: F811
    await env.as_user("fam_a", area="family")
    resp = await env.client.get(f"/console/alerts/{env.ids.sos_alert}?fragment=pop", allow_redirects=False)
    assert resp.status == 403
