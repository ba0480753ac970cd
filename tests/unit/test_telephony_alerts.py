"""Keypad 2 raises its alert once: the dialogue alone gives the key its meaning (Rasa's
``action_checkin_unwell`` over ``POST /api/alerts``; the dialogue itself when Rasa is down); the phone
gateway used to raise it too. Counted as attempts, not only rows. And the store's rule, one alert per call
per kind (what a screen SOS during a spoken SOS, or a hand-over asking for its alert, relies on): on SQLite
and PostgreSQL, in order and at the same time, one store or two."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import InputDTMFFrame
from pipecat.tests.utils import run_test
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.call_alert import CallAlert
from assistant.dialogue.processor import DialogueProcessor
from assistant.dialogue.rasa_client import RasaClient
from assistant.platform.db import create_engine_for
from assistant.platform.models import Alert, Outbox
from assistant.platform.store import PlatformStore
from assistant.session import CallSession
from assistant.settings import StoreSettings, load_settings
from assistant.turns import TurnTracker
from telephony.gateway import KEYPAD_ALERTS
from tests.platform_data import make_family

# fixtures: db_url (SQLite + PostgreSQL), store, clock
pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_platform"]


async def count(store: PlatformStore, model, *where) -> int:
    async with store.session("count") as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)))


def dialogue_sink(store: PlatformStore):
    return store.raise_call_alert


class CountingStore(PlatformStore):
    """The real store, counting every ``raise_alert`` attempt (rows alone hide a duplicate the rule absorbed)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.attempts: list[str] = []

    async def raise_alert(self, **kwargs):
        self.attempts.append(kwargs["kind"])
        return await super().raise_alert(**kwargs)


def rasa_with_actions(store: PlatformStore, elder_id: int):
    """A stand-in Rasa whose ``action_checkin_unwell`` raises the alert (as the real one does over the API)."""

    async def webhook(request: web.Request) -> web.Response:
        body = await request.json()
        if body["message"] == "/checkin_unwell":
            await store.raise_alert(elder_id=elder_id, call_id=body["sender"], kind="unwell", detail={"transcript": "[按键 2]"})
            return web.json_response([{"text": "好的，我请护士给您回电话。"}])
        return web.json_response([{"text": "好的。"}])

    app = web.Application()
    app.router.add_post("/webhooks/rest/webhook", webhook)
    return app


async def press(url: str, store: PlatformStore, session: CallSession, key: KeypadEntry) -> None:
    """One key press as a phone call sees it: the gateway's keypad hook, then the dialogue stage."""
    gateway_sink = store.raise_call_alert
    digit = str(key.value)
    if digit in KEYPAD_ALERTS:
        await gateway_sink(CallAlert(kind=KEYPAD_ALERTS[digit], call_id=session.call_id, elder_id=session.elder_id,
                                          number="07503201001", detail={"source": "keypad", "key": digit}))
    async with RasaClient(base_url=url, timeout_s=2.0) as rasa:
        proc = DialogueProcessor(session=session, settings=load_settings(), rasa=rasa, tracker=TurnTracker(),
                                 on_alert=dialogue_sink(store))
        await run_test(proc, frames_to_send=[InputDTMFFrame(button=key)])


async def test_keypad_2_raises_its_alert_once(db_url, aiohttp_server):
    engine = create_engine_for(StoreSettings(database_url=db_url, sqlite_busy_timeout_ms=2000))
    try:
        store = CountingStore(engine=engine)
        elder = await make_family(store)
        server = await aiohttp_server(rasa_with_actions(store, elder.elder_id))
        session = CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, tts_rate_wpm=130)
        await press(f"http://127.0.0.1:{server.port}", store, session, KeypadEntry.TWO)
        assert store.attempts == ["unwell"]  # before: the gateway's "help" and then the dialogue's (2 attempts)
        assert await count(store, Alert) == 1
        assert await count(store, Outbox) == 3  # the family told once (2 SMS + 1 email)
    finally:
        await engine.dispose()


