"""Platform tallies counted in SQL, on SQLite and PostgreSQL, with the same numbers as before:

- ``/metrics``' steps of the last 24 hours per district (``telephony.metrics.steps_query``) filter on
  ``call_jobs.finished_at`` alone and SQLite reads them through ``ix_call_jobs_finished_at`` (its
  ``EXPLAIN QUERY PLAN``); the old ``state IN (…)`` filter is kept here as the reference;
- the care page's tally (``assistant.console.queries.care_dashboard``: today's care calls per district, and the
  list most urgent first) against the Python count it replaced, kept here as the reference, on seeded random
  elders, schedules, calls and alerts; SQLite reads today's calls through ``ix_calls_started_at`` (core_0012).
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy import event, func, insert, select

from assistant.console import queries
from assistant.console.queries import (
    CARE_STATES,
    UNANSWERED_OUTCOMES,
    CareDashboard,
    CareRow,
    care_dashboard,
)
from assistant.console.render import LOCAL_TZ
from assistant.platform.db import create_engine_for, session_factory
from assistant.platform.models import DISTRICTS, Alert, Call, CareSchedule, Elder
from assistant.settings import StoreSettings
from telephony.metrics import steps_query
from telephony.models import FINAL_STATES, JOB_KINDS, JOB_STATES, CallJob

pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_platform"]

NOW = dt.datetime(2026, 12, 7, 10, 0, tzinfo=LOCAL_TZ).astimezone(dt.UTC)  # a Monday, 10:00 in Beijing


@pytest.fixture
async def engine(db_url):
    engine = create_engine_for(StoreSettings(database_url=db_url, sqlite_busy_timeout_ms=5000))
    yield engine
    await engine.dispose()


def old_steps_query(since: dt.datetime):
    """``/metrics``' steps query before: the ended states named as well as the window."""
    return (select(Elder.district, CallJob.kind, CallJob.state, func.count())
            .join(Elder, Elder.id == CallJob.elder_id, isouter=True)
            .where(CallJob.state.in_(FINAL_STATES), CallJob.finished_at >= since)
            .group_by(Elder.district, CallJob.kind, CallJob.state))


async def sqlite_plan(engine, query) -> str:
    """SQLite's ``EXPLAIN QUERY PLAN`` of ``query`` (placeholder values: the plan does not depend on them)."""
    compiled = query.compile(dialect=engine.sync_engine.dialect, compile_kwargs={"render_postcompile": True})
    async with engine.connect() as conn:
        rows = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}",
                                           ("2026-12-06 02:00:00.000000",) * len(compiled.positiontup))).all()
    return "\n".join(r[-1] for r in rows)


async def test_metrics_steps_read_only_the_window_with_the_same_numbers(engine):
    async with session_factory(engine)() as db:
        elders = [Elder(name=f"老人{i}", district=DISTRICTS[i % 3]) for i in range(6)]
        db.add_all(elders)
        await db.commit()
        ids = [e.id for e in elders] + [9999]  # 9999: an elder no longer on file (district NULL)
    rng = random.Random(11)
    since = NOW - dt.timedelta(hours=24)
    rows = []
    for i in range(400):
        state = rng.choice(JOB_STATES)
        ended = state in FINAL_STATES
        # inside the window, just outside, on its edge; open rows have no end
        finished = (rng.choice((NOW - dt.timedelta(hours=rng.uniform(0, 23.9)), NOW - dt.timedelta(hours=30), since))
                    if ended else None)
        rows.append({"job_key": f"k{i}", "chain": f"c{i}", "kind": rng.choice(JOB_KINDS), "elder_id": rng.choice(ids),
                     "number": "1", "attempt": 1, "state": state, "not_before": NOW, "created_at": NOW,
                     "finished_at": finished, "detail": {}})
    async with engine.begin() as conn:
        await conn.execute(insert(CallJob), rows)
        new = sorted((await conn.execute(steps_query(since))).all(), key=repr)
        old = sorted((await conn.execute(old_steps_query(since))).all(), key=repr)
    assert new == old and sum(n for *_, n in new) > 100
    assert {s for _, _, s, _ in new} == set(FINAL_STATES) and None in {d for d, *_ in new}
    if engine.dialect.name == "sqlite":
        plan = await sqlite_plan(engine, steps_query(since))
        assert "SEARCH call_jobs USING INDEX ix_call_jobs_finished_at (finished_at>?)" in plan, plan
        assert "SCAN call_jobs" not in plan, plan


