"""Care-call schedules, quiet hours, retry policy and the escalation chain on a fast clock (no SIP)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, time

import pytest

from assistant.errors import TelephonyError
from assistant.settings import load_settings
from telephony.scheduler import (
    CareCallRunner,
    CareSchedule,
    FamilyContact,
    FastClock,
    RetryPolicy,
    TimeWindow,
)

MON_0930 = datetime(2026, 11, 23, 9, 30)  # a Monday


def test_window_wraps_midnight():
    quiet = TimeWindow.parse("21:00-08:00")
    assert quiet.contains(time(22, 0)) and quiet.contains(time(7, 59)) and not quiet.contains(time(8, 0))
    day = TimeWindow.parse("09:00-11:00")
    assert day.contains(time(9, 0)) and not day.contains(time(11, 0))
    with pytest.raises(TelephonyError):
        TimeWindow.parse("nine to eleven")


def test_schedule_days_windows_and_quiet_hours():
    s = CareSchedule(elder_id=1, number="1001", days=frozenset({0, 2}), windows=(TimeWindow.parse("07:00-10:00"),))
    assert s.allows(MON_0930)
    assert not s.allows(MON_0930.replace(hour=7, minute=30))  # inside the window but in quiet hours
    assert not s.allows(datetime(2026, 11, 24, 9, 30))  # Tuesday
    assert s.next_call_time(MON_0930.replace(hour=6)) == MON_0930.replace(hour=8, minute=0)
    assert s.next_call_time(MON_0930.replace(hour=10, minute=5)) == datetime(2026, 11, 25, 8, 0)  # Wednesday
    never = CareSchedule(elder_id=2, number="1", windows=(TimeWindow.parse("22:00-23:00"),))
    assert never.next_call_time(MON_0930) is None
    napper = CareSchedule(elder_id=3, number="1", windows=(TimeWindow.parse("11:00-16:00"),), extra_quiet=(TimeWindow.parse("12:00-14:30"),))
    assert not napper.allows(MON_0930.replace(hour=13)) and napper.allows(MON_0930.replace(hour=14, minute=30))
    assert napper.next_call_time(MON_0930.replace(hour=12, minute=10)) == MON_0930.replace(hour=14, minute=30)


def test_retry_policy_defaults_and_quiet_hours_stop():
    p = RetryPolicy(delays_s=tuple(load_settings().telephony.retry_delays_s))
    assert p.attempts == 3 and p.delay_after(1) == 900 and p.delay_after(2) == 900 and p.delay_after(3) is None
    s = CareSchedule(elder_id=1, number="1")
    assert p.next_attempt_at(1, MON_0930, s) == datetime(2026, 11, 23, 9, 45)
    assert p.next_attempt_at(1, datetime(2026, 11, 23, 20, 50), s) is None  # would ring at 21:05


@dataclass
class FakeCall:
    call_id: str
    remote_number: str

    async def hangup(self):
        pass


@dataclass
class FakeGateway:
    answers: dict[str, list[str]]  # number → per-attempt result ("answer" or an error code)
    keys: dict[str, str] = field(default_factory=dict)
    dialled: list[tuple[str, datetime]] = field(default_factory=list)
    clock: FastClock | None = None
    settings: object = field(default_factory=load_settings)
    log: list[str] = field(default_factory=list)
    greetings: dict[str, str] = field(default_factory=dict)  # number → the opening line it heard

    async def dial(self, number, *, timeout_s=None, line=None):
        self.log.append(f"dial {number}")
        self.dialled.append((number, self.clock.now()))
        result = self.answers[number].pop(0)
        if result != "answer":
            raise TelephonyError(f"{number}: {result}", code=result)
        return FakeCall(call_id=f"c{len(self.dialled)}", remote_number=number)

    async def run_call(self, call, *, session, greeting, on_key):
        assert greeting.startswith("平安通") and "确认码" in greeting  # identity proof spoken first
        self.greetings[call.remote_number] = greeting
        if call.remote_number in self.keys:
            await on_key(self.keys[call.remote_number])


def runner_for(gw, *, alerts, ledger, **kwargs):
    async def record(intent):
        gw.log.append(f"ledger {intent.number} {intent.purpose}")
        ledger.append(intent)
        return {"code": "4821", "entry_id": len(ledger)}

    async def on_alert(a):
        alerts.append(a)

    return CareCallRunner(gateway=gw, ledger_record=record, on_alert=on_alert, clock=gw.clock, after_outcome_s=0, **kwargs)


async def test_unanswered_call_retries_then_family_then_operator():
    clock = FastClock(start=MON_0930, speed=2000)
    gw = FakeGateway(answers={"1001": ["no_answer", "busy", "no_answer"], "2001": ["no_answer"], "2002": ["busy"]}, clock=clock)
    alerts, ledger = [], []
    s = CareSchedule(elder_id=7, number="1001", family=(FamilyContact(name="女儿", number="2001"), FamilyContact(name="儿子", number="2002")))
    result = await runner_for(gw, alerts=alerts, ledger=ledger).run_care_call(s)
    assert [n for n, _ in gw.dialled] == ["1001", "1001", "1001", "2001", "2002"]
    gaps = [(b[1] - a[1]).total_seconds() for a, b in zip(gw.dialled, gw.dialled[1:3], strict=False)]
    assert all(895 <= g <= 1000 for g in gaps), gaps  # +15 min, +15 min
    assert result.status == "escalated_operator" and [a.kind for a in alerts] == ["no_answer"]
    # every dial was written to the ledger before it happened
    assert gw.log[::2] == [f"ledger {n} {p}" for n, p in [("1001", "care_call")] * 3 + [("2001", "family_escalation"), ("2002", "family_escalation")]]


async def test_configuration_fault_is_not_retried():
    clock = FastClock(start=MON_0930, speed=2000)
    gw = FakeGateway(answers={"1001": ["no_route"]}, clock=clock)
    with pytest.raises(TelephonyError) as exc:
        await runner_for(gw, alerts=[], ledger=[]).run_care_call(CareSchedule(elder_id=1, number="1001"))
    assert exc.value.code == "no_route" and len(gw.dialled) == 1


async def test_family_answer_stops_escalation_and_unwell_alerts():
    clock = FastClock(start=MON_0930, speed=20000)
    gw = FakeGateway(answers={"1001": ["no_answer", "no_answer", "no_answer"], "2001": ["answer"]}, clock=clock, keys={"2001": "1"})
    alerts, ledger = [], []
    s = CareSchedule(elder_id=7, number="1001", family=(FamilyContact(name="女儿", number="2001"),))
    result = await runner_for(gw, alerts=alerts, ledger=ledger).run_care_call(s)
    assert result.status == "escalated_family" and alerts == []

    gw2 = FakeGateway(answers={"1001": ["answer"]}, clock=clock, keys={"1001": "2"})
    result2 = await runner_for(gw2, alerts=alerts, ledger=ledger).run_care_call(CareSchedule(elder_id=8, number="1001"))
    assert result2.outcome == "unwell" and [a.kind for a in alerts] == ["unwell"]


def test_schedule_from_store_rows():
    import datetime as dt
    from types import SimpleNamespace as NS

    from telephony.gateway_service import schedule_from_store

    info = NS(elder_id=4, days=(1, 3), window_start=dt.time(9), window_end=dt.time(11), quiet_start=dt.time(10), quiet_end=dt.time(10, 30), timezone="Asia/Shanghai")
    elder = NS(
        dialect="yue",
        phones=(NS(number="020-1", is_primary=False), NS(number="020-2", is_primary=True)),
        contacts=(NS(name="儿子", phone="139-2", priority=2), NS(name="女儿", phone="139-1", priority=1)),
    )
    s = schedule_from_store(info, elder, quiet_hours="21:00-08:00")
    assert s.number == "020-2" and s.days == frozenset({0, 2}) and s.dialect == "yue"
    assert [c.number for c in s.family] == ["139-1", "139-2"]  # in priority order
    assert not s.allows(MON_0930.replace(hour=10, minute=10))  # the elder's own quiet time
    # an aware UTC time is judged in the elder's zone: 01:30 UTC = 09:30 in Shanghai
    assert s.allows(datetime(2026, 11, 23, 1, 30, tzinfo=dt.UTC))


# --- the opening proves the call (fraud guard): safe phrase + one-time code + call-back offer ---------------
PHRASE = "桂花飘香"  # the elder's safe phrase (a test value)


def test_opening_line_elder_family_and_fallback():
    from assistant.fraud_guard.identity import spell_code
    from telephony.scheduler import opening_line

    elder = opening_line(dialect="cmn", proof="4821", safe_phrase=PHRASE)
    assert elder.index(PHRASE) < elder.index(spell_code("4821")) < elder.index("回拨") < elder.index("按1")
    assert "需要帮助请按2" in elder and "转人工请按0" in elder
    yue = opening_line(dialect="yue", proof="4821", safe_phrase=PHRASE)
    assert PHRASE in yue and spell_code("4821") in yue and "打返嚟" in yue and "请揿1" in yue
    family = opening_line(dialect="cmn", proof="4821", safe_phrase=PHRASE, family=True)  # never the elder's secret
    assert PHRASE not in family and "暗语" not in family and spell_code("4821") in family and "按1" in family
    code_only = opening_line(dialect="cmn", proof="4821")
    assert "暗语" not in code_only and spell_code("4821") in code_only and "回拨" in code_only


async def test_care_call_opening_speaks_safe_phrase_and_code_family_call_does_not(caplog):
    from assistant.fraud_guard.identity import spell_code

    caplog.set_level("DEBUG")
    asked: list[int] = []

    async def safe_phrase_of(elder_id):
        asked.append(elder_id)
        return PHRASE

    marked: list[tuple[int, str]] = []

    async def ledger_mark(entry_id, call_id):
        marked.append((entry_id, call_id))

    clock = FastClock(start=MON_0930, speed=20000)
    gw = FakeGateway(answers={"1001": ["answer"]}, clock=clock, keys={"1001": "1"})
    runner = runner_for(gw, alerts=[], ledger=[], safe_phrase_of=safe_phrase_of, ledger_mark=ledger_mark)
    result = await runner.run_care_call(CareSchedule(elder_id=7, number="1001"))
    greeting = gw.greetings["1001"]
    assert result.outcome == "well" and asked == [7]
    assert PHRASE in greeting and spell_code("4821") in greeting and "回拨" in greeting
    assert marked == [(1, "c1")]  # the answered call's ledger entry

    gw2 = FakeGateway(answers={"1001": ["no_answer"] * 3, "2001": ["answer"]}, clock=clock, keys={"2001": "1"})
    runner2 = runner_for(gw2, alerts=[], ledger=[], safe_phrase_of=safe_phrase_of, ledger_mark=ledger_mark)
    result2 = await runner2.run_care_call(CareSchedule(elder_id=7, number="1001", family=(FamilyContact(name="女儿", number="2001"),)))
    family = gw2.greetings["2001"]
    assert result2.status == "escalated_family"
    assert PHRASE not in family and "暗语" not in family and spell_code("4821") in family
    assert marked[1:] == [(4, "c4")]  # only the answered (family) call; unanswered entries stay pending for a call-back
    assert PHRASE not in caplog.text


async def test_safe_phrase_lookup_failure_falls_back_to_code_only(caplog, monkeypatch):
    from assistant.errors import StoreError
    from assistant.fraud_guard.identity import spell_code

    caplog.set_level("DEBUG")

    async def broken(elder_id):
        raise StoreError(f"database locked (phrase {PHRASE} not read)", code="store_failed")

    async def hangs(elder_id):
        await asyncio.sleep(60)
        return PHRASE

    monkeypatch.setattr("telephony.scheduler.SAFE_PHRASE_TIMEOUT_S", 0.05)
    for lookup in (broken, hangs):
        clock = FastClock(start=MON_0930, speed=20000)
        gw = FakeGateway(answers={"1001": ["answer"]}, clock=clock, keys={"1001": "1"})
        result = await runner_for(gw, alerts=[], ledger=[], safe_phrase_of=lookup).run_care_call(CareSchedule(elder_id=7, number="1001"))
        greeting = gw.greetings["1001"]
        assert result.outcome == "well"
        assert PHRASE not in greeting and "暗语" not in greeting and spell_code("4821") in greeting and "回拨" in greeting
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name == "telephony.scheduler"]
    assert len(warnings) == 2 and all("code only" in w for w in warnings)
    assert PHRASE not in caplog.text  # not even from the exception's message


async def test_ledger_marker_uses_answered_status():
    from telephony.gateway_service import ledger_marker

    calls = []

    class Ledger:
        async def mark(self, entry_id, *, status, call_id=None):
            calls.append((entry_id, status, call_id))

    await ledger_marker(Ledger())(5, "c9")
    assert calls == [(5, "answered", "c9")]


# --- a care call dialled by hand (`assistant phone call`) speaks the same proof ------------------------------
@pytest.fixture
async def platform(settings):
    import datetime as dt

    from assistant.fraud_guard.ledger import CallLedger
    from assistant.platform.db import create_engine_for
    from assistant.platform.migrate import upgrade_heads_async
    from assistant.platform.store import NewContact, PlatformStore

    await upgrade_heads_async(settings.store.database_url)
    engine = create_engine_for(settings)
    store = PlatformStore(engine=engine)
    elder = await store.create_elder(
        name="李伯", district="台山", dialect="yue", phones=["0750-550 2002"], safe_phrase=PHRASE,
        contacts=[NewContact(name="李美华", phone="13900000201", priority=1)],
    )
    ledger = CallLedger.for_engine(engine, settings=settings, clock=lambda: dt.datetime.now(dt.UTC))
    yield store, ledger, elder
    await engine.dispose()


async def test_hand_dialled_care_call_speaks_the_schedulers_full_proof(settings, platform, caplog):
    from assistant.fraud_guard.identity import spell_code
    from telephony.gateway_service import place_care_call

    caplog.set_level("DEBUG")
    store, ledger, elder = platform
    gw = FakeGateway(answers={"sip:07505502002@127.0.0.1:5999": ["answer"]}, clock=FastClock(start=MON_0930), keys={"sip:07505502002@127.0.0.1:5999": "1"}, settings=settings)
    entries = []

    def on_entry(intent, entry):
        gw.log.append(f"ledger {intent.number}")
        entries.append(entry)

    # the elder found by the number (a sip: URI's user part), as `assistant phone call sip:...` does
    result = await place_care_call(gateway=gw, store=store, ledger=ledger, settings=settings, number="sip:07505502002@127.0.0.1:5999", on_entry=on_entry, after_outcome_s=0)
    greeting = gw.greetings["sip:07505502002@127.0.0.1:5999"]
    [entry] = entries
    assert result.elder_id == elder.elder_id and result.outcome == "well"
    assert gw.log == ["ledger sip:07505502002@127.0.0.1:5999", "dial sip:07505502002@127.0.0.1:5999"]  # recorded before the dial
    assert greeting.index(PHRASE) < greeting.index(spell_code(entry.code)) < greeting.index("打返嚟")  # in the elder's dialect
    assert "揿1" in greeting and "李伯" not in greeting
    stored = await ledger.get(entry.entry_id)
    assert stored.number == "07505502002" and stored.elder_id == elder.elder_id and stored.status == "answered"
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("telephony", "assistant")))
    assert PHRASE not in ours and entry.code not in ours  # (aiosqlite's own DEBUG log prints SQL parameters)


async def test_hand_dialled_care_call_needs_an_elder_on_file(settings, platform):
    from telephony.gateway_service import place_care_call

    store, ledger, _ = platform
    gw = FakeGateway(answers={}, clock=FastClock(start=MON_0930), settings=settings)
    for kwargs in ({"number": "13811112222"}, {"number": "0750-550 2002", "elder_id": 999}):
        with pytest.raises(TelephonyError) as exc:
            await place_care_call(gateway=gw, store=store, ledger=ledger, settings=settings, **kwargs)
        assert exc.value.code == "unknown_elder"
    assert gw.dialled == [] and await ledger.current_for_number("07505502002") is None


async def test_identity_call_back_dials_the_number_on_file_with_the_full_proof(settings, platform):
    # issue #15: the caller pressed 9 on an inbound call from an elder's number → we hang up and call that
    # registered number (ledger entry first); only whoever really has that line hears the proof
    import dataclasses

    from assistant.fraud_guard.identity import spell_code
    from assistant.session import CallSession
    from telephony.gateway_service import care_call_runner, identity_call_back

    store, ledger, elder = platform
    settings = dataclasses.replace(settings, fraud=dataclasses.replace(settings.fraud, callback_delay_s=0.0))
    gw = FakeGateway(answers={"07505502002": ["answer"]}, clock=FastClock(start=MON_0930), keys={"07505502002": "1"},
                     settings=settings)
    entries = []
    runner = care_call_runner(gateway=gw, store=store, ledger=ledger, after_outcome_s=0,
                              on_entry=lambda intent, entry: (gw.log.append(f"ledger {intent.purpose}"), entries.append(entry)))
    call_back = identity_call_back(runner=runner, store=store, settings=settings)
    session = CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, caller_number="0750 5502002",
                          callback_requested=True)
    await call_back(session)
    [entry] = entries
    assert gw.log == ["ledger identity_callback", "dial 07505502002"]  # recorded before the dial
    greeting = gw.greetings["07505502002"]
    assert PHRASE in greeting and spell_code(entry.code) in greeting and "回电" in greeting
    assert (await ledger.get(entry.entry_id)).status == "answered"
    # a number that is not the elder's: no call
    stranger = CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, caller_number="13811112222")
    with pytest.raises(TelephonyError):
        await call_back(stranger)
    assert gw.log == ["ledger identity_callback", "dial 07505502002"]


async def test_identity_call_back_without_answer_alerts_an_operator(settings, platform):
    import dataclasses

    from assistant.session import CallSession
    from telephony.gateway_service import care_call_runner, identity_call_back

    store, ledger, elder = platform
    settings = dataclasses.replace(settings, fraud=dataclasses.replace(settings.fraud, callback_delay_s=0.0))
    gw = FakeGateway(answers={"07505502002": ["no_answer"]}, clock=FastClock(start=MON_0930), settings=settings)
    alerts = []

    async def on_alert(a):
        alerts.append(a)

    runner = care_call_runner(gateway=gw, store=store, ledger=ledger, on_alert=on_alert)
    await identity_call_back(runner=runner, store=store, settings=settings)(
        CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, caller_number="07505502002"))
    assert gw.log == ["dial 07505502002"] and len(gw.dialled) == 1  # one try, no retries, no family
    assert [(a.kind, a.detail["source"]) for a in alerts] == [("no_answer", "identity_callback")]
