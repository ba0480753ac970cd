"""Issue #15: the identity proof against a spoofed caller ID (real SQLite store, ledger and PIN store).

- an inbound call whose From is an enrolled elder's number is never verified by it, hears neither the safe
  phrase nor a code, writes no ledger entry and sends nothing — not even inside a care call's code window;
- the elder's keypad PIN (argon2, per-elder attempt limit) verifies an inbound call from a registered number;
- the dialogue stage collects ``*`` PIN ``#`` from the keypad without recording the digits;
- platform calls (outbound, ledger entry before dialling) and the screen keep their proof.
"""

from __future__ import annotations

import datetime as dt

import pytest
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import InputDTMFFrame, TTSSpeakFrame
from pipecat.tests.utils import run_test
from sqlalchemy import func, select

from assistant.call_alert import CallAlert
from assistant.dialogue.processor import DialogueProcessor
from assistant.dialogue.rasa_client import RasaClient
from assistant.errors import FraudGuardError
from assistant.fraud_guard.identity import IdentityService, spell_code
from assistant.fraud_guard.ledger import CallLedger
from assistant.fraud_guard.pin import PinStore
from assistant.phrases import Phrasebook
from assistant.platform.db import create_engine_for
from assistant.platform.migrate import upgrade_heads_async
from assistant.platform.models_fraud import ElderPin, LedgerEntry
from assistant.platform.store import NewContact, PlatformStore
from assistant.session import CallSession
from assistant.turns import TurnTracker
from telephony.gateway import Gateway

ELDER_NUMBER = "07503331234"
PHRASE = "桂花开了"
PIN = "4827"


class Clock:
    def __init__(self) -> None:
        self.t = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += dt.timedelta(seconds=seconds)


@pytest.fixture
async def db(settings):
    await upgrade_heads_async(settings.store.database_url)
    engine = create_engine_for(settings)
    clock = Clock()
    store = PlatformStore(engine=engine, clock=clock)
    elder = await store.create_elder(
        name="陈桂英", district="蓬江", dialect="cmn", phones=["0750-333 1234"], safe_phrase=PHRASE,
        contacts=[NewContact(name="陈建华", relation="儿子", phone="13800000001")],
    )
    ledger = CallLedger.for_engine(engine, settings=settings, clock=clock)
    pins = PinStore.for_engine(engine, settings=settings, clock=clock)

    async def numbers(elder_id):
        return [p.number for p in (await store.get_elder(elder_id)).phones]

    service = IdentityService(ledger=ledger, safe_phrase_of=store.safe_phrase, numbers_of=numbers, pins=pins)
    yield store, ledger, pins, service, elder, clock, engine
    await engine.dispose()


async def _ledger_rows(engine) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession

    async with AsyncSession(engine) as s:
        return int(await s.scalar(select(func.count()).select_from(LedgerEntry)))


def _gateway(settings, store) -> Gateway:
    return Gateway(settings=settings, pipeline_factory=lambda **_: None, directory=store, port=0)


async def test_spoofed_elder_number_asking_who_are_you_gets_no_secret(db, settings):
    store, ledger, pins, service, elder, clock, engine = db
    session, kind = await _gateway(settings, store).identify(ELDER_NUMBER, call_id="spoof-1")
    assert kind == "known" and session.elder_id == elder.elder_id  # the profile is picked (dialect) …
    assert not await service.verify_session(session)  # … but caller ID verifies nothing
    texts = await service.prove(session)
    text = "".join(texts)
    assert PHRASE not in text and "确认码" not in text and "暗语" not in text
    assert "平安通热线" in text and "星号" in text and "按九" in text  # what to do instead
    assert session.verification == "unverified" and session.ledger_entry_id is None
    assert await _ledger_rows(engine) == 0  # no fresh code issued
    assert await store.list_outbox() == []  # nothing sent to the family
    assert await ledger.current_for_elder(elder.elder_id) is None  # nothing for the screen to show


async def test_inbound_answer_in_cantonese_and_for_unknown_numbers(db):
    *_, service, elder, _clock, _engine = db
    yue = "".join(await service.prove(CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id,
                                                  caller_number=ELDER_NUMBER, dialect="yue")))
    assert "热线" in yue and "揿九" in yue and PHRASE not in yue
    unknown = "".join(await service.prove(CallSession(channel="phone", direction="inbound", caller_number="13911112222")))
    assert "平安通热线" in unknown and "星号" not in unknown  # no PIN / call-back offer to an unregistered number


async def test_call_back_inside_a_care_calls_window_is_not_verified(db, settings):
    store, ledger, pins, service, elder, clock, engine = db
    entry = await ledger.record_outbound_call(elder_id=elder.elder_id, number=ELDER_NUMBER, purpose="care_call", call_ref="c-1")
    session, kind = await _gateway(settings, store).identify(ELDER_NUMBER, call_id="in-1")
    assert session.ledger_entry_id is None and kind == "known"
    assert not await service.verify_session(session)
    text = "".join(await service.prove(session))
    assert spell_code(entry.code) not in text and PHRASE not in text
    # even a session that carries the entry id (e.g. linked by older code) is not verified inbound
    session.ledger_entry_id = entry.entry_id
    assert not await service.verify_session(session)
    assert spell_code(entry.code) not in "".join(await service.prove(session))


