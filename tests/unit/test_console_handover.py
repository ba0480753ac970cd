"""The console's alert page shows the phone gateway's live hand-over (``detail.handover``, issue #16)."""

from __future__ import annotations

from assistant.platform.models import Alert
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
