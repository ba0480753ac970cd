"""The call engine (issue #17): care calls as ``call_jobs`` rows on SQLite and PostgreSQL.

Ticks are driven by the test on a clock that moves only when told to, with stand-in phones (no SIP): each
test says which dials are answered. Fault tests: a node killed while dialling / mid-call / during a retry
wait, the database failing for one tick, the alert store failing, two engines on one database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import OperationalError

from assistant.errors import TelephonyError
from assistant.fraud_guard.ledger import CallLedger
from assistant.platform.db import create_engine_for
from assistant.platform.store import PlatformStore
from assistant.settings import StoreSettings, load_settings
from telephony.call_jobs import CallJobStore, NewJob
from telephony.engine import CallEngine
from telephony.gateway_service import ledger_marker, ledger_recorder
from telephony.lines import LineGate, LineTicket
from telephony.scheduler import CareCallRunner, CareSchedule, FamilyContact, TimeWindow

pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_platform"]

MON_0858 = datetime(2026, 11, 23, 8, 58)  # a Monday, two minutes before the 09:00-11:00 window


class ManualClock:
    def __init__(self, start: datetime) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t

    async def sleep(self, seconds: float) -> None:  # the test drives the ticks
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


@dataclass
class PhoneCall:
    call_id: str
    remote_number: str
    hung_up: bool = False

    async def hangup(self):
        self.hung_up = True


@dataclass
class Phones:
    """Stand-in phones: per number a list of what each dial does — "answer" (and press ``keys``), "hold"
    (answer and stay on the line until ``release``), "ring" (never answers, never returns) or an error code."""

    clock: ManualClock
    answers: dict[str, list[str]]
    keys: dict[str, str] = field(default_factory=dict)
    dialled: list[tuple[str, datetime]] = field(default_factory=list)
    calls: list[PhoneCall] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    settings: object = field(default_factory=load_settings)

    async def dial(self, number, *, timeout_s=None, line=None):
        self.dialled.append((number, self.clock.now()))
        if isinstance(line, LineTicket):  # as SipEndpoint.dial: the call counts itself from the INVITE on
            line.spend()
        what = self.answers[number].pop(0) if self.answers.get(number) else "no_answer"
        if what == "ring":
            await asyncio.Event().wait()
        if what not in ("answer", "hold"):
            raise TelephonyError(f"{number}: {what}", code=what)
        call = PhoneCall(call_id=f"c{len(self.dialled)}", remote_number=number)
        call.hold = what == "hold"
        self.calls.append(call)
        return call

    async def run_call(self, call, *, session, greeting, on_key):
        assert greeting.startswith("平安通") and "确认码" in greeting  # the identity proof first
        if call.hold:
            await self.release.wait()
        if call.remote_number in self.keys:
            await on_key(self.keys[call.remote_number])

    def numbers(self) -> list[str]:
        return [n for n, _ in self.dialled]


@dataclass
class Platform:
    url: str
    store: PlatformStore
    ledger: CallLedger
    engine: object
    elders: list[int]


@pytest.fixture
async def platform(db_url):
    engine = create_engine_for(StoreSettings(database_url=db_url, sqlite_busy_timeout_ms=5000))
    store = PlatformStore(engine=engine)
    elders = []
    for i in range(3):
        e = await store.create_elder(name=f"老人{i}", district="蓬江", phones=[f"0750-100{i}"])
        elders.append(e.elder_id)
    ledger = CallLedger(sessionmaker=__import__("sqlalchemy.ext.asyncio", fromlist=["x"]).async_sessionmaker(
        engine, expire_on_commit=False), code_validity_s=1800, clock=lambda: datetime.now(UTC), notify_family=False)
    yield Platform(url=db_url, store=store, ledger=ledger, engine=engine, elders=elders)
    await engine.dispose()


def schedules_for(elder_ids, *, family=0, windows=(TimeWindow.parse("09:00-11:00"),)):
    out = [CareSchedule(elder_id=e, number=f"10{e:02d}", windows=windows,
                        family=tuple(FamilyContact(name="家属", number=f"20{e:02d}{k}") for k in range(family)))
           for e in elder_ids]

    async def source():
        return out

    return source


def make_engine(p: Platform, phones: Phones, clock: ManualClock, schedules, *, node="a", alerts=None, lease_s=60.0,
                on_alert=None, spread_s=0.0):
    async def sink(alert):
        alerts.append(alert)

    runner = CareCallRunner(gateway=phones, ledger_record=ledger_recorder(p.ledger),
                            ledger_mark=ledger_marker(p.ledger), on_alert=on_alert or sink, clock=clock,
                            after_outcome_s=0)
    jobs = CallJobStore.for_engine(p.engine, now=clock.now)
    return CallEngine(jobs=jobs, runner=runner, schedules=schedules, clock=clock, node_id=node, tick_s=10.0,
                      lease_s=lease_s, max_calls=4, plan_every_s=300.0, spread_s=spread_s)


async def settle(*engines, busy_ok: int = 0, timeout_s: float = 10.0) -> None:
    """Until the engines' job tasks have ended (``busy_ok`` jobs may stay in progress)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    await asyncio.sleep(0.005)
    while sum(len(e._held) for e in engines) > busy_ok:
        assert asyncio.get_running_loop().time() < deadline, [e._held for e in engines]
        await asyncio.sleep(0.01)


