"""New kinds of platform call on the call engine (issue #17 item 3): warning broadcasts, SQLite and PostgreSQL.

Same stand-in phones and hand-driven clock as ``test_call_engine.py``: each test says which dials are
answered and which key the elder presses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from telephony.broadcasts import Broadcast, plan_warning, target_elders, warning_report
from tests.unit import test_call_engine
from tests.unit.test_call_engine import (
    MON_0858,
    ManualClock,
    Phones,
    drive,
    make_engine,
    running,
    schedules_for,
)

pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_platform"]
platform = test_call_engine.platform  # the fixture (SQLite and PostgreSQL)


@dataclass
class ListeningPhones(Phones):
    greetings: list[str] = field(default_factory=list)

    async def run_call(self, call, *, session, greeting, on_key):
        self.greetings.append(greeting)
        await super().run_call(call, session=session, greeting=greeting, on_key=on_key)


async def _elders(p, clock):
    """Two elders of 蓬江 (the fixture's) and one of 江海."""
    other = await p.store.create_elder(name="老人江海", district="江海", phones=["0750-2000"])
    return p.elders[0], p.elders[1], other.elder_id


async def test_typhoon_warning_heard_need_help_no_answer_and_the_report(platform):
    p = platform
    clock = ManualClock(MON_0858)
    heard, helpme, away = await _elders(p, clock)
    n = {e: f"10{e:02d}" for e in (heard, helpme, away)}
    phones = ListeningPhones(clock=clock, answers={n[heard]: ["answer"], n[helpme]: ["answer"],
                                                   n[away]: ["no_answer", "busy", "no_answer"]},
                             keys={n[heard]: "1", n[helpme]: "2"})
    alerts = []
    engine = make_engine(p, phones, clock, schedules_for([]), alerts=alerts)
    source = schedules_for([heard, helpme, away], family=1)  # family on file: a warning never calls them
    warning = Broadcast(broadcast_id="typhoon1", kind="typhoon")
    assert await plan_warning(engine.jobs, warning, await source(), now=clock.now()) == {"elders": 3, "added": 3}
    assert (await plan_warning(engine.jobs, warning, await source(), now=clock.now()))["added"] == 0  # once
    async with running() as tg:
        await drive(engine, tg, clock, seconds=3600, step_s=60)
    # no elder called twice for one job; the unanswered one tried 3 times, 15 min apart; no family dialled
    assert sorted(phones.numbers()) == sorted([n[heard], n[helpme], n[away], n[away], n[away]])
    times = [t for num, t in phones.dialled if num == n[away]]
    assert [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)] == [900.0, 900.0]
    # the identity proof, then the message and the keypad question
    assert all("台风快要来了" in g and g.endswith("听清楚了请按1，需要帮助请按2。") for g in phones.greetings)
    # need help → exactly one operator alert; heard and no answer → none
    assert [(a.kind, a.elder_id, a.detail["source"], a.detail["broadcast"]) for a in alerts] == [
        ("help", helpme, "warning", "typhoon1")]
    report = await warning_report(engine.jobs, broadcast_id="typhoon1")
    assert report == {"typhoon1": {
        "蓬江": {"planned": 2, "heard": 1, "need_help": 1, "answered": 0, "no_answer": 0, "failed": 0, "pending": 0},
        "江海": {"planned": 1, "heard": 0, "need_help": 0, "answered": 0, "no_answer": 1, "failed": 0, "pending": 0}}}
    rows = await engine.jobs.jobs(elder_id=away)
    assert [(r.kind, r.attempt, r.state) for r in rows] == [
        ("warning", 1, "no_answer"), ("warning", 2, "busy"), ("warning", 3, "no_answer")]
    from telephony.metrics import render

    text = await render(engine.jobs)
    assert 'assistant_warning_calls{broadcast="typhoon1",district="蓬江",result="need_help"} 1' in text
    assert 'assistant_warning_calls{broadcast="typhoon1",district="江海",result="no_answer"} 1' in text


