"""``assistant bench outbound --elders 25000 --nodes 3 --json``: a day of care calls on a fast clock.

``--nodes`` engine processes (``telephony.engine.CallEngine``, each with ``--lines`` calls in progress at
most and the configured dial rate) share one PostgreSQL database (a throwaway cluster unless
``--database-url`` names an empty scratch database) and one simulated clock from 07:55 to ``--day-end``: the
bench moves it on at up to ``--speed`` simulated seconds per real second, but holds it while any node has
not finished its tick of two ticks ago (``SharedClock``) — on a shared, loaded box a starved process would
otherwise see minutes pass between two of its statements, its leases run out and its calls time out, which
measures the box, not the engine. ``max_lag_s`` is therefore the lag the line capacity and the dial rate
cause, in simulated seconds. The elders, their family contacts, the fraud-guard ledger (one
entry per dial, the family's code SMS in the outbox), the job rows and the alerts are real rows; the phones
are stand-ins — an honest fake, no SIP for 25,000 calls: a dial rings (8 s answered, 30 s unanswered) and an
answered call lasts 40 s, then the elder presses a key. Each elder behaves by its id:

- 62 % answer and press 1; 10 % are busy on the first try and answer the retry;
- 8 % answer and press 2 (unwell → an operator alert);
- 10 % never answer and their family contact answers (family told); 10 % nobody answers (operator alert).

Windows: a quarter of the elders each in 08:00-10:00, 10:00-12:00, 14:00-16:00, 16:00-18:00.

Printed: ``elders``, ``jobs`` (call_jobs rows), ``calls_placed`` (dials), ``duplicates`` (dials of a job
already dialled, plus dials beyond what the elder's behaviour needs), ``missed`` (elders whose day did not
end as it should: fewer dials than needed, a row still open, or a missed window), ``escalations_expected``
/ ``escalations_fired`` (family told or operator alert, each counted once per elder), ``max_lag_s`` (the
longest wait from a job's ``not_before`` to its dial, simulated seconds), ``wall_s``; and more detail.
The schedules come from the bench (not from ``care_schedules`` rows): what is measured is the engine.

``--broadcast``: instead of a care day, a warning broadcast to every elder (issue #17's acceptance: it
completes within the capacity the engine reports). The nodes start and write their heartbeats; at 07:55
simulated (quiet hours until 08:00) the bench plans a typhoon warning to all elders through the real planning
path (``gateway_service.send_warning`` → ``broadcasts.plan_warning``, elders read from the store) and asks the
engine's capacity report (``telephony.capacity.broadcast_estimate``) when every elder will have been tried;
the nodes then run until no row is open. The same stand-in phones: answering elders press 1 (heard), unwell
ones 2 (need help → an operator alert), busy-first ones answer the retry, the 20 % who never answer are tried
three times (warnings call no family). Printed: ``elders``, ``jobs``, ``calls_placed``, ``duplicates``,
``missed``, ``delivered`` ({heard, need_help, not_reached}, from ``broadcasts.warning_report``),
``capacity_calls_per_h`` and ``expected_done_s`` (the engine's report at planning), ``done_s`` (simulated
seconds from planning until the last warning row ended), ``within_capacity`` (``done_s <= expected_done_s``),
``wall_s``; and more detail (the capacity the engine reports at the end, from the calls it measured).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

from assistant.console.bench import throwaway_postgres
from assistant.errors import SetupError, TelephonyError
from assistant.fraud_guard.ledger import CallLedger
from assistant.platform.db import create_engine_for
from assistant.platform.migrate import upgrade_heads
from assistant.platform.models import DISTRICTS, Elder, ElderPhone
from assistant.platform.models import FamilyContact as FamilyContactRow
from assistant.platform.models_fraud import LedgerEntry
from assistant.platform.store import PlatformStore
from assistant.settings import StoreSettings, load_settings
from telephony import capacity
from telephony.broadcasts import Broadcast, warning_report
from telephony.call_jobs import HELD_STATES, CallJobStore
from telephony.engine import CallEngine
from telephony.gateway_service import ledger_marker, ledger_recorder, send_warning
from telephony.models import CallJob
from telephony.scheduler import CareCallRunner, CareSchedule, TimeWindow
from telephony.scheduler import FamilyContact as CallContact

DAY = datetime(2026, 11, 23)  # a Monday
DAY_START = DAY.replace(hour=7, minute=55)
WINDOWS = ("08:00-10:00", "10:00-12:00", "14:00-16:00", "16:00-18:00")
TICK_S = 5.0  # the nodes' tick in simulated seconds: serve's own (``telephony.engine_tick_s``); lease 10 ticks, ≥ 120 s
RING_ANSWERED_S, RING_UNANSWERED_S, TALK_S = 8.0, 30.0, 40.0
BEHAVIOURS = (("answers", 62), ("busy_first", 10), ("unwell", 8), ("family_answers", 10), ("nobody", 10))


def behaviour(elder_id: int) -> str:
    r = (elder_id * 7919) % 100
    for name, share in BEHAVIOURS:
        if r < share:
            return name
        r -= share
    return "answers"


def window_of(elder_id: int) -> str:
    return WINDOWS[elder_id % len(WINDOWS)]


def elder_number(elder_id: int) -> str:
    return f"9{elder_id:07d}"


def family_number(elder_id: int) -> str:
    return f"8{elder_id:07d}"


def needed_dials(kind: str, *, broadcast: bool = False) -> int:
    if broadcast:  # a warning: the elder's line only, three tries at most
        return {"answers": 1, "busy_first": 2, "unwell": 1, "family_answers": 3, "nobody": 3}[kind]
    return {"answers": 1, "busy_first": 2, "unwell": 1, "family_answers": 4, "nobody": 4}[kind]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--elders", type=int, default=25_000, help="elders called today (default 25000)")
    parser.add_argument("--nodes", type=int, default=3, help="engine processes on one database (default 3)")
    parser.add_argument("--lines", type=int, default=40, help="calls in progress per node (default 40)")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second (default 60)")
    parser.add_argument("--spread-s", type=float, default=-1.0,
                        help="telephony.engine_spread_s: a window's calls fall due over its first S seconds; "
                             "-1 (default, the engine's) = sized from the engine's capacity, 0 = all at the start")
    parser.add_argument("--tick-s", type=float, default=TICK_S,
                        help="the nodes' tick, simulated seconds (default: serve's 5; a freed line waits for the next tick)")
    parser.add_argument("--day-end", default="19:30", help="simulated time the nodes stop (default 19:30)")
    parser.add_argument("--broadcast", action="store_true",
                        help="a warning broadcast to every elder instead of a care day (see the module doc)")
    parser.add_argument("--database-url", default="", help="an existing EMPTY PostgreSQL scratch database")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)  # a node's own JSON arguments


# --- one node ------------------------------------------------------------------------------------------
class StandInPhones:
    """Phones that behave as ``behaviour`` says, on the fast clock. Each dial is logged with its job."""

    def __init__(self, *, clock, settings) -> None:
        self.clock = clock
        self.settings = settings
        self.pending_ref: dict[str, str] = {}  # number → call_ref of the ledger entry written for its dial
        self.dials: list[list[Any]] = []  # [call_ref, number, simulated time, result]
        self._n = 0

    async def dial(self, number: str, *, timeout_s: float | None = None, line=None):  # no gateway: no line gate

        ref = self.pending_ref.pop(number, "")
        elder_id = int(number[1:])
        kind = behaviour(elder_id)
        now = self.clock.now()
        if number.startswith("8"):
            result = "answer" if kind == "family_answers" else "no_answer"
        elif kind in ("family_answers", "nobody"):
            result = "no_answer"
        elif kind == "busy_first":  # busy on the first try (the job's key ends in :a1), free on the retry
            result = "busy" if ref.endswith(":a1") else "answer"
        else:
            result = "answer"
        self.dials.append([ref, number, now.isoformat(), result])
        if result == "busy":
            await self.clock.sleep(1.0)
            raise TelephonyError(f"{number}: busy", code="busy")
        if result == "no_answer":
            await self.clock.sleep(RING_UNANSWERED_S)
            raise TelephonyError(f"{number}: no answer", code="no_answer")
        await self.clock.sleep(RING_ANSWERED_S)
        self._n += 1
        return _Call(call_id=f"{os.getpid()}-{self._n}", remote_number=number)

    async def run_call(self, call, *, session, greeting, on_key):
        assert "确认码" in greeting  # the identity proof is spoken first
        await self.clock.sleep(TALK_S)
        key = "1"
        if not call.remote_number.startswith("8") and behaviour(int(call.remote_number[1:])) == "unwell":
            key = "2"
        await on_key(key)


class SharedClock:
    """The bench's simulated clock, shared by the processes through a small file the bench maps: slot 0 is
    the simulated seconds since 07:55 (written by the bench), slot k the time node k last finished a tick.
    ``sleep`` wakes when the shared time has passed the target (one poller per process, every 20 ms)."""

    def __init__(self, path: str, *, node: int) -> None:
        import mmap

        self._file = open(path, "r+b")  # noqa: SIM115 (open for the process's life)
        self._map = mmap.mmap(self._file.fileno(), 0)
        self.node = node
        self._sleepers: list[tuple[float, int, asyncio.Future]] = []
        self._n = 0

    def _slot(self, k: int) -> float:
        import struct

        return struct.unpack_from("d", self._map, 8 * k)[0]

    def seconds(self) -> float:
        return self._slot(0)

    def now(self) -> datetime:
        return DAY_START + timedelta(seconds=self.seconds())

    def ticked(self, *, last: bool = False) -> None:
        """This node finished a tick (``last``: its loop ended; it no longer holds the clock back)."""
        import struct

        struct.pack_into("d", self._map, 8 * self.node, 1e12 if last else self.seconds())

    async def sleep(self, seconds: float) -> None:
        import heapq

        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        self._n += 1
        heapq.heappush(self._sleepers, (self.seconds() + seconds, self._n, fut))
        await fut

    async def poll(self) -> None:
        import heapq

        while True:
            await asyncio.sleep(0.02)
            t = self.seconds()
            while self._sleepers and self._sleepers[0][0] <= t:
                _, _, fut = heapq.heappop(self._sleepers)
                if not fut.done():
                    fut.set_result(None)


def _drive_clock(path: Path, *, nodes: int, speed: float, tick_s: float, procs) -> None:
    """Move the shared clock on at ``speed`` while every node keeps up (see the module doc)."""
    import mmap
    import struct

    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        sim, last = 0.0, time.monotonic()
        while any(p.poll() is None for p in procs):
            time.sleep(0.02)
            now = time.monotonic()
            step, last = min((now - last) * speed, tick_s / 2), now
            slowest = min(struct.unpack_from("d", m, 8 * k)[0] for k in range(1, nodes + 1))
            if slowest >= sim - 2 * tick_s:
                sim += step
                struct.pack_into("d", m, 0, sim)


class _Call:
    def __init__(self, *, call_id: str, remote_number: str) -> None:
        self.call_id = call_id
        self.remote_number = remote_number

    async def hangup(self) -> None:
        return None


async def _node(spec: dict[str, Any]) -> dict[str, Any]:
    import dataclasses

    settings = load_settings()
    # stand-in phones take no CPU per call: a node's lines are --lines (no measured pipeline capacity, the
    # gateway's lines = --lines + the inbound reserve, which the engine leaves free)
    settings = dataclasses.replace(settings, telephony=dataclasses.replace(
        settings.telephony, engine_tick_s=spec["tick_s"], engine_lease_s=max(10 * spec["tick_s"], 120.0), engine_max_calls=spec["lines"],
        engine_measured_calls=0, max_concurrent_calls=spec["lines"] + settings.telephony.engine_inbound_reserve_calls,
        engine_plan_every_s=3600.0, engine_spread_s=spec["spread_s"]))
    clock = SharedClock(spec["clock"], node=spec["node"])
    db = create_engine_for(StoreSettings(database_url=spec["url"], pool_size=10))
    ledger = CallLedger.for_engine(db, settings=settings, clock=lambda: datetime.now().astimezone())
    phones = StandInPhones(clock=clock, settings=settings)
    recorder = ledger_recorder(ledger)

    async def record(intent):
        entry = await recorder(intent)
        phones.pending_ref[intent.number] = intent.call_ref
        return entry

    alerts: list[list[Any]] = []

    async def on_alert(alert) -> None:
        alerts.append([alert.elder_id, alert.kind])

    runner = CareCallRunner(gateway=phones, ledger_record=record, ledger_mark=ledger_marker(ledger), on_alert=on_alert,
                            clock=clock, after_outcome_s=0.0)
    broadcast = spec.get("broadcast", False)  # the warning's rows come from the bench, no care calls
    schedules = [] if broadcast else [
        CareSchedule(elder_id=e, number=elder_number(e), windows=(TimeWindow.parse(window_of(e)),),
                     family=(CallContact(name="家属", number=family_number(e)),))
        for e in range(1, spec["elders"] + 1)]

    async def source():
        return schedules

    engine = CallEngine.from_settings(settings=settings, jobs=CallJobStore.for_engine(db, now=clock.now), runner=runner,
                                      schedules=source, clock=clock, node_id=f"node{spec['node']}")
    end = datetime.combine(DAY.date(), dtime.fromisoformat(spec["day_end"]))
    if broadcast:
        end = DAY_START + timedelta(days=1)  # a cap: the nodes stop once no row is open
    reestimate: dict[str, Any] | None = None
    poller = asyncio.create_task(clock.poll())
    _dump_tasks_on_sigusr1()
    try:
        async with asyncio.TaskGroup() as tg:  # CallEngine.run's loop, telling the bench each finished tick
            while clock.now() < end:
                await engine.tick(tg)
                if broadcast and spec["node"] == 1 and reestimate is None and clock.seconds() >= REESTIMATE_AFTER_S:
                    at = clock.seconds()  # what the engine reports once it has measured its first calls
                    reestimate = {"at_s": round(at), **await capacity.broadcast_estimate(
                        engine.jobs, BROADCAST_ID, telephony=settings.telephony)}
                if broadcast and await _all_final(engine.jobs):
                    break
                # the tick is reported done only now, as the sleep starts: reported at the tick's end, a node whose
                # work after it outlasted a tick slept past the point where the bench held the clock for it (the
                # bench waits while a node is two ticks behind) — every process waited, nothing moved
                clock.ticked()
                await clock.sleep(engine.tick_s)
            clock.ticked(last=True)  # the calls in progress end on the clock the bench keeps moving
    finally:
        poller.cancel()
        await asyncio.gather(poller, return_exceptions=True)
    await db.dispose()
    s = engine.stats
    return {"node": spec["node"], "dials": phones.dials, "alerts": alerts, "claimed": s.claimed, "errors": s.errors,
            "recovered": s.recovered, "missed": s.missed, "max_lag_s": s.max_lag_s, "last_error": s.last_error,
            "reestimate": reestimate}


def _dump_tasks_on_sigusr1() -> None:
    """``kill -USR1 <node>``: every task's stack on stderr (a stalled node says where it waits)."""
    import signal

    def dump() -> None:
        for task in asyncio.all_tasks():
            task.print_stack(limit=12, file=sys.stderr)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)


