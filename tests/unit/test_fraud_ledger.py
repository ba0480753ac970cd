"""Call ledger on SQLite in tmp_path: before-dial entries, code validity, /api/verify, identity proof and
verification (inbound calls are never linked to an entry: tests/unit/test_fraud_guard_identity.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from aiohttp import web

from assistant.fraud_guard.api import setup_fraud_api
from assistant.fraud_guard.identity import IdentityService, proof_speech_seconds, proof_utterances, spell_code
from assistant.fraud_guard.ledger import CallLedger, new_code
from assistant.platform.db import create_engine_for
from assistant.platform.migrate import upgrade_heads_async
from assistant.platform.store import NewContact, PlatformStore
from assistant.services import SERVICES_KEY, services_ctx
from assistant.session import CallSession


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
        name="陈桂英", district="蓬江", phones=["0750-333 1234"], safe_phrase="桂花开了",
        contacts=[NewContact(name="陈建华", relation="儿子", phone="13800000001")],
    )
    ledger = CallLedger.for_engine(engine, settings=settings, clock=clock)
    yield store, ledger, elder, clock
    await engine.dispose()


async def test_record_before_dial_and_code_validity(db, settings):
    store, ledger, elder, clock = db
    e = await ledger.record_outbound_call(elder_id=elder.elder_id, number="0750-333 1234", purpose="care_checkin",
                                          call_ref="r1")
    assert e.number == "07503331234" and len(e.code) == 4 and e.code.isdigit()
    assert e.valid_until - e.created_at == dt.timedelta(seconds=settings.fraud.code_validity_s)
    again = await ledger.record_outbound_call(elder_id=elder.elder_id, number="07503331234", purpose="x", call_ref="r1")
    assert again.entry_id == e.entry_id and again.code == e.code  # same call_ref → same entry
    assert (await ledger.current_for_number("0750 3331234")).code == e.code
    clock.advance(settings.fraud.code_validity_s + 1)
    assert await ledger.current_for_number("07503331234") is None
    assert await ledger.expire_old() == 1


async def test_family_gets_the_code_through_the_outbox(db):
    store, ledger, elder, _ = db
    e = await ledger.record_outbound_call(elder_id=elder.elder_id, number="07503331234", purpose="care_checkin")
    items = await store.list_outbox()
    assert any(i.recipient == "13800000001" and e.code in i.body for i in items)


def test_codes_are_four_digits_and_not_trivial():
    codes = {new_code() for _ in range(300)}
    assert all(len(c) == 4 and c.isdigit() for c in codes)
    assert "1234" not in codes and "0000" not in codes
    assert len(codes) > 200


async def test_identity_proof_speaks_phrase_and_code_and_verifies(db):
    store, ledger, elder, _ = db
    e = await ledger.record_outbound_call(elder_id=elder.elder_id, number="07503331234", purpose="care_checkin")
    session = CallSession(channel="phone", direction="outbound", elder_id=elder.elder_id, caller_number="07503331234",
                          dialect="cmn", ledger_entry_id=e.entry_id)

    async def numbers(elder_id):
        return [p.number for p in (await store.get_elder(elder_id)).phones]

    svc = IdentityService(ledger=ledger, safe_phrase_of=store.safe_phrase, numbers_of=numbers)
    texts = await svc.prove(session)
    text = "".join(texts)
    assert "桂花开了" in text and spell_code(e.code) in text and "挂断回拨" in text
    assert "暗语是什么" not in text  # never asks for it
    assert await svc.verify_session(session) and session.verification == "verified"


async def test_unsolicited_inbound_call_stays_unverified(db):
    store, ledger, elder, _ = db
    session = CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, caller_number="13999999999")
    svc = IdentityService(ledger=ledger, safe_phrase_of=store.safe_phrase)
    assert not await svc.verify_session(session)


def test_proof_is_short_enough_by_character_count():
    for dialect in ("cmn", "yue"):
        texts = proof_utterances(safe_phrase="桂花开了", code="4821", dialect=dialect)
        assert proof_speech_seconds(texts, rate_wpm=130, dialect=dialect) <= 15.0


async def test_verify_api(settings, aiohttp_client, db):
    store, ledger, elder, _ = db
    import dataclasses

    settings = dataclasses.replace(settings, server=dataclasses.replace(settings.server, service_token="tok"))
    app = web.Application()
    app.cleanup_ctx.append(services_ctx(settings))  # the process's services: the ledger among them
    setup_fraud_api(app)
    client = await aiohttp_client(app)
    auth = {"Authorization": "Bearer tok"}
    r = await client.get("/api/verify", params={"number": "07503331234"})
    assert r.status == 401
    r = await client.get("/api/verify", params={"number": "07503331234"}, headers={"Authorization": "Bearer nope"})
    assert r.status == 401
    r = await client.get("/api/verify", params={"number": "07503331234"}, headers=auth)
    body = await r.json()
    assert r.status == 200 and body["calling"] is False and body["warning"] and body["code"] is None
    # an entry written through the app's ledger (real clock) shows up with its code
    e = await app[SERVICES_KEY].ledger.record_outbound_call(elder_id=elder.elder_id, number="0750-3331234", purpose="care")
    body = await (await client.get("/api/verify", params={"number": "0750 333 1234"}, headers=auth)).json()
    assert body["calling"] and body["code"] == e.code and e.code in body["message"]
    r = await client.get("/api/verify", params={"number": ""}, headers=auth)
    assert r.status == 400