async def test_warning_waits_out_quiet_hours_and_targets_districts(platform):
    p = platform
    clock = ManualClock(datetime(2026, 11, 23, 22, 30))  # inside the 21:00-08:00 quiet hours
    _, _, jianghai = await _elders(p, clock)
    phones = ListeningPhones(clock=clock, answers={f"10{jianghai:02d}": ["answer"]}, keys={f"10{jianghai:02d}": "1"})
    engine = make_engine(p, phones, clock, schedules_for([]))
    targets = await target_elders(engine.jobs, ["江海"])
    assert targets == [jianghai]
    source = schedules_for(targets)
    warning = Broadcast(broadcast_id="outage7", kind="outage", fields={"when": "明天上午"})
    await plan_warning(engine.jobs, warning, await source(), now=clock.now())
    [job] = await engine.jobs.jobs()
    assert job.not_before.replace(tzinfo=None) == datetime(2026, 11, 24, 8, 0)
    async with running() as tg:
        await drive(engine, tg, clock, seconds=10 * 3600, step_s=600)
    assert [t for _, t in phones.dialled] == [datetime(2026, 11, 24, 8, 0)]
    assert "您住的地方明天上午要停电" in phones.greetings[0]
    assert (await warning_report(engine.jobs))["outage7"]["江海"]["heard"] == 1


async def test_no_answer_retry_never_rings_into_quiet_hours(platform):
    p = platform
    clock = ManualClock(datetime(2026, 11, 23, 20, 40))  # the second try would be at 20:55, the third at 21:10
    e = p.elders[0]
    phones = ListeningPhones(clock=clock, answers={f"10{e:02d}": ["no_answer", "no_answer", "answer"]})
    alerts = []
    engine = make_engine(p, phones, clock, schedules_for([]), alerts=alerts)
    await plan_warning(engine.jobs, Broadcast(broadcast_id="heat", text="明天停水"), await schedules_for([e])(),
                       now=clock.now())
    async with running() as tg:
        await drive(engine, tg, clock, seconds=12 * 3600, step_s=300)
    assert len(phones.dialled) == 2 and alerts == []
    assert phones.greetings == []
    assert (await warning_report(engine.jobs))["heat"]["蓬江"]["no_answer"] == 1


def test_a_broadcast_has_one_message():
    from assistant.errors import TelephonyError

    with pytest.raises(TelephonyError):
        Broadcast(broadcast_id="x", kind="typhoon", text="也有文字")
    with pytest.raises(TelephonyError):
        Broadcast(broadcast_id="x", kind="flood")
    with pytest.raises(TelephonyError):
        Broadcast(broadcast_id="a:b", kind="heat")


# --- order follow-ups ----------------------------------------------------------------------------------
async def _done_order(p, elder_id: int, *, key: str, at: datetime) -> int:
    """A gas order marked done at ``at`` (engine-clock time, kept as UTC like the call engine's)."""
    from sqlalchemy import update

    from assistant.platform.models import WorkOrder
    from telephony.call_jobs import as_stored

    order = (await p.store.create_order(elder_id=elder_id, type="gas", idempotency_key=key)).order
    await p.store.update_order_status(order.order_id, "done")
    async with p.engine.begin() as conn:
        await conn.execute(update(WorkOrder).where(WorkOrder.id == order.order_id).values(done_at=as_stored(at)))
    return order.order_id


