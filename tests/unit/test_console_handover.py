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

    from assistant.fraud_guard.models import LedgerEntry

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