async def test_platform_call_still_proves_itself_and_screen_stays_verified(db):
    store, ledger, pins, service, elder, clock, engine = db
    entry = await ledger.record_outbound_call(elder_id=elder.elder_id, number=ELDER_NUMBER, purpose="care_call")
    out = CallSession(channel="phone", direction="outbound", elder_id=elder.elder_id, caller_number=ELDER_NUMBER,
                      ledger_entry_id=entry.entry_id)
    text = "".join(await service.prove(out))
    assert PHRASE in text and spell_code(entry.code) in text
    assert await service.verify_session(out)
    screen = CallSession(channel="screen", elder_id=elder.elder_id)
    assert await service.verify_session(screen)


async def test_correct_pin_from_the_registered_number_verifies(db):
    store, ledger, pins, service, elder, clock, engine = db
    await pins.set_pin(elder.elder_id, PIN)
    session = CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, caller_number=ELDER_NUMBER)
    result = await service.check_pin(session, PIN)
    assert result.ok and session.verified
    # stored hashed, not as digits
    from sqlalchemy.ext.asyncio import AsyncSession

    async with AsyncSession(engine) as s:
        row = await s.get(ElderPin, elder.elder_id)
    assert row.pin_hash.startswith("$argon2id$") and PIN not in row.pin_hash
    # the screen's or a platform call's session is not verified through a PIN, and an unregistered number isn't
    other = CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, caller_number="13911112222")
    assert (await service.check_pin(other, PIN)).status == "not_set" and not other.verified


async def test_wrong_pins_lock_out_then_unlock_after_the_period(db, settings):
    store, ledger, pins, service, elder, clock, engine = db
    await pins.set_pin(elder.elder_id, PIN)
    session = CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, caller_number=ELDER_NUMBER)
    first = await service.check_pin(session, "1357")
    second = await service.check_pin(session, "2468")
    third = await service.check_pin(session, "9753")
    assert (first.status, first.remaining, second.remaining) == ("wrong", 2, 1)
    assert third.status == "locked" and third.just_locked
    # locked: even the right PIN is refused (another call, same elder)
    again = CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, caller_number=ELDER_NUMBER)
    refused = await service.check_pin(again, PIN)
    assert refused.status == "locked" and not refused.just_locked and not again.verified
    clock.advance(settings.fraud.pin_lockout_s + 1)
    assert (await service.check_pin(again, PIN)).ok and again.verified


async def test_pin_rules(db):
    store, ledger, pins, service, elder, clock, engine = db
    for bad in ("123", "1234567", "12a4", "1111", "123456", "１２３４"):
        with pytest.raises(FraudGuardError):
            await pins.set_pin(elder.elder_id, bad)
    assert not await pins.has_pin(elder.elder_id)
    with pytest.raises(FraudGuardError):
        await pins.set_pin(9999, PIN)
    await pins.set_pin(elder.elder_id, "604918")
    assert await pins.has_pin(elder.elder_id)
    assert (await pins.check(elder.elder_id, "604918")).ok


# --- the dialogue stage: * PIN # on the keypad -------------------------------------------------------------

def _keys(text: str) -> list[InputDTMFFrame]:
    return [InputDTMFFrame(button=KeypadEntry(k)) for k in text]


async def _dialogue(frames, session, keypad_pin):
    alerts: list[CallAlert] = []

    async def on_alert(alert: CallAlert) -> None:
        alerts.append(alert)

    from assistant.settings import load_settings

    tracker = TurnTracker()
    async with RasaClient(base_url="http://127.0.0.1:9", timeout_s=0.5) as rasa:  # never reached
        proc = DialogueProcessor(session=session, settings=load_settings(), rasa=rasa, tracker=tracker,
                                 on_alert=on_alert, keypad_pin=keypad_pin)
        down, up = await run_test(proc, frames_to_send=frames)
    return [f.text for f in down if isinstance(f, TTSSpeakFrame)], alerts, tracker, up


async def test_keypad_pin_entry_verifies_without_recording_the_digits(db):
    store, ledger, pins, service, elder, clock, engine = db
    await pins.set_pin(elder.elder_id, PIN)
    session = CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, caller_number=ELDER_NUMBER)
    keyed: list[str] = []

    async def keypad_pin(s, pin):
        keyed.append(pin)
        assert not s.keypad_secret  # entry is over when the PIN is checked
        return await service.check_pin(s, pin)

    spoken, alerts, tracker, _ = await _dialogue(_keys(f"*{PIN}#"), session, keypad_pin)
    assert keyed == [PIN] and session.verified
    assert spoken == [Phrasebook().say("pin_enter", "cmn"), Phrasebook().say("pin_ok", "cmn")]
    assert all(PIN not in (t.transcript or "") for t in tracker.turns)
    assert not alerts