async def test_order_follow_up_asks_once_and_a_problem_reopens_the_order_with_one_alert(platform):
    from telephony.followups import OrderFollowups

    p = platform
    clock = ManualClock(MON_0858)
    fine, problem = p.elders[:2]
    # the primary phones on file are the numbers dialled
    phones = ListeningPhones(clock=clock, answers={"07501000": ["answer"], "07501001": ["answer"]},
                             keys={"07501000": "1", "07501001": "2"})
    alerts = []
    engine = make_engine(p, phones, clock, schedules_for([]), alerts=alerts)
    engine.sources = [OrderFollowups(jobs=engine.jobs, delay_s=1800, within_s=86400)]
    engine.reopen_order = p.store.reopen_order
    ok_order = await _done_order(p, fine, key="gas-fine", at=datetime(2026, 11, 23, 9, 0))
    bad_order = await _done_order(p, problem, key="gas-bad", at=datetime(2026, 11, 23, 9, 0))
    async with running() as tg:
        await drive(engine, tg, clock, seconds=2 * 3600, step_s=60)  # planning runs every 5 min: idempotent
    assert sorted(phones.numbers()) == ["07501000", "07501001"]  # each order's elder called once
    assert [t for _, t in phones.dialled] == [datetime(2026, 11, 23, 9, 30)] * 2  # delay_s after done
    assert all("煤气送到了吗" in g and g.endswith("没问题请按1，有问题请按2。") for g in phones.greetings)
    rows = [r for r in await engine.jobs.jobs() if r.kind == "order_followup"]
    assert sorted((r.elder_id, r.state, r.outcome) for r in rows) == [(fine, "done", "heard"), (problem, "done", "need_help")]
    assert [(a.kind, a.elder_id, a.detail["order_id"]) for a in alerts] == [("order_problem", problem, bad_order)]
    assert (await p.store.get_order(ok_order)).status == "done"
    reopened = await p.store.get_order(bad_order)
    assert reopened.status == "dispatched" and reopened.done_at is None
    assert [r["reason"] for r in reopened.details["reopened"]] == ["follow_up_problem"]
    # a retried alert reopens nothing twice
    again = await p.store.reopen_order(bad_order, reason="follow_up_problem")
    assert len(again.details["reopened"]) == 1


async def test_a_failed_reopen_keeps_the_alert_until_both_are_done(platform):
    from telephony.followups import OrderFollowups

    p = platform
    clock = ManualClock(MON_0858)
    e = p.elders[0]
    phones = ListeningPhones(clock=clock, answers={"07501000": ["answer"]}, keys={"07501000": "2"})
    alerts = []
    engine = make_engine(p, phones, clock, schedules_for([]), alerts=alerts)
    engine.sources = [OrderFollowups(jobs=engine.jobs, delay_s=0, within_s=86400)]
    failures = [RuntimeError("store down")]

    async def flaky_reopen(order_id, **kw):
        if failures:
            raise failures.pop()
        return await p.store.reopen_order(order_id, **kw)

    engine.reopen_order = flaky_reopen
    order = await _done_order(p, e, key="gas-x", at=datetime(2026, 11, 23, 9, 0))
    async with running() as tg:
        await drive(engine, tg, clock, seconds=600, step_s=60)
    assert len(phones.dialled) == 1 and len(alerts) == 1
    assert (await p.store.get_order(order)).status == "dispatched"