async def state_of(engine, elder_id: int, state: str, timeout_s: float = 10.0) -> None:
    """Until the elder's newest job row is in ``state`` (a call in progress reached it)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (await engine.jobs.jobs(elder_id=elder_id))[-1].state != state:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)


async def drive(engine, tg, clock, *, seconds: float, step_s: float = 30.0, busy_ok: int = 0) -> None:
    end = clock.now() + timedelta(seconds=seconds)
    while clock.now() < end:
        await engine.tick(tg)
        await settle(engine, busy_ok=busy_ok)
        clock.advance(step_s)


@contextlib.asynccontextmanager
async def running():
    """A task group whose tasks are cancelled on exit (a killed node)."""
    tasks: set[asyncio.Task] = set()

    class Group:
        def create_task(self, coro, name=None):
            t = asyncio.create_task(coro, name=name)
            tasks.add(t)
            return t

    try:
        yield Group()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def ledger_refs(p: Platform) -> list[str]:
    from sqlalchemy import select

    from assistant.platform.models_fraud import LedgerEntry

    async with p.ledger._sessions() as s:
        return list((await s.scalars(select(LedgerEntry.call_ref).order_by(LedgerEntry.id))).all())


# --- the state machine ---------------------------------------------------------------------------------
async def test_no_answer_retries_then_family_then_operator_as_rows(platform):
    p = platform
    clock = ManualClock(MON_0858)
    e = p.elders[0]
    phones = Phones(clock=clock, answers={f"10{e:02d}": ["no_answer", "busy", "no_answer"], f"20{e:02d}0": ["no_answer"]})
    alerts = []
    engine = make_engine(p, phones, clock, schedules_for([e], family=1), alerts=alerts)
    async with running() as tg:
        await drive(engine, tg, clock, seconds=3600)
    assert phones.numbers() == [f"10{e:02d}"] * 3 + [f"20{e:02d}0"]
    times = [t for _, t in phones.dialled]
    assert times[0] == datetime(2026, 11, 23, 9, 0)
    assert [(b - a).total_seconds() for a, b in zip(times, times[1:3], strict=False)] == [900.0, 900.0]
    rows = await engine.jobs.jobs(elder_id=e)
    assert [(r.job_key.split(":")[-1], r.state) for r in rows] == [
        ("a1", "no_answer"), ("a2", "busy"), ("a3", "no_answer"), ("f1", "no_answer"), ("alert", "done")]
    assert [a.kind for a in alerts] == ["no_answer"]
    assert alerts[0].detail["attempts"] == ["no_answer", "busy", "no_answer", "no_answer"]
    # one ledger entry (one code) per dialled job, written before its dial
    assert await ledger_refs(p) == [f"job:{r.job_key}" for r in rows[:4]]
    assert all(r.ledger_entry_id is not None for r in rows[:4])


async def test_answered_unwell_raises_alert_and_each_elder_is_called_once_a_day(platform):
    p = platform
    clock = ManualClock(MON_0858)
    a, b = p.elders[:2]
    phones = Phones(clock=clock, answers={f"10{a:02d}": ["answer"] * 3, f"10{b:02d}": ["answer"] * 3},
                    keys={f"10{a:02d}": "2", f"10{b:02d}": "1"})
    alerts = []
    engine = make_engine(p, phones, clock, schedules_for([a, b]), alerts=alerts)
    async with running() as tg:
        await drive(engine, tg, clock, seconds=3 * 3600, step_s=60)
    assert sorted(phones.numbers()) == [f"10{a:02d}", f"10{b:02d}"]
    assert [(x.kind, x.elder_id, x.detail["outcome"]) for x in alerts] == [("unwell", a, "unwell")]
    rows = {r.elder_id: r for r in await engine.jobs.jobs() if r.kind == "care_call" and "2026-11-23" in r.chain}
    assert {r.chain for r in await engine.jobs.jobs() if "2026-11-24" in r.chain} == {f"care:{a}:2026-11-24", f"care:{b}:2026-11-24"}
    assert rows[a].outcome == "unwell" and rows[b].outcome == "well" and rows[b].state == "done"


# --- restarts ------------------------------------------------------------------------------------------
async def test_node_killed_while_dialling_is_resolved_without_a_second_dial(platform):
    p = platform
    clock = ManualClock(MON_0858)
    e = p.elders[0]
    phones = Phones(clock=clock, answers={f"10{e:02d}": ["ring", "answer"]}, keys={f"10{e:02d}": "1"})
    a = make_engine(p, phones, clock, schedules_for([e]), node="a")
    async with running() as tg:  # node a dials at 09:00; the INVITE is out when the node dies
        await drive(a, tg, clock, seconds=150, busy_ok=1)
        await state_of(a, e, "dialling")
    [job] = await a.jobs.jobs(elder_id=e)
    assert job.state == "dialling" and job.ledger_entry_id is not None and phones.numbers() == [f"10{e:02d}"]
    b = make_engine(p, phones, clock, schedules_for([e]), node="b")
    async with running() as tg:  # node b: the lease runs out after 60 s; the dial is not repeated blindly
        await drive(b, tg, clock, seconds=600)
        assert phones.numbers() == [f"10{e:02d}"]
        rows = await b.jobs.jobs(elder_id=e)
        assert [(r.attempt, r.state, r.result) for r in rows] == [(1, "no_answer", "lost_in_dialling"), (2, "planned", None)]
        assert (rows[1].not_before - rows[0].finished_at).total_seconds() == 900  # the usual retry wait
        await drive(b, tg, clock, seconds=900)
    assert phones.numbers() == [f"10{e:02d}"] * 2
    assert [(r.attempt, r.state, r.outcome) for r in await b.jobs.jobs(elder_id=e)] == [
        (1, "no_answer", None), (2, "done", "well")]
    assert len(await ledger_refs(p)) == 2


async def test_node_killed_mid_call_tells_an_operator_and_does_not_call_again(platform):
    p = platform
    clock = ManualClock(MON_0858)
    e = p.elders[0]
    phones = Phones(clock=clock, answers={f"10{e:02d}": ["hold", "answer"]})
    alerts = []
    a = make_engine(p, phones, clock, schedules_for([e]), node="a", alerts=alerts)
    async with running() as tg:
        await drive(a, tg, clock, seconds=150, busy_ok=1)
        await state_of(a, e, "answered")
    [job] = await a.jobs.jobs(elder_id=e)
    assert job.state == "answered" and job.call_id == "c1"
    b = make_engine(p, phones, clock, schedules_for([e]), node="b", alerts=alerts)
    async with running() as tg:
        await drive(b, tg, clock, seconds=2 * 3600, step_s=60)
    assert phones.numbers() == [f"10{e:02d}"]  # the day's call happened: no second call
    rows = await b.jobs.jobs(elder_id=e)
    assert [(r.kind, r.state, r.result) for r in rows] == [("care_call", "done", "interrupted"), ("alert", "done", "alerted")]
    assert [(x.kind, x.detail["reason"], x.call_id) for x in alerts] == [("human", "interrupted", "c1")]


async def test_restart_during_retry_wait_keeps_the_retry_and_the_escalation(platform):
    p = platform
    clock = ManualClock(MON_0858)
    e = p.elders[0]
    phones = Phones(clock=clock, answers={f"10{e:02d}": ["no_answer"] * 3})
    alerts = []
    a = make_engine(p, phones, clock, schedules_for([e]), node="a", alerts=alerts)
    async with running() as tg:
        await drive(a, tg, clock, seconds=300)  # 09:00 no answer; retry planned for 09:15
    assert a._held == {}  # waiting for the retry holds no line
    b = make_engine(p, phones, clock, schedules_for([e]), node="a", alerts=alerts)  # the same node, restarted
    async with running() as tg:
        await drive(b, tg, clock, seconds=3600)
    times = [t.time().isoformat() for _, t in phones.dialled]
    assert times == ["09:00:00", "09:15:00", "09:30:00"]
    assert [x.kind for x in alerts] == ["no_answer"]  # not lost by the restart


# --- faults --------------------------------------------------------------------------------------------
class FlakySessions:
    """A sessionmaker that raises OperationalError while ``down`` (the database stopped)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.down = False
        self.refused = 0

    def __call__(self):
        if self.down:
            self.refused += 1
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("database stopped"))
        return self.inner()


