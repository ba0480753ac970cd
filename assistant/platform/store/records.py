"""The store's results (frozen, JSON-able; no ORM object leaves a session) and its inputs."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from assistant.platform.models import (
    Alert,
    Call,
    CallTurn,
    CareSchedule,
    Elder,
    FamilyContact,
    Outbox,
    WorkOrder,
)
from assistant.platform.store.base import iso


@dataclass(frozen=True, kw_only=True)
class PhoneInfo:
    number: str
    kind: str
    is_primary: bool

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class ContactInfo:
    contact_id: int
    elder_id: int
    name: str
    relation: str
    phone: str
    email: str | None
    priority: int
    notify_sms: bool
    notify_email: bool
    can_act: bool

    @classmethod
    def of(cls, c: FamilyContact) -> ContactInfo:
        return cls(
            contact_id=c.id,
            elder_id=c.elder_id,
            name=c.name,
            relation=c.relation,
            phone=c.phone,
            email=c.email,
            priority=c.priority,
            notify_sms=c.notify_sms,
            notify_email=c.notify_email,
            can_act=c.can_act,
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class ElderInfo:
    """An elder as the other areas see it. The safe phrase is not here: see ``PlatformStore.safe_phrase``."""

    elder_id: int
    name: str
    dialect: str
    district: str
    address: str
    tts_rate_wpm: int | None
    volume: float | None
    text_size: str | None
    active: bool
    has_safe_phrase: bool
    tts_voice: str | None = None
    end_of_turn_max_silence_s: float | None = None
    phones: tuple[PhoneInfo, ...] = ()
    contacts: tuple[ContactInfo, ...] = ()

    @classmethod
    def of(cls, e: Elder) -> ElderInfo:
        return cls(
            elder_id=e.id,
            name=e.name,
            dialect=e.dialect,
            district=e.district,
            address=e.address,
            tts_rate_wpm=e.tts_rate_wpm,
            volume=e.volume,
            text_size=e.text_size,
            tts_voice=e.tts_voice,
            end_of_turn_max_silence_s=e.end_of_turn_max_silence_s,
            active=e.active,
            has_safe_phrase=bool(e.safe_phrase),
            phones=tuple(PhoneInfo(number=p.number, kind=p.kind, is_primary=p.is_primary) for p in e.phones),
            contacts=tuple(ContactInfo.of(c) for c in e.contacts),
        )

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["phones"] = [p.to_json() for p in self.phones]
        d["contacts"] = [c.to_json() for c in self.contacts]
        return d


@dataclass(frozen=True, kw_only=True)
class OrderInfo:
    order_id: int
    elder_id: int
    type: str
    details: dict[str, Any]
    status: str
    placed_by: str
    placed_by_contact_id: int | None
    idempotency_key: str
    call_id: str | None
    created_at: dt.datetime
    dispatched_at: dt.datetime | None = None
    answered_at: dt.datetime | None = None
    done_at: dt.datetime | None = None
    cancelled_at: dt.datetime | None = None

    @classmethod
    def of(cls, o: WorkOrder) -> OrderInfo:
        return cls(
            order_id=o.id,
            elder_id=o.elder_id,
            type=o.type,
            details=dict(o.details or {}),
            status=o.status,
            placed_by=o.placed_by,
            placed_by_contact_id=o.placed_by_contact_id,
            idempotency_key=o.idempotency_key,
            call_id=o.call_id,
            created_at=o.created_at,
            dispatched_at=o.dispatched_at,
            answered_at=o.answered_at,
            done_at=o.done_at,
            cancelled_at=o.cancelled_at,
        )

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("created_at", "dispatched_at", "answered_at", "done_at", "cancelled_at"):
            d[k] = iso(d[k])
        return d


@dataclass(frozen=True, kw_only=True)
class OrderResult:
    """``created`` is False when the idempotency key had been seen: ``order`` is the earlier order."""

    order: OrderInfo
    created: bool


@dataclass(frozen=True, kw_only=True)
class SosCancel:
    """What ``cancel_sos_by_elder`` did: the SOS (now ``false_alarm``, ``detail.cancelled_by`` = "elder"),
    the operator's call-back task (a ``sos_cancelled`` alert), the family messages it wrote ("按错了，已取消",
    only to those already sent the SOS) and the SOS messages it withdrew before they went out."""

    sos: AlertInfo
    callback_alert_id: int
    family_told: int
    withdrawn: int


@dataclass(frozen=True, kw_only=True)
class AlertInfo:
    alert_id: int
    elder_id: int | None
    call_id: str | None
    order_id: int | None
    kind: str
    severity: str
    detail: dict[str, Any]
    status: str
    created_at: dt.datetime
    acknowledged_at: dt.datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: dt.datetime | None = None
    notified: int = 0  # outbox rows written with the alert
    notified_channels: tuple[str, ...] = ()  # their channels (sms, email): whether they can go out is the API's call

    @classmethod
    def of(cls, a: Alert, *, notified: int = 0, notified_channels: tuple[str, ...] = ()) -> AlertInfo:
        return cls(
            alert_id=a.id,
            elder_id=a.elder_id,
            call_id=a.call_id,
            order_id=a.order_id,
            kind=a.kind,
            severity=a.severity,
            detail=dict(a.detail or {}),
            status=a.status,
            created_at=a.created_at,
            acknowledged_at=a.acknowledged_at,
            acknowledged_by=a.acknowledged_by,
            resolved_at=a.resolved_at,
            notified=notified,
            notified_channels=notified_channels,
        )

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("created_at", "acknowledged_at", "resolved_at"):
            d[k] = iso(d[k])
        return d


@dataclass(frozen=True, kw_only=True)
class CallInfo:
    call_id: str
    elder_id: int | None
    direction: str
    channel: str
    caller_number: str | None
    started_at: dt.datetime
    ended_at: dt.datetime | None
    dialect: str | None
    verification: str
    outcome: str | None
    audio_path: str | None

    @property
    def verified(self) -> bool:
        return self.verification == "verified"

    @classmethod
    def of(cls, c: Call) -> CallInfo:
        return cls(
            call_id=c.call_id,
            elder_id=c.elder_id,
            direction=c.direction,
            channel=c.channel,
            caller_number=c.caller_number,
            started_at=c.started_at,
            ended_at=c.ended_at,
            dialect=c.dialect,
            verification=c.verification,
            outcome=c.outcome,
            audio_path=c.audio_path,
        )

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["verified"] = self.verified
        d["started_at"] = iso(self.started_at)
        d["ended_at"] = iso(self.ended_at)
        return d


@dataclass(frozen=True, kw_only=True)
class TurnInfo:
    call_id: str
    turn: int
    speaker: str
    text: str
    text_redacted: str | None
    asr_confidence: float | None
    intent: str | None
    created_at: dt.datetime

    @classmethod
    def of(cls, t: CallTurn) -> TurnInfo:
        return cls(
            call_id=t.call_id,
            turn=t.turn,
            speaker=t.speaker,
            text=t.text,
            text_redacted=t.text_redacted,
            asr_confidence=t.asr_confidence,
            intent=t.intent,
            created_at=t.created_at,
        )

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["created_at"] = iso(self.created_at)
        return d


@dataclass(frozen=True, kw_only=True)
class OutboxItem:
    outbox_id: int
    channel: str
    recipient: str
    subject: str | None
    body: str
    alert_id: int | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
    attempts: int
    last_error: str | None
    status: str = "queued"
    next_attempt_at: dt.datetime | None = None
    delivered_at: dt.datetime | None = None
    dlr_status: str | None = None

    @classmethod
    def of(cls, o: Outbox) -> OutboxItem:
        return cls(
            outbox_id=o.id,
            channel=o.channel,
            recipient=o.recipient,
            subject=o.subject,
            body=o.body,
            alert_id=o.alert_id,
            created_at=o.created_at,
            sent_at=o.sent_at,
            attempts=o.attempts,
            last_error=o.last_error,
            status=o.status or "queued",
            next_attempt_at=o.next_attempt_at,
            delivered_at=o.delivered_at,
            dlr_status=o.dlr_status,
        )


@dataclass(frozen=True, kw_only=True)
class ScheduleInfo:
    schedule_id: int
    elder_id: int
    days: tuple[int, ...]  # ISO weekdays, 1 = Monday
    window_start: dt.time
    window_end: dt.time
    quiet_start: dt.time | None
    quiet_end: dt.time | None
    timezone: str
    enabled: bool

    @classmethod
    def of(cls, s: CareSchedule) -> ScheduleInfo:
        return cls(
            schedule_id=s.id,
            elder_id=s.elder_id,
            days=tuple(sorted(s.weekdays())),
            window_start=s.window_start,
            window_end=s.window_end,
            quiet_start=s.quiet_start,
            quiet_end=s.quiet_end,
            timezone=s.timezone,
            enabled=s.enabled,
        )

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("window_start", "window_end", "quiet_start", "quiet_end"):
            d[k] = iso(d[k])
        d["days"] = list(self.days)
        return d


@dataclass(frozen=True, kw_only=True)
class NewContact:
    name: str
    phone: str
    relation: str = ""
    email: str | None = None
    priority: int = 1
    notify_sms: bool = True
    notify_email: bool = False
    can_act: bool = True


@dataclass(frozen=True, kw_only=True)
class NewSchedule:
    days: str = "mon,tue,wed,thu,fri,sat,sun"
    window_start: dt.time = dt.time(9, 0)
    window_end: dt.time = dt.time(11, 0)
    quiet_start: dt.time | None = dt.time(12, 0)
    quiet_end: dt.time | None = dt.time(14, 30)
    timezone: str = "Asia/Shanghai"


@dataclass(frozen=True, kw_only=True)
class CallUpdate:
    """Fields to set on a call record; ``None`` leaves a field as it is."""

    elder_id: int | None = None
    direction: str | None = None
    channel: str | None = None
    caller_number: str | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    dialect: str | None = None
    verification: str | None = None
    outcome: str | None = None
    audio_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
