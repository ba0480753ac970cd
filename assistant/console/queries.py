"""Read side of the console: the review queue, one flagged call, the order board, the care dashboard.

Plain SQLAlchemy 2 queries over the platform tables; each function takes an ``AsyncSession`` and returns
small dataclasses the views render. Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from assistant.console.render import (
    ALERT_KIND_LABELS,
    CALL_OUTCOME_LABELS,
    LOCAL_TZ,
    ORDER_STATUS_LABELS,
    ORDER_TYPE_LABELS,
)
from assistant.platform.models import (
    DISTRICTS,
    OPEN_ORDER_STATUSES,
    Alert,
    Call,
    CallTurn,
    CareSchedule,
    Elder,
    WorkOrder,
)
from assistant.platform.models_console import AuditEntry, ConsoleNote

PAGE_SIZE = 50
SEVERITY_RANK = {"critical": 4, "urgent": 3, "warning": 2, "info": 1}
ACTIVE_ALERT_STATUSES = ("open", "acknowledged")
# calls.outcome values that mean nobody answered (the dialer's vocabulary); anything else set = answered
UNANSWERED_OUTCOMES = frozenset({"no_answer", "busy", "failed", "rejected", "unanswered", "timeout", "voicemail"})


def fraud_info(detail: dict[str, Any]) -> tuple[str, float | None, list[str]]:
    """(scam type, score, evidence phrases) from a fraud alert's ``detail``, tolerant of key names."""
    scam = str(detail.get("scam_type") or detail.get("fraud_type") or detail.get("type") or "")
    score = next((detail[k] for k in ("score", "risk", "probability") if detail.get(k) is not None), None)
    try:
        score_f = float(score) if score is not None else None
    except (TypeError, ValueError):
        score_f = None
    raw = detail.get("evidence") or detail.get("phrases") or detail.get("cues") or []
    phrases: list[str] = []
    for item in raw if isinstance(raw, list) else [raw]:
        if isinstance(item, str):
            phrases.append(item)
        elif isinstance(item, dict):
            text = item.get("phrase") or item.get("text") or item.get("match")
            if text:
                phrases.append(str(text))
    return scam, score_f, phrases


@dataclass(frozen=True, kw_only=True)
class QueueRow:
    alert: Alert
    elder_name: str
    district: str


@dataclass(frozen=True, kw_only=True)
class QueuePage:
    rows: list[QueueRow]
    total: int
    page: int
    pages: int


def _severity_rank():
    return case(*((Alert.severity == k, v) for k, v in SEVERITY_RANK.items()), else_=0)


async def review_queue(
    db: AsyncSession, *, statuses: tuple[str, ...] = ACTIVE_ALERT_STATUSES, kind: str | None = None, page: int = 1
) -> QueuePage:
    """Flagged calls, most urgent first, then newest; ``PAGE_SIZE`` per page."""
    where = [Alert.status.in_(statuses)]
    if kind:
        where.append(Alert.kind == kind)
    total = int(await db.scalar(select(func.count()).select_from(Alert).where(*where)) or 0)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(page, 1), pages)
    # sort and page over the narrow alerts index first, then load the page's 50 rows with their elders
    order = (_severity_rank().desc(), Alert.created_at.desc(), Alert.id.desc())
    ids = list(
        (await db.execute(select(Alert.id).where(*where).order_by(*order).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)))
        .scalars()
        .all()
    )
    q = (
        select(Alert, Elder.name, Elder.district)
        .outerjoin(Elder, Elder.id == Alert.elder_id)
        .where(Alert.id.in_(ids or [-1]))
        .order_by(*order)
    )
    rows = [QueueRow(alert=a, elder_name=n or "（未识别）", district=d or "") for a, n, d in (await db.execute(q)).all()]
    return QueuePage(rows=rows, total=total, page=page, pages=pages)


@dataclass(frozen=True, kw_only=True)
class TimelineItem:
    at: dt.datetime | None
    label: str


@dataclass(kw_only=True)
class AlertDetail:
    alert: Alert
    elder: Elder | None
    call: Call | None
    turns: list[CallTurn]
    orders: list[WorkOrder]
    notes: list[ConsoleNote]
    other_alerts: list[Alert]
    timeline: list[TimelineItem] = field(default_factory=list)