async def test_keypad_pin_lockout_raises_one_operator_alert(db):
    store, ledger, pins, service, elder, clock, engine = db
    await pins.set_pin(elder.elder_id, PIN)
    session = CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, caller_number=ELDER_NUMBER)
    spoken, alerts, _, _ = await _dialogue(_keys("*1357#*2468#*9753#*" + PIN + "#"), session,
                                           lambda s, p: service.check_pin(s, p))
    assert not session.verified
    assert spoken.count(Phrasebook().say("pin_wrong", "cmn")) == 2 and spoken.count(Phrasebook().say("pin_locked", "cmn")) == 2
    assert [(a.kind, a.detail["reason"]) for a in alerts] == [("fraud", "pin_lockout")]


async def test_keypad_9_asks_for_a_call_back_and_ends_the_call(db):
    from pipecat.frames.frames import EndWorkerFrame

    store, ledger, pins, service, elder, clock, engine = db
    session = CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, caller_number=ELDER_NUMBER,
                          dialect="yue")
    spoken, _, _, up = await _dialogue(_keys("9"), session, lambda s, p: service.check_pin(s, p))
    assert session.callback_requested and spoken == [Phrasebook().say("pin_callback", "yue")]
    assert any(isinstance(f, EndWorkerFrame) for f in up)
    unknown = CallSession(channel="phone", direction="inbound", caller_number="13911112222")
    spoken, _, _, _ = await _dialogue(_keys("9"), unknown, lambda s, p: service.check_pin(s, p))
    assert not unknown.callback_requested and spoken == [Phrasebook().say("pin_callback_unavailable", "cmn")]


async def test_the_fraud_guards_answer_replaces_the_actions_generic_line(aiohttp_server):
    from aiohttp import web

    async def webhook(request):
        return web.json_response([{"custom": {"event": "fraud_check", "intent": "ask_identity", "fallback_text": "我是平安通的语音助手。"}},
                                  {"text": "我是平安通的语音助手。"}])

    async def parse(request):
        body = await request.json()
        return web.json_response({"intent": {"name": "ask_identity", "confidence": 0.99}, "text": body["text"]})

    app = web.Application()
    app.router.add_post("/webhooks/rest/webhook", webhook)
    app.router.add_post("/model/parse", parse)
    server = await aiohttp_server(app)
    from pipecat.frames.frames import TranscriptionFrame

    from assistant.settings import load_settings

    async def proof(session):
        return ["这是您打进来的平安通热线。"]

    async def spoken_with(identity_proof):
        session = CallSession(channel="phone", direction="inbound", caller_number="13911112222")
        async with RasaClient(base_url=f"http://127.0.0.1:{server.port}", timeout_s=5.0) as rasa:
            proc = DialogueProcessor(session=session, settings=load_settings(), rasa=rasa, tracker=TurnTracker(),
                                     identity_proof=identity_proof)
            down, _ = await run_test(proc, frames_to_send=[TranscriptionFrame(text="请问你是谁", user_id="c", timestamp="0")])
        return [f.text for f in down if isinstance(f, TTSSpeakFrame)]

    assert await spoken_with(proof) == ["这是您打进来的平安通热线。"]
    assert await spoken_with(None) == ["我是平安通的语音助手。"]  # no fraud guard wired: the action's line


async def test_an_abandoned_pin_entry_gives_the_keypad_back(db):
    # * pressed by mistake: once fraud.pin_entry_timeout_s has passed, 2 (need help) acts as usual again
    import dataclasses

    from pipecat.tests.utils import SleepFrame

    from assistant.settings import load_settings

    store, ledger, pins, service, elder, clock, engine = db
    settings = load_settings()
    settings = dataclasses.replace(settings, fraud=dataclasses.replace(settings.fraud, pin_entry_timeout_s=0.2))
    session = CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, caller_number=ELDER_NUMBER)
    checked: list[str] = []

    async def keypad_pin(s, pin):
        checked.append(pin)
        return await service.check_pin(s, pin)

    tracker = TurnTracker()
    async with RasaClient(base_url="http://127.0.0.1:9", timeout_s=0.5) as rasa:  # down: key 2 → handover
        proc = DialogueProcessor(session=session, settings=settings, rasa=rasa, tracker=tracker, keypad_pin=keypad_pin)
        await run_test(proc, frames_to_send=[*_keys("*"), SleepFrame(sleep=0.4), *_keys("2")])
    assert checked == [] and not session.keypad_secret  # the gateway's keypad alerts see "2" again
    assert [t.transcript for t in tracker.turns] == ["[按键 *]", "[按键 2]"]
