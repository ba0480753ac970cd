"""Warning broadcasts on the call engine (issue #17 item 3): typhoon, heat, outage or a free text, to every
elder or to some districts, with a delivery report by district.

``plan_warning`` writes one ``warning`` row per targeted elder (``job_key`` ``warn:<broadcast>:<elder>:a1``,
so planning the same broadcast twice — from two nodes, or a retried command — calls nobody twice). Each row
is due at the elder's first minute outside quiet hours (the platform's and the elder's own quiet times);
the engine's ``max_calls`` / ``dials_per_s`` set the pace. The row's ``detail`` holds what the call says
(a phrase-table key and its fields, or a free text) and what the engine needs to retry it (dialect, quiet
hours, time zone), so working it needs no other lookup.

The call opens with the same identity proof as a care call, says the message and asks: keypad 1 = heard,
2 = need help (0 = a person, counted as need help). Need help → an operator alert (a ``call_jobs`` alert
row → ``PlatformStore.raise_alert``); no answer → the care call's retries (``telephony.retry_delays_s``,
never into quiet hours), then the row ends ``no_answer`` — no family escalation and no alert per elder
(a typhoon warning must not bury the operators under thousands of alerts; the report shows them).
A line that cannot be dialled at all (no route, rejected by the trunk: the row ends ``failed``) raises one
operator alert for that elder (``no_answer``, ``reason: not_dialled``, naming the broadcast): nobody else will
reach them. Medication reminders and order follow-ups do the same (``telephony.engine.not_reached``).

``warning_report`` counts per district, from the rows: ``planned`` (elders targeted), ``heard``,
``need_help``, ``answered`` (answered, no key pressed), ``no_answer`` (every try ended unanswered),
``failed`` (could not be dialled) and ``pending`` (still to be tried). ``/metrics`` shows the same counts
(``assistant_warning_calls{broadcast,district,result}``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, case, cast, func, select

from assistant.errors import TelephonyError
from assistant.phrases import Phrasebook
from assistant.platform.models import Elder
from telephony.call_jobs import HELD_STATES, CallJobStore, NewJob, elder_column, newest_try
from telephony.models import CallJob
from telephony.scheduler import CareSchedule, TimeWindow

# the message of a broadcast: ``--kind typhoon`` → the phrase ``warning_typhoon`` (fields: ``--field k=v``)
WARNING_KEYS = {"typhoon": "warning_typhoon", "heat": "warning_heat", "outage": "warning_outage"}
FREE_TEXT_KEY = "warning_message"
KEYPAD_KEY = "warning_keypad"
ALL_DAY = TimeWindow(start=dt.time(0, 0), end=dt.time(0, 0))  # wraps: every minute (quiet hours still apply)
REPORT_RESULTS = ("planned", "heard", "need_help", "answered", "no_answer", "failed", "pending")
NEED_HELP = frozenset({"unwell", "needs_something", "wants_person"})  # keypad 2 / 0, or said so


@dataclass(frozen=True, kw_only=True)
class Broadcast:
    """What a broadcast says: a phrase-table warning (``kind`` in ``WARNING_KEYS``, with its fields) or a
    free ``text`` (read after "<platform>提醒您：")."""

    broadcast_id: str
    kind: str | None = None
    fields: dict[str, str] = dataclasses.field(default_factory=dict)
    text: str | None = None

    def __post_init__(self) -> None:
        if not self.broadcast_id or ":" in self.broadcast_id or len(self.broadcast_id) > 40:
            raise TelephonyError("a broadcast id is 1-40 characters without ':'", code="bad_broadcast")
        if (self.kind is None) == (self.text is None):
            raise TelephonyError("a broadcast has either a warning kind or a free text", code="bad_broadcast")
        if self.kind is not None and self.kind not in WARNING_KEYS:
            raise TelephonyError(f"unknown warning kind {self.kind!r} (known: {', '.join(WARNING_KEYS)})",
                                 code="bad_broadcast")
        if self.kind is not None:  # a missing field is a bad request, not something to speak around
            try:
                Phrasebook().say(WARNING_KEYS[self.kind], None, **self.fields)
            except KeyError as exc:
                raise TelephonyError(f"the {self.kind} warning needs the field {exc.args[0]!r}",
                                     code="bad_broadcast") from exc

    def detail(self) -> dict[str, Any]:
        return {"broadcast": self.broadcast_id, "warning": self.kind, "fields": dict(self.fields), "text": self.text}


def message(phrases: Phrasebook, detail: dict[str, Any], dialect: str | None) -> str:
    """What a warning call says after the identity proof: the message, then the keypad question."""
    if detail.get("text"):
        said = phrases.say(FREE_TEXT_KEY, dialect, message=detail["text"])
    else:
        said = phrases.say(WARNING_KEYS[detail["warning"]], dialect, **detail.get("fields", {}))
    return said + phrases.say(KEYPAD_KEY, dialect)


def broadcast_schedule(s: CareSchedule) -> CareSchedule:
    """An elder's schedule for a warning: any minute of any day outside quiet hours (own quiet times too)."""
    return dataclasses.replace(s, windows=(ALL_DAY,), days=frozenset(range(7)))