async def alert_detail(db: AsyncSession, alert_id: int) -> AlertDetail | None:
    alert = await db.get(Alert, alert_id)
    if alert is None:
        return None
    elder = await db.get(Elder, alert.elder_id) if alert.elder_id is not None else None
    call = await db.get(Call, alert.call_id) if alert.call_id else None
    turns: list[CallTurn] = []
    orders: list[WorkOrder] = []
    other: list[Alert] = []
    if alert.call_id:
        turns = list(
            (await db.execute(select(CallTurn).where(CallTurn.call_id == alert.call_id).order_by(CallTurn.turn)))
            .scalars()
            .all()
        )
        orders = list(
            (await db.execute(select(WorkOrder).where(WorkOrder.call_id == alert.call_id).order_by(WorkOrder.id)))
            .scalars()
            .all()
        )
        other = list(
            (
                await db.execute(
                    select(Alert).where(Alert.call_id == alert.call_id, Alert.id != alert.id).order_by(Alert.id)
                )
            )
            .scalars()
            .all()
        )
    if alert.order_id is not None and all(o.id != alert.order_id for o in orders):
        order = await db.get(WorkOrder, alert.order_id)
        if order is not None:
            orders.append(order)
    note_filter = [ConsoleNote.alert_id == alert.id]
    if alert.call_id:
        note_filter.append(ConsoleNote.call_id == alert.call_id)
    notes = list(
        (await db.execute(select(ConsoleNote).where(or_(*note_filter)).order_by(ConsoleNote.created_at))).scalars().all()
    )
    actions = (
        await db.execute(
            select(AuditEntry)
            .where(
                AuditEntry.target_type == "alert",
                AuditEntry.target_id == str(alert.id),
                AuditEntry.action.in_(("acknowledge", "callback", "dispatch", "false_alarm", "add_note")),
            )
            .order_by(AuditEntry.at)
        )
    ).scalars()
    detail = AlertDetail(alert=alert, elder=elder, call=call, turns=turns, orders=orders, notes=notes, other_alerts=other)
    detail.timeline = _timeline(detail, list(actions))
    return detail


ACTION_LABELS = {
    "acknowledge": "确认",
    "callback": "安排回电",
    "dispatch": "派员处理",
    "false_alarm": "标记误报",
    "add_note": "添加备注",
}


# ties (and, within the call, inversions) are broken by what happens first in a call
_RANK = {"call_start": 0, "answered": 1, "event": 2, "verification": 3, "call_end": 4, "action": 5}


def _timeline(d: AlertDetail, actions: list[AuditEntry]) -> list[TimelineItem]:
    """The alert's story in call order. Simulated calls feed audio faster than real time and turns are
    written after they are spoken, so a turn may be stamped after the call's end: each step of the call
    (start, answered, verdict, end) sorts no earlier than the step before it, what happened during the call
    (its alerts, the orders it placed) no earlier than the answer, and equal times sort by kind. The times
    shown are the stored ones."""
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    keyed: list[tuple[dt.datetime, int, TimelineItem]] = []

    def add(at: dt.datetime | None, kind: str, label: str, *, not_before: dt.datetime | None = None) -> dt.datetime:
        key = max(at or epoch, not_before or epoch)
        keyed.append((key, _RANK[kind], TimelineItem(at=at, label=label)))
        return key

    answered_key: dt.datetime | None = None
    if d.call is not None:
        step = add(d.call.started_at, "call_start", "来电" if d.call.direction == "inbound" else "外呼拨出")
        first_bot = next((t for t in d.turns if t.speaker == "bot"), None)
        first_elder = next((t for t in d.turns if t.speaker == "elder"), None)
        answered = first_elder if d.call.direction == "outbound" else first_bot
        if answered is not None:
            step = answered_key = add(answered.created_at, "answered", "接通", not_before=step)
        verification = {"verified": "身份已核验", "failed": "身份核验失败", "unverified": "身份未核验"}
        # the call record keeps the verdict, not its time: shown with the end of the call
        step = add(d.call.ended_at or d.call.started_at, "verification",
                   verification.get(d.call.verification, d.call.verification), not_before=step)
        if d.call.ended_at is not None:
            outcome = CALL_OUTCOME_LABELS.get(d.call.outcome or "", d.call.outcome or "—")
            add(d.call.ended_at, "call_end", f"通话结束（{outcome}）", not_before=step)
    call_id = d.call.call_id if d.call is not None else None

    def during_call(ref: str | None) -> dt.datetime | None:
        return answered_key if call_id is not None and ref == call_id else None

    for a in [d.alert, *d.other_alerts]:
        add(a.created_at, "event", f"标记：{ALERT_KIND_LABELS.get(a.kind, a.kind)}", not_before=during_call(a.call_id))
    for o in d.orders:
        kind = ORDER_TYPE_LABELS.get(o.type, o.type)
        for at, status in (
            (o.created_at, "placed"),
            (o.dispatched_at, "dispatched"),
            (o.answered_at, "answered"),
            (o.done_at, "done"),
            (o.cancelled_at, "cancelled"),
        ):
            if at is not None:
                add(at, "event", f"工单#{o.id} {kind}：{ORDER_STATUS_LABELS[status]}",
                    not_before=during_call(o.call_id) if status == "placed" else None)
    for e in actions:
        add(e.at, "action", f"{ACTION_LABELS.get(e.action, e.action)}（{e.username}）")
    return [item for _, _, item in sorted(keyed, key=lambda k: (k[0], k[1]))]