async def test_database_down_for_a_tick_inside_a_window(platform, caplog):
    p = platform
    clock = ManualClock(MON_0858)
    a, b = p.elders[:2]
    phones = Phones(clock=clock, answers={f"10{a:02d}": ["hold"], f"10{b:02d}": ["answer"]},
                    keys={f"10{a:02d}": "1", f"10{b:02d}": "1"})
    engine = make_engine(p, phones, clock, schedules_for([a]))
    flaky = FlakySessions(engine.jobs._sessions)
    engine.jobs._sessions = flaky
    async with running() as tg:
        await drive(engine, tg, clock, seconds=150, busy_ok=1)  # elder a is on the line
        await state_of(engine, a, "answered")
        assert len(engine._held) == 1
        flaky.down = True
        phones.release.set()  # the call ends while the database is away: its end cannot be written
        await engine.tick(tg)
        await settle(engine, busy_ok=1)
        assert flaky.refused >= 2 and engine.stats.errors >= 2
        assert not phones.calls[0].hung_up  # the engine's error did not end the call early
        engine.schedules = schedules_for([a, b])
        engine._last_plan = None
        flaky.down = False
        await drive(engine, tg, clock, seconds=600)
    rows = {r.elder_id: r for r in await engine.jobs.jobs()}
    assert rows[a].state == "done" and rows[a].outcome == "well"  # written on the next good tick
    assert rows[b].state == "done" and sorted(phones.numbers()) == sorted([f"10{a:02d}", f"10{b:02d}"])
    assert "failed" in caplog.text and "call_jobs" in caplog.text