# --- the API -------------------------------------------------------------------------------------------
async def test_warning_api_plans_once_per_elder_and_reports(settings):
    from aiohttp.test_utils import TestClient, TestServer

    from assistant.platform.api import create_app, service_token
    from assistant.services import SERVICES_KEY
    from telephony.warn_api import setup_warning_api

    app = create_app(settings)
    setup_warning_api(app)
    auth = {"Authorization": f"Bearer {service_token(settings)}"}
    async with TestClient(TestServer(app)) as client:
        store = app[SERVICES_KEY].store
        await store.create_elder(name="甲", district="蓬江", phones=["0750-3001"])
        await store.create_elder(name="乙", district="江海", phones=["0750-3002"])
        body = {"broadcast_id": "heat9", "kind": "heat", "districts": ["蓬江"]}
        assert (await client.post("/api/warnings", json=body)).status == 401
        first = await client.post("/api/warnings", json=body, headers=auth)
        answer = await first.json()
        assert first.status == 201 and answer == {"broadcast": "heat9", "elders": 1, "added": 1,
                                                  "capacity_calls_per_h": 0, "nodes": 0, "expected_calls": 1,
                                                  "expected_done_s": None, "expected_done_at": None}  # no engine yet
        again = await client.post("/api/warnings", json=body, headers=auth)
        assert (await again.json())["added"] == 0
        from telephony.call_jobs import CallJobStore
        from telephony.capacity import NodeBeat, beat

        jobs = CallJobStore.for_engine(store.engine, now=lambda: datetime.now(UTC))
        await beat(jobs, NodeBeat(node_id="n1", lines=8, dials_per_s=2.0, tick_s=5.0, lease_s=60.0))
        eta = await (await client.post("/api/warnings", json={**body, "broadcast_id": "heat10"}, headers=auth)).json()
        # one node of 8 lines at the default 90-s holding time: 320 calls/h; the two 15-min retries at least
        assert eta["nodes"] == 1 and eta["capacity_calls_per_h"] == 320 and eta["expected_done_s"] >= 1800
        bad = await client.post("/api/warnings", json={"kind": "outage"}, headers=auth)  # needs its "when"
        assert bad.status == 400 and (await bad.json())["error"]["code"] == "invalid"
        report = await client.get("/api/warnings/heat9", headers=auth)
        assert (await report.json()) == {"蓬江": {"planned": 1, "heard": 0, "need_help": 0, "answered": 0,
                                                 "no_answer": 0, "failed": 0, "pending": 1}}
        assert (await client.get("/api/warnings/nope", headers=auth)).status == 404


async def test_two_nodes_share_a_broadcast_without_calling_anyone_twice(platform):
    import asyncio
    from datetime import timedelta

    from tests.unit.test_call_engine import ledger_refs, settle

    p = platform
    elders = list(p.elders)
    for i in range(9):
        elders.append((await p.store.create_elder(name=f"新{i}", district="江海", phones=[f"0750-400{i}"])).elder_id)
    clock = ManualClock(MON_0858)
    answers = {f"10{e:02d}": ["answer"] if k % 3 == 0 else ["no_answer"] * 3 if k % 3 == 1 else ["busy", "answer"]
               for k, e in enumerate(elders)}
    keys = {f"10{e:02d}": "2" if k % 3 == 2 else "1" for k, e in enumerate(elders)}
    phones = ListeningPhones(clock=clock, answers=answers, keys=keys)
    alerts = []
    a = make_engine(p, phones, clock, schedules_for([]), node="a", alerts=alerts)
    b = make_engine(p, phones, clock, schedules_for([]), node="b", alerts=alerts)
    source = await schedules_for(elders, family=1)()
    warning = Broadcast(broadcast_id="t2", kind="typhoon")
    await asyncio.gather(plan_warning(a.jobs, warning, source, now=clock.now()),
                         plan_warning(b.jobs, warning, source, now=clock.now()))  # both nodes send it
    async with running() as tga, running() as tgb:
        end = clock.now() + timedelta(hours=1)
        while clock.now() < end:
            await asyncio.gather(a.tick(tga), b.tick(tgb))
            await settle(a, b)
            clock.advance(30)
    expected = sum(1 if k % 3 == 0 else 3 if k % 3 == 1 else 2 for k in range(len(elders)))
    assert len(phones.dialled) == expected  # 12 elders: 4 × 1 + 4 × 3 + 4 × 2 dials, no family
    rows = await a.jobs.jobs()
    assert all(r.claims == 1 for r in rows) and a.stats.claimed > 0 and b.stats.claimed > 0
    refs = await ledger_refs(p)
    assert len(refs) == len(set(refs)) == expected  # one ledger entry (one code) per dial
    assert sorted(x.elder_id for x in alerts) == sorted(e for k, e in enumerate(elders) if k % 3 == 2)
    totals = {r: sum(d[r] for d in (await warning_report(a.jobs))["t2"].values()) for r in ("planned", "heard",
                                                                                                "need_help", "no_answer")}
    assert totals == {"planned": 12, "heard": 4, "need_help": 4, "no_answer": 4}


