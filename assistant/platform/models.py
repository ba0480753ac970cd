"""The platform's core tables (SQLAlchemy 2 declarative). Every area's models share ``Base``.

Conventions
- Portable across SQLite and PostgreSQL: plain ``String`` + named ``CHECK`` constraints instead of native
  enums, ``JSON`` for free-form details, integer surrogate keys (``calls`` use the pipeline's string
  ``call_id``).
- Timestamps are timezone-aware UTC (``UtcDateTime``): naive datetimes are refused on the way in and
  UTC is attached on the way out (SQLite stores no zone).
- Appointments are ``work_orders`` rows of ``type="appointment"``; their ``details`` carry
  ``{"hospital", "department", "when" (ISO 8601 with offset), "escort" (bool)}``. One table means one
  status machine, one idempotency rule and one SLA watcher for all four services.
- ``work_orders.call_id`` and ``alerts.call_id`` are indexed but carry no foreign key: an order must never
  be refused because the call row was not written yet. ``call_turns.call_id`` does reference ``calls``.
- ``alerts.kind`` is checked in Python (``ALERT_KINDS``), not in the database, so areas can add kinds
  without a table rebuild on SQLite. Statuses, order types and dialects are CHECKed.
- ``elders.safe_phrase`` is stored as written (the fraud guard compares it fuzzily with ASR text); the
  API never returns it.
- Other areas' tables join ``Base.metadata`` from modules beside this one (``models_console.py``,
  ``models_fraud.py``; the phone line's call jobs in ``telephony/models.py``), with migrations on their own
  Alembic branch (see ``assistant/platform/migrations/README.md``). The store imports tables from here,
  never from an area package (console, fraud guard).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

DIALECTS = ("cmn", "yue")
DISTRICTS = ("蓬江", "江海", "新会", "台山", "开平", "鹤山", "恩平")
PHONE_KINDS = ("landline", "mobile", "screen")
# a slow speaker's longest silence before an unfinished turn ends (Elder.end_of_turn_max_silence_s)
END_OF_TURN_MAX_SILENCE_RANGE_S = (0.5, 8.0)
ORDER_TYPES = ("gas", "meal", "repair", "appointment")
ORDER_STATUSES = ("placed", "dispatched", "answered", "done", "cancelled")
OPEN_ORDER_STATUSES = ("placed", "dispatched", "answered")
PLACED_BY = ("elder", "family", "operator")
CALL_DIRECTIONS = ("inbound", "outbound")
CALL_CHANNELS = ("phone", "screen", "simulate", "talk")
SPEAKERS = ("elder", "bot", "caller")
ALERT_KINDS = (
    "sos",
    "unwell",
    "human",
    "nurse_callback",
    "fraud",
    "no_answer",
    "sla_dispatch",
    "sla_answer",
    "misunderstanding",
    # an emergency the dialogue heard but could not confirm (issue #27): a person calls back, the family is not told
    "unconfirmed_emergency",
    # the elder pressed "按错了，取消" after a screen SOS (issue #26): the operator's call-back task
    "sos_cancelled",
    # an elder called in while every phone line was busy (503, telephony.lines): an operator calls back
    "missed_call",
)
ALERT_SEVERITIES = ("info", "warning", "urgent", "critical")
ALERT_STATUSES = ("open", "acknowledged", "resolved", "false_alarm")
OUTBOX_CHANNELS = ("log", "sms", "email")
# queued → sent (the channel accepted it) → delivered | failed (delivery report); failed submissions and
# failed reports go back to queued (later) until the attempts run out. undeliverable: no channel configured;
# no_report: sent, but no delivery report within sms.no_report_after_s (a late report still counts)
OUTBOX_STATUSES = ("queued", "sent", "delivered", "failed", "undeliverable", "no_report")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UtcDateTime(TypeDecorator[dt.datetime]):
    """``DateTime(timezone=True)`` that only accepts aware datetimes and always returns UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime refused (use UTC-aware): {value!r}")
        value = value.astimezone(dt.UTC)
        # SQLite keeps no zone: store naive UTC so string comparison orders correctly
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UtcDateTime(), dict[str, Any]: JSON()}