async def test_alert_store_down_keeps_the_alert_until_it_is_stored(platform):
    p = platform
    clock = ManualClock(MON_0858)
    e = p.elders[0]
    phones = Phones(clock=clock, answers={f"10{e:02d}": ["answer"]}, keys={f"10{e:02d}": "0"})
    stored, refusals = [], []

    async def sink(alert):
        if len(refusals) < 2:
            refusals.append(alert)
            raise OperationalError("INSERT", {}, ConnectionRefusedError("alerts table locked"))
        stored.append(alert)

    engine = make_engine(p, phones, clock, schedules_for([e]), on_alert=sink)
    async with running() as tg:
        await drive(engine, tg, clock, seconds=600)
    assert len(refusals) == 2 and [(x.kind, x.detail["outcome"]) for x in stored] == [("human", "wants_person")]


async def test_two_engines_share_one_database_without_double_dials(platform):
    p = platform
    more = []
    for i in range(9):
        more.append((await p.store.create_elder(name=f"新{i}", district="江海", phones=[f"0750-200{i}"])).elder_id)
    elders = p.elders + more
    clock = ManualClock(MON_0858)
    answers = {}
    for k, e in enumerate(elders):  # a third answer, a third never answer, a third answer the second retry
        answers[f"10{e:02d}"] = ["answer"] if k % 3 == 0 else ["no_answer"] * 3 if k % 3 == 1 else ["busy", "answer"]
    phones = Phones(clock=clock, answers=answers, keys={f"10{e:02d}": "1" for e in elders})
    alerts = []
    sched = schedules_for(elders, family=1)
    a = make_engine(p, phones, clock, sched, node="a", alerts=alerts)
    b = make_engine(p, phones, clock, sched, node="b", alerts=alerts)
    async with running() as tga, running() as tgb:
        end = clock.now() + timedelta(hours=2)
        while clock.now() < end:
            await asyncio.gather(a.tick(tga), b.tick(tgb))
            await settle(a, b)
            clock.advance(30)
    dials = phones.numbers()
    expected = sum(1 if k % 3 == 0 else 4 if k % 3 == 1 else 2 for k in range(len(elders)))
    assert len(dials) == expected
    rows = await a.jobs.jobs()
    assert all(r.claims == 1 for r in rows)  # every job was taken once
    assert len({r.job_key for r in rows}) == len(rows)
    assert sorted(x.elder_id for x in alerts) == sorted(e for k, e in enumerate(elders) if k % 3 == 1)
    assert a.stats.claimed > 0 and b.stats.claimed > 0  # both did work
    refs = await ledger_refs(p)
    assert len(refs) == len(set(refs)) == expected


async def test_concurrent_claims_never_take_more_than_their_limit(platform):
    """A node claims at most its free lines, however many other nodes claim at the same moment (on PostgreSQL
    a plain ``IN (SELECT … LIMIT 4 FOR UPDATE SKIP LOCKED)`` let one claim take 12 rows)."""
    p = platform
    now = datetime(2026, 11, 23, 9, 0)
    jobs = CallJobStore.for_engine(p.engine, now=lambda: now)
    await jobs.plan([NewJob(job_key=f"c{i}:a1", chain=f"c{i}", kind="care_call", elder_id=p.elders[i % 3],
                            number=f"10{i:02d}", not_before=now - timedelta(minutes=1)) for i in range(40)])
    taken: list[int] = []
    for _round in range(4):
        got = await asyncio.gather(*(jobs.claim(f"n{k}", limit=3, lease_s=60) for k in range(5)))
        assert all(len(g) <= 3 for g in got), [len(g) for g in got]
        taken += [j.id for g in got for j in g]
    assert len(taken) == len(set(taken)) == 40  # 4 rounds × 5 nodes × 3 lines ≥ 40: all taken, each once
    assert all(r.claims == 1 for r in await jobs.jobs())


def test_engine_refuses_a_lease_shorter_than_two_ticks():
    with pytest.raises(ValueError):
        CallEngine(jobs=None, runner=dataclasses.make_dataclass("R", [("retry", object)])(None), schedules=None,
                   clock=ManualClock(MON_0858), node_id="x", tick_s=10, lease_s=15, max_calls=1)


# --- /metrics --------------------------------------------------------------------------------------------
async def test_metrics_show_queue_lag_and_steps_per_district(platform):
    from telephony.metrics import render

    p = platform
    clock = ManualClock(MON_0858)
    a, b = p.elders[:2]
    phones = Phones(clock=clock, answers={f"10{a:02d}": ["no_answer"], f"10{b:02d}": ["answer"]}, keys={f"10{b:02d}": "1"})
    engine = make_engine(p, phones, clock, schedules_for([a, b]))
    async with running() as tg:
        await drive(engine, tg, clock, seconds=150)  # a: no answer (retry planned at 09:15); b: answers
    clock.advance(20 * 60)  # 09:21: the retry has waited 6 minutes, nobody claimed it
    text = await render(engine.jobs)
    assert 'assistant_call_jobs{state="planned"} 1' in text
    assert "assistant_call_jobs_due 1" in text
    lag = float(next(line for line in text.splitlines() if line.startswith("assistant_call_engine_lag_seconds")).split()[1])
    assert lag == pytest.approx(6 * 60 - 30, abs=60)
    assert 'assistant_call_steps_24h{district="蓬江",kind="care_call",state="no_answer"} 1' in text
    assert 'assistant_call_steps_24h{district="蓬江",kind="care_call",state="done"} 1' in text


