"""The call engine's rows (``call_jobs``): planning, atomic claims, leases, and each step's end.

Every write is one short transaction and every transition is guarded by the state it leaves and the node that
holds the row (``claimed_by``), so a node that lost its lease cannot overwrite the node that took over:

- ``plan`` inserts rows and ignores keys that exist (``INSERT … ON CONFLICT (job_key) DO NOTHING``): any
  number of nodes may plan the same day.
- ``claim`` moves due ``planned`` rows to ``claimed`` in one ``WITH due AS MATERIALIZED (SELECT … LIMIT n FOR
  UPDATE SKIP LOCKED) UPDATE … WHERE id IN (SELECT id FROM due) RETURNING``: on PostgreSQL concurrent claimers
  skip each other's locked rows; on SQLite the statement runs under the database's single writer lock (the
  ``FOR UPDATE`` clause is not rendered there). The ids are a materialized CTE, not a plain ``IN (SELECT …)``:
  PostgreSQL may run such a sub-select more than once in one UPDATE, and with ``SKIP LOCKED`` each run
  skipped the rows the last one had locked — one claim of ``LIMIT 4`` took all 12 due rows, more calls than
  the node has lines (found by ``test_two_engines_share_one_database_without_double_dials``).
- ``finish`` ends a step and inserts the next step's rows in the same transaction: a crash between the two
  cannot lose an escalation.
- ``heartbeat`` extends the held rows' leases; ``take_over_expired`` hands rows whose lease ran out to the
  calling node, which resolves them (``telephony.engine``): ``claimed`` (never dialled) → planned again;
  ``dialling`` → what ``dial_evidence`` finds (an answered ledger entry or an outbound ``calls`` row of the
  elder since the dial) decides between answered and no answer — never a blind second dial.

Times are the engine clock's; a naive clock (tests, fast clock) is stored as if it were UTC.

Written here rather than taken from a job-queue library: procrastinate and PgQueuer are PostgreSQL-only,
arq / dramatiq / celery / taskiq need a broker (Redis, RabbitMQ), APScheduler 3's SQLAlchemy job store may
not be shared by several schedulers and APScheduler 4 (shared data stores) is still an alpha; none keeps the
state a call needs (the ledger entry, the dialling window, the next step in the same transaction).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import CTE, ColumnElement, Select, and_, exists, func, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from assistant.errors import StoreError
from assistant.platform.models import Call, Elder
from assistant.platform.models_fraud import LedgerEntry
from telephony.models import CallJob

HELD_STATES = ("claimed", "dialling", "answered")
_INSERT_CHUNK = 400  # rows per INSERT (SQLite allows 32766 bound parameters per statement)


@dataclass(frozen=True, kw_only=True)
class NewJob:
    job_key: str
    chain: str
    kind: str
    elder_id: int
    not_before: dt.datetime
    number: str = ""
    attempt: int = 1
    deadline: dt.datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class JobInfo:
    id: int
    job_key: str
    chain: str
    kind: str
    elder_id: int
    number: str
    attempt: int
    state: str
    not_before: dt.datetime
    deadline: dt.datetime | None
    claimed_by: str | None
    claims: int
    ledger_entry_id: int | None
    call_id: str | None
    result: str | None
    outcome: str | None
    detail: dict[str, Any]
    dialled_at: dt.datetime | None
    finished_at: dt.datetime | None

    @classmethod
    def of(cls, row: CallJob) -> JobInfo:
        return cls(id=row.id, job_key=row.job_key, chain=row.chain, kind=row.kind, elder_id=row.elder_id,
                   number=row.number, attempt=row.attempt, state=row.state, not_before=row.not_before,
                   deadline=row.deadline, claimed_by=row.claimed_by, claims=row.claims,
                   ledger_entry_id=row.ledger_entry_id, call_id=row.call_id, result=row.result, outcome=row.outcome,
                   detail=dict(row.detail or {}), dialled_at=row.dialled_at, finished_at=row.finished_at)


def as_stored(t: dt.datetime) -> dt.datetime:
    """An engine-clock time as the table keeps it (a naive clock is taken as UTC)."""
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def elder_try(job: Any = CallJob) -> ColumnElement[bool]:
    """The row is one of its chain's own tries (``<chain>:a<n>``), not a family step (``:f<n>``) of a
    medication reminder. Pair it with a ``kind`` other than ``alert`` (the alert row's key is ``<chain>:alert``)."""
    return job.job_key.like(job.chain + ":a%")


def newest_try(kind: str, *, since: dt.datetime | None = None) -> ColumnElement[bool]:
    """The row is the newest try of its chain among the ``kind`` rows (``since``: among those created since
    then): no later try of the same chain exists. One index lookup per row (``ix_call_jobs_chain``); the same
    SQL on SQLite and PostgreSQL."""
    later = aliased(CallJob)
    q = select(later.id).where(later.chain == CallJob.chain, later.kind == kind, later.attempt > CallJob.attempt,
                               elder_try(later))
    if since is not None:
        q = q.where(later.created_at >= since)
    return and_(CallJob.kind == kind, elder_try(), ~exists(q))


def elder_column(column: Any) -> ColumnElement[Any]:
    """An ``elders`` column of the row's elder (NULL if the elder is gone), as a correlated primary-key lookup,
    not a join: after a ``newest_try`` filter PostgreSQL under-estimates the rows by ~300x and joined all
    elders in a nested loop (33 s at 25,000 elders and 40,000 rows, plots9.md); one index lookup per row
    cannot go wrong that way."""
    return select(column).where(Elder.id == CallJob.elder_id).scalar_subquery()


def _locked_ids(ids: Select, name: str) -> CTE:
    """``ids`` locked (``FOR UPDATE SKIP LOCKED``) and computed once, as a materialized CTE."""
    return ids.with_for_update(skip_locked=True).cte(name).prefix_with("MATERIALIZED", dialect="postgresql")


class CallJobStore:
    def __init__(self, *, sessionmaker: async_sessionmaker[AsyncSession], dialect: str,
                 now: Callable[[], dt.datetime]) -> None:
        self._sessions = sessionmaker
        self._dialect = dialect
        self._now = now

    @classmethod
    def for_engine(cls, engine: AsyncEngine, *, now: Callable[[], dt.datetime]) -> CallJobStore:
        return cls(sessionmaker=async_sessionmaker(engine, expire_on_commit=False), dialect=engine.dialect.name,
                   now=now)

    def now(self) -> dt.datetime:
        return as_stored(self._now())

    async def report(self, what: str, fn):
        """``fn(session)`` for a report (GROUP BY over many rows). On PostgreSQL without JIT (compiling the
        queries took 0.8 s of each 1.2-1.9 s at 25,000 elders: their cost estimate is above ``jit_above_cost``
        because of the per-row index lookups) and with 32 MB to sort in (the grouping spilled to disk);
        ``SET LOCAL`` ends with the read's transaction."""
        async def read(s: AsyncSession):
            if self._dialect == "postgresql":
                await s.execute(text("SET LOCAL jit = off"))
                await s.execute(text("SET LOCAL work_mem = '32MB'"))
            return await fn(s)

        return await self._run(what, read)

    async def _run(self, what: str, fn):
        try:
            async with self._sessions() as s:
                return await fn(s)
        except asyncio.CancelledError:
            raise
        except StoreError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"call jobs: {what} failed ({type(exc).__name__})", code="call_jobs") from exc

    def _insert(self, table=CallJob):
        """An INSERT of ``table`` with this store's dialect (``on_conflict_do_nothing`` / ``_update``)."""
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    def _rows(self, jobs: Sequence[NewJob]) -> list[dict[str, Any]]:
        now = self.now()
        return [{"job_key": j.job_key, "chain": j.chain, "kind": j.kind, "elder_id": j.elder_id, "number": j.number,
                 "attempt": j.attempt, "state": "planned", "not_before": as_stored(j.not_before),
                 "deadline": as_stored(j.deadline) if j.deadline else None, "claims": 0, "detail": j.detail,
                 "created_at": now} for j in jobs]

    async def _insert_ignoring_existing(self, s: AsyncSession, jobs: Sequence[NewJob]) -> int:
        added = 0
        rows = self._rows(jobs)
        for i in range(0, len(rows), _INSERT_CHUNK):
            stmt = self._insert().values(rows[i:i + _INSERT_CHUNK]).on_conflict_do_nothing(index_elements=["job_key"])
            res = await s.execute(stmt)
            added += max(int(res.rowcount or 0), 0)
        return added

    # -- planning and claiming --------------------------------------------------------------------------

    async def plan(self, jobs: Sequence[NewJob]) -> int:
        """Insert the rows whose ``job_key`` is new; returns how many were added."""
        if not jobs:
            return 0

        async def write(s: AsyncSession) -> int:
            added = await self._insert_ignoring_existing(s, jobs)
            await s.commit()
            return added

        return await self._run("plan", write)

    async def claim(self, node: str, *, limit: int, lease_s: float) -> list[JobInfo]:
        """Up to ``limit`` due planned rows, now ``claimed`` by ``node`` (oldest ``not_before`` first)."""
        if limit <= 0:
            return []
        now = self.now()
        due = _locked_ids(select(CallJob.id).where(CallJob.state == "planned", CallJob.not_before <= now)
                          .order_by(CallJob.not_before, CallJob.id).limit(limit), "due")
        stmt = (update(CallJob).where(CallJob.id.in_(select(due.c.id)), CallJob.state == "planned")
                .values(state="claimed", claimed_by=node, lease_until=now + dt.timedelta(seconds=lease_s),
                        claims=CallJob.claims + 1, claimed_at=now)
                .returning(CallJob).execution_options(synchronize_session=False))

        async def write(s: AsyncSession) -> list[JobInfo]:
            rows = (await s.scalars(stmt)).all()
            out = sorted((JobInfo.of(r) for r in rows), key=lambda j: (j.not_before, j.id))
            await s.commit()
            return out

        return await self._run("claim", write)

    async def heartbeat(self, node: str, job_ids: Sequence[int], *, lease_s: float) -> set[int]:
        """Extend the leases of the rows ``node`` still holds; returns their ids (a missing id was lost)."""
        if not job_ids:
            return set()
        stmt = (update(CallJob).where(CallJob.id.in_(list(job_ids)), CallJob.claimed_by == node,
                                      CallJob.state.in_(HELD_STATES))
                .values(lease_until=self.now() + dt.timedelta(seconds=lease_s))
                .returning(CallJob.id).execution_options(synchronize_session=False))

        async def write(s: AsyncSession) -> set[int]:
            ids = set((await s.scalars(stmt)).all())
            await s.commit()
            return ids

        return await self._run("heartbeat", write)

    async def take_over_expired(self, node: str, *, limit: int, lease_s: float) -> list[JobInfo]:
        """Held rows whose lease ran out (their node died or lost the database), now held by ``node``."""
        now = self.now()
        stale = _locked_ids(select(CallJob.id).where(CallJob.state.in_(HELD_STATES), CallJob.lease_until < now)
                            .order_by(CallJob.id).limit(limit), "stale")
        stmt = (update(CallJob).where(CallJob.id.in_(select(stale.c.id)), CallJob.state.in_(HELD_STATES),
                                      CallJob.lease_until < now)
                .values(claimed_by=node, lease_until=now + dt.timedelta(seconds=lease_s))
                .returning(CallJob).execution_options(synchronize_session=False))

        async def write(s: AsyncSession) -> list[JobInfo]:
            rows = [JobInfo.of(r) for r in (await s.scalars(stmt)).all()]
            await s.commit()
            return rows

        return await self._run("take over", write)

    # -- one step's transitions (each only for the node that holds the row) --------------------------------

    async def _transition(self, what: str, job_id: int, node: str, from_states: Sequence[str], values: dict,
                          next_jobs: Sequence[NewJob] = ()) -> bool:
        stmt = (update(CallJob).where(CallJob.id == job_id, CallJob.claimed_by == node,
                                      CallJob.state.in_(list(from_states)))
                .values(**values).execution_options(synchronize_session=False))

        async def write(s: AsyncSession) -> bool:
            res = await s.execute(stmt)
            if int(res.rowcount or 0) != 1:
                await s.rollback()
                return False
            await self._insert_ignoring_existing(s, next_jobs)
            await s.commit()
            return True

        return await self._run(what, write)

    async def mark_dialling(self, job_id: int, node: str, *, ledger_entry_id: int | None) -> bool:
        """Recorded BEFORE the INVITE; False = the row is not ours any more (do not dial)."""
        return await self._transition("mark dialling", job_id, node, ("claimed",),
                                      {"state": "dialling", "ledger_entry_id": ledger_entry_id,
                                       "dialled_at": self.now()})

    async def mark_answered(self, job_id: int, node: str, *, call_id: str) -> bool:
        return await self._transition("mark answered", job_id, node, ("dialling",),
                                      {"state": "answered", "call_id": call_id})

    async def finish(self, job_id: int, node: str, *, state: str, result: str | None, outcome: str | None = None,
                     call_id: str | None = None, next_jobs: Sequence[NewJob] = ()) -> bool:
        """End the step (``done`` / ``no_answer`` / ``busy`` / ``failed`` / ``missed``) and plan what follows,
        in one transaction."""
        values: dict[str, Any] = {"state": state, "result": result, "outcome": outcome, "finished_at": self.now(),
                                  "lease_until": None}
        if call_id is not None:
            values["call_id"] = call_id
        return await self._transition("finish", job_id, node, HELD_STATES, values, next_jobs)

    async def release(self, job_id: int, node: str, *, not_before: dt.datetime, result: str | None = None) -> bool:
        """Back to ``planned`` (only from ``claimed``: a row that was dialled is never released)."""
        return await self._transition("release", job_id, node, ("claimed",),
                                      {"state": "planned", "claimed_by": None, "lease_until": None,
                                       "not_before": as_stored(not_before), "result": result})

    # -- evidence and reading ---------------------------------------------------------------------------

    async def dial_evidence(self, job: JobInfo) -> str | None:
        """The call id if a dial of this job reached someone: its ledger entry was marked answered, or the
        elder has an outbound ``calls`` row started since the dial. None = no sign of an answer."""

        async def read(s: AsyncSession) -> str | None:
            if job.ledger_entry_id is not None:
                entry = await s.get(LedgerEntry, job.ledger_entry_id)
                if entry is not None and (entry.call_id or entry.status == "answered"):
                    return entry.call_id or "answered"
            if job.kind in ("care_call", "warning", "order_followup") and job.dialled_at is not None:
                q = (select(Call.call_id).where(Call.elder_id == job.elder_id, Call.direction == "outbound",
                                                Call.started_at >= job.dialled_at).limit(1))
                return (await s.scalars(q)).first()
            return None

        return await self._run("dial evidence", read)

    async def jobs(self, *, chain: str | None = None, elder_id: int | None = None) -> list[JobInfo]:
        q = select(CallJob).order_by(CallJob.id)
        if chain is not None:
            q = q.where(CallJob.chain == chain)
        if elder_id is not None:
            q = q.where(CallJob.elder_id == elder_id)

        async def read(s: AsyncSession) -> list[JobInfo]:
            return [JobInfo.of(r) for r in (await s.scalars(q)).all()]

        return await self._run("list", read)

    async def counts(self) -> dict[str, int]:
        """Rows per state (queue depth: ``planned``)."""
        async def read(s: AsyncSession) -> dict[str, int]:
            rows = (await s.execute(select(CallJob.state, func.count()).group_by(CallJob.state))).all()
            return {state: int(n) for state, n in rows}

        return await self._run("count", read)

    async def oldest_due(self) -> dt.datetime | None:
        """``not_before`` of the oldest planned row that is due (lag = now - this)."""
        async def read(s: AsyncSession):
            q = select(func.min(CallJob.not_before)).where(CallJob.state == "planned", CallJob.not_before <= self.now())
            return (await s.execute(q)).scalar()

        return await self._run("lag", read)

    async def pending_for(self, node: str) -> list[JobInfo]:
        """Rows this node holds (a restarted node with the same id resumes them after its lease ran out)."""
        q = select(CallJob).where(CallJob.claimed_by == node, or_(*[CallJob.state == s for s in HELD_STATES]))

        async def read(s: AsyncSession) -> list[JobInfo]:
            return [JobInfo.of(r) for r in (await s.scalars(q)).all()]

        return await self._run("held", read)