def schedule_detail(s: CareSchedule) -> dict[str, Any]:
    return {"dialect": s.dialect, "timezone": s.timezone,
            "quiet": [str(q) for q in ((s.quiet_hours,) if s.quiet_hours else ()) + s.extra_quiet]}


def job_schedule(job_elder_id: int, number: str, detail: dict[str, Any]) -> CareSchedule:
    """The schedule a warning row was planned with (its ``detail``): retries keep to the same quiet hours."""
    quiet = [TimeWindow.parse(q) for q in detail.get("quiet", [])]
    return CareSchedule(elder_id=job_elder_id, number=number, windows=(ALL_DAY,), quiet_hours=quiet[0] if quiet else None,
                        extra_quiet=tuple(quiet[1:]), dialect=detail.get("dialect"), timezone=detail.get("timezone"))


def warning_jobs(warning: Broadcast, schedules: Iterable[CareSchedule], *, now: dt.datetime) -> list[NewJob]:
    """One ``warning`` row per elder, each due at the elder's first minute outside quiet hours."""
    out = []
    for s in schedules:
        b = broadcast_schedule(s)
        first = b.next_call_time(b.local(now))
        if first is None or not s.number:
            continue
        chain = f"warn:{warning.broadcast_id}:{s.elder_id}"
        out.append(NewJob(job_key=f"{chain}:a1", chain=chain, kind="warning", elder_id=s.elder_id, number=s.number,
                          attempt=1, not_before=b.to_clock(first, aware=now.tzinfo is not None),
                          detail={**warning.detail(), **schedule_detail(b)}))
    return out


async def target_elders(jobs: CallJobStore, districts: Sequence[str] = ()) -> list[int]:
    """The active elders of ``districts`` (all districts when empty)."""
    q = select(Elder.id).where(Elder.active.is_(True)).order_by(Elder.id)
    if districts:
        q = q.where(Elder.district.in_(list(districts)))

    async def read(s):
        return list((await s.scalars(q)).all())

    return await jobs._run("broadcast targets", read)


async def plan_warning(jobs: CallJobStore, warning: Broadcast, schedules: Iterable[CareSchedule], *,
                       now: dt.datetime) -> dict[str, int]:
    """Write the broadcast's rows; ``added`` is how many were new (a second run of the same id adds none)."""
    new = warning_jobs(warning, schedules, now=now)
    return {"elders": len(new), "added": await jobs.plan(new)}


def chain_like(broadcast_id: str) -> ColumnElement[bool]:
    """The rows of one broadcast (``warn:<id>:<elder>``); ``_`` and ``%`` in an id are not wildcards."""
    escaped = broadcast_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return CallJob.chain.like(f"warn:{escaped}:%", escape="\\")


def broadcast_of_chain() -> ColumnElement[str]:
    """The broadcast id of a warning row, in SQL: ``chain`` is ``warn:<id>:<elder_id>`` (SQLite and PostgreSQL)."""
    return func.substr(CallJob.chain, 6,
                       func.length(CallJob.chain) - 6 - func.length(cast(CallJob.elder_id, String)))


def result_of_row() -> ColumnElement[str]:
    """``_result`` in SQL: what a warning row's state and outcome mean for the report."""
    return case((CallJob.state == "done",
                 case((CallJob.outcome.in_(("heard", "need_help")), CallJob.outcome), else_="answered")),
                (CallJob.state.in_(("no_answer", "busy")), "no_answer"),
                (CallJob.state.in_(("failed", "missed")), "failed"),
                else_="pending")