async def test_metrics_need_the_service_token(settings):
    from aiohttp.test_utils import TestClient, TestServer

    from assistant.platform.api import create_app, service_token
    from telephony.metrics import setup_metrics

    app = create_app(settings)
    setup_metrics(app)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/metrics")).status == 401
        ok = await client.get("/metrics", headers={"Authorization": f"Bearer {service_token(settings)}"})
        assert ok.status == 200 and "assistant_call_jobs_due 0" in await ok.text()


async def test_dials_take_successive_slots_of_the_trunk_rate():
    class Recording(ManualClock):
        def __init__(self, start):
            super().__init__(start)
            self.slept = []

        async def sleep(self, seconds):
            self.slept.append(seconds)
            await asyncio.sleep(0)

    clock = Recording(MON_0858)
    runner = dataclasses.make_dataclass("R", [("retry", object)])(None)
    engine = CallEngine(jobs=None, runner=runner, schedules=None, clock=clock, node_id="x", tick_s=5, lease_s=60,
                        max_calls=4, dials_per_s=0.5)
    await asyncio.gather(*(engine._wait_for_trunk() for _ in range(3)))
    assert clock.slept == [2.0, 4.0]  # the first dial at once, then one every 2 s, waiting side by side


async def test_aware_clock_and_the_elders_time_zone(platform):
    # serve's clock is aware; the store's schedules carry the elder's zone (09:00 in Shanghai = 01:00 UTC)
    p = platform
    clock = ManualClock(datetime(2026, 11, 23, 0, 58, tzinfo=UTC))
    e = p.elders[0]
    phones = Phones(clock=clock, answers={f"10{e:02d}": ["no_answer", "answer"]}, keys={f"10{e:02d}": "1"})
    base = (await schedules_for([e])())[0]
    zoned = dataclasses.replace(base, timezone="Asia/Shanghai")

    async def source():
        return [zoned]

    engine = make_engine(p, phones, clock, source)
    async with running() as tg:
        await drive(engine, tg, clock, seconds=1800)
    assert [t for _, t in phones.dialled] == [datetime(2026, 11, 23, 1, 0, tzinfo=UTC), datetime(2026, 11, 23, 1, 15, tzinfo=UTC)]
    rows = await engine.jobs.jobs(elder_id=e)
    assert rows[0].chain == f"care:{e}:2026-11-23" and rows[0].deadline == datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


async def test_spread_plans_a_windows_calls_over_its_first_part(platform):
    p = platform
    clock = ManualClock(MON_0858)
    phones = Phones(clock=clock, answers={})
    engine = make_engine(p, phones, clock, schedules_for(p.elders), spread_s=1800)
    await engine._plan()
    starts = sorted(r.not_before.replace(tzinfo=None) for r in await engine.jobs.jobs())
    assert len(set(starts)) == 3 and all(datetime(2026, 11, 23, 9) <= t < datetime(2026, 11, 23, 9, 30) for t in starts)
    again = make_engine(p, phones, clock, schedules_for(p.elders), spread_s=1800)  # another node: same rows
    await again._plan()
    assert sorted(r.not_before.replace(tzinfo=None) for r in await engine.jobs.jobs()) == starts


async def test_a_hung_store_step_is_given_up_and_the_next_tick_goes_on(platform, caplog):
    p = platform
    clock = ManualClock(MON_0858)
    e = p.elders[0]
    phones = Phones(clock=clock, answers={f"10{e:02d}": ["answer"]}, keys={f"10{e:02d}": "1"})
    engine = make_engine(p, phones, clock, schedules_for([e]))
    engine.step_timeout_s = 0.2
    claim = engine.jobs.claim
    hung = asyncio.Event()

    async def hangs_once(*args, **kwargs):
        if not hung.is_set():
            hung.set()
            await asyncio.Event().wait()  # a connection that never answers
        return await claim(*args, **kwargs)

    engine.jobs.claim = hangs_once
    async with running() as tg:
        await drive(engine, tg, clock, seconds=300)
    assert hung.is_set() and engine.stats.errors >= 1 and "claim failed" in caplog.text
    assert phones.numbers() == [f"10{e:02d}"]


