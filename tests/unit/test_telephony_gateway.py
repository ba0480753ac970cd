"""Inbound caller identification: the real PlatformStore and CallLedger on SQLite (no SIP)."""

from __future__ import annotations

import datetime as dt

import pytest

from assistant.fraud_guard.ledger import CallLedger
from assistant.phrases import Phrasebook
from assistant.platform.db import create_engine_for
from assistant.platform.migrate import upgrade_heads_async
from assistant.platform.store import PlatformStore
from telephony.gateway import Gateway, greeting_text
from telephony.gateway_service import ledger_recorder
from telephony.scheduler import LedgerIntent


@pytest.fixture
async def platform(settings):
    await upgrade_heads_async(settings.store.database_url)
    engine = create_engine_for(settings)
    now = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
    store = PlatformStore(engine=engine, clock=lambda: now)
    elder = await store.create_elder(name="陈桂英", district="蓬江", phones=["0750-333 1234"], dialect="yue")
    ledger = CallLedger.for_engine(engine, settings=settings, clock=lambda: now)
    yield store, ledger, elder
    await engine.dispose()


def gateway(settings, store, ledger) -> Gateway:
    return Gateway(settings=settings, pipeline_factory=lambda **_: None, directory=store, port=0)


async def test_known_caller_is_greeted_in_dialect_without_personal_data(settings, platform):
    store, ledger, elder = platform
    session, kind = await gateway(settings, store, ledger).identify("07503331234", call_id="in-1")
    assert kind == "known" and session.elder_id == elder.elder_id and session.dialect == "yue"
    text = greeting_text(phrases=Phrasebook(), dialect=session.dialect, kind=kind)
    assert "你好" in text and elder.name not in text and "陳" not in text


async def test_unknown_caller_gets_neutral_greeting(settings, platform):
    store, ledger, _ = platform
    session, kind = await gateway(settings, store, ledger).identify("13911112222", call_id="in-2")
    assert kind == "unknown" and session.elder_id is None and session.dialect is None
    assert greeting_text(phrases=Phrasebook(), dialect=None, kind=kind) == "您好，我是平安通语音助手。请问有什么可以帮您？"


async def test_call_back_within_the_window_is_not_linked_to_the_care_call(settings, platform):
    # issue #15: caller ID can be spoofed, so a call "back" from the number we dialled proves nothing
    store, ledger, elder = platform
    record = ledger_recorder(ledger)
    entry = await record(LedgerIntent(elder_id=elder.elder_id, number="0750-333 1234", purpose="care_call", attempt=1, call_ref="r-1"))
    assert entry.code and entry.status == "pending"  # written before any dial
    session, kind = await gateway(settings, store, ledger).identify("07503331234", call_id="in-3")
    assert kind == "known" and session.ledger_entry_id is None and session.elder_id == elder.elder_id
    assert session.verification == "unverified"
    assert (await ledger.get(entry.entry_id)).status == "pending"  # not consumed by the inbound call


async def test_lookup_failures_fall_back_to_the_neutral_greeting(settings):
    class Broken:
        async def elder_by_phone(self, number):
            raise RuntimeError("database down")

    session, kind = await Gateway(settings=settings, pipeline_factory=lambda **_: None, directory=Broken(), port=0).identify("07503331234")
    assert kind == "unknown" and session.elder_id is None


async def test_call_back_request_without_a_dialer_asks_an_operator(settings, platform):
    from assistant.errors import TelephonyError
    from assistant.session import CallSession

    store, ledger, elder = platform
    alerts = []

    async def on_alert(a):
        alerts.append(a)

    session = CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, caller_number="07503331234",
                          callback_requested=True)
    gw = Gateway(settings=settings, pipeline_factory=lambda **_: None, directory=store, on_alert=on_alert, port=0)
    await gw._call_back(session)

    async def failing(s):
        raise TelephonyError("no route", code="no_route")

    gw.call_back = failing
    await gw._call_back(session)
    placed = []

    async def works(s):
        placed.append(s.caller_number)

    gw.call_back = works
    await gw._call_back(session)
    assert [(a.kind, a.detail["reason"]) for a in alerts] == [("human", "no_dialer"), ("human", "no_route")]
    assert placed == ["07503331234"]
