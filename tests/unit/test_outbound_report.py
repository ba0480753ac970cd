"""The platform view's numbers (issue #17 item 4), counted in SQL on SQLite and PostgreSQL: per district and
local day (``telephony.outbound_report``), and the warning report / not-reached list by the newest try of each
elder's call (``telephony.broadcasts``), checked against hand-counted rows and against the Python tally
those functions used before."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert

from assistant.platform.db import create_engine_for
from assistant.platform.store import PlatformStore
from assistant.settings import StoreSettings
from telephony.broadcasts import REPORT_RESULTS, _result, not_reached, warning_report
from telephony.call_jobs import CallJobStore
from telephony.models import CallJob
from telephony.outbound_report import Tally, outbound_report

pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_platform"]

SH = ZoneInfo("Asia/Shanghai")
TODAY = dt.date(2026, 12, 7)


def at(day: int, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, day, hh, mm, tzinfo=SH)


@pytest.fixture
async def rows(db_url):
    engine = create_engine_for(StoreSettings(database_url=db_url, sqlite_busy_timeout_ms=5000))
    store = PlatformStore(engine=engine)
    ids = {}
    for name, district in (("A", "蓬江"), ("B", "蓬江"), ("C", "江海")):
        ids[name] = (await store.create_elder(name=f"老人{name}", district=district, phones=[f"0750-100{len(ids)}"])).elder_id
    added: list[dict] = []

    def add(key: str, kind: str, elder: str, attempt: int, state: str, when: dt.datetime | None, *,
            outcome: str | None = None, created: dt.datetime | None = None, elder_id: int | None = None) -> None:
        chain = key.rsplit(":", 1)[0]
        e = ids[elder] if elder_id is None else elder_id
        chain, key = chain.replace("{e}", str(e)), key.replace("{e}", str(e))
        t = when or at(6, 0)
        added.append({"job_key": key, "chain": chain, "kind": kind, "elder_id": e, "number": "1", "attempt": attempt,
                      "state": state, "not_before": t, "created_at": created or t, "finished_at": when,
                      "outcome": outcome, "detail": {}})

    async def write() -> None:
        async with engine.begin() as conn:
            await conn.execute(insert(CallJob), added)
        added.clear()

    jobs = CallJobStore.for_engine(engine, now=lambda: at(7, 20))
    yield ids, add, write, jobs
    await engine.dispose()


async def test_per_district_and_local_day_counted_by_hand(rows):
    ids, add, write, jobs = rows
    # 12-06, 蓬江: A's care call unanswered 3 times (one busy), the daughter answers; B answers; an order
    # follow-up of B at 00:10 local (still 12-05 in UTC: counted on the local day 12-06)
    add("care:{e}:2026-12-06:a1", "care_call", "A", 1, "no_answer", at(6, 9))
    add("care:{e}:2026-12-06:a2", "care_call", "A", 2, "busy", at(6, 9, 15))
    add("care:{e}:2026-12-06:a3", "care_call", "A", 3, "no_answer", at(6, 9, 30))
    add("care:{e}:2026-12-06:f1", "family_escalation", "A", 1, "done", at(6, 9, 31))
    add("care:{e}:2026-12-06:a1", "care_call", "B", 1, "done", at(6, 9, 5), outcome="well")
    add("order:7:{e}:a1", "order_followup", "B", 1, "done", at(6, 0, 10), outcome="heard")
    # 12-06, 江海: C's line cannot be dialled → an operator alert (a care call's)
    add("care:{e}:2026-12-06:a1", "care_call", "C", 1, "failed", at(6, 9))
    add("care:{e}:2026-12-06:alert", "alert", "C", 1, "done", at(6, 9, 1))
    # 12-06 warning tf1: A heard; B unanswered twice (not reached); C needs help (+ its alert: not a care alert)
    add("warn:tf1:{e}:a1", "warning", "A", 1, "done", at(6, 10), outcome="heard")
    add("warn:tf1:{e}:a1", "warning", "B", 1, "no_answer", at(6, 10))
    add("warn:tf1:{e}:a2", "warning", "B", 2, "no_answer", at(6, 10, 15))
    add("warn:tf1:{e}:a1", "warning", "C", 1, "done", at(6, 10), outcome="need_help")
    add("warn:tf1:{e}:alert", "alert", "C", 1, "done", at(6, 10, 1))
    # 12-07, 蓬江: A misses the 08:00 reminder 3 times, the first family contact does not answer, the second does;
    # B takes it (1)
    for n, mm in ((1, 0), (2, 15), (3, 30)):
        add(f"med:1:2026-12-07:0800:a{n}", "medication", "A", n, "no_answer", at(7, 8, mm))
    add("med:1:2026-12-07:0800:f1", "medication", "A", 1, "no_answer", at(7, 8, 31))
    add("med:1:2026-12-07:0800:f2", "medication", "A", 2, "done", at(7, 8, 32))
    add("med:2:2026-12-07:0800:a1", "medication", "B", 1, "done", at(7, 8), outcome="heard")
    # warning tf2 to A: first try unanswered, the retry still planned → not yet "not reached"
    add("warn:tf2:{e}:a1", "warning", "A", 1, "no_answer", at(7, 12))
    add("warn:tf2:{e}:a2", "warning", "A", 2, "planned", None, created=at(7, 12))
    # 12-07, 江海: C's window passed before a line was free (not dialled) → an operator alert, at 23:50 local
    add("care:{e}:2026-12-07:a1", "care_call", "C", 1, "missed", at(7, 23, 50))
    add("care:{e}:2026-12-07:alert", "alert", "C", 1, "done", at(7, 23, 50))
    # outside the 2 days: 12-05 23:30 local and 12-08 00:05 local
    add("care:{e}:2026-12-05:a1", "care_call", "C", 1, "done", at(5, 23, 30))
    add("care:{e}:2026-12-08:a1", "care_call", "C", 1, "done", at(8, 0, 5))
    await write()

    r = await outbound_report(jobs, today=TODAY, days=2, tz=SH)
    d6, d7 = dt.date(2026, 12, 6), dt.date(2026, 12, 7)
    assert r.days == (d6, d7) and r.districts == ("江海", "蓬江")
    assert r.cell("蓬江", d6) == Tally(placed=9, answered=4, no_answer=4, busy_failed=1, family_calls=1, family_told=1,
                                      warn_heard=1, warn_not_reached=1)
    assert r.cell("江海", d6) == Tally(placed=2, answered=1, busy_failed=1, care_alerts=1, warn_need_help=1)
    assert r.cell("蓬江", d7) == Tally(placed=7, answered=2, no_answer=5, family_calls=2, family_told=1, med_taken=1,
                                      med_missed=1)
    assert r.cell("江海", d7) == Tally(not_dialled=1, care_alerts=1)
    assert r.day(d6).placed == 11 and r.day(d6).answer_rate == pytest.approx(5 / 11)
    assert r.district("蓬江").placed == 16 and r.district("蓬江").answer_rate == pytest.approx(6 / 16)
    assert r.total().care_alerts == 2 and r.cell("江海", d7).answer_rate is None
    # one district; a longer period takes in 12-05 (the row at 23:30 local), never 12-08
    only = await outbound_report(jobs, today=TODAY, days=2, tz=SH, district="江海")
    assert only.districts == ("江海",) and only.cells == {("江海", d6): r.cell("江海", d6), ("江海", d7): r.cell("江海", d7)}
    week = await outbound_report(jobs, today=TODAY, days=7, tz=SH)
    assert len(week.days) == 7 and week.cell("江海", dt.date(2026, 12, 5)) == Tally(placed=1, answered=1)
    assert week.total().placed == r.total().placed + 1
    # in UTC the 00:10 follow-up is on 12-05: a UTC day would lose it from 12-06
    utc = await outbound_report(jobs, today=TODAY, days=2, tz=ZoneInfo("UTC"))
    assert utc.cell("蓬江", d6).placed == 8


def _python_report(all_rows: list[dict], *, broadcast_id=None, since=None) -> dict:
    """The tally ``warning_report`` did in Python before (session 8), kept here as the reference."""
    newest: dict[str, tuple] = {}
    for r in all_rows:
        if r["kind"] != "warning" or (broadcast_id is not None and not r["chain"].startswith(f"warn:{broadcast_id}:")):
            continue
        if since is not None and r["created_at"] < since:
            continue
        if r["chain"] not in newest or r["attempt"] > newest[r["chain"]][0]:
            newest[r["chain"]] = (r["attempt"], r["state"], r["outcome"], r["district"])
    report: dict = {}
    for chain, (_, state, outcome, district) in newest.items():
        counts = report.setdefault(chain.split(":")[1], {}).setdefault(district, dict.fromkeys(REPORT_RESULTS, 0))
        counts["planned"] += 1
        counts[_result(state, outcome)] += 1
    return report


async def test_warning_report_and_not_reached_in_sql_equal_the_python_tally(rows):
    ids, add, write, jobs = rows
    rng = random.Random(17)
    states = ("planned", "claimed", "dialling", "done", "no_answer", "busy", "failed", "missed")
    kept: list[dict] = []
    districts = {ids["A"]: "蓬江", ids["B"]: "蓬江", ids["C"]: "江海", 999: ""}  # 999: an elder no longer on file
    # "a_1" next to "ab1": an id's "_" must not match any character
    for b, base in (("a_1", at(6, 8)), ("ab1", at(6, 9)), ("heat", at(7, 8))):
        for name, e in (("A", None), ("B", None), ("C", None), ("A", 999)):
            tries = rng.randint(1, 3)
            for n in range(1, tries + 1):
                state = rng.choice(states[3:]) if n < tries else rng.choice(states)
                outcome = rng.choice(("heard", "need_help", None)) if state == "done" else None
                created = base + dt.timedelta(minutes=15 * (n - 1))
                add(f"warn:{b}:{{e}}:a{n}", "warning", name, n, state,
                    created + dt.timedelta(minutes=1) if state in ("done", "no_answer", "busy", "failed", "missed")
                    else None, outcome=outcome, created=created, elder_id=e)
                kept.append({"kind": "warning", "chain": f"warn:{b}:{e or ids[name]}", "attempt": n, "state": state,
                             "outcome": outcome, "created_at": created, "district": districts[e or ids[name]]})
        add(f"warn:{b}:{{e}}:alert", "alert", "C", 1, "done", base)
        kept.append({"kind": "alert", "chain": f"warn:{b}:{ids['C']}", "attempt": 1, "state": "done", "outcome": None,
                     "created_at": base, "district": "江海"})
    await write()
    assert await warning_report(jobs) == _python_report(kept)
    for b in ("a_1", "ab1", "heat"):
        assert await warning_report(jobs, broadcast_id=b) == _python_report(kept, broadcast_id=b)
    assert set(await warning_report(jobs, broadcast_id="a_1")) == {"a_1"}
    since = at(6, 8, 20)  # cuts through a_1's retries: only tries created since then count
    assert await warning_report(jobs, since=since) == _python_report(kept, since=since)
    # not reached: the newest try of each elder unanswered or not dialable, the not dialable first
    for b in ("a_1", "ab1", "heat"):
        want = _python_report(kept, broadcast_id=b).get(b, {})
        got = await not_reached(jobs, b)
        assert len(got) == sum(c["no_answer"] + c["failed"] for c in want.values())
        assert [g["result"] for g in got] == sorted((g["result"] for g in got), key=lambda x: x != "failed")
        assert all(g["result"] in ("failed", "no_answer") for g in got)


async def test_the_newest_try_decides_and_a_later_planned_try_is_pending(rows):
    ids, add, write, jobs = rows
    add("warn:w1:{e}:a1", "warning", "A", 1, "no_answer", at(6, 10))
    add("warn:w1:{e}:a2", "warning", "A", 2, "done", at(6, 10, 15), outcome="heard")
    add("warn:w1:{e}:a1", "warning", "B", 1, "failed", at(6, 10))
    add("warn:w1:{e}:a1", "warning", "C", 1, "busy", at(6, 10))
    add("warn:w1:{e}:a2", "warning", "C", 2, "planned", None, created=at(6, 10))
    await write()
    assert await warning_report(jobs, broadcast_id="w1") == {"w1": {
        "蓬江": {"planned": 2, "heard": 1, "need_help": 0, "answered": 0, "no_answer": 0, "failed": 1, "pending": 0},
        "江海": {"planned": 1, "heard": 0, "need_help": 0, "answered": 0, "no_answer": 0, "failed": 0, "pending": 1}}}
    assert [(m["elder_id"], m["result"], m["attempts"]) for m in await not_reached(jobs, "w1")] == [
        (ids["B"], "failed", 1)]
