"""What the call engine can place (issue #17 item 2): its nodes, their lines, and calls per hour.

Every engine node writes a heartbeat row each tick (``call_engine_nodes``: its outbound line limit, its
trunk's dial rate, its tick and lease); a node is live while ``seen_at + lease_s`` is ahead. The platform's
capacity is then, per live node, the smaller of

- its lines turned over: ``lines × 3600 / cycle_s``, where ``cycle_s`` is the mean time a line is held per
  call — from claim to the step's end (trunk wait, ring, talk), measured on the newest ``MEASURE_ROWS``
  finished calls of the last week (``call_jobs.claimed_at → finished_at``), each rounded up to the node's
  tick as it measures it (a freed line is refilled at the next tick) — and ``default_hold_s``
  (``telephony.engine_default_hold_s``) while fewer than ``MIN_MEASURED`` calls have finished;
- its trunk: ``dials_per_s × 3600``;

summed over the live nodes. The same rows give the share of first tries nobody answered (``no_answer`` /
``busy``; ``DEFAULT_UNANSWERED_SHARE`` before there is data), from which the calls a batch of elders needs are
expected: ``n × (1 + retries × share)`` (the elders who did not answer are taken to miss the retries too).

``broadcast_eta`` turns that into the time a warning broadcast needs to reach every elder it targets: the
wait until its tries still to make are due (quiet hours) and a node's next claim (a tick), the rows queued
before them and those tries at the capacity, then each retry round still ahead (the retry delay, a tick until
a node claims it and the holding time — or the round's calls at the capacity if that is longer), then the last
call's holding time. Asked while the broadcast is being sent it counts only what is left.
Used by ``assistant warn send`` / ``POST /api/warnings``, the console (``/console/warnings``, 外呼统计),
``/metrics``, the engine's spreading of a window's care calls, and ``assistant bench outbound --broadcast``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import and_, func, select

from telephony.broadcasts import chain_like
from telephony.call_jobs import HELD_STATES, CallJobStore, as_stored
from telephony.models import CallEngineNode, CallJob

MEASURE_ROWS = 2000  # the newest finished calls measure the holding time …
MEASURE_WINDOW_S = 7 * 86400.0  # … of the last week (a warning sent at 06:00 is measured on yesterday's calls)
MIN_MEASURED = 20  # fewer finished calls than this: the defaults
DEFAULT_UNANSWERED_SHARE = 0.2
OPEN_STATES = ("planned", *HELD_STATES)  # a try still to make or in a call


@dataclass(frozen=True, kw_only=True)
class NodeBeat:
    node_id: str
    lines: int
    dials_per_s: float
    tick_s: float  # its tick as measured: the configured tick plus the tick's own work
    lease_s: float
    in_progress: int = 0


@dataclass(frozen=True, kw_only=True)
class Capacity:
    nodes: int  # live engine nodes
    lines: int  # their outbound lines together
    in_progress: int  # calls they held at their last tick
    dials_per_s: float  # their trunks together (0 = not paced)
    hold_s: float  # mean line holding per call, claim → end (measured, or the default)
    tick_s: float  # the slowest live node's tick: a due retry waits up to this long to be claimed
    measured_calls: int  # finished calls hold_s and unanswered_share come from (0: the defaults)
    unanswered_share: float  # of the dials: no answer or busy
    calls_per_hour: float

    def expected_calls(self, elders: int, *, retries: int) -> float:
        return elders * (1 + retries * self.unanswered_share)

    def seconds_for(self, calls: float) -> float | None:
        """Seconds to place ``calls`` at the capacity (None: no live node)."""
        if calls <= 0:
            return 0.0
        return calls * 3600.0 / self.calls_per_hour if self.calls_per_hour > 0 else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hold_s"] = round(self.hold_s, 1)
        out["unanswered_share"] = round(self.unanswered_share, 3)
        out["calls_per_hour"] = round(self.calls_per_hour)
        return out


async def beat(jobs: CallJobStore, node: NodeBeat) -> None:
    """Write ``node``'s heartbeat (insert or update its row)."""
    values = {"lines": node.lines, "dials_per_s": node.dials_per_s, "tick_s": node.tick_s, "lease_s": node.lease_s,
              "in_progress": node.in_progress, "seen_at": jobs.now()}
    stmt = jobs._insert(CallEngineNode).values(node_id=node.node_id, **values).on_conflict_do_update(
        index_elements=["node_id"], set_=values)

    async def write(s) -> None:
        await s.execute(stmt)
        await s.commit()

    await jobs._run("node heartbeat", write)


