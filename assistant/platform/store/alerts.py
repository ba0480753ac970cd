"""Alerts: ``raise_alert``, the one way every area raises one (one per call and kind while unresolved; the
family notified in the same transaction), operators' status changes and the SLA scan."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.call_alert import CallAlert
from assistant.errors import StoreError
from assistant.platform.models import (
    ALERT_KINDS,
    ALERT_SEVERITIES,
    ALERT_STATUSES,
    Alert,
    Elder,
    HandoverEvent,
    Outbox,
    WorkOrder,
)
from assistant.platform.store.base import StoreBase, invalid
from assistant.platform.store.records import AlertInfo, SosCancel

log = logging.getLogger(__name__)

# alerts that notify the elder's family (outbox rows in the same transaction as the alert)
FAMILY_NOTIFY_KINDS = ("sos", "unwell", "fraud")
DEFAULT_SEVERITY = {
    "sos": "critical",
    "unwell": "urgent",
    "fraud": "urgent",
    "human": "warning",
    "nurse_callback": "warning",
    "no_answer": "warning",
    "sla_dispatch": "warning",
    "sla_answer": "urgent",
    "misunderstanding": "info",
    "unconfirmed_emergency": "critical",
    "sos_cancelled": "urgent",
    "missed_call": "urgent",  # an elder who found every line busy may be the emergency the reserve was for
}
# the call-back task's line in the console queue (an SOS family message counts as told once it left the
# queue or a dispatcher claimed it: it may be on its way)
# a care call's names for what it found, as the store names the alert (anything else unknown: a person)
CALL_ALERT_KINDS = {"help": "unwell", "order_problem": "human"}
SOS_CANCEL_SUMMARY = "长者在紧急求助后按了「按错了，取消」：请回电确认平安"


class AlertStore(StoreBase):
    async def raise_call_alert(self, alert: CallAlert) -> AlertInfo:
        """``raise_alert`` for an alert raised during a call (the one ``AlertSink`` of the dialogue, the phone
        gateway and the call engine). A kind the store does not know becomes "human" (a person looks at it);
        the name it was raised under and the call's line are kept in ``detail``."""
        kind = CALL_ALERT_KINDS.get(alert.kind, alert.kind)
        if kind not in ALERT_KINDS:
            kind = "human"
        detail = dict(alert.detail)
        if kind != alert.kind:
            detail["raised_as"] = alert.kind
        if alert.number:
            detail["number"] = alert.number
        return await self.raise_alert(elder_id=alert.elder_id, call_id=alert.call_id, kind=kind, detail=detail)

    async def raise_alert(
        self,
        *,
        elder_id: int | None,
        kind: str,
        call_id: str | None = None,
        order_id: int | None = None,
        severity: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AlertInfo:
        """Raise an operator alert: the one way every area (phone gateway, dialogue actions through the
        API, fraud guard, smart screen, hand-over, SLA) creates one. For sos/unwell/fraud the elder's family
        contacts get outbox notifications written in the same transaction (all or nothing).

        One alert per call per kind: while an alert of ``kind`` for ``call_id`` is unresolved, raising it
        again (a screen SOS during the call's spoken SOS, a hand-over asking for the alert it answers, from
        any process) returns that alert and writes nothing (``notified`` 0)."""
        if kind not in ALERT_KINDS:
            raise invalid(f"alert kind must be one of {ALERT_KINDS}")
        severity = severity or DEFAULT_SEVERITY.get(kind, "warning")
        if severity not in ALERT_SEVERITIES:
            raise invalid(f"severity must be one of {ALERT_SEVERITIES}")
        async with self.session("raise alert") as s:
            elder = None
            if elder_id is not None:
                elder = await s.get(Elder, elder_id)
                if elder is None:
                    raise StoreError(f"no elder {elder_id}", code="not_found")
            if order_id is not None and await s.scalar(select(WorkOrder.id).where(WorkOrder.id == order_id)) is None:
                raise StoreError(f"no order {order_id}", code="not_found")
            alert = Alert(
                elder_id=elder_id,
                call_id=call_id,
                order_id=order_id,
                kind=kind,
                severity=severity,
                detail=dict(detail or {}),
                status="open",
                created_at=self.now(),
            )
            if call_id is not None:
                await self._lock_alert_key(s, call_id, kind)
            s.add(alert)
            await s.flush()
            if call_id is not None:
                # after our INSERT (SQLite: we hold the write lock) or the advisory lock (PostgreSQL) every
                # other writer of this (call, kind) has committed or waits: an earlier open one wins
                first = await s.scalar(
                    select(Alert)
                    .where(Alert.call_id == call_id, Alert.kind == kind, Alert.resolved_at.is_(None), Alert.id != alert.id)
                    .order_by(Alert.id)
                    .limit(1)
                )
                if first is not None:
                    info = AlertInfo.of(first)
                    await s.rollback()
                    log.info("alert %s %s for call %s already raised: not raised again", info.alert_id, kind, call_id)
                    return info
            channels: list[str] = []
            if elder is not None and kind in FAMILY_NOTIFY_KINDS:
                channels = self._notify_family(s, elder, alert)
            await s.commit()
            log.info("alert %s raised: %s (%s) elder=%s call=%s", alert.id, kind, severity, elder_id, call_id)
            return AlertInfo.of(alert, notified=len(channels), notified_channels=tuple(dict.fromkeys(channels)))

    async def _lock_alert_key(self, s: AsyncSession, call_id: str, kind: str) -> None:
        """PostgreSQL: serialise writers of one (call, kind) until commit (SQLite serialises all writers)."""
        if self.engine.dialect.name == "postgresql":
            await s.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(f"alert:{call_id}:{kind}", 0))))

    def _notify_family(self, s: AsyncSession, elder: Elder, alert: Alert) -> list[str]:
        """Outbox rows for the elder's contacts; returns the channel of each row written."""
        body = family_message(kind=alert.kind, elder_name=elder.name, district=elder.district, alert_id=alert.id)
        written: list[str] = []
        for c in sorted(elder.contacts, key=lambda c: (c.priority, c.id)):
            targets = []
            if c.notify_sms and c.phone:
                targets.append(("sms", c.phone))
            if c.notify_email and c.email:
                targets.append(("email", c.email))
            for channel, recipient in targets:
                s.add(
                    Outbox(
                        channel=channel,
                        recipient=recipient,
                        subject=f"平安通提醒：{elder.name}",
                        body=body,
                        alert_id=alert.id,
                        created_at=self.now(),
                    )
                )
                written.append(channel)
        return written

    async def get_alert(self, alert_id: int) -> AlertInfo:
        async with self.session("read alert") as s:
            alert = await s.get(Alert, alert_id)
            if alert is None:
                raise StoreError(f"no alert {alert_id}", code="not_found")
            return AlertInfo.of(alert)

    async def list_alerts(
        self,
        *,
        elder_id: int | None = None,
        status: str | Iterable[str] | None = None,
        kind: str | Iterable[str] | None = None,
        limit: int = 50,
    ) -> list[AlertInfo]:
        """Newest first."""
        async with self.session("list alerts") as s:
            q = select(Alert).order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)
            if elder_id is not None:
                q = q.where(Alert.elder_id == elder_id)
            if status is not None:
                q = q.where(Alert.status.in_([status] if isinstance(status, str) else list(status)))
            if kind is not None:
                q = q.where(Alert.kind.in_([kind] if isinstance(kind, str) else list(kind)))
            return [AlertInfo.of(a) for a in (await s.scalars(q)).all()]

    async def set_alert_status(self, alert_id: int, status: str, *, by: str | None = None) -> AlertInfo:
        """acknowledged | resolved | false_alarm (the console's buttons)."""
        if status not in ALERT_STATUSES or status == "open":
            raise invalid("status must be acknowledged, resolved or false_alarm")
        async with self.session("update alert") as s:
            alert = await s.get(Alert, alert_id)
            if alert is None:
                raise StoreError(f"no alert {alert_id}", code="not_found")
            now = self.now()
            if alert.acknowledged_at is None:
                alert.acknowledged_at = now
                alert.acknowledged_by = by
            if status in ("resolved", "false_alarm") and alert.resolved_at is None:
                alert.resolved_at = now
            alert.status = status
            await s.commit()
            return AlertInfo.of(alert)

    async def cancel_sos_by_elder(self, alert_id: int, *, elder_id: int, window_s: float) -> SosCancel:
        """The elder pressed "按错了，取消" within ``window_s`` of an SOS, in one transaction: the SOS becomes
        ``false_alarm`` with ``detail.cancelled_by`` = "elder" (help was never delayed: it was raised at once);
        an operator call-back task (a ``sos_cancelled`` alert) is raised, since a cancel may be pressed by
        someone else or in panic; SOS family messages still waiting in the queue are withdrawn, and family
        members already sent one get "按错了，已取消". Too late, not an open SOS of this elder → ``conflict``."""
        async with self.session("cancel sos") as s:
            alert = await s.get(Alert, alert_id, with_for_update=True)
            if alert is None or alert.elder_id != elder_id or alert.kind != "sos":
                raise StoreError(f"no SOS {alert_id} for elder {elder_id}", code="not_found")
            now = self.now()
            created = alert.created_at if alert.created_at.tzinfo else alert.created_at.replace(tzinfo=dt.UTC)
            if alert.status != "open":
                raise StoreError(f"SOS {alert_id} is already {alert.status}", code="conflict")
            if (now - created).total_seconds() > window_s:
                raise StoreError(f"SOS {alert_id} is older than {window_s:.0f} s: an operator handles it", code="conflict")
            alert.status = "false_alarm"
            alert.resolved_at = now
            alert.detail = {**(alert.detail or {}), "cancelled_by": "elder", "cancelled_at": now.isoformat()}
            withdrawn = (await s.execute(
                update(Outbox)
                .where(Outbox.alert_id == alert_id, Outbox.status == "queued", Outbox.next_attempt_at.is_(None),
                       Outbox.attempts == 0)
                .values(status="undeliverable", last_error="长者已取消（按错了），未发出")
            )).rowcount
            told = (await s.execute(
                select(Outbox.channel, Outbox.recipient).where(Outbox.alert_id == alert_id, Outbox.status != "undeliverable")
            )).all()
            elder = await s.get(Elder, elder_id)
            callback = Alert(
                elder_id=elder_id, call_id=None, order_id=None, kind="sos_cancelled",
                severity=DEFAULT_SEVERITY["sos_cancelled"], status="open", created_at=now,
                detail={"summary": SOS_CANCEL_SUMMARY, "reason": "operator_callback", "sos_alert_id": alert_id},
            )
            s.add(callback)
            await s.flush()
            body = cancel_message(elder_name=elder.name, district=elder.district, alert_id=alert_id)
            recipients = list(dict.fromkeys((channel, recipient) for channel, recipient in told))
            for channel, recipient in recipients:
                s.add(Outbox(channel=channel, recipient=recipient, subject=f"平安通提醒：{elder.name}", body=body,
                             alert_id=alert_id, created_at=now))
            await s.commit()
            log.warning("SOS %s cancelled by elder %s: call-back task %s, %d family told, %d withdrawn",
                        alert_id, elder_id, callback.id, len(recipients), withdrawn)
            return SosCancel(sos=AlertInfo.of(alert), callback_alert_id=callback.id, family_told=len(recipients),
                             withdrawn=int(withdrawn or 0))

    async def note_alert_handover(self, alert_id: int, handover: dict[str, Any]) -> None:
        """The live hand-over's state on the alert (``detail.handover``: ringing / connected / family
        acknowledged, operator, times), written by the phone gateway for the console. A change of state,
        of the phones ringing or of the operator also appends a ``HandoverEvent`` (the console's live pop-up)."""
        async with self.session("note hand-over") as s:
            alert = await s.get(Alert, alert_id)
            if alert is None:
                raise StoreError(f"no alert {alert_id}", code="not_found")
            before = (alert.detail or {}).get("handover") or {}
            alert.detail = {**(alert.detail or {}), "handover": dict(handover)}
            step = ("state", "ringing", "operator", "queue_position")
            if any(before.get(k) != handover.get(k) for k in step):  # a step the console shows live
                s.add(HandoverEvent(alert_id=alert_id, state=str(handover.get("state") or "requested")[:32],
                                    ringing=[str(u) for u in handover.get("ringing") or ()],
                                    operator=handover.get("operator"), at=self.now()))
            await s.commit()

    async def sla_scan(
        self, *, dispatch_sla_s: float, answer_sla_s: float, now: dt.datetime | None = None, limit: int = 200
    ) -> list[AlertInfo]:
        """Raise ``sla_dispatch`` for orders still ``placed`` after ``dispatch_sla_s`` and ``sla_answer``
        for orders not answered after ``answer_sla_s`` (both from ``created_at``). Each alert is raised
        once per order: the order is marked in the same transaction."""
        now = now or self.now()
        raised: list[tuple[Alert, WorkOrder]] = []
        async with self.session("SLA scan") as s:
            checks = (
                ("sla_dispatch", ("placed",), dispatch_sla_s, WorkOrder.sla_dispatch_alerted_at, "sla_dispatch_alerted_at"),
                ("sla_answer", ("placed", "dispatched"), answer_sla_s, WorkOrder.sla_answer_alerted_at, "sla_answer_alerted_at"),
            )
            for kind, statuses, sla_s, column, attr in checks:
                deadline = now - dt.timedelta(seconds=sla_s)
                rows = await s.scalars(
                    select(WorkOrder)
                    .where(WorkOrder.status.in_(statuses), WorkOrder.created_at <= deadline, column.is_(None))
                    .order_by(WorkOrder.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
                for order in rows.all():
                    setattr(order, attr, now)
                    waited_s = (now - order.created_at).total_seconds()
                    alert = Alert(
                        elder_id=order.elder_id,
                        call_id=order.call_id,
                        order_id=order.id,
                        kind=kind,
                        severity=DEFAULT_SEVERITY[kind],
                        detail={"order_id": order.id, "type": order.type, "status": order.status,
                                "sla_s": sla_s, "waited_s": round(waited_s, 1)},
                        status="open",
                        created_at=now,
                    )
                    s.add(alert)
                    raised.append((alert, order))
            if raised:
                await s.commit()
            for alert, order in raised:
                log.warning("SLA alert %s: order %s (%s) %s", alert.id, order.id, order.type, alert.kind)
            return [AlertInfo.of(a) for a, _ in raised]


def cancel_message(*, elder_name: str, district: str, alert_id: int) -> str:
    """To family members who were sent an SOS that the elder then cancelled."""
    return (f"【平安通】{elder_name}（{district}）刚才的紧急求助是按错了，已取消。值班人员仍会打电话确认老人平安。"
            f"（编号 {alert_id}）")


def family_message(*, kind: str, elder_name: str, district: str, alert_id: int) -> str:
    """The SMS/email text a family member receives for an alert (Mandarin, short, no personal data)."""
    texts = {
        "sos": f"【平安通】{elder_name}（{district}）刚刚发出紧急求助，平安通已通知值班人员。请尽快联系老人。",
        "unwell": f"【平安通】{elder_name}（{district}）在关怀来电中表示身体不适，护士将回电。请留意。",
        "fraud": f"【平安通】{elder_name}（{district}）刚接到疑似诈骗电话。请与老人确认，切勿转账。",
    }
    return texts.get(kind, f"【平安通】{elder_name}（{district}）有新的提醒（{kind}）。") + f"（编号 {alert_id}）"