async def test_keypad_2_with_rasa_down_is_raised_by_the_dialogue(db_url):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    engine = create_engine_for(StoreSettings(database_url=db_url, sqlite_busy_timeout_ms=2000))
    try:
        store = CountingStore(engine=engine)
        elder = await make_family(store)
        session = CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, tts_rate_wpm=130)
        await press(dead, store, session, KeypadEntry.TWO)
        assert sorted(store.attempts) == ["human", "unwell"]  # the need for help, and a person for the outage
        unwell = (await store.list_alerts(kind="unwell"))[0]
        assert unwell.detail["key"] == "2" and unwell.detail["reason"] == "rasa_down"
    finally:
        await engine.dispose()


async def test_raising_again_for_the_call_returns_the_open_alert(store):
    """The rule behind the hand-over's ``_alert_for`` and a screen SOS during a spoken one."""
    elder = await make_family(store)
    first = await store.raise_alert(elder_id=elder.elder_id, call_id="call-1", kind="unwell", detail={"key": "2"})
    again = await store.raise_alert(elder_id=elder.elder_id, call_id="call-1", kind="unwell", detail={"transcript": "[按键 2]"})
    await dialogue_sink(store)(CallAlert(call_id="call-1", elder_id=elder.elder_id, kind="human", detail={"reason": "requested"}))
    alerts = await store.list_alerts()
    assert sorted(a.kind for a in alerts) == ["human", "unwell"]
    assert again.alert_id == first.alert_id and again.notified == 0 and first.notified == 3
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
            *(s.raise_alert(elder_id=elder.elder_id, call_id="call-2", kind="unwell", detail={"n": i}) for i, s in enumerate([store, other] * 4))
        )
    finally:
        await other_engine.dispose()
    assert len({a.alert_id for a in raised}) == 1
    assert await count(store, Alert, Alert.call_id == "call-2") == 1
    assert await count(store, Outbox) == 3
    assert sum(a.notified for a in raised) == 3


async def test_other_calls_kinds_and_resolved_alerts_still_raise(store):
    elder = await make_family(store)
    first = await store.raise_alert(elder_id=elder.elder_id, call_id="call-3", kind="human")
    assert (await store.raise_alert(elder_id=elder.elder_id, call_id="call-4", kind="human")).alert_id != first.alert_id
    assert (await store.raise_alert(elder_id=elder.elder_id, call_id="call-3", kind="sos")).alert_id != first.alert_id
    # no call id (screen button, API without a call): no grouping
    a = await store.raise_alert(elder_id=elder.elder_id, kind="human")
    b = await store.raise_alert(elder_id=elder.elder_id, kind="human")
    assert a.alert_id != b.alert_id
    # an operator closed it (false alarm); the elder presses 0 again in the same call: a new alert
    await store.set_alert_status(first.alert_id, "false_alarm", by="op1")
    later = await store.raise_alert(elder_id=elder.elder_id, call_id="call-3", kind="human")
    assert later.alert_id != first.alert_id and later.status == "open"
    # acknowledged but not resolved still counts as raised
    await store.set_alert_status(later.alert_id, "acknowledged", by="op1")
    assert (await store.raise_alert(elder_id=elder.elder_id, call_id="call-3", kind="human")).alert_id == later.alert_id


async def test_a_call_alert_is_stored_under_the_kind_the_store_knows(store):
    """One sink for the dialogue, the gateway and the call engine: a care call's "help" is an "unwell"
    alert, a kind the store does not know still reaches a person ("human"), the line is kept."""
    elder = await make_family(store)
    await store.raise_call_alert(CallAlert(kind="help", call_id="c1", elder_id=elder.elder_id, number="07503201001",
                                           detail={"outcome": "needs_something"}))
    await store.raise_call_alert(CallAlert(kind="order_problem", call_id="c2", elder_id=elder.elder_id))
    await store.raise_call_alert(CallAlert(kind="misunderstanding", call_id="c3", elder_id=elder.elder_id))
    got = {a.call_id: a for a in await store.list_alerts()}
    assert got["c1"].kind == "unwell" and got["c1"].detail == {"outcome": "needs_something", "raised_as": "help",
                                                               "number": "07503201001"}
    assert got["c2"].kind == "human" and got["c2"].detail == {"raised_as": "order_problem"}
    assert got["c3"].kind == "misunderstanding" and got["c3"].detail == {}