class Elder(Base):
    __tablename__ = "elders"
    __table_args__ = (
        CheckConstraint(_in("dialect", DIALECTS), name="dialect"),
        CheckConstraint(_in("district", DISTRICTS), name="district"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    dialect: Mapped[str] = mapped_column(String(8), default="cmn")
    district: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(255), default="")
    safe_phrase: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # per-elder speech and screen preferences; None = the area's default
    tts_rate_wpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    volume: Mapped[float | None] = mapped_column(Float, nullable=True)
    text_size: Mapped[str | None] = mapped_column(String(16), nullable=True)  # "normal" | "large" | "xlarge"
    # the voice that speaks to this elder (a TTS registry voice, e.g. "pack-yue"); None = the dialect's chain
    tts_voice: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # a slow speaker's longest silence before a turn Smart Turn judges unfinished ends; None = the setting
    end_of_turn_max_silence_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    phones: Mapped[list[ElderPhone]] = relationship(
        back_populates="elder", cascade="all, delete-orphan", lazy="selectin", order_by="ElderPhone.id"
    )
    contacts: Mapped[list[FamilyContact]] = relationship(
        back_populates="elder", cascade="all, delete-orphan", lazy="selectin", order_by="FamilyContact.priority"
    )


class ElderPhone(Base):
    """A number the elder calls from / is called on. ``number`` is normalised (digits, optional leading +)."""

    __tablename__ = "elder_phones"
    __table_args__ = (CheckConstraint(_in("kind", PHONE_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="landline")
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)

    elder: Mapped[Elder] = relationship(back_populates="phones")


class FamilyContact(Base):
    """A family member. ``priority`` 1 is called/notified first; ``can_act`` lets them order/cancel for the
    parent; ``notify_*`` choose the channels for alerts (sos/unwell/fraud)."""

    __tablename__ = "family_contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    relation: Mapped[str] = mapped_column(String(32), default="")  # 儿子, 女儿, 侄女, ...
    phone: Mapped[str] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(255), nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=1)
    notify_sms: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_email: Mapped[bool] = mapped_column(Boolean, default=False)
    can_act: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    elder: Mapped[Elder] = relationship(back_populates="contacts")


class Call(Base):
    """One phone call or smart-screen session (the call ledger)."""

    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint(_in("direction", CALL_DIRECTIONS), name="direction"),
        Index("ix_calls_elder_started", "elder_id", "started_at"),
        Index("ix_calls_started_at", "started_at"),  # today's calls for the care page (core_0012)
    )

    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    elder_id: Mapped[int | None] = mapped_column(ForeignKey("elders.id", ondelete="SET NULL"), nullable=True)
    direction: Mapped[str] = mapped_column(String(16), default="inbound")
    channel: Mapped[str] = mapped_column(String(16), default="phone")
    caller_number: Mapped[str | None] = mapped_column(String(32), nullable=True)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    dialect: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # the fraud guard's verdict: "unverified" | "verified" | "failed"; ``verified`` is derived from it
    verification: Mapped[str] = mapped_column(String(16), default="unverified")
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    audio_path: Mapped[str | None] = mapped_column(String(512), nullable=True)