# --- medication reminders ------------------------------------------------------------------------------
async def test_medication_reminder_taken_missed_goes_to_the_family_each_once(platform):
    from assistant.platform.store.records import NewContact
    from telephony.medication import MedicationReminders, add_plan

    p = platform
    clock = ManualClock(datetime(2026, 11, 23, 7, 58))
    taker, misser = p.elders[:2]
    await p.store.add_contact(misser, NewContact(name="女儿", phone="0750-9001", priority=1))
    await p.store.add_contact(misser, NewContact(name="儿子", phone="0750-9002", priority=2))
    phones = ListeningPhones(clock=clock, answers={"07501000": ["answer"], "07501001": ["no_answer"] * 3,
                                                   "07509001": ["no_answer"], "07509002": ["answer"]},
                             keys={"07501000": "1", "07509002": "1"})
    alerts = []
    engine = make_engine(p, phones, clock, schedules_for([]), alerts=alerts)
    engine.sources = [MedicationReminders(jobs=engine.jobs)]
    await add_plan(engine.jobs, elder_id=taker, medicine="降压药", times="08:00")
    await add_plan(engine.jobs, elder_id=misser, medicine="降糖药", times="08:00, 22:00")  # 22:00 is quiet: never
    async with running() as tg:
        await drive(engine, tg, clock, seconds=2 * 3600, step_s=60)
    assert phones.numbers().count("07501000") == 1  # taken: called once
    assert [(n, t.strftime("%H:%M")) for n, t in phones.dialled if n != "07501000"] == [
        ("07501001", "08:00"), ("07501001", "08:15"), ("07501001", "08:30"), ("07509001", "08:31"),
        ("07509002", "08:32")]  # each family step on the next tick
    by_number = dict(zip([c.remote_number for c in phones.calls], phones.greetings, strict=True))  # answered
    assert "降压药吃了吗" in by_number["07501000"]
    assert "吃药提醒电话" in by_number["07509002"] and "降糖药" not in by_number["07509002"]
    rows = [r for r in await engine.jobs.jobs() if r.kind == "medication" and "2026-11-23" in r.chain]
    assert sorted((r.job_key.split(":", 4)[-1], r.state, r.outcome) for r in rows if r.elder_id == misser) == [
        ("a1", "no_answer", None), ("a2", "no_answer", None), ("a3", "no_answer", None), ("f1", "no_answer", None),
        ("f2", "done", "heard")]
    assert [r.outcome for r in rows if r.elder_id == taker] == ["heard"]
    assert alerts == []
    tomorrow = {r.job_key for r in await engine.jobs.jobs() if "2026-11-24" in r.chain}
    assert len(tomorrow) == 2 and not any("2200" in k for k in tomorrow)  # planned ahead, never in quiet hours


async def test_a_medication_plan_needs_valid_times(platform):
    from telephony.call_jobs import CallJobStore
    from telephony.medication import MedicationReminders, add_plan

    jobs = CallJobStore.for_engine(platform.engine, now=lambda: datetime(2026, 11, 23, 7, 0))
    for bad in (",", "", "8点"):
        with pytest.raises(ValueError):
            await add_plan(jobs, elder_id=platform.elders[0], medicine="降压药", times=bad)
    await add_plan(jobs, elder_id=platform.elders[0], medicine="降压药", times=" 08:00 ,")
    assert [j.job_key.split(":", 2)[-1] for j in await MedicationReminders(jobs=jobs)(datetime(2026, 11, 23, 7, 0))] == [
        "2026-11-23:0800:a1", "2026-11-24:0800:a1"]