@dataclass(frozen=True, kw_only=True)
class BoardOrder:
    order: WorkOrder
    elder_name: str
    district: str
    dispatch_deadline: dt.datetime | None
    answer_deadline: dt.datetime | None

    def overdue(self, now: dt.datetime) -> bool:
        deadline = self.dispatch_deadline or self.answer_deadline
        return deadline is not None and deadline < now


def order_deadlines(order: WorkOrder, *, dispatch_sla_s: float, answer_sla_s: float) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The pending SLA deadlines: dispatch (while placed) and answer (until answered), both from placement."""
    dispatch = answer = None
    if order.status == "placed":
        dispatch = order.created_at + dt.timedelta(seconds=dispatch_sla_s)
    if order.status in ("placed", "dispatched"):
        answer = order.created_at + dt.timedelta(seconds=answer_sla_s)
    return dispatch, answer


async def order_board(
    db: AsyncSession, *, dispatch_sla_s: float, answer_sla_s: float, now: dt.datetime, order_type: str | None = None
) -> dict[str, list[BoardOrder]]:
    """Open orders by status (oldest first) plus those closed in the last 24 hours."""
    since = now - dt.timedelta(hours=24)
    where = [
        or_(
            WorkOrder.status.in_(OPEN_ORDER_STATUSES),
            WorkOrder.done_at >= since,
            WorkOrder.cancelled_at >= since,
        )
    ]
    if order_type:
        where.append(WorkOrder.type == order_type)
    q = (
        select(WorkOrder, Elder.name, Elder.district)
        .join(Elder, Elder.id == WorkOrder.elder_id)
        .where(*where)
        .order_by(WorkOrder.created_at)
        .limit(1000)
    )
    board: dict[str, list[BoardOrder]] = {s: [] for s in ("placed", "dispatched", "answered", "done", "cancelled")}
    for order, name, district in (await db.execute(q)).all():
        dispatch, answer = order_deadlines(order, dispatch_sla_s=dispatch_sla_s, answer_sla_s=answer_sla_s)
        board[order.status].append(
            BoardOrder(order=order, elder_name=name, district=district, dispatch_deadline=dispatch, answer_deadline=answer)
        )
    return board


CARE_STATES = ("answered", "unanswered", "escalated", "pending")
CARE_URGENCY = ("escalated", "unanswered", "pending", "answered")  # the list's order
CARE_ROWS = 300  # elders listed on the page, most urgent first (the counts cover every elder)


@dataclass(frozen=True, kw_only=True)
class CareRow:
    elder_id: int
    elder_name: str
    district: str
    window: str
    state: str
    last_call_at: dt.datetime | None


@dataclass(frozen=True, kw_only=True)
class CareDashboard:
    day: dt.date
    rows: list[CareRow]  # the ``CARE_ROWS`` most urgent
    by_district: dict[str, dict[str, int]]
    totals: dict[str, int]

    @property
    def elders(self) -> int:
        return sum(self.totals.values())


def _today(schedule: Any, weekday: str) -> ColumnElement[bool]:
    return and_(schedule.enabled.is_(True), schedule.days.contains(weekday))


@dataclass(frozen=True, kw_only=True)
class _CareToday:
    """Today's outbound calls per elder (answered or not, the last one) and today's no-answer escalations, as
    derived tables read once each through ``ix_calls_started_at`` / the alerts table, joined to the elders."""

    calls: Any
    escalations: Any

    @classmethod
    def between(cls, start: dt.datetime, end: dt.datetime) -> _CareToday:
        answered = and_(Call.outcome.is_not(None), Call.outcome != "", Call.outcome.not_in(sorted(UNANSWERED_OUTCOMES)))
        calls = (select(Call.elder_id.label("elder_id"), func.max(case((answered, 1), else_=0)).label("answered"),
                        func.max(Call.started_at).label("last_call_at"))
                 # today, bounded on both sides: SQLite (no statistics) then reads the day through
                 # ix_calls_started_at; with ">= start" alone it read every call ever through
                 # (elder_id, started_at) to group in order
                 .where(Call.direction == "outbound", Call.started_at >= start, Call.started_at < end)
                 .group_by(Call.elder_id).subquery("care_calls"))
        escalations = (select(Alert.elder_id.label("elder_id"))
                       .where(Alert.kind == "no_answer", Alert.created_at >= start)
                       .group_by(Alert.elder_id).subquery("care_escalations"))
        return cls(calls=calls, escalations=escalations)

    def join(self, q: Any) -> Any:
        return (q.outerjoin(self.calls, self.calls.c.elder_id == Elder.id)
                .outerjoin(self.escalations, self.escalations.c.elder_id == Elder.id))

    def state(self) -> ColumnElement[str]:
        """answered (an outbound call with an answered outcome), escalated (a ``no_answer`` alert), unanswered
        (outbound calls, none answered, not escalated yet) or pending (no call yet)."""
        return case((self.calls.c.answered == 1, "answered"), (self.escalations.c.elder_id.is_not(None), "escalated"),
                    (self.calls.c.elder_id.is_not(None), "unanswered"), else_="pending")


async def care_dashboard(db: AsyncSession, *, now: dt.datetime) -> CareDashboard:
    """Today's (local time) scheduled care calls and their outcome (``_CareToday.state``): the counts per
    district over every active elder with an enabled schedule for today's weekday, and the ``CARE_ROWS`` most
    urgent of them (escalated, unanswered, pending, answered; then by their first window today). Counted in SQL,
    the same SQL on SQLite and PostgreSQL."""
    local = now.astimezone(LOCAL_TZ)
    day = local.date()
    start = dt.datetime.combine(day, dt.time(0), tzinfo=LOCAL_TZ).astimezone(dt.UTC)
    weekday = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[local.weekday()]
    today = _CareToday.between(start, start + dt.timedelta(days=1))
    elders = (today.join(select(Elder.district.label("district"), today.state().label("state")).select_from(Elder))
              .where(Elder.active.is_(True), exists().where(CareSchedule.elder_id == Elder.id, _today(CareSchedule, weekday)))
              .subquery())
    tally = select(elders.c.district, elders.c.state, func.count()).group_by(elders.c.district, elders.c.state)
    by_district = {d: dict.fromkeys(CARE_STATES, 0) for d in DISTRICTS}
    totals = dict.fromkeys(CARE_STATES, 0)
    for district, state, n in (await db.execute(tally)).all():
        by_district.setdefault(district, dict.fromkeys(CARE_STATES, 0))[state] += n
        totals[state] += n
    # each elder once, with their first window today (an earlier one, or an equal one of a lower id, is not there)
    earlier = aliased(CareSchedule)
    first = ~exists().where(earlier.elder_id == CareSchedule.elder_id, _today(earlier, weekday),
                            or_(earlier.window_start < CareSchedule.window_start,
                                and_(earlier.window_start == CareSchedule.window_start, earlier.id < CareSchedule.id)))
    listed = (today.join(select(Elder.id, Elder.name, Elder.district, CareSchedule.window_start,
                                CareSchedule.window_end, today.state().label("state"),
                                today.calls.c.last_call_at)
                         .select_from(CareSchedule).join(Elder, Elder.id == CareSchedule.elder_id))
              .where(Elder.active.is_(True), _today(CareSchedule, weekday), first)
              .subquery())
    urgency = case(*((listed.c.state == s, i) for i, s in enumerate(CARE_URGENCY)))
    rows = [CareRow(elder_id=r.id, elder_name=r.name, district=r.district,
                    window=f"{r.window_start:%H:%M}–{r.window_end:%H:%M}", state=r.state, last_call_at=r.last_call_at)
            for r in (await db.execute(select(listed).order_by(urgency, listed.c.window_start, listed.c.id)
                                        .limit(CARE_ROWS))).all()]
    return CareDashboard(day=day, rows=rows, by_district=by_district, totals=totals)


async def recent_audit(db: AsyncSession, *, limit: int = 200, action: str | None = None) -> list[AuditEntry]:
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action:
        q = q.where(AuditEntry.action == action)
    return list((await db.execute(q)).scalars().all())
