"""What the call engine did, per district and local day (issue #17 item 4, the console's 外呼统计 page).

Two GROUP BY queries over ``call_jobs`` (joined to ``elders`` for the district), the same SQL on SQLite and
PostgreSQL; a step counts on the local day it ended (``finished_at``):

- the steps: calls placed (every dialled kind: care calls and their retries, family escalations, warnings,
  medication reminders and their family calls, order follow-ups), answered, no answer, busy or not dialable,
  care calls not placed because their window had passed, family calls placed and answered (family told),
  operator alerts raised by care calls, medication reminders taken (keypad 1) or needing help (2);
- the chains, by their newest try (``telephony.call_jobs.newest_try``): warnings heard / need help / answered
  without a key / not reached (every try unanswered or not dialable), medication reminders the elder missed
  (the newest own try unanswered; their family may still have been told).

The local day is a ``CASE`` over the days' UTC boundaries (bound parameters), so the bucketing needs no
date function of either database and follows the platform's time zone. ``OutboundReport`` holds the grouped
cells; totals per day, per district and overall are sums of those few cells.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, case, func, select

from assistant.platform.models import Elder
from telephony.broadcasts import result_of_row
from telephony.call_jobs import CallJobStore, elder_column, elder_try, newest_try
from telephony.models import CallJob

DIALLED_STATES = ("done", "no_answer", "busy", "failed")  # a call that was placed (or tried to be)
MAX_DAYS = 31


@dataclass(frozen=True, kw_only=True)
class Tally:
    """One district's (or a total's) numbers for one day (or the whole period)."""

    placed: int = 0  # dialled steps of every kind
    answered: int = 0
    no_answer: int = 0
    busy_failed: int = 0  # busy, or the line could not be dialled (no route, refused)
    not_dialled: int = 0  # care calls whose window passed before a line was free
    family_calls: int = 0
    family_told: int = 0  # a family contact answered (care-call escalation or missed medication)
    care_alerts: int = 0  # operator alerts raised by care calls (no answer, unwell, interrupted, missed)
    med_taken: int = 0
    med_need_help: int = 0
    med_missed: int = 0
    warn_heard: int = 0
    warn_need_help: int = 0
    warn_answered: int = 0  # answered without pressing a key
    warn_not_reached: int = 0

    @property
    def answer_rate(self) -> float | None:
        return self.answered / self.placed if self.placed else None

    def __add__(self, other: Tally) -> Tally:
        return Tally(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)})


ZERO = Tally()


@dataclass(frozen=True, kw_only=True)
class OutboundReport:
    days: tuple[dt.date, ...]  # oldest first
    districts: tuple[str, ...]  # those with rows, sorted ("" = an elder no longer on file)
    cells: dict[tuple[str, dt.date], Tally]

    def cell(self, district: str, day: dt.date) -> Tally:
        return self.cells.get((district, day), ZERO)

    def day(self, day: dt.date) -> Tally:
        return sum((self.cell(d, day) for d in self.districts), ZERO)

    def district(self, district: str) -> Tally:
        return sum((self.cell(district, d) for d in self.days), ZERO)

    def total(self) -> Tally:
        return sum(self.cells.values(), ZERO)


def day_bounds(today: dt.date, days: int, tz: ZoneInfo) -> list[dt.datetime]:
    """The local midnights from ``days - 1`` days before ``today`` to the one after it (``days + 1`` times)."""
    first = today - dt.timedelta(days=days - 1)
    return [dt.datetime.combine(first + dt.timedelta(days=i), dt.time(0), tzinfo=tz) for i in range(days + 1)]


def _day_index(bounds: list[dt.datetime]) -> ColumnElement[int]:
    return case(*[(CallJob.finished_at >= bounds[i], i) for i in range(len(bounds) - 2, -1, -1)], else_=-1)


def _count(cond: ColumnElement[bool]) -> ColumnElement[int]:
    return func.sum(case((cond, 1), else_=0))


async def outbound_report(jobs: CallJobStore, *, today: dt.date, days: int, tz: ZoneInfo,
                          district: str | None = None) -> OutboundReport:
    """The numbers of the ``days`` local days up to ``today`` (in ``tz``), per district (or one ``district``)."""
    days = max(1, min(days, MAX_DAYS))
    bounds = day_bounds(today, days, tz)
    window = [CallJob.finished_at >= bounds[0], CallJob.finished_at < bounds[-1]]
    if district is not None:
        window.append(CallJob.elder_id.in_(select(Elder.id).where(Elder.district == district)))
    # the steps join the elders (a hash join; PostgreSQL estimates these rows well); the newest tries look the
    # district up per row (``elder_column``: a join after ``newest_try`` was planned as a nested loop, 33 s)
    district_col = func.coalesce(elder_column(Elder.district), "").label("district")
    family = (CallJob.kind == "family_escalation") | ((CallJob.kind == "medication") & ~elder_try())
    steps = (select(func.coalesce(Elder.district, "").label("district"), _day_index(bounds).label("day"),
                    CallJob.kind, CallJob.state, CallJob.outcome, family.label("family"), CallJob.chain.like("care:%").label("care"),
                    (CallJob.kind == "medication").label("med"))
             .select_from(CallJob).join(Elder, Elder.id == CallJob.elder_id, isouter=True)
             .where(*window)  # finished_at is written only with an end state (CallJobStore.finish, a plan stopped)
             .subquery())  # grouped outside: PostgreSQL wants GROUP BY on the very select expressions (bound days)
    dialled = (steps.c.kind != "alert") & steps.c.state.in_(DIALLED_STATES)
    done = steps.c.state == "done"
    own_med = steps.c.med & ~steps.c.family
    q_steps = (select(steps.c.district, steps.c.day,
                      _count(dialled), _count(dialled & done), _count(dialled & (steps.c.state == "no_answer")),
                      _count(dialled & steps.c.state.in_(("busy", "failed"))),
                      _count((steps.c.kind == "care_call") & (steps.c.state == "missed")),
                      _count(steps.c.family & dialled), _count(steps.c.family & done),
                      _count((steps.c.kind == "alert") & done & steps.c.care),
                      _count(own_med & done & (steps.c.outcome == "heard")),
                      _count(own_med & done & (steps.c.outcome == "need_help")))
               .group_by(steps.c.district, steps.c.day))
    step_fields = ("placed", "answered", "no_answer", "busy_failed", "not_dialled", "family_calls", "family_told",
                   "care_alerts", "med_taken", "med_need_help")

    chains = (select(district_col, _day_index(bounds).label("day"), CallJob.kind, result_of_row().label("result"))
              .where(*window, newest_try("warning") | newest_try("medication"),
                     CallJob.state != "missed")  # a reminder of a stopped plan; not "IN (…)": SQLite would
              # pick the state index over finished_at's (no statistics) and read every row
              .subquery())
    q_chains = (select(chains.c.district, chains.c.day, chains.c.kind, chains.c.result, func.count())
                .group_by(chains.c.district, chains.c.day, chains.c.kind, chains.c.result))
    chain_fields = {("warning", "heard"): "warn_heard", ("warning", "need_help"): "warn_need_help",
                    ("warning", "answered"): "warn_answered", ("warning", "no_answer"): "warn_not_reached",
                    ("warning", "failed"): "warn_not_reached", ("medication", "no_answer"): "med_missed",
                    ("medication", "failed"): "med_missed"}

    async def read(s):
        return (await s.execute(q_steps)).all(), (await s.execute(q_chains)).all()

    step_rows, chain_rows = await jobs.report("outbound report", read)
    first = bounds[0].date()
    values: dict[tuple[str, dt.date], dict[str, int]] = {}
    for district_name, index, *counts in step_rows:
        if index >= 0:
            cell = values.setdefault((district_name, first + dt.timedelta(days=index)), {})
            for name, n in zip(step_fields, counts, strict=True):
                cell[name] = cell.get(name, 0) + int(n or 0)
    for district_name, index, kind, result, n in chain_rows:
        name = chain_fields.get((kind, result))
        if index >= 0 and name is not None:
            cell = values.setdefault((district_name, first + dt.timedelta(days=index)), {})
            cell[name] = cell.get(name, 0) + int(n)
    cells = {key: Tally(**v) for key, v in values.items()}
    return OutboundReport(days=tuple(first + dt.timedelta(days=i) for i in range(days)),
                          districts=tuple(sorted({d for d, _ in cells})), cells=cells)