class CallTurn(Base):
    __tablename__ = "call_turns"
    __table_args__ = (
        UniqueConstraint("call_id", "turn", name="uq_call_turns_call_id_turn"),
        CheckConstraint(_in("speaker", SPEAKERS), name="speaker"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.call_id", ondelete="CASCADE"))
    turn: Mapped[int] = mapped_column(Integer)
    speaker: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text, default="")
    # the PII gate's version (what the console shows by default)
    text_redacted: Mapped[str | None] = mapped_column(Text, nullable=True)
    asr_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    intent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WorkOrder(Base):
    """gas | meal | repair | appointment. Status machine: placed → dispatched → answered → done, and any
    open status → cancelled. ``idempotency_key`` is UNIQUE: the same key always yields the same order."""

    __tablename__ = "work_orders"
    __table_args__ = (
        CheckConstraint(_in("type", ORDER_TYPES), name="type"),
        CheckConstraint(_in("status", ORDER_STATUSES), name="status"),
        CheckConstraint(_in("placed_by", PLACED_BY), name="placed_by"),
        Index("ix_work_orders_elder_created", "elder_id", "created_at"),
        Index("ix_work_orders_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="placed")
    placed_by: Mapped[str] = mapped_column(String(16), default="elder")
    placed_by_contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("family_contacts.id", ondelete="SET NULL"), nullable=True
    )
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    call_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    answered_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    done_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # set in the same transaction as the SLA alert: each SLA alert is raised once per order
    sla_dispatch_alerted_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    sla_answer_alerted_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint(_in("status", ALERT_STATUSES), name="status"),
        CheckConstraint(_in("severity", ALERT_SEVERITIES), name="severity"),
        Index("ix_alerts_status_created", "status", "created_at"),
        Index("ix_alerts_elder_created", "elder_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    elder_id: Mapped[int | None] = mapped_column(ForeignKey("elders.id", ondelete="SET NULL"), nullable=True)
    call_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("work_orders.id", ondelete="SET NULL"), nullable=True, index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class HandoverEvent(Base):
    """One step of a live hand-over (issue #16), appended by ``PlatformStore.note_alert_handover`` when the
    state, the phones ringing or the operator change: the console's event watcher reads new rows (by id) and
    pops the call on the operator whose phone rings, in any process that shares the database."""

    __tablename__ = "handover_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(32))
    ringing: Mapped[list[str]] = mapped_column(JSON, default=list)  # the operator phones ringing now
    operator: Mapped[str | None] = mapped_column(String(255), nullable=True)  # the one who answered
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Outbox(Base):
    """Notifications waiting to be (or already) sent. Written in the same transaction as their cause."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(_in("channel", OUTBOX_CHANNELS), name="channel"),
        CheckConstraint(_in("status", OUTBOX_STATUSES), name="status"),
        Index("ix_outbox_pending", "sent_at", "id"),
        Index("ix_outbox_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))
    recipient: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str | None] = mapped_column(String(255), nullable=True)
    body: Mapped[str] = mapped_column(Text)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)  # a retry waits until then
    delivered_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # sha256 of this attempt's delivery-report secret (the plain secret only travels in Kannel's dlr-url)
    dlr_secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    dlr_status: Mapped[str | None] = mapped_column(String(255), nullable=True)  # the last delivery report


class CareSchedule(Base):
    """When to place the elder's check-in call. ``days`` is a comma list of ``WEEKDAYS`` ("mon,wed,fri");
    windows and quiet hours are local wall-clock times in ``timezone`` (quiet hours may wrap midnight)."""

    __tablename__ = "care_schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), index=True)
    days: Mapped[str] = mapped_column(String(32), default="mon,tue,wed,thu,fri,sat,sun")
    window_start: Mapped[dt.time] = mapped_column(Time)
    window_end: Mapped[dt.time] = mapped_column(Time)
    quiet_start: Mapped[dt.time | None] = mapped_column(Time, nullable=True)
    quiet_end: Mapped[dt.time | None] = mapped_column(Time, nullable=True)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    def weekdays(self) -> set[int]:
        """ISO weekday numbers (1 = Monday) this schedule runs on."""
        names = [d.strip().lower() for d in self.days.split(",") if d.strip()]
        return {WEEKDAYS.index(d) + 1 for d in names if d in WEEKDAYS}


def normalize_phone(number: str) -> str:
    """Digits only (keeping a leading +): '0750-333 1234' → '07503331234'."""
    number = number.strip()
    plus = number.startswith("+")
    digits = "".join(ch for ch in number if ch.isdigit())
    return ("+" if plus else "") + digits
