"""The call engine: care calls planned as ``call_jobs`` rows, worked by any number of nodes (issue #17).

Each tick (``tick_s``) a node
1. renews the leases of the jobs it works on (heartbeat) and writes step ends that failed to write before;
2. resolves jobs whose node died (lease ran out): a job claimed but never dialled is planned again; a job
   recorded as ``dialling`` before its INVITE is not dialled again blindly — the ledger entry / the
   ``calls`` rows say whether someone answered (then it ends as an interrupted call and an operator is
   told), otherwise the dial counts as unanswered and the next step is planned as usual; a call that was
   answered and cut off by the crash ends the same way;
3. plans each elder's next care call (``care:<elder>:<local date>``; every ``plan_every_s``, idempotent);
4. claims due jobs up to its free lines and works each in its own task;
5. writes its heartbeat row (``call_engine_nodes``: its lines, dial rate, tick), from which any node reports
   the platform's capacity (``telephony.capacity``).

Lines (issue #17 item 2): a node holds at most ``max_calls`` outbound calls in progress (ringing included;
a retry wait holds none), and never more than the node can serve: ``measured_calls`` (what ``assistant
bench calls --pipeline real`` measured this box serving well, inbound and outbound together) minus the calls
already on the gateway that are not the engine's, and never so many that fewer than ``inbound_reserve``
of the gateway's ``lines`` (``telephony.max_concurrent_calls``, beyond which an inbound INVITE gets 503) stay
free: an elder calling in an emergency always finds a line. ``line_gate`` is the gateway's
``telephony.lines.LineGate``, which every outbound call of the gateway asks for a line (operator call-backs
and hand-over legs too): a claimed job holds a routine line ticket from its claim to its call's end, the
engine claims only lines nobody else is waiting for (a queued operator call-back gets the next free line)
and counts the gateway's other calls against the CPU. Without a gate (a bench, tests) only the static
limit applies.
Dials are paced at ``dials_per_s`` per node (the trunk's call rate). A window's first calls fall due spread
over the window (``spread_s``; ``SPREAD_BY_CAPACITY``: over the time the platform's capacity needs for them,
at most half the window, never into quiet hours), each elder at the same place in it every day.

A step's end and the next step's row are one transaction (``CallJobStore.finish``): a retry is a planned
row with ``not_before`` = now + the retry delay, so a retry wait holds no line and survives restarts; no
answer after the retries → each family contact in turn → an operator alert, itself a job row so a failing
alert store is retried (``alert_retry_s``), never lost. Every dial is written to the fraud-guard ledger
first with ``call_ref = job:<job_key>`` (one entry, one code per job), then recorded as ``dialling``,
then dialled. The placing itself (identity proof, keypad, outcome) is ``CareCallRunner.place``.

Store and ledger errors are logged and the work is tried again next tick; they never end the engine, and a
call in progress is never hung up because a bookkeeping write failed. ``run(stop=...)`` returns after the
calls in progress have ended; cancelling it is a crash (what the fault tests do).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from assistant.call_alert import CallAlert
from telephony import broadcasts, capacity, followups, medication
from telephony.call_jobs import CallJobStore, JobInfo, NewJob, as_stored
from telephony.lines import LineGate, LineTicket, LineUse
from telephony.scheduler import (
    OUTCOME_ALERTS,
    RETRYABLE,
    CareCallRunner,
    CareSchedule,
    Clock,
    PlacedCall,
    RetryPolicy,
    SchedulesSource,
    _entry_id,
)

logger = logging.getLogger(__name__)

# calls that say a message and ask 1 / 2 (telephony.broadcasts, .followups, .medication); family only for medication
PLATFORM_KINDS = ("warning", "order_followup", "medication")
MESSAGES = {"warning": broadcasts.message, "order_followup": followups.message, "medication": medication.message}
JobSource = Callable[[datetime], Awaitable[Sequence[NewJob]]]  # rows to plan (idempotent keys), asked each pass
LOST_IN_DIALLING = "lost_in_dialling"  # the node died while the INVITE was out and nobody answered
SPREAD_BY_CAPACITY = -1.0  # spread_s: a window's first calls spread over what the capacity needs for them


class LeaseLost(Exception):
    """The job's row is not this node's any more: do not dial."""


@dataclass(kw_only=True)
class EngineStats:
    claimed: int = 0
    dialled: int = 0
    answered: int = 0
    alerts_fired: int = 0
    recovered: int = 0
    missed: int = 0
    errors: int = 0
    max_lag_s: float = 0.0  # from a job's not_before to its dial (engine clock)
    in_progress: int = 0
    last_error: str | None = None
    lost_leases: list[int] = field(default_factory=list)


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class CallEngine:
    def __init__(self, *, jobs: CallJobStore, runner: CareCallRunner, schedules: SchedulesSource, clock: Clock,
                 node_id: str, tick_s: float, lease_s: float, max_calls: int, dials_per_s: float = 0.0,
                 plan_every_s: float = 300.0, alert_retry_s: float = 60.0, spread_s: float = 0.0,
                 step_timeout_s: float = 30.0, retry: RetryPolicy | None = None,
                 sources: Sequence[JobSource] = (),
                 reopen_order: Callable[..., Awaitable[Any]] | None = None, lines: int = 0, measured_calls: int = 0,
                 inbound_reserve: int = 0, line_gate: LineGate | None = None,
                 default_hold_s: float = 90.0) -> None:
        if lease_s <= 2 * tick_s:
            raise ValueError("engine lease_s must be more than two ticks (a live node must renew it in time)")
        if lines > 0 and inbound_reserve >= lines:
            raise ValueError("engine inbound_reserve must leave the engine at least one of the gateway's lines")
        self.jobs = jobs
        self.runner = runner
        self.schedules = schedules
        self.clock = clock
        self.node_id = node_id
        self.tick_s = tick_s
        self.lease_s = lease_s
        # calls in all (inbound too) the node serves well, and the lines the engine may fill (see the module doc)
        self.cpu_calls = measured_calls if measured_calls > 0 else lines
        self.line_calls = lines - inbound_reserve if lines > 0 else 0
        self.max_calls = min([max_calls, *(c for c in (self.cpu_calls, self.line_calls) if c > 0)])
        self.line_gate = line_gate
        self.default_hold_s = default_hold_s
        self.dial_interval_s = 1.0 / dials_per_s if dials_per_s > 0 else 0.0
        self.plan_every_s = plan_every_s
        self.alert_retry_s = alert_retry_s
        self.spread_s = spread_s
        self.step_timeout_s = step_timeout_s  # real seconds (asyncio), whatever the engine clock
        self.retry = retry or runner.retry
        self.sources = list(sources)  # order follow-ups, medication reminders (planned each pass, like care calls)
        self.reopen_order = reopen_order  # PlatformStore.reopen_order: a follow-up's problem reopens the order
        self.stats = EngineStats()
        self._held: dict[int, JobInfo] = {}
        self._dialled: set[int] = set()
        self._tickets: dict[int, LineTicket] = {}  # job id → the line its call goes out on (with a line gate)
        self._unwritten: dict[int, dict[str, Any]] = {}  # step ends the store refused: written again each tick
        self._schedules: dict[int, CareSchedule] = {}
        self._planned_until: dict[int, datetime] = {}
        self._last_plan: datetime | None = None
        self._next_dial: datetime | None = None
        self._last_beat: datetime | None = None
        self._tick_period_s: float | None = None

    @classmethod
    def from_settings(cls, *, settings, jobs: CallJobStore, runner: CareCallRunner, schedules: SchedulesSource,
                      clock: Clock | None = None, node_id: str | None = None, sources: Sequence[JobSource] = (),
                      reopen_order=None, line_gate: LineGate | None = None) -> CallEngine:
        t = settings.telephony
        return cls(jobs=jobs, runner=runner, schedules=schedules, clock=clock or runner.clock,
                   node_id=node_id or t.engine_node_id or default_node_id(), tick_s=t.engine_tick_s,
                   lease_s=t.engine_lease_s, max_calls=t.engine_max_calls, dials_per_s=t.engine_dials_per_s,
                   plan_every_s=t.engine_plan_every_s, alert_retry_s=t.engine_alert_retry_s, spread_s=t.engine_spread_s,
                   step_timeout_s=t.engine_step_timeout_s, sources=sources, reopen_order=reopen_order,
                   lines=t.max_concurrent_calls, measured_calls=t.engine_measured_calls,
                   inbound_reserve=t.engine_inbound_reserve_calls, line_gate=line_gate,
                   default_hold_s=t.engine_default_hold_s)

    def now(self) -> datetime:
        return as_stored(self.clock.now())

    # --- the loop ----------------------------------------------------------------------------------------
    async def run(self, *, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        logger.info("call engine %s: %d lines, tick %.0f s, lease %.0f s", self.node_id, self.max_calls, self.tick_s,
                    self.lease_s)
        async with asyncio.TaskGroup() as tg:
            while not stop.is_set():
                await self.tick(tg)
                sleeper = asyncio.create_task(self.clock.sleep(self.tick_s))
                stopper = asyncio.create_task(stop.wait())
                try:
                    await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for t in (sleeper, stopper):
                        t.cancel()
                    await asyncio.gather(sleeper, stopper, return_exceptions=True)
        # leaving the TaskGroup waited for the calls in progress: their steps are written

    async def tick(self, tg: asyncio.TaskGroup) -> None:
        for what, step in (("heartbeat", self._heartbeat), ("write step ends", self._write_unwritten),
                           ("recover", self._recover), ("node heartbeat", self._beat), ("plan", self._plan)):
            await self._guard(what, step)
        await self._guard("claim", partial(self._claim, tg))
        self.stats.in_progress = len(self._held)

    async def _beat(self) -> None:
        """The node's heartbeat row; its tick as measured (the configured tick plus the tick's own work: a
        freed line waits that long for the next claim)."""
        now = self.now()
        if self._last_beat is not None and now > self._last_beat:
            period = (now - self._last_beat).total_seconds()
            self._tick_period_s = period if self._tick_period_s is None else 0.8 * self._tick_period_s + 0.2 * period
        self._last_beat = now
        rate = 1.0 / self.dial_interval_s if self.dial_interval_s > 0 else 0.0
        await capacity.beat(self.jobs, capacity.NodeBeat(node_id=self.node_id, lines=self.max_calls, dials_per_s=rate,
                                                         tick_s=max(self.tick_s, self._tick_period_s or 0.0),
                                                         lease_s=self.lease_s, in_progress=len(self._held)))

    async def _guard(self, what: str, step) -> None:
        try:
            async with asyncio.timeout(self.step_timeout_s):  # a hung store call must not stall the node
                await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store is down for a tick, a lookup failed: log it, try again next tick
            self.stats.errors += 1
            self.stats.last_error = f"{what}: {_describe(exc)}"
            logger.error("call engine %s: %s failed (%s); tried again next tick", self.node_id, what, _describe(exc))

    async def _heartbeat(self) -> None:
        if not self._held:
            return
        alive = await self.jobs.heartbeat(self.node_id, list(self._held), lease_s=self.lease_s)
        for job_id in set(self._held) - alive:
            if job_id not in self._unwritten:  # its row ended meanwhile, or another node took it over
                self.stats.lost_leases.append(job_id)

    async def _write_unwritten(self) -> None:
        for job_id, end in list(self._unwritten.items()):
            await self._finish(self._held[job_id], **end)

    def free_lines(self) -> int:
        """Calls this node may start now (see the module doc): its limit, less what the gateway's other
        calls take of the CPU, and no more than the line gate gives routine calls (never the lines kept for
        inbound calls, nor the ones other outbound calls wait for)."""
        held = len(self._held)
        free = self.max_calls - held
        if self.line_gate is not None:
            others = max(self.line_gate.busy - len(self._tickets), 0)  # inbound, call-backs, hand-overs
            if self.cpu_calls > 0:
                free = min(free, self.cpu_calls - others - held)
            free = min(free, self.line_gate.free(LineUse.ROUTINE))
        return max(free, 0)

    async def _claim(self, tg: asyncio.TaskGroup) -> None:
        """Claims up to the free lines, each job (but an operator alert, which dials nothing) with its line
        ticket taken before the claim: nobody takes the line while the claim is on its way to the store."""
        free = self.free_lines()
        gate = self.line_gate
        tickets = [t for _ in range(free) if (t := gate.try_take(LineUse.ROUTINE)) is not None] if gate else []
        try:
            claimed = await self.jobs.claim(self.node_id, limit=len(tickets) if gate else free, lease_s=self.lease_s)
            for job in claimed:
                self.stats.claimed += 1
                self._held[job.id] = job
                if tickets and job.kind != "alert":
                    self._tickets[job.id] = tickets.pop()
                tg.create_task(self._run_job(job), name=f"call-job-{job.id}")
        finally:
            for t in tickets:  # fewer due jobs than lines
                t.release()

    # --- planning --------------------------------------------------------------------------------------
    async def _plan(self) -> None:
        now = self.now()
        if self._last_plan is not None and (now - self._last_plan).total_seconds() < self.plan_every_s:
            return
        schedules = await self.schedules()
        self._schedules = {s.elder_id: s for s in schedules}
        slots: list[tuple[CareSchedule, datetime, datetime | None]] = []  # elder, first minute, its window's end
        for i, s in enumerate(schedules):
            if i % 250 == 249:
                await asyncio.sleep(0)  # 25,000 elders: let the calls in progress run
            until = self._planned_until.get(s.elder_id)
            if until is not None and until > now:
                continue
            first = s.next_call_time(s.local(self.clock.now()))
            if first is not None:
                slots.append((s, first, _window_end(s, first)))
        spans = await self._spans(slots)
        new: list[NewJob] = []
        for s, first, end in slots:
            job = self._first_call(s, first, end, spans.get(self._window_key(s, first, end), 0.0))
            new.append(job)
            self._planned_until[s.elder_id] = as_stored(job.deadline or job.not_before)
        if new:
            added = await self.jobs.plan(new)
            logger.info("call engine %s: %d care calls planned (%d already were)", self.node_id, added, len(new) - added)
        for source in self.sources:
            added = await self.jobs.plan(await source(self.clock.now()))
            if added:
                logger.info("call engine %s: %d calls planned by %s", self.node_id, added, type(source).__name__)
        self._last_plan = now

    def _window_key(self, s: CareSchedule, first: datetime, end: datetime | None) -> tuple:
        return (as_stored(self._to_clock(s, first)), as_stored(self._to_clock(s, end)) if end else None)

    async def _spans(self, slots: Sequence[tuple[CareSchedule, datetime, datetime | None]]) -> dict[tuple, float]:
        """Per window (its first minute and end on the engine clock): over how many seconds its first calls
        fall due — ``spread_s``, or sized from the platform's capacity (``SPREAD_BY_CAPACITY``)."""
        windows: dict[tuple, list[float]] = {}  # key → [elders, window seconds]
        for s, first, end in slots:
            if end is not None:
                w = windows.setdefault(self._window_key(s, first, end), [0, (end - first).total_seconds()])
                w[0] += 1
        if not windows or self.spread_s == 0:
            return {}
        if self.spread_s > 0:
            return {k: min(self.spread_s, length / 2) for k, (_, length) in windows.items()}
        cap = await capacity.measure(self.jobs, default_hold_s=self.default_hold_s)
        retries = len(self.retry.delays_s)
        spans = {k: capacity.spread_span_s(int(n), cap, retries=retries, window_s=length)
                 for k, (n, length) in windows.items()}
        logger.info("call engine %s: %.0f calls/h on %d nodes; windows spread over %s s", self.node_id,
                    cap.calls_per_hour, cap.nodes, sorted({round(v) for v in spans.values()}))
        return spans

    def _first_call(self, s: CareSchedule, first: datetime, end: datetime | None, span_s: float) -> NewJob:
        if span_s > 0:  # the same place in the window every day, per elder; never into quiet hours / a nap
            offset = span_s * ((s.elder_id * 2654435761) % 2**32) / 2**32
            while offset >= 60 and not s.allows(first + timedelta(seconds=int(offset))):
                offset /= 2
            if offset >= 1 and s.allows(first + timedelta(seconds=int(offset))):
                first += timedelta(seconds=int(offset))
        chain = f"care:{s.elder_id}:{first.date().isoformat()}"
        return NewJob(job_key=f"{chain}:a1", chain=chain, kind="care_call", elder_id=s.elder_id, number=s.number,
                      attempt=1, not_before=self._to_clock(s, first), deadline=self._to_clock(s, end) if end else None)

    def _to_clock(self, s: CareSchedule, local: datetime) -> datetime:
        return s.to_clock(local, aware=self.clock.now().tzinfo is not None)

    async def _schedule_of(self, elder_id: int) -> CareSchedule | None:
        if elder_id not in self._schedules:
            self._schedules = {s.elder_id: s for s in await self.schedules()}
        return self._schedules.get(elder_id)

    # --- one job -----------------------------------------------------------------------------------------
    async def _run_job(self, job: JobInfo) -> None:
        try:
            await self._work(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.errors += 1
            self.stats.last_error = f"job {job.job_key}: {_describe(exc)}"
            logger.error("call engine %s: job %s failed (%s)", self.node_id, job.job_key, _describe(exc))
            if job.id not in self._dialled:
                await self._release(job, not_before=self.clock.now() + timedelta(seconds=self.tick_s), why="error")
        finally:
            self._dialled.discard(job.id)
            ticket = self._tickets.pop(job.id, None)
            if ticket is not None:  # not dialled (spent: the call has ended and counts no more)
                ticket.release()
            if job.id not in self._unwritten:
                self._held.pop(job.id, None)

    async def _work(self, job: JobInfo) -> None:
        if job.kind == "alert":
            await self._fire_alert(job)
            return
        if job.kind in PLATFORM_KINDS:
            await self._place_platform_call(job)
            return
        schedule = await self._schedule_of(job.elder_id)
        if schedule is None:  # the elder was removed or deactivated since planning
            await self._finish(job, state="failed", result="no_schedule")
            return
        now = self.now()
        if job.kind == "care_call" and job.attempt == 1 and job.deadline is not None and now > job.deadline:
            self.stats.missed += 1
            logger.warning("call engine %s: %s is past its window (%s): not called", self.node_id, job.job_key,
                           job.deadline)
            await self._finish(job, state="missed", result="window_passed",
                               next_jobs=[self._alert_job(job, schedule, "care_call_missed",
                                                          {"source": "care_call", "window_end": job.deadline.isoformat()})])
            return
        await self._wait_for_trunk()
        self.stats.max_lag_s = max(self.stats.max_lag_s, (self.now() - job.not_before).total_seconds())
        placed = await self.runner.place(schedule, number=job.number, purpose=job.kind, attempt=job.attempt,
                                         call_ref=f"job:{job.job_key}", before_dial=partial(self._before_dial, job),
                                         on_answered=partial(self._on_answered, job), line=self._line(job))
        await self._end_step(job, schedule, placed)

    async def _place_platform_call(self, job: JobInfo) -> None:
        """A warning: the row carries its message and quiet hours (no schedule lookup); the same ledger entry,
        identity proof, trunk pacing and keypad as a care call."""
        schedule = broadcasts.job_schedule(job.elder_id, job.number, job.detail)
        await self._wait_for_trunk()
        self.stats.max_lag_s = max(self.stats.max_lag_s, (self.now() - job.not_before).total_seconds())
        purpose = "family_escalation" if job.detail.get("to_family") else job.kind  # family: the code, no safe phrase
        placed = await self.runner.place(schedule, number=job.number, purpose=purpose, attempt=job.attempt,
                                         call_ref=f"job:{job.job_key}", before_dial=partial(self._before_dial, job),
                                         on_answered=partial(self._on_answered, job), line=self._line(job),
                                         message=MESSAGES[job.kind](self.runner.phrases, job.detail, schedule.dialect))
        await self._end_platform_step(job, schedule, placed)

    async def _end_platform_step(self, job: JobInfo, schedule: CareSchedule, placed: PlacedCall) -> None:
        """Answered: heard / need help (→ one operator alert) / no key. Not answered: the care call's retries
        (never into quiet hours), then the row ends ``no_answer`` with nothing after it."""
        if placed.result in ("answered", "interrupted"):
            outcome = broadcasts.outcome_of(placed.outcome)
            nxt: list[NewJob] = []
            if placed.result == "interrupted":
                nxt = [self._alert_job(job, schedule, "human", {"source": job.kind, "reason": "interrupted",
                                                                "call_id": placed.call_id})]
            elif outcome == "need_help" and job.kind == "order_followup":  # a problem: reopen it, tell a person
                nxt = [self._alert_job(job, schedule, followups.PROBLEM_ALERT,
                                       {"source": job.kind, "outcome": placed.outcome, "call_id": placed.call_id,
                                        "order_id": job.detail.get("order_id"),
                                        "reopen_order": job.detail.get("order_id")})]
            elif outcome == "need_help":
                nxt = [self._alert_job(job, schedule, "help", {"source": job.kind, "outcome": placed.outcome,
                                                               "broadcast": job.detail.get("broadcast"),
                                                               "call_id": placed.call_id})]
            await self._finish(job, state="done", result=placed.result, outcome=outcome, call_id=placed.call_id,
                               next_jobs=nxt)
            return
        retryable = placed.result in RETRYABLE or placed.result == LOST_IN_DIALLING
        state = "busy" if placed.result == "busy" else "no_answer" if retryable else "failed"
        nxt = []
        family_index = job.detail.get("to_family") or 0
        at = (self.retry.next_attempt_at(job.attempt, self.clock.now(), schedule) if retryable and not family_index
              else None)
        if at is not None:
            n = job.attempt + 1
            nxt = [NewJob(job_key=f"{job.chain}:a{n}", chain=job.chain, kind=job.kind, elder_id=job.elder_id,
                          number=job.number, attempt=n, not_before=at,
                          detail={**job.detail, "attempts": [*job.detail.get("attempts", []), placed.result]})]
        elif job.kind == "medication":  # missed (or a family number failed): the next family contact
            step = medication.family_step(job.chain, job.elder_id, job.detail, index=family_index + 1,
                                          now=self.clock.now())
            nxt = ([step] if step is not None  # nobody (elder nor family) took it: a person phones the elder
                   else [self._alert_job(job, schedule, "no_answer", not_reached(job, placed.result, nobody=True))])
        if not retryable and not family_index and not any(j.kind == "alert" for j in nxt):
            nxt.append(self._alert_job(job, schedule, "no_answer", not_reached(job, placed.result)))  # the line is bad
        if not retryable:
            logger.error("call engine %s: %s could not be dialled (%s)%s", self.node_id, job.job_key, placed.result,
                         "" if family_index else "; an operator is told")
        await self._finish(job, state=state, result=placed.result, next_jobs=nxt)

    def _line(self, job: JobInfo) -> LineTicket | LineUse:
        """The line the job's call goes out on: its ticket (with a line gate), else a routine line."""
        return self._tickets.get(job.id, LineUse.ROUTINE)

    async def _wait_for_trunk(self) -> None:
        """Each dial takes the next free slot of the node's dial rate and waits for it (no lock is held
        while waiting: a coarse clock delays each dial by one step at most, not the queue behind it)."""
        if self.dial_interval_s <= 0:
            return
        now = self.clock.now()
        slot = now if self._next_dial is None or self._next_dial < now else self._next_dial
        self._next_dial = slot + timedelta(seconds=self.dial_interval_s)
        if slot > now:
            await self.clock.sleep((slot - now).total_seconds())

    async def _before_dial(self, job: JobInfo, entry: Any) -> None:
        if not await self.jobs.mark_dialling(job.id, self.node_id, ledger_entry_id=_entry_id(entry)):
            raise LeaseLost(f"job {job.job_key} is no longer held by {self.node_id}")
        self._dialled.add(job.id)
        self.stats.dialled += 1

    async def _on_answered(self, job: JobInfo, call_id: str) -> None:
        self.stats.answered += 1
        try:
            await self.jobs.mark_answered(job.id, self.node_id, call_id=call_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # bookkeeping only: the elder stays on the line
            logger.error("call engine %s: %s answered (%s) but not recorded (%s)", self.node_id, job.job_key, call_id,
                         _describe(exc))

    async def _end_step(self, job: JobInfo, schedule: CareSchedule, placed: PlacedCall) -> None:
        history = [*job.detail.get("attempts", []), placed.result]
        if placed.result == "answered" or placed.result == "interrupted":
            nxt: list[NewJob] = []
            if job.kind == "care_call":
                if placed.result == "interrupted":
                    nxt = [self._alert_job(job, schedule, "human", {"source": "care_call", "reason": "interrupted",
                                                                    "call_id": placed.call_id})]
                elif OUTCOME_ALERTS.get(placed.outcome or ""):
                    nxt = [self._alert_job(job, schedule, OUTCOME_ALERTS[placed.outcome or ""],
                                           {"source": "care_call", "outcome": placed.outcome, "call_id": placed.call_id})]
            await self._finish(job, state="done", result=placed.result, outcome=placed.outcome, call_id=placed.call_id,
                               next_jobs=nxt)
            return
        retryable = placed.result in RETRYABLE or placed.result == LOST_IN_DIALLING
        state = "busy" if placed.result == "busy" else "no_answer" if retryable else "failed"
        nxt = self._next_after_no_answer(job, schedule, history, retryable=retryable)
        if not retryable:
            logger.error("call engine %s: %s could not be dialled (%s); an operator is told", self.node_id,
                         job.job_key, placed.result)
        await self._finish(job, state=state, result=placed.result, next_jobs=nxt)

    def _next_after_no_answer(self, job: JobInfo, schedule: CareSchedule, history: list[str], *,
                              retryable: bool) -> list[NewJob]:
        detail = {"attempts": history}
        if not retryable:  # a configuration fault: no dial can succeed, tell an operator now
            return [self._alert_job(job, schedule, "no_answer", detail)]
        if job.kind == "care_call":
            at = self.retry.next_attempt_at(job.attempt, self.clock.now(), schedule)
            if at is not None:
                n = job.attempt + 1
                return [NewJob(job_key=f"{job.chain}:a{n}", chain=job.chain, kind="care_call", elder_id=job.elder_id,
                               number=job.number, attempt=n, not_before=at, detail=detail)]
            index = 0
        else:
            index = job.attempt  # the next family contact (attempt is 1-based)
        if index < len(schedule.family):
            contact = schedule.family[index]
            return [NewJob(job_key=f"{job.chain}:f{index + 1}", chain=job.chain, kind="family_escalation",
                           elder_id=job.elder_id, number=contact.number, attempt=index + 1,
                           not_before=self.clock.now(), detail=detail)]
        return [self._alert_job(job, schedule, "no_answer", detail)]

    def _alert_job(self, job: JobInfo, schedule: CareSchedule, kind: str, detail: dict[str, Any]) -> NewJob:
        return NewJob(job_key=f"{job.chain}:alert", chain=job.chain, kind="alert", elder_id=job.elder_id,
                      number=schedule.number, not_before=self.clock.now(), detail={"alert": kind, **detail})

    async def _fire_alert(self, job: JobInfo) -> None:

        detail = {k: v for k, v in job.detail.items() if k not in ("alert", "call_id")}
        alert = CallAlert(kind=job.detail.get("alert", "no_answer"), call_id=job.detail.get("call_id"),
                               elder_id=job.elder_id, number=job.number, detail=detail)
        reopen = job.detail.get("reopen_order")
        if self.runner.on_alert is not None or (reopen is not None and self.reopen_order is not None):
            try:
                if reopen is not None and self.reopen_order is not None:  # before the alert: both retried until done
                    await self.reopen_order(int(reopen), reason="follow_up_problem", call_id=alert.call_id)
                if self.runner.on_alert is not None:
                    await self.runner.on_alert(alert)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the alert store is down: the row stays, tried again later
                logger.error("call engine %s: alert %s for elder %s not stored (%s); again in %.0f s", self.node_id,
                             alert.kind, job.elder_id, _describe(exc), self.alert_retry_s)
                await self._release(job, not_before=self.clock.now() + timedelta(seconds=self.alert_retry_s),
                                    why="alert_store_failed")
                return
        self.stats.alerts_fired += 1
        await self._finish(job, state="done", result="alerted")

    async def _finish(self, job: JobInfo, **end: Any) -> None:
        """Write a step's end; a store failure keeps the job held (lease renewed) and writes it next tick."""
        try:
            ok = await self.jobs.finish(job.id, self.node_id, **end)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if job.id not in self._unwritten:
                logger.error("call engine %s: end of %s (%s) not written (%s); written again next tick", self.node_id,
                             job.job_key, end.get("state"), _describe(exc))
            self._unwritten[job.id] = end
            self._held[job.id] = job
            raise
        self._unwritten.pop(job.id, None)
        self._held.pop(job.id, None)
        if not ok:
            logger.warning("call engine %s: %s was taken over by another node before its end was written",
                           self.node_id, job.job_key)

    async def _release(self, job: JobInfo, *, not_before: datetime, why: str) -> None:
        try:
            await self.jobs.release(job.id, self.node_id, not_before=not_before, result=why)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # its lease runs out and recovery plans it again
            logger.error("call engine %s: %s not released (%s)", self.node_id, job.job_key, _describe(exc))

    # --- jobs of nodes that died -----------------------------------------------------------------------
    async def _recover(self) -> None:
        for job in await self.jobs.take_over_expired(self.node_id, limit=max(self.max_calls, 16), lease_s=self.lease_s):
            if job.id in self._held:  # ours all along (the store was away longer than a lease): go on
                continue
            self.stats.recovered += 1
            logger.warning("call engine %s: %s (%s) taken over: its node's lease ran out", self.node_id,
                           job.job_key, job.state)
            self._held[job.id] = job
            try:
                await self._resolve(job)
            finally:
                if job.id not in self._unwritten:
                    self._held.pop(job.id, None)

    async def _resolve(self, job: JobInfo) -> None:
        if job.state == "claimed":  # never dialled: simply planned again
            await self._release(job, not_before=job.not_before, why="resumed")
            return
        platform = job.kind in PLATFORM_KINDS
        schedule = (broadcasts.job_schedule(job.elder_id, job.number, job.detail) if platform
                    else await self._schedule_of(job.elder_id))
        if schedule is None:
            await self._finish(job, state="failed", result="no_schedule")
            return
        if job.state == "answered":
            placed = PlacedCall(result="interrupted", call_id=job.call_id)
        else:  # dialling: the INVITE may have gone out; what the ledger / calls rows show decides
            call_id = await self.jobs.dial_evidence(job)
            placed = PlacedCall(result="interrupted", call_id=call_id) if call_id else PlacedCall(result=LOST_IN_DIALLING)
        await (self._end_platform_step if platform else self._end_step)(job, schedule, placed)

    # --- reading -----------------------------------------------------------------------------------------
    async def queue(self) -> dict[str, Any]:
        """Queue depth per state and the lag of the oldest due job (for /metrics and the console)."""
        counts = await self.jobs.counts()
        oldest = await self.jobs.oldest_due()
        lag = max((self.now() - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
        return {"states": counts, "lag_s": lag, "in_progress": len(self._held)}


def not_reached(job: JobInfo, result: str, *, nobody: bool = False) -> dict[str, Any]:
    """The detail of the operator alert for a platform call that could not be dialled (one per elder and
    warning / reminder / follow-up: the alert row's key is the chain's), or — ``nobody`` — a medication
    reminder that neither the elder nor any family contact answered: what did not reach the elder, in a
    ``summary`` the console shows, so the night operator can phone them."""
    d = job.detail
    attempts = [*d.get("attempts", []), result]
    if job.kind == "warning":
        what = f"预警「{d.get('broadcast')}」"
        keys = {"broadcast": d.get("broadcast")}
    elif job.kind == "medication":
        plan, day, hhmm = (job.chain.split(":") + ["", "", "", ""])[1:4]  # med:<plan>:<date>:<HHMM>
        what = f"吃药提醒（{d.get('medicine')} {day} {hhmm[:2]}:{hhmm[2:]}）"
        keys = {"medicine": d.get("medicine"), "plan_id": int(plan) if plan.isdigit() else None}
    else:
        what = "订单回访"
        keys = {"order_id": d.get("order_id")}
    why = "长者和家属都没有接听" if nobody else f"电话拨不通（{result}，第 {job.attempt} 次）"
    return {"source": job.kind, "reason": "nobody_answered" if nobody else "not_dialled", "result": result,
            "attempts": attempts, **keys, "summary": f"{what}未能送达：{why}，请人工致电长者"}


def _window_end(s: CareSchedule, local: datetime) -> datetime | None:
    """The end of the elder's window that ``local`` (a wall time of theirs) falls in."""
    t = local.time()
    for w in s.windows:
        if w.contains(t):
            end = datetime.combine(local.date(), w.end)
            return end + timedelta(days=1) if end <= local else end
    return None


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return f"{code}: {exc}" if code else f"{type(exc).__name__}: {exc}"


__all__: Sequence[str] = ("CallEngine", "EngineStats", "LeaseLost", "default_node_id")