# --- a platform call that cannot be dialled tells a person ------------------------------------------------
async def test_a_warning_or_reminder_that_cannot_be_dialled_raises_one_operator_alert_per_elder(platform):
    """A warning whose elder's line cannot be dialled (no route), or fails on a retry, and a medication
    reminder that cannot be dialled: one operator alert per elder, through the store's one alert door, saying
    which warning / reminder did not reach them; an elder who heard it raises none."""
    from telephony.medication import MedicationReminders, add_plan

    p = platform
    clock = ManualClock(datetime(2026, 11, 23, 7, 58))
    heard, broken, flaky = p.elders
    n = {e: f"10{e:02d}" for e in p.elders}
    phones = ListeningPhones(clock=clock, answers={n[heard]: ["answer"], n[broken]: ["no_route"],
                                                   n[flaky]: ["no_answer", "no_route"],
                                                   "07501001": ["no_route"]},  # the reminder to `broken`
                             keys={n[heard]: "1"})
    engine = make_engine(p, phones, clock, schedules_for([]), on_alert=p.store.raise_call_alert)
    engine.sources = [MedicationReminders(jobs=engine.jobs)]
    await add_plan(engine.jobs, elder_id=broken, medicine="降压药", times="08:00")
    await plan_warning(engine.jobs, Broadcast(broadcast_id="typhoon9", kind="typhoon"),
                       await schedules_for(p.elders)(), now=clock.now())
    async with running() as tg:
        await drive(engine, tg, clock, seconds=3600, step_s=60)
    alerts = sorted(await p.store.list_alerts(), key=lambda a: (a.elder_id, a.detail["source"]))
    assert [(a.elder_id, a.kind, a.detail["source"], a.detail.get("broadcast")) for a in alerts] == [
        (broken, "no_answer", "medication", None), (broken, "no_answer", "warning", "typhoon9"),
        (flaky, "no_answer", "warning", "typhoon9")]
    warn_broken, med_broken, warn_flaky = alerts[1], alerts[0], alerts[2]
    assert "typhoon9" in warn_broken.detail["summary"] and "未能送达" in warn_broken.detail["summary"]
    assert warn_broken.detail["result"] == "no_route" and warn_broken.detail["number"] == n[broken]
    assert warn_flaky.detail["attempts"] == ["no_answer", "no_route"] and "第 2 次" in warn_flaky.detail["summary"]
    assert "降压药" in med_broken.detail["summary"] and "08:00" in med_broken.detail["summary"]
    assert med_broken.detail["medicine"] == "降压药" and med_broken.detail["plan_id"] is not None
    report = (await warning_report(engine.jobs, broadcast_id="typhoon9"))["typhoon9"]["蓬江"]
    assert (report["heard"], report["failed"]) == (1, 2)
    from telephony.broadcasts import broadcast_summary, not_reached  # the console's warning page reads these

    assert [(m["elder_id"], m["result"], m["number"]) for m in await not_reached(engine.jobs, "typhoon9")] == [
        (broken, "failed", n[broken]), (flaky, "failed", n[flaky])]
    assert (await broadcast_summary(engine.jobs, "typhoon9"))["warning"] == "typhoon"
    assert await broadcast_summary(engine.jobs, "nope") is None


