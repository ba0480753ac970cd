"""One alert per call per kind: a keypad 2 / 0 reaches the platform store twice — from the phone gateway
(``telephony.gateway_service.store_alert_sink``) and from the dialogue (Rasa's ``action_checkin_unwell``
over ``POST /api/alerts``; the ``handover`` event through ``assistant.runtime``'s sink) — and must raise
one alert (and one family SMS). On SQLite and PostgreSQL, in order and at the same time, one store or two."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.dialogue.processor import CallAlert
from assistant.platform.db import create_engine_for
from assistant.platform.models import Alert, Outbox
from assistant.platform.store import PlatformStore
from assistant.settings import StoreSettings
from telephony.gateway import TelephonyAlert
from telephony.gateway_service import store_alert_sink
from tests.platform_data import make_family

# fixtures: db_url (SQLite + PostgreSQL), store, clock
pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_platform"]


async def count(store: PlatformStore, model, *where) -> int:
    async with store.session("count") as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)))


def dialogue_sink(store: PlatformStore):
    from assistant.runtime import _store_alert_sink

    return _store_alert_sink(store)


async def test_keypad_2_and_0_seen_by_gateway_and_dialogue_raise_one_alert_each(store):
    elder = await make_family(store)
    gateway = store_alert_sink(store)
    for key, kind in (("2", "help"), ("0", "human")):  # the gateway sees the digit first
        await gateway(TelephonyAlert(kind=kind, call_id="call-1", elder_id=elder.elder_id, number="07503201001", detail={"source": "keypad", "key": key}))
    # then the dialogue: /checkin_unwell → action_checkin_unwell → POST /api/alerts; /request_human → handover
    again = await store.create_alert(elder_id=elder.elder_id, call_id="call-1", kind="unwell", detail={"transcript": "[按键 2]"})
    await dialogue_sink(store)(CallAlert(call_id="call-1", elder_id=elder.elder_id, kind="human", detail={"reason": "requested"}))

    alerts = await store.list_alerts()
    assert sorted(a.kind for a in alerts) == ["human", "unwell"]
    unwell = next(a for a in alerts if a.kind == "unwell")
    assert again.alert_id == unwell.alert_id and again.notified == 0 and unwell.detail["key"] == "2"
    assert await count(store, Outbox) == 3  # the family is told once (2 SMS + 1 email), not twice


async def test_simultaneous_raises_from_two_processes_make_one_alert(store, db_url, monkeypatch):
    elder = await make_family(store)
    commit = AsyncSession.commit

    async def slow_commit(self, *args, **kwargs):  # widen the window between the duplicate check and COMMIT
        await asyncio.sleep(0.05)  # (without the PostgreSQL advisory lock: 4–6 alerts of 8 raises)
        await commit(self, *args, **kwargs)

    monkeypatch.setattr(AsyncSession, "commit", slow_commit)
    other_engine = create_engine_for(StoreSettings(database_url=db_url, sqlite_busy_timeout_ms=5000))
    other = PlatformStore(engine=other_engine)  # another process's pool (a gateway worker vs. the API)
    try:
        raised = await asyncio.gather(
            *(s.create_alert(elder_id=elder.elder_id, call_id="call-2", kind="unwell", detail={"n": i}) for i, s in enumerate([store, other] * 4))
        )
    finally:
        await other_engine.dispose()
    assert len({a.alert_id for a in raised}) == 1
    assert await count(store, Alert, Alert.call_id == "call-2") == 1
    assert await count(store, Outbox) == 3
    assert sum(a.notified for a in raised) == 3


async def test_other_calls_kinds_and_resolved_alerts_still_raise(store):
    elder = await make_family(store)
    first = await store.create_alert(elder_id=elder.elder_id, call_id="call-3", kind="human")
    assert (await store.create_alert(elder_id=elder.elder_id, call_id="call-4", kind="human")).alert_id != first.alert_id
    assert (await store.create_alert(elder_id=elder.elder_id, call_id="call-3", kind="sos")).alert_id != first.alert_id
    # no call id (screen button, API without a call): no grouping
    a = await store.create_alert(elder_id=elder.elder_id, kind="human")
    b = await store.create_alert(elder_id=elder.elder_id, kind="human")
    assert a.alert_id != b.alert_id
    # an operator closed it (false alarm); the elder presses 0 again in the same call: a new alert
    await store.set_alert_status(first.alert_id, "false_alarm", by="op1")
    later = await store.create_alert(elder_id=elder.elder_id, call_id="call-3", kind="human")
    assert later.alert_id != first.alert_id and later.status == "open"
    # acknowledged but not resolved still counts as raised
    await store.set_alert_status(later.alert_id, "acknowledged", by="op1")
    assert (await store.create_alert(elder_id=elder.elder_id, call_id="call-3", kind="human")).alert_id == later.alert_id