# --- line capacity (issue #17 item 2) ---------------------------------------------------------------------
def test_a_nodes_line_limit_is_the_smallest_of_setting_measured_capacity_and_lines_less_the_inbound_reserve():
    runner = dataclasses.make_dataclass("R", [("retry", object)])(None)

    def engine(**kw):
        return CallEngine(jobs=None, runner=runner, schedules=None, clock=ManualClock(MON_0858), node_id="x", tick_s=5,
                          lease_s=60, **kw)

    assert engine(max_calls=8).max_calls == 8  # no gateway limit known (bench, tests)
    assert engine(max_calls=8, lines=12, measured_calls=6, inbound_reserve=2).max_calls == 6  # the CPU's
    assert engine(max_calls=8, lines=8, measured_calls=0, inbound_reserve=3).max_calls == 5  # the lines' less reserve
    assert engine(max_calls=8, lines=12, measured_calls=8, inbound_reserve=2).max_calls == 8  # the settings' default
    with pytest.raises(ValueError):
        engine(max_calls=8, lines=2, inbound_reserve=2)  # nothing left for the engine
    # serve's wiring: the gateway's 12 lines, 8 measured calls, 2 lines kept for inbound calls
    served = CallEngine.from_settings(settings=load_settings(), jobs=None, runner=runner, schedules=None,
                                      clock=ManualClock(MON_0858), node_id="x",
                                      line_gate=LineGate(lines=12, inbound_reserve=2, calls=lambda: 0))
    assert (served.max_calls, served.cpu_calls, served.line_calls) == (8, 8, 10) and served.free_lines() == 8


async def test_outbound_calls_leave_the_cpu_and_the_reserved_lines_to_inbound_calls(platform):
    """A node that serves 8 calls (measured) of 12 gateway lines, 2 kept for inbound: with no inbound call it
    dials 8; with 5 inbound calls on the gateway it dials only 3 (8 − 5: the CPU is shared); with 11 on the
    lines none (12 − 2 reserved − 11 < 0) — an elder's next call still finds a line."""
    p = platform
    clock = ManualClock(MON_0858)
    elders = [(await p.store.create_elder(name=f"甲{i}", district="蓬江", phones=[f"0750-20{i:02d}"])).elder_id
              for i in range(10)]
    phones = Phones(clock=clock, answers={f"10{e:02d}": ["hold"] for e in elders})
    inbound = {"n": 0}
    engine = make_engine(p, phones, clock, schedules_for(elders))
    gate = LineGate(lines=12, inbound_reserve=2, calls=lambda: inbound["n"] + sum(not c.hung_up for c in phones.calls))
    engine = CallEngine(jobs=engine.jobs, runner=engine.runner, schedules=engine.schedules, clock=clock, node_id="a",
                        tick_s=10.0, lease_s=60.0, max_calls=8, lines=12, measured_calls=8, inbound_reserve=2,
                        line_gate=gate)
    clock.advance(120)  # 09:00
    async with running() as tg:
        await engine.tick(tg)
        for _ in range(500):
            if len(phones.calls) == 8:
                break
            await asyncio.sleep(0.01)
        assert len(phones.dialled) == 8 and engine.free_lines() == 0, engine.stats
    phones.dialled.clear()
    phones.calls.clear()
    engine._held.clear()
    engine._dialled.clear()
    engine._tickets.clear()
    inbound["n"] = 5
    assert engine.free_lines() == 3
    inbound["n"] = 11
    assert engine.free_lines() == 0
    inbound["n"] = 0
    assert engine.free_lines() == 8


async def test_capacity_counts_live_nodes_and_measures_the_holding_time(platform):
    from telephony import capacity
    from telephony.models import CallJob

    p = platform
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    jobs = CallJobStore.for_engine(p.engine, now=lambda: now)
    cap = await capacity.measure(jobs, default_hold_s=60.0)
    assert (cap.nodes, cap.calls_per_hour) == (0, 0) and cap.seconds_for(10) is None
    await capacity.beat(jobs, capacity.NodeBeat(node_id="a", lines=8, dials_per_s=2.0, tick_s=5.0, lease_s=60.0))
    await capacity.beat(jobs, capacity.NodeBeat(node_id="b", lines=8, dials_per_s=0.05, tick_s=5.0, lease_s=60.0))
    later = now
    stale = CallJobStore.for_engine(p.engine, now=lambda: later - timedelta(minutes=5))
    await capacity.beat(stale, capacity.NodeBeat(node_id="dead", lines=40, dials_per_s=2.0, tick_s=5.0, lease_s=60.0))
    cap = await capacity.measure(jobs, default_hold_s=60.0)
    # a: 8 lines × 60 calls/h at the default 60-s hold = 480; b: its trunk, 0.05/s = 180; "dead" not counted
    assert (cap.nodes, cap.lines, cap.measured_calls) == (2, 16, 0) and cap.calls_per_hour == pytest.approx(660)
    # 30 calls finished in the last hour, each holding its line 120 s (24 answered, 6 not): measured, not default
    async with p.engine.begin() as conn:
        await conn.execute(CallJob.__table__.insert(), [
            {"job_key": f"m{i}:a1", "chain": f"m{i}", "kind": "care_call", "elder_id": 1, "number": "1", "attempt": 1,
             "state": "no_answer" if i < 6 else "done", "not_before": now, "claims": 1, "detail": {},
             "created_at": now, "claimed_at": now - timedelta(seconds=600), "dialled_at": now - timedelta(seconds=590),
             "finished_at": now - timedelta(seconds=480)} for i in range(30)])
    cap = await capacity.measure(jobs, default_hold_s=60.0)
    assert cap.measured_calls == 30 and cap.hold_s == pytest.approx(120) and cap.unanswered_share == pytest.approx(0.2)
    assert cap.calls_per_hour == pytest.approx(240 + 180)
    next_morning = CallJobStore.for_engine(p.engine, now=lambda: now + timedelta(hours=20))  # no call since: last week's
    assert (await capacity.measure(next_morning, default_hold_s=60.0)).hold_s == pytest.approx(120)
    from telephony.metrics import render

    text = await render(jobs)
    assert "assistant_call_engine_nodes 2" in text and "assistant_call_engine_capacity_calls_per_hour 420" in text
    assert "assistant_call_engine_hold_seconds 120" in text and "assistant_call_engine_lines 16" in text