# --- planning reads elders in batches ---------------------------------------------------------------------
async def test_planning_a_broadcast_and_the_care_calls_reads_elders_in_batches(platform):
    """``send_warning`` and ``serve``'s schedule source read the elders in one query per batch: the number
    of statements does not grow with the number of elders (it did: one ``get_elder`` per elder)."""
    from sqlalchemy import event

    from assistant.platform.store.records import NewSchedule
    from telephony.call_jobs import CallJobStore
    from telephony.gateway_service import send_warning, store_schedules

    p = platform
    jobs = CallJobStore.for_engine(p.engine, now=lambda: MON_0858)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    async def measure(broadcast_id: str) -> tuple[int, int, dict]:
        event.listen(p.engine.sync_engine, "before_cursor_execute", count)
        try:
            statements.clear()
            planned = await send_warning(store=p.store, jobs=jobs, broadcast=Broadcast(broadcast_id=broadcast_id,
                                                                                       kind="heat"),
                                         quiet_hours="21:00-08:00", now=MON_0858)
            sent = len(statements)
            statements.clear()
            schedules = await store_schedules(p.store, quiet_hours="21:00-08:00")
            return sent, len(statements), {"planned": planned, "schedules": len(schedules)}
        finally:
            event.remove(p.engine.sync_engine, "before_cursor_execute", count)

    def schedule():
        return NewSchedule()

    for i in range(2):
        await p.store.create_elder(name=f"少{i}", district="江海", phones=[f"0750-61{i:02d}"], schedules=[schedule()])
    few = await measure("heat-few")
    for i in range(40):
        await p.store.create_elder(name=f"多{i}", district="江海", phones=[f"0750-62{i:02d}"], schedules=[schedule()])
    many = await measure("heat-many")
    assert few[2] == {"planned": {"elders": 5, "added": 5}, "schedules": 2}
    assert many[2] == {"planned": {"elders": 45, "added": 45}, "schedules": 42}
    assert (many[0], many[1]) == (few[0], few[1])  # 40 more elders of rows: not one more statement
    assert few[0] <= 8 and few[1] <= 4
    got = await p.store.get_elders([*p.elders, 9999, p.elders[0]], batch=2)  # batch edges; unknown ids left out
    assert sorted(got) == sorted(p.elders) and got[p.elders[0]].phones[0].number == "07501000"


async def test_a_reminder_nobody_answers_tells_an_operator_once(platform):
    """Medication: the elder misses every try and the only family contact does not answer either → one
    operator alert naming the reminder (before: the row just ended); the elder with no family: the same."""
    from assistant.platform.store.records import NewContact
    from telephony.medication import MedicationReminders, add_plan

    p = platform
    clock = ManualClock(datetime(2026, 11, 23, 7, 58))
    with_family, alone = p.elders[:2]
    await p.store.add_contact(with_family, NewContact(name="女儿", phone="0750-9001", priority=1))
    phones = ListeningPhones(clock=clock, answers={})  # nobody answers anything
    engine = make_engine(p, phones, clock, schedules_for([]), on_alert=p.store.raise_call_alert)
    engine.sources = [MedicationReminders(jobs=engine.jobs)]
    await add_plan(engine.jobs, elder_id=with_family, medicine="降压药", times="08:00")
    await add_plan(engine.jobs, elder_id=alone, medicine="降糖药", times="08:00")
    async with running() as tg:
        await drive(engine, tg, clock, seconds=2 * 3600, step_s=60)
    assert phones.numbers().count("07509001") == 1 and phones.numbers().count("07501000") == 3
    alerts = sorted(await p.store.list_alerts(), key=lambda a: a.elder_id)
    assert [(a.elder_id, a.kind, a.detail["reason"], a.detail["medicine"]) for a in alerts] == [
        (with_family, "no_answer", "nobody_answered", "降压药"), (alone, "no_answer", "nobody_answered", "降糖药")]
    assert "2026-11-23 08:00" in alerts[0].detail["summary"] and "家属都没有接听" in alerts[0].detail["summary"]
    # stopping a plan ends its reminders already planned (tomorrow's); restarting lets them be planned again
    from telephony.medication import list_plans, set_plan_enabled

    [plan] = await list_plans(engine.jobs, elder_id=alone)
    assert await set_plan_enabled(engine.jobs, plan_id=plan.plan_id, elder_id=with_family, enabled=False) is False
    assert await set_plan_enabled(engine.jobs, plan_id=plan.plan_id, elder_id=alone, enabled=False)
    tomorrow = [r for r in await engine.jobs.jobs(elder_id=alone) if "2026-11-24" in r.chain]
    assert [(r.state, r.result) for r in tomorrow] == [("missed", "plan_disabled")]
    assert await set_plan_enabled(engine.jobs, plan_id=plan.plan_id, elder_id=alone, enabled=True)
    assert [r for r in await engine.jobs.jobs(elder_id=alone) if "2026-11-24" in r.chain] == []
    assert (await list_plans(engine.jobs, elder_id=alone))[0].enabled