async def _all_final(jobs: CallJobStore) -> bool:
    """Rows exist and none is planned or in work (a broadcast is over)."""
    counts = await jobs.counts()
    return bool(counts) and not any(counts.get(state, 0) for state in ("planned", *HELD_STATES))


# --- the whole day ---------------------------------------------------------------------------------------
async def _seed(url: str, elders: int) -> None:
    from sqlalchemy import insert

    db = create_engine_for(StoreSettings(database_url=url))
    try:
        async with db.begin() as conn:
            for i in range(1, elders + 1, 2000):
                ids = range(i, min(i + 2000, elders + 1))
                await conn.execute(insert(Elder.__table__), [
                    {"id": e, "name": f"长者{e}", "district": DISTRICTS[e % len(DISTRICTS)], "dialect": "cmn"} for e in ids])
                await conn.execute(insert(ElderPhone.__table__), [
                    {"elder_id": e, "number": elder_number(e), "is_primary": True} for e in ids])
                await conn.execute(insert(FamilyContactRow.__table__), [
                    {"elder_id": e, "name": "家属", "phone": family_number(e), "priority": 1} for e in ids])
            if db.dialect.name == "postgresql":
                from sqlalchemy import text

                await conn.execute(text("SELECT setval('elders_id_seq', :n)"), {"n": elders})
    finally:
        await db.dispose()