async def test_a_broadcasts_expected_time_counts_quiet_hours_the_queue_and_the_retries(platform):
    from telephony import capacity
    from telephony.broadcasts import Broadcast, plan_warning

    p = platform
    at = datetime(2026, 11, 23, 7, 0)  # in quiet hours (21:00-08:00): every row is due at 08:00
    jobs = CallJobStore.for_engine(p.engine, now=lambda: at)
    await capacity.beat(jobs, capacity.NodeBeat(node_id="a", lines=10, dials_per_s=2.0, tick_s=5.0, lease_s=60.0))
    schedules = [CareSchedule(elder_id=e, number=f"10{e:03d}") for e in range(1, 301)]
    await plan_warning(jobs, Broadcast(broadcast_id="t1", kind="typhoon"), schedules, now=at)
    cap = await capacity.measure(jobs, default_hold_s=60.0)  # 10 lines × 60/h = 600 calls/h
    eta = await capacity.broadcast_eta(jobs, "t1", cap, retry_delays_s=(900.0, 900.0))
    # 3600 s until 08:00 + a tick (5 s) + 300 first tries at 600/h (1800 s) + 2 rounds of max(900 + 5 (a tick)
    # + 60, 60 retries → 360 s) + 60
    assert eta["capacity_calls_per_h"] == 600 and eta["expected_calls"] == 420
    assert eta["expected_done_s"] == 3600 + 5 + 1800 + 2 * 965 + 60
    await plan_warning(jobs, Broadcast(broadcast_id="t2", kind="heat"), schedules, now=at)  # queued behind t1
    eta2 = await capacity.broadcast_eta(jobs, "t2", cap, retry_delays_s=(900.0, 900.0))
    assert eta2["expected_done_s"] == eta["expected_done_s"] + 1800