async def live_nodes(jobs: CallJobStore) -> list[NodeBeat]:
    now = jobs.now()

    async def read(s):
        return (await s.scalars(select(CallEngineNode).order_by(CallEngineNode.node_id))).all()

    return [NodeBeat(node_id=r.node_id, lines=r.lines, dials_per_s=r.dials_per_s, tick_s=r.tick_s, lease_s=r.lease_s,
                     in_progress=r.in_progress)
            for r in await jobs._run("engine nodes", read)
            if as_stored(r.seen_at) + dt.timedelta(seconds=r.lease_s) >= now]


async def measure(jobs: CallJobStore, *, default_hold_s: float) -> Capacity:
    """The platform's capacity now (see the module doc)."""
    nodes = await live_nodes(jobs)
    since = jobs.now() - dt.timedelta(seconds=MEASURE_WINDOW_S)
    q = (select(CallJob.claimed_at, CallJob.finished_at, CallJob.state, CallJob.attempt)
         .where(CallJob.kind != "alert", CallJob.dialled_at.is_not(None), CallJob.claimed_at.is_not(None),
                CallJob.finished_at >= since)
         .order_by(CallJob.finished_at.desc()).limit(MEASURE_ROWS))

    async def read(s):
        return (await s.execute(q)).all()

    rows = await jobs._run("capacity", read)
    holds = [max((as_stored(f) - as_stored(c)).total_seconds(), 0.0) for c, f, _, _ in rows]
    measured = len(holds) >= MIN_MEASURED
    if not measured:
        holds = [default_hold_s]
    firsts = [state for _, _, state, attempt in rows if attempt == 1]  # retries: mostly the same elders again
    share = (sum(1 for state in firsts if state in ("no_answer", "busy")) / len(firsts) if measured and firsts
             else DEFAULT_UNANSWERED_SHARE)
    per_hour = sum(_node_calls_per_hour(n, holds) for n in nodes)
    return Capacity(nodes=len(nodes), lines=sum(n.lines for n in nodes), in_progress=sum(n.in_progress for n in nodes),
                    dials_per_s=sum(n.dials_per_s for n in nodes), hold_s=sum(holds) / len(holds),
                    tick_s=max((n.tick_s for n in nodes), default=0.0),
                    measured_calls=len(rows) if measured else 0, unanswered_share=share, calls_per_hour=per_hour)


def _node_calls_per_hour(node: NodeBeat, holds: Sequence[float]) -> float:
    tick = node.tick_s if node.tick_s > 0 else 1.0
    cycle = sum(max(math.ceil(h / tick), 1) * tick for h in holds) / len(holds)  # a freed line waits for a tick
    lines = node.lines * 3600.0 / cycle
    return min(lines, node.dials_per_s * 3600.0) if node.dials_per_s > 0 else lines