async def warning_report(jobs: CallJobStore, *, broadcast_id: str | None = None,
                         since: dt.datetime | None = None) -> dict[str, dict[str, dict[str, int]]]:
    """``{broadcast: {district: {planned, heard, need_help, answered, no_answer, failed, pending}}}``: each
    elder counted once, by the newest try of their call. Counted in SQL (one GROUP BY over the newest tries,
    ``telephony.call_jobs.newest_try``); ``since`` keeps the rows created since then."""
    newest = (select(broadcast_of_chain().label("broadcast"),
                     func.coalesce(elder_column(Elder.district), "").label("district"), result_of_row().label("result"))
              .where(newest_try("warning", since=since)))
    if broadcast_id is not None:
        newest = newest.where(chain_like(broadcast_id))
    if since is not None:
        newest = newest.where(CallJob.created_at >= since)
    rows = newest.subquery()  # grouped outside: PostgreSQL wants GROUP BY on the very select expressions
    q = (select(rows.c.broadcast, rows.c.district, rows.c.result, func.count())
         .group_by(rows.c.broadcast, rows.c.district, rows.c.result))

    async def read(s):
        return (await s.execute(q)).all()

    report: dict[str, dict[str, dict[str, int]]] = {}
    for broadcast, district, result, n in await jobs.report("warning report", read):
        counts = report.setdefault(broadcast, {}).setdefault(district, dict.fromkeys(REPORT_RESULTS, 0))
        counts["planned"] += n
        counts[result] += n
    return report


async def broadcasts_under_way(jobs: CallJobStore) -> list[str]:
    """The broadcasts being sent: with a try still to make or in a call (newest id first). Read through the
    state index: the open rows only."""
    q = (select(broadcast_of_chain()).distinct()
         .where(CallJob.kind == "warning", CallJob.state.in_(("planned", *HELD_STATES))))

    async def read(s):
        return list((await s.scalars(q)).all())

    return sorted(await jobs._run("broadcasts under way", read), reverse=True)


async def broadcast_summary(jobs: CallJobStore, broadcast_id: str) -> dict[str, Any] | None:
    """What a broadcast said and when it was sent (its first row's ``detail`` and ``created_at``), or None."""
    q = (select(CallJob.detail, CallJob.created_at)
         .where(CallJob.kind == "warning", CallJob.attempt == 1, chain_like(broadcast_id))
         .order_by(CallJob.id).limit(1))

    async def read(s):
        return (await s.execute(q)).first()

    row = await jobs._run("broadcast summary", read)
    if row is None:
        return None
    detail, created = row
    return {"broadcast": broadcast_id, "warning": detail.get("warning"), "fields": detail.get("fields") or {},
            "text": detail.get("text"), "sent_at": created}


async def not_reached(jobs: CallJobStore, broadcast_id: str) -> list[dict[str, Any]]:
    """The elders a broadcast did not reach, by the newest try of their call (``failed``: could not be dialled,
    ``no_answer``: every try unanswered): ``{elder_id, name, district, number, result, attempts}``, for the
    operator who phones them (the console's warning page). The newest tries are picked in SQL."""
    q = (select(CallJob.attempt, CallJob.state, CallJob.elder_id, CallJob.number,
                elder_column(Elder.name).label("name"), elder_column(Elder.district).label("district"))
         .where(newest_try("warning"), chain_like(broadcast_id),
                CallJob.state.in_(("no_answer", "busy", "failed", "missed"))))

    async def read(s):
        return (await s.execute(q)).all()

    out = [{"elder_id": r.elder_id, "name": r.name or "", "district": r.district or "", "number": r.number,
            "result": _result(r.state, None), "attempts": r.attempt} for r in await jobs.report("warning not reached", read)]
    return sorted(out, key=lambda o: (o["result"] != "failed", o["district"], o["elder_id"]))


def _result(state: str, outcome: str | None) -> str:
    if state == "done":
        return outcome if outcome in ("heard", "need_help") else "answered"
    if state in ("no_answer", "busy"):
        return "no_answer"
    if state in ("failed", "missed"):
        return "failed"
    return "pending"


def outcome_of(keyed: str | None) -> str | None:
    """The call's recorded check-in outcome → the warning's: ``heard`` / ``need_help`` / None (no key)."""
    if keyed in NEED_HELP:
        return "need_help"
    return "heard" if keyed == "well" else None