def _dial_tally(nodes: list[dict[str, Any]], *, broadcast: bool) -> tuple[list, list, Counter, int]:
    """Every node's dials and alerts, dials per elder, and the duplicates: a job dialled twice, or an elder
    dialled more often than its behaviour needs."""
    dials = [d for n in nodes for d in n["dials"]]
    alerts = [a for n in nodes for a in n["alerts"]]
    by_ref = Counter(d[0] for d in dials)
    by_elder = Counter(int(d[1][1:]) for d in dials)
    duplicates = sum(c - 1 for c in by_ref.values() if c > 1)
    duplicates += sum(max(0, by_elder[e] - needed_dials(behaviour(e), broadcast=broadcast)) for e in by_elder)
    return dials, alerts, by_elder, duplicates


async def _tally(url: str, elders: int, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    from sqlalchemy import func, select


    dials, alerts, by_elder, duplicates = _dial_tally(nodes, broadcast=False)
    db = create_engine_for(StoreSettings(database_url=url))
    try:
        async with db.connect() as conn:
            today = CallJob.chain.like(f"%:{DAY.date().isoformat()}")
            jobs = (await conn.execute(select(func.count()).select_from(CallJob).where(today))).scalar_one()
            tomorrow = (await conn.execute(select(func.count()).select_from(CallJob).where(~today))).scalar_one()
            open_chains = {int(c.split(":")[1]) for c in (await conn.execute(
                select(CallJob.chain).where(today, CallJob.state.not_in(("done", "no_answer", "busy", "failed"))))).scalars()}
            missed_windows = (await conn.execute(select(func.count()).select_from(CallJob)
                                                 .where(CallJob.state == "missed"))).scalar_one()
            lags = (await conn.execute(select(CallJob.not_before, CallJob.dialled_at, CallJob.job_key)
                                       .where(CallJob.dialled_at.is_not(None)))).all()
            ledger_entries = (await conn.execute(select(func.count()).select_from(LedgerEntry))).scalar_one()
    finally:
        await db.dispose()
    waits = sorted((d - n).total_seconds() for n, d, _ in lags)
    missed = {e for e in range(1, elders + 1) if by_elder[e] < needed_dials(behaviour(e))} | open_chains
    expected = [e for e in range(1, elders + 1) if behaviour(e) in ("unwell", "family_answers", "nobody")]
    alerted = Counter((e, k) for e, k in alerts)
    family_answered = {int(d[1][1:]) for d in dials if d[1].startswith("8") and d[3] == "answer"}
    fired = sum(1 for e in expected if (behaviour(e) == "unwell" and alerted[(e, "unwell")] == 1)
                or (behaviour(e) == "nobody" and alerted[(e, "no_answer")] == 1)
                or (behaviour(e) == "family_answers" and e in family_answered))
    return {
        "elders": elders, "jobs": jobs, "calls_placed": len(dials), "duplicates": duplicates, "missed": len(missed),
        "escalations_expected": len(expected), "escalations_fired": fired,
        "max_lag_s": round(waits[-1] if waits else 0.0, 1),
        "lag_p50_s": round(waits[len(waits) // 2], 1) if waits else 0.0,
        "lag_p95_s": round(waits[int(len(waits) * 0.95)], 1) if waits else 0.0,
        "longest_wait": max(lags, key=lambda r: r[1] - r[0])[2] if lags else None,
        "jobs_planned_for_tomorrow": tomorrow,
        "ledger_entries": ledger_entries, "alerts": len(alerts), "missed_windows": missed_windows,
        "claimed_per_node": [n["claimed"] for n in nodes], "engine_errors": sum(n["errors"] for n in nodes),
        "recovered": sum(n["recovered"] for n in nodes),
        "node_max_lag_s": [round(n["max_lag_s"], 1) for n in nodes],
    }


BROADCAST_ID = "bench-typhoon"
REESTIMATE_AFTER_S = 1200.0  # simulated: 15 minutes of calls after 08:00, the engine asked again


async def _plan_broadcast(url: str, nodes: int) -> dict[str, Any]:
    """Once every node has written its heartbeat: the warning to every elder, planned at 07:55 simulated by
    the real planning path, and what the engine's capacity report expects of it."""
    settings = load_settings()
    db = create_engine_for(StoreSettings(database_url=url))
    jobs = CallJobStore.for_engine(db, now=lambda: DAY_START)
    try:
        deadline = time.monotonic() + 300
        while len(await capacity.live_nodes(jobs)) < nodes:
            if time.monotonic() > deadline:
                raise SetupError("the engine nodes did not start within 300 s", code="bench_failed")
            await asyncio.sleep(0.2)
        planned = await send_warning(store=PlatformStore(engine=db), jobs=jobs,
                                     broadcast=Broadcast(broadcast_id=BROADCAST_ID, kind="typhoon"),
                                     quiet_hours=settings.telephony.quiet_hours, now=DAY_START)
        eta = await capacity.broadcast_estimate(jobs, BROADCAST_ID, telephony=settings.telephony)
    finally:
        await db.dispose()
    return {**planned, **eta}


async def _tally_broadcast(url: str, elders: int, nodes: list[dict[str, Any]], plan: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy import func, select

    dials, alerts, by_elder, duplicates = _dial_tally(nodes, broadcast=True)
    db = create_engine_for(StoreSettings(database_url=url))
    try:
        async with db.connect() as conn:
            jobs_n = (await conn.execute(select(func.count()).select_from(CallJob))).scalar_one()
            open_chains = {int(c.split(":")[2]) for c in (await conn.execute(
                select(CallJob.chain).where(CallJob.kind == "warning",
                                            CallJob.state.not_in(("done", "no_answer", "busy", "failed"))))).scalars()}
            last = (await conn.execute(select(func.max(CallJob.finished_at))
                                       .where(CallJob.kind == "warning"))).scalar()
            lags = (await conn.execute(select(CallJob.not_before, CallJob.dialled_at)
                                       .where(CallJob.dialled_at.is_not(None)))).all()
            ledger_entries = (await conn.execute(select(func.count()).select_from(LedgerEntry))).scalar_one()
        last = last.replace(tzinfo=None) if last is not None else None
        jobs = CallJobStore.for_engine(db, now=lambda: last or DAY_START)
        report = (await warning_report(jobs, broadcast_id=BROADCAST_ID)).get(BROADCAST_ID, {})
        settings = load_settings()
        measured = await capacity.measure(jobs, default_hold_s=settings.telephony.engine_default_hold_s)
    finally:
        await db.dispose()
    total = Counter()
    for counts in report.values():
        total.update(counts)
    kinds = Counter(behaviour(e) for e in range(1, elders + 1))
    missed = {e for e in range(1, elders + 1) if by_elder[e] < needed_dials(behaviour(e), broadcast=True)} | open_chains
    done_s = round((last - DAY_START).total_seconds(), 1) if last is not None else None
    expected = plan.get("expected_done_s")
    again = next((n["reestimate"] for n in nodes if n.get("reestimate")), None) or {}
    measured_expected = (again["at_s"] + again["expected_done_s"] if again.get("expected_done_s") is not None
                         else None)
    waits = sorted((d - n).total_seconds() for n, d in lags)
    return {
        "elders": elders, "jobs": jobs_n, "calls_placed": len(dials), "duplicates": duplicates, "missed": len(missed),
        "delivered": {"heard": total["heard"], "need_help": total["need_help"],
                      "not_reached": total["no_answer"] + total["failed"]},
        "capacity_calls_per_h": plan.get("capacity_calls_per_h"), "expected_done_s": expected, "done_s": done_s,
        "within_capacity": done_s is not None and expected is not None and done_s <= expected,
        "delivered_expected": {"heard": kinds["answers"] + kinds["busy_first"], "need_help": kinds["unwell"],
                               "not_reached": kinds["family_answers"] + kinds["nobody"]},
        "planned": {k: plan[k] for k in ("elders", "added", "nodes", "expected_calls", "expected_done_at")},
        # the engine asked again 15 simulated minutes into the calls, on the capacity it measured by then
        "reestimate": again, "expected_done_s_measured": measured_expected,
        "within_measured_capacity": done_s is not None and measured_expected is not None and done_s <= measured_expected,
        "answered_no_key": total["answered"], "pending": total["pending"],
        "help_alerts": sum(1 for _, k in alerts if k == "help"),
        "capacity_measured_at_end": measured.as_dict(),
        "lag_p50_s": round(waits[len(waits) // 2], 1) if waits else 0.0,
        "lag_p95_s": round(waits[int(len(waits) * 0.95)], 1) if waits else 0.0,
        "max_lag_s": round(waits[-1], 1) if waits else 0.0,
        "ledger_entries": ledger_entries, "claimed_per_node": [n["claimed"] for n in nodes],
        "engine_errors": sum(n["errors"] for n in nodes), "recovered": sum(n["recovered"] for n in nodes),
    }


def bench(*, elders: int, nodes: int, lines: int, speed: float, day_end: str, database_url: str,
          spread_s: float = -1.0, broadcast: bool = False, tick_s: float = TICK_S) -> dict[str, Any]:

    t0 = time.monotonic()
    with throwaway_postgres() if not database_url else _given(database_url) as url:
        if url is None:
            raise SetupError("bench outbound needs PostgreSQL (postgresql-15, or --database-url)", code="no_postgres")
        upgrade_heads(url)
        asyncio.run(_seed(url, elders))
        setup_s = time.monotonic() - t0
        with tempfile.TemporaryDirectory(prefix="outbound-bench-") as tmp:
            clock_file = Path(tmp) / "clock"
            clock_file.write_bytes(bytes(8 * (nodes + 1)))
            procs = []
            for k in range(nodes):
                spec = {"url": url, "node": k + 1, "elders": elders, "lines": lines, "speed": speed, "spread_s": spread_s, "tick_s": tick_s,
                        "day_end": day_end, "out": str(Path(tmp) / f"node{k + 1}.json"), "clock": str(clock_file),
                        "broadcast": broadcast}
                procs.append(subprocess.Popen([sys.executable, "-m", "telephony.outbound_bench", "--worker",
                                               json.dumps(spec)]))
            plan: dict[str, Any] = {}
            if broadcast:  # the clock stays at 07:55 until the warning is planned
                try:
                    plan = asyncio.run(_plan_broadcast(url, nodes))
                except BaseException:
                    for p in procs:
                        p.kill()
                    raise
            _drive_clock(clock_file, nodes=nodes, speed=speed, tick_s=tick_s, procs=procs)
            codes = [p.wait() for p in procs]
            if any(codes):
                raise SetupError(f"an engine process failed (exit codes {codes})", code="bench_failed")
            results = [json.loads((Path(tmp) / f"node{k + 1}.json").read_text()) for k in range(nodes)]
        if broadcast:
            out = asyncio.run(_tally_broadcast(url, elders, results, plan))
            out.update({"wall_s": round(time.monotonic() - t0, 1), "setup_s": round(setup_s, 1), "nodes": nodes,
                        "lines_per_node": lines, "tick_s": tick_s, "speed": speed, "planned_at": DAY_START.isoformat(),
                        "phones": "stand-in (no SIP)"})
            return out
        out = asyncio.run(_tally(url, elders, results))
    out.update({"wall_s": round(time.monotonic() - t0, 1), "setup_s": round(setup_s, 1), "nodes": nodes,
                "lines_per_node": lines, "spread_s": spread_s, "tick_s": tick_s, "speed": speed, "simulated_day": f"07:55-{day_end}",
                "phones": "stand-in (no SIP)"})
    return out


class _given:
    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc) -> None:
        return None


def run(args: argparse.Namespace) -> int:
    if args.worker:
        spec = json.loads(args.worker)
        result = asyncio.run(_node(spec))
        Path(spec["out"]).write_text(json.dumps(result))
        return 0
    result = bench(elders=args.elders, nodes=args.nodes, lines=args.lines, speed=args.speed, day_end=args.day_end,
                   database_url=args.database_url, spread_s=args.spread_s, broadcast=args.broadcast, tick_s=args.tick_s)
    print(json.dumps(result, ensure_ascii=False) if args.json else "\n".join(f"{k:>22}: {v}" for k, v in result.items()))
    if args.broadcast:
        ok = (result["duplicates"] == 0 and result["missed"] == 0 and result["within_capacity"]
              and result["delivered"] == result["delivered_expected"])
        return 0 if ok else 1
    ok = result["duplicates"] == 0 and result["missed"] == 0 and result["escalations_fired"] == result["escalations_expected"]
    return 0 if ok else 1


if __name__ == "__main__":
    import logging

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(run(parser.parse_args()))