async def broadcast_eta(jobs: CallJobStore, broadcast_id: str, capacity: Capacity, *,
                        retry_delays_s: Sequence[float]) -> dict[str, Any]:
    """When a broadcast is expected to have reached every elder it targets (every try done), planned or under
    way: ``{"capacity_calls_per_h", "nodes", "expected_calls", "expected_done_s", "expected_done_at"}`` (the
    seconds from now; None when no engine node is live; 0 when no try is left).

    The broadcast's open rows (planned or in a call) are at the stage of their lowest attempt ``a``: those rows
    and the rows queued before the last of them are placed at the capacity from the first one's due time (quiet
    hours) and a node's next claim (a tick), then come the retry rounds still ahead (``retry_delays_s[a-1:]``,
    each the delay, a tick and the holding time, or the round's calls at the capacity if that is longer), then
    the last call's holding time. Before any call that is the whole broadcast; while it is being sent the
    estimate counts only what is left (the console shows it)."""
    now = jobs.now()
    mine = and_(CallJob.kind == "warning", chain_like(broadcast_id))

    async def read(s):
        elders = (await s.execute(select(func.count()).where(mine, CallJob.attempt == 1))).scalar_one()
        stages = (await s.execute(
            select(CallJob.attempt, func.min(CallJob.not_before), func.max(CallJob.not_before), func.count())
            .where(mine, CallJob.state.in_(OPEN_STATES)).group_by(CallJob.attempt)
            .order_by(CallJob.attempt))).all()
        ahead = 0
        if stages:
            ahead = (await s.execute(select(func.count()).select_from(CallJob).where(  # calls, not alert rows
                ~mine, CallJob.kind != "alert", CallJob.state == "planned", CallJob.not_before <= stages[0][2]))).scalar_one()
        return elders, stages, ahead

    elders, stages, ahead = await jobs._run("broadcast eta", read)
    out: dict[str, Any] = {"capacity_calls_per_h": round(capacity.calls_per_hour), "nodes": capacity.nodes,
                           "expected_calls": round(capacity.expected_calls(elders, retries=len(retry_delays_s))),
                           "expected_done_s": None, "expected_done_at": None}
    if not elders:
        return out
    if not stages:  # every elder tried
        out["expected_done_s"], out["expected_done_at"] = 0, now.isoformat(timespec="seconds")
        return out
    stage, first, last, _ = stages[0]
    in_play = sum(n for *_, n in stages)
    first_pass = capacity.seconds_for(ahead + in_play)
    if first_pass is None:
        return out
    tick = capacity.tick_s

    def wait(t: dt.datetime) -> float:  # until a row is due, and a node's next claim
        return max((as_stored(t) - now).total_seconds(), 0.0) + tick

    stage_done = max(wait(first) + first_pass, wait(last))
    round_calls = (elders if stage == 1 else in_play) * capacity.unanswered_share
    rounds = sum(max(d + tick + capacity.hold_s, capacity.seconds_for(round_calls) or 0.0)
                 for d in retry_delays_s[stage - 1:])
    done = stage_done + rounds + capacity.hold_s
    out["expected_done_s"] = round(done)
    out["expected_done_at"] = (now + dt.timedelta(seconds=done)).isoformat(timespec="seconds")
    return out


async def broadcast_estimates(jobs: CallJobStore, broadcast_ids: Sequence[str], *,
                              telephony) -> tuple[Capacity, dict[str, dict[str, Any]]]:
    """The capacity measured now and ``broadcast_eta`` of each of ``broadcast_ids`` on it, with ``telephony``'s
    settings (retries, default hold): what the console shows for the broadcasts being sent."""
    cap = await measure(jobs, default_hold_s=telephony.engine_default_hold_s)
    return cap, {b: await broadcast_eta(jobs, b, cap, retry_delays_s=telephony.retry_delays_s) for b in broadcast_ids}


async def broadcast_estimate(jobs: CallJobStore, broadcast_id: str, *, telephony) -> dict[str, Any]:
    """``broadcast_estimates`` of one broadcast: what ``assistant warn send`` and ``POST /api/warnings`` answer
    besides the planned rows."""
    _, etas = await broadcast_estimates(jobs, [broadcast_id], telephony=telephony)
    return etas[broadcast_id]


def spread_span_s(elders: int, capacity: Capacity, *, retries: int, window_s: float) -> float:
    """Over how many seconds a window's ``elders`` first calls should fall due so that the queue stays short:
    as long as the capacity needs for their calls (retries included), at most half the window (the rest is
    for the retries); 0 when nothing can be said (no capacity)."""
    needed = capacity.seconds_for(capacity.expected_calls(elders, retries=retries))
    if needed is None:
        return 0.0
    return min(needed, window_s / 2)


__all__: Sequence[str] = ("Capacity", "NodeBeat", "beat", "broadcast_estimate", "broadcast_estimates", "broadcast_eta", "live_nodes", "measure", "spread_span_s")