async def test_a_broadcast_under_way_is_estimated_on_what_is_left(platform):
    """Asked while the broadcast is being sent (the console asks every time it shows it), the estimate counts
    the tries left at their stage and the retry rounds still ahead — not the whole broadcast again from now,
    which would move the expected finish later and later. Another broadcast whose id matches a LIKE pattern
    (``a_1`` / ``ab1``) and the need-help alert rows of the same chains are not this broadcast's elders."""
    from sqlalchemy import insert, update

    from telephony import capacity
    from telephony.broadcasts import Broadcast, broadcasts_under_way, plan_warning
    from telephony.models import CallJob

    p = platform
    at = datetime(2026, 11, 23, 7, 0)
    jobs = CallJobStore.for_engine(p.engine, now=lambda: at)
    await capacity.beat(jobs, capacity.NodeBeat(node_id="a", lines=10, dials_per_s=2.0, tick_s=5.0, lease_s=3 * 3600.0))  # live all morning
    schedules = [CareSchedule(elder_id=e, number=f"10{e:03d}") for e in range(1, 301)]
    await plan_warning(jobs, Broadcast(broadcast_id="a_1", kind="typhoon"), schedules, now=at)
    delays = (900.0, 900.0)
    before = await capacity.broadcast_eta(jobs, "a_1", await capacity.measure(jobs, default_hold_s=60.0),
                                         retry_delays_s=delays)
    assert before["expected_done_s"] == 3600 + 5 + 1800 + 2 * 965 + 60  # as planned (the test above)
    # 08:30: every first try made, 240 heard, 60 unanswered with their retries due at 08:45; one need-help alert
    # row planned on a chain of a_1; a broadcast "ab1" (which "a_1" matched as a LIKE pattern) still planned
    at = datetime(2026, 11, 23, 8, 30)
    async with p.engine.begin() as conn:
        await conn.execute(update(CallJob).where(CallJob.kind == "warning", CallJob.elder_id <= 60)
                           .values(state="no_answer", finished_at=at.replace(tzinfo=UTC)))
        await conn.execute(update(CallJob).where(CallJob.kind == "warning", CallJob.elder_id > 60)
                           .values(state="done", outcome="heard", finished_at=at.replace(tzinfo=UTC)))
        retry = datetime(2026, 11, 23, 8, 45, tzinfo=UTC)
        await conn.execute(insert(CallJob), [
            {"job_key": f"warn:a_1:{e}:a2", "chain": f"warn:a_1:{e}", "kind": "warning", "elder_id": e, "number": "1",
             "attempt": 2, "state": "planned", "not_before": retry, "created_at": retry, "detail": {}} for e in range(1, 61)]
            + [{"job_key": "warn:a_1:299:alert", "chain": "warn:a_1:299", "kind": "alert", "elder_id": 299, "number": "",
                "attempt": 1, "state": "planned", "not_before": retry, "created_at": retry, "detail": {}}]
            + [{"job_key": f"warn:ab1:{e}:a1", "chain": f"warn:ab1:{e}", "kind": "warning", "elder_id": e, "number": "1",
                "attempt": 1, "state": "planned", "not_before": retry, "created_at": retry, "detail": {}}
               for e in range(400, 500)])
    cap = await capacity.measure(jobs, default_hold_s=60.0)  # nothing measured (no dial times): 600/h, share 0.2
    eta = await capacity.broadcast_eta(jobs, "a_1", cap, retry_delays_s=delays)
    assert eta["expected_calls"] == 420  # 300 elders (not 301 with the alert row, nor 400 with ab1's)
    # the retries wait until 08:45 + a tick (905 s); they and ab1's 100 first tries queued with them go at 600/h
    # (960 s; the alert row takes no line); then the one round left: max(900 + 5 + 60, 12 calls) = 965; then the last hold (60)
    assert eta["expected_done_s"] == 905 + 960 + 965 + 60
    assert await broadcasts_under_way(jobs) == ["ab1", "a_1"]
    # 08:50: the retries are in their calls (dialling): 5 + 960 + 965 + 60 from now, earlier than at 08:30
    at = datetime(2026, 11, 23, 8, 50)
    async with p.engine.begin() as conn:
        await conn.execute(update(CallJob).where(CallJob.attempt == 2).values(state="dialling"))
    eta = await capacity.broadcast_eta(jobs, "a_1", cap, retry_delays_s=delays)
    assert eta["expected_done_s"] == 5 + 960 + 965 + 60
    # every try made (the alert row is not a try): 0 s, now
    async with p.engine.begin() as conn:
        await conn.execute(update(CallJob).where(CallJob.attempt == 2).values(state="no_answer",
                                                                               finished_at=at.replace(tzinfo=UTC)))
    done = await capacity.broadcast_eta(jobs, "a_1", cap, retry_delays_s=delays)
    assert done["expected_done_s"] == 0 and done["expected_done_at"].startswith("2026-11-23T08:50")
    assert await broadcasts_under_way(jobs) == ["ab1"]


async def test_a_windows_calls_spread_by_capacity_and_never_into_quiet_hours(platform):
    """``spread_s = SPREAD_BY_CAPACITY``: 100 elders of 09:00-11:00 on one node of 4 lines (240 calls/h at the
    default hold; 140 calls with the retries) fall due over 09:00-09:35, not all at 09:00; a window that runs into
    quiet hours (20:00-22:00, quiet from 21:00) never gets a call in them. Spread 0 keeps every elder at 09:00."""
    from telephony.engine import SPREAD_BY_CAPACITY

    p = platform
    clock = ManualClock(MON_0858)
    phones = Phones(clock=clock, answers={})
    engine = make_engine(p, phones, clock, schedules_for(range(101, 201)), spread_s=SPREAD_BY_CAPACITY, node="s")
    engine.default_hold_s = 60.0
    await engine._beat()
    await engine._plan()
    starts = sorted(r.not_before.replace(tzinfo=None) for r in await engine.jobs.jobs())
    assert len(starts) == 100 and starts[0] >= datetime(2026, 11, 23, 9)
    assert starts[-1] <= datetime(2026, 11, 23, 9, 35) and starts[-1] - starts[0] > timedelta(minutes=25)
    assert max(sum(1 for t in starts if t.replace(second=0) == m) for m in {t.replace(second=0) for t in starts}) <= 8

    evening = make_engine(p, phones, clock, schedules_for(range(301, 401), windows=(TimeWindow.parse("20:00-22:00"),)),
                          spread_s=SPREAD_BY_CAPACITY, node="s")
    evening.default_hold_s = 600.0  # a slow capacity: the span wants the whole half window (to 21:00 and beyond)
    await evening._plan()
    late = [r.not_before.replace(tzinfo=None) for r in await evening.jobs.jobs() if r.elder_id > 300]
    assert len(late) == 100 and all(datetime(2026, 11, 23, 20) <= t < datetime(2026, 11, 23, 21) for t in late)
    assert max(late) - min(late) > timedelta(minutes=30)

    flat = make_engine(p, phones, clock, schedules_for(range(501, 511)), spread_s=0.0)
    await flat._plan()
    assert {r.not_before.replace(tzinfo=None) for r in await flat.jobs.jobs() if r.elder_id > 500} == {
        datetime(2026, 11, 23, 9)}