async def python_care_dashboard(db, *, now: dt.datetime) -> CareDashboard:
    """The care page's tally before it was counted in SQL (session 9's ``queries.care_dashboard``)."""
    local = now.astimezone(LOCAL_TZ)
    day = local.date()
    start = dt.datetime.combine(day, dt.time(0), tzinfo=LOCAL_TZ).astimezone(dt.UTC)
    weekday = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[local.weekday()]
    schedules = (await db.execute(
        select(CareSchedule, Elder.name, Elder.district).join(Elder, Elder.id == CareSchedule.elder_id)
        .where(CareSchedule.enabled.is_(True), Elder.active.is_(True), CareSchedule.days.contains(weekday))
        .order_by(CareSchedule.window_start, Elder.id))).all()
    elder_ids = {s.elder_id for s, _, _ in schedules}
    calls: dict[int, list[Call]] = {}
    escalated: set[int] = set()
    if elder_ids:
        for c in (await db.execute(select(Call).where(Call.direction == "outbound", Call.started_at >= start,
                                                      Call.elder_id.in_(elder_ids)))).scalars():
            calls.setdefault(c.elder_id, []).append(c)
        escalated = set((await db.execute(select(Alert.elder_id).where(
            Alert.kind == "no_answer", Alert.created_at >= start, Alert.elder_id.in_(elder_ids)))).scalars())
    rows: list[CareRow] = []
    seen: set[int] = set()
    for sched, name, district in schedules:
        if sched.elder_id in seen:
            continue
        seen.add(sched.elder_id)
        elder_calls = calls.get(sched.elder_id, [])
        if any(c.outcome and c.outcome not in UNANSWERED_OUTCOMES for c in elder_calls):
            state = "answered"
        elif sched.elder_id in escalated:
            state = "escalated"
        elif elder_calls:
            state = "unanswered"
        else:
            state = "pending"
        rows.append(CareRow(elder_id=sched.elder_id, elder_name=name, district=district,
                            window=f"{sched.window_start:%H:%M}–{sched.window_end:%H:%M}", state=state,
                            last_call_at=max((c.started_at for c in elder_calls), default=None)))
    by_district = {d: dict.fromkeys(CARE_STATES, 0) for d in DISTRICTS}
    totals = dict.fromkeys(CARE_STATES, 0)
    for r in rows:
        by_district.setdefault(r.district, dict.fromkeys(CARE_STATES, 0))[r.state] += 1
        totals[r.state] += 1
    urgency = {"escalated": 0, "unanswered": 1, "pending": 2, "answered": 3}
    rows.sort(key=lambda r: urgency[r.state])
    return CareDashboard(day=day, rows=rows, by_district=by_district, totals=totals)


async def seed_care_day(engine, *, seed: int, elders: int) -> None:
    """Random elders (some inactive), 0-3 schedules each (some disabled, some not on Mondays, distinct first
    minutes), outbound and inbound calls today and yesterday with every kind of outcome, alerts today and
    yesterday; one elder with two schedules starting at the same minute."""
    rng = random.Random(seed)
    start = dt.datetime(2026, 12, 7, tzinfo=LOCAL_TZ).astimezone(dt.UTC)
    outcomes = (None, "", "completed", "well", "handover", *sorted(UNANSWERED_OUTCOMES))
    async with session_factory(engine)() as db:
        people = [Elder(name=f"长者{i:03d}", district=rng.choice(DISTRICTS), active=rng.random() < 0.9)
                  for i in range(elders)]
        db.add_all(people)
        await db.flush()
        for e in people:
            for h in rng.sample(range(7, 20), rng.choice((0, 1, 1, 2, 3))):
                days = ",".join(d for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun") if rng.random() < 0.7)
                db.add(CareSchedule(elder_id=e.id, days=days or "sun", window_start=dt.time(h, rng.choice((0, 30))),
                                    window_end=dt.time(h + 2, 0), enabled=rng.random() < 0.85))
            for k in range(rng.choice((0, 0, 1, 2, 3))):
                at = start + dt.timedelta(minutes=rng.randrange(-600, 600))  # yesterday evening or today
                db.add(Call(call_id=f"c-{e.id}-{k}", elder_id=e.id, started_at=at, outcome=rng.choice(outcomes),
                            direction="outbound" if rng.random() < 0.8 else "inbound"))
            for _ in range(rng.choice((0, 0, 0, 1, 2))):
                db.add(Alert(elder_id=e.id, kind=rng.choice(("no_answer", "no_answer", "fraud")),
                             created_at=start + dt.timedelta(minutes=rng.randrange(-300, 600))))
        twin = people[0]
        twin.active = True
        db.add_all([CareSchedule(elder_id=twin.id, window_start=dt.time(6, 0), window_end=dt.time(8, 0)),
                    CareSchedule(elder_id=twin.id, window_start=dt.time(6, 0), window_end=dt.time(8, 0))])
        await db.commit()


async def test_care_tally_in_sql_equals_the_python_count(engine, monkeypatch):
    await seed_care_day(engine, seed=7, elders=150)
    async with session_factory(engine)() as db:
        old = await python_care_dashboard(db, now=NOW)
        new = await care_dashboard(db, now=NOW)
    assert new.day == old.day == dt.date(2026, 12, 7)
    assert new.totals == old.totals and new.by_district == old.by_district
    assert new.rows == old.rows and new.elders == len(old.rows)
    # the seed reaches every state in more than one district, and leaves some elders out
    assert all(n >= 3 for n in new.totals.values()), new.totals
    assert sum(1 for counts in new.by_district.values() if counts["answered"]) >= 3
    async with session_factory(engine)() as db:
        assert new.elders < await db.scalar(select(func.count()).select_from(Elder))
    # the page lists the most urgent first, as many as CARE_ROWS; the counts still cover every elder
    monkeypatch.setattr(queries, "CARE_ROWS", 10)
    statements: list[tuple[str, tuple]] = []
    listen = lambda conn, cursor, sql, params, context, many: statements.append((sql, params))  # noqa: E731
    event.listen(engine.sync_engine, "before_cursor_execute", listen)
    async with session_factory(engine)() as db:
        few = await care_dashboard(db, now=NOW)
    event.remove(engine.sync_engine, "before_cursor_execute", listen)
    assert few.rows == old.rows[:10] and few.totals == old.totals and few.elders == len(old.rows)
    if engine.dialect.name == "sqlite":  # both reads take today's calls through ix_calls_started_at (core_0012)
        async with engine.connect() as conn:
            plans = [(await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)).all() for sql, params in statements]
        for plan in ("\n".join(r[-1] for r in rows) for rows in plans):
            assert "SEARCH calls USING INDEX ix_calls_started_at (started_at>? AND started_at<?)" in plan, plan
            assert "SCAN calls" not in plan, plan
