"""``PlatformStore``: the async repository every area uses to read and write the platform database.

Rules
- Every method opens its own short transaction and commits before it returns: when ``create_order``
  returns, the order is on disk. If the commit fails nothing is reported as placed.
- Database failures never cross this boundary raw: they become ``StoreError`` with a stable code
  (``assistant.errors.http_status`` maps codes to HTTP statuses):
  ``store_failed`` (database unreachable / locked / refused the write), ``not_found``, ``invalid``,
  ``forbidden`` (a family member acting outside their rights), ``conflict`` (idempotency key reused for a
  different order, or a status change that goes backwards).
- Results are frozen dataclasses (``ElderInfo``, ``OrderInfo``, ...) with ``to_json()``; no ORM object
  leaves a session.
- Time comes from the injectable ``clock`` (UTC-aware), so SLA tests run on a fake clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from assistant.errors import StoreError
from assistant.platform.db import session_factory
from assistant.platform.models import (
    ALERT_KINDS,
    ALERT_SEVERITIES,
    ALERT_STATUSES,
    CALL_DIRECTIONS,
    DIALECTS,
    DISTRICTS,
    OPEN_ORDER_STATUSES,
    ORDER_STATUSES,
    ORDER_TYPES,
    OUTBOX_CHANNELS,
    OUTBOX_STATUSES,
    PHONE_KINDS,
    PLACED_BY,
    SPEAKERS,
    Alert,
    Call,
    CallTurn,
    CareSchedule,
    Elder,
    ElderPhone,
    FamilyContact,
    HandoverEvent,
    Outbox,
    WorkOrder,
    normalize_phone,
    utcnow,
)

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

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
}
ORDER_LABEL_ZH = {"gas": "煤气", "meal": "送餐", "repair": "维修", "appointment": "医院预约"}
_ORDER_RANK = {"placed": 0, "dispatched": 1, "answered": 2, "done": 3}


def _db_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [SQLAlchemyError, OSError, TimeoutError]
    try:
        import asyncpg

        errors += [asyncpg.PostgresError, asyncpg.InterfaceError]
    except ImportError:  # PostgreSQL support not installed
        pass
    return tuple(errors)


_DB_ERRORS = _db_errors()


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _invalid(message: str) -> StoreError:
    return StoreError(message, code="invalid")


def _iso(value: dt.datetime | dt.time | None) -> str | None:
    return value.isoformat() if value is not None else None


# ---------------------------------------------------------------- results (frozen, JSON-able)


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
            d[k] = _iso(d[k])
        return d


@dataclass(frozen=True, kw_only=True)
class OrderResult:
    """``created`` is False when the idempotency key had been seen: ``order`` is the earlier order."""

    order: OrderInfo
    created: bool


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
            d[k] = _iso(d[k])
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
        d["started_at"] = _iso(self.started_at)
        d["ended_at"] = _iso(self.ended_at)
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
        d["created_at"] = _iso(self.created_at)
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
            d[k] = _iso(d[k])
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


# ---------------------------------------------------------------- the repository


class PlatformStore:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.engine = engine
        self._sessions = sessionmaker or session_factory(engine)
        self._clock = clock

    def now(self) -> dt.datetime:
        return self._clock()

    @asynccontextmanager
    async def session(self, what: str) -> AsyncIterator[AsyncSession]:
        """A session whose database failures become ``StoreError(code="store_failed")``.

        Other areas with their own tables may use it too (``async with store.session("x") as s``)."""
        try:
            async with self._sessions() as s:
                try:
                    yield s
                except _DB_ERRORS:
                    # never hand a connection in an unknown state back to the pool: a half-done
                    # transaction must die with its connection, not be committed by the next user
                    with contextlib.suppress(Exception):
                        await s.invalidate()
                    raise
        except StoreError:
            raise
        except _DB_ERRORS as exc:
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            log.warning("store: %s failed: %s: %s", what, type(exc).__name__, first)
            raise StoreError(f"{what}: database unavailable ({type(exc).__name__})") from exc

    # ------------------------------------------------------------ health

    async def ping(self) -> float:
        """Round trip to the database in milliseconds."""
        t0 = time.perf_counter()
        async with self.session("ping") as s:
            await s.execute(text("SELECT 1"))
        return (time.perf_counter() - t0) * 1000.0

    # ------------------------------------------------------------ elders

    async def create_elder(
        self,
        *,
        name: str,
        district: str,
        dialect: str = "cmn",
        address: str = "",
        phones: Iterable[str | tuple[str, str]] = (),
        safe_phrase: str | None = None,
        tts_rate_wpm: int | None = None,
        volume: float | None = None,
        text_size: str | None = None,
        contacts: Iterable[NewContact] = (),
        schedules: Iterable[NewSchedule] = (),
    ) -> ElderInfo:
        """A new elder with phones (``"0750..."`` or ``(number, kind)``), family contacts and schedules."""
        if dialect not in DIALECTS:
            raise _invalid(f"dialect must be one of {DIALECTS}")
        if district not in DISTRICTS:
            raise _invalid(f"district must be one of {DISTRICTS}")
        elder = Elder(
            name=name,
            district=district,
            dialect=dialect,
            address=address,
            safe_phrase=safe_phrase,
            tts_rate_wpm=tts_rate_wpm,
            volume=volume,
            text_size=text_size,
            created_at=self.now(),
        )
        for i, p in enumerate(phones):
            number, kind = (p, "landline") if isinstance(p, str) else p
            if kind not in PHONE_KINDS:
                raise _invalid(f"phone kind must be one of {PHONE_KINDS}")
            elder.phones.append(ElderPhone(number=normalize_phone(number), kind=kind, is_primary=i == 0))
        for c in contacts:
            elder.contacts.append(
                FamilyContact(**dataclasses.asdict(c) | {"phone": normalize_phone(c.phone)}, created_at=self.now())
            )
        async with self.session("create elder") as s:
            s.add(elder)
            try:
                await s.flush()
                for sc in schedules:
                    s.add(CareSchedule(elder_id=elder.id, **dataclasses.asdict(sc), created_at=self.now()))
                await s.commit()
            except IntegrityError as exc:
                raise StoreError("phone number already belongs to another elder", code="conflict") from exc
            return await self._elder(s, elder.id)

    async def _elder(self, s: AsyncSession, elder_id: int) -> ElderInfo:
        elder = await s.scalar(select(Elder).where(Elder.id == elder_id).execution_options(populate_existing=True))
        if elder is None:
            raise StoreError(f"no elder {elder_id}", code="not_found")
        return ElderInfo.of(elder)

    async def get_elder(self, elder_id: int) -> ElderInfo:
        async with self.session("read elder") as s:
            return await self._elder(s, elder_id)

    async def elder_by_phone(self, number: str) -> ElderInfo | None:
        """The elder who owns this number (caller ID lookup), or None."""
        n = normalize_phone(number)
        if not n:
            return None
        async with self.session("find elder by phone") as s:
            elder_id = await s.scalar(select(ElderPhone.elder_id).where(ElderPhone.number == n))
            if elder_id is None:
                return None
            return await self._elder(s, elder_id)

    async def find_elders(self, *, name: str | None = None, limit: int = 50) -> list[ElderInfo]:
        async with self.session("list elders") as s:
            q = select(Elder).order_by(Elder.id).limit(limit)
            if name:
                q = q.where(Elder.name.contains(name))
            return [ElderInfo.of(e) for e in (await s.scalars(q)).all()]

    async def safe_phrase(self, elder_id: int) -> str | None:
        """For the fraud guard only: the elder's safe phrase (never sent by the API)."""
        async with self.session("read safe phrase") as s:
            row = await s.execute(select(Elder.safe_phrase).where(Elder.id == elder_id))
            found = row.first()
            if found is None:
                raise StoreError(f"no elder {elder_id}", code="not_found")
            return found[0]

    async def update_elder_preferences(
        self,
        elder_id: int,
        *,
        tts_rate_wpm: int | None = None,
        volume: float | None = None,
        text_size: str | None = None,
        dialect: str | None = None,
    ) -> ElderInfo:
        if dialect is not None and dialect not in DIALECTS:
            raise _invalid(f"dialect must be one of {DIALECTS}")
        async with self.session("update elder") as s:
            elder = await s.get(Elder, elder_id)
            if elder is None:
                raise StoreError(f"no elder {elder_id}", code="not_found")
            for k, v in {"tts_rate_wpm": tts_rate_wpm, "volume": volume, "text_size": text_size, "dialect": dialect}.items():
                if v is not None:
                    setattr(elder, k, v)
            await s.commit()
            return await self._elder(s, elder_id)

    async def set_safe_phrase(self, elder_id: int, phrase: str) -> None:
        """The elder's safe phrase (2..64 characters), as written; never returned by the API."""
        phrase = phrase.strip()
        if not 2 <= len(phrase) <= 64:
            raise _invalid("the safe phrase needs 2 to 64 characters")
        async with self.session("set safe phrase") as s:
            elder = await s.get(Elder, elder_id)
            if elder is None:
                raise StoreError(f"no elder {elder_id}", code="not_found")
            elder.safe_phrase = phrase
            await s.commit()

    # ------------------------------------------------------------ family

    async def add_contact(self, elder_id: int, contact: NewContact) -> ContactInfo:
        async with self.session("add family contact") as s:
            if await s.get(Elder, elder_id) is None:
                raise StoreError(f"no elder {elder_id}", code="not_found")
            row = FamilyContact(
                elder_id=elder_id,
                **dataclasses.asdict(contact) | {"phone": normalize_phone(contact.phone)},
                created_at=self.now(),
            )
            s.add(row)
            await s.commit()
            return ContactInfo.of(row)

    async def get_contact(self, contact_id: int) -> ContactInfo:
        async with self.session("read family contact") as s:
            row = await s.get(FamilyContact, contact_id)
            if row is None:
                raise StoreError(f"no family contact {contact_id}", code="not_found")
            return ContactInfo.of(row)

    async def delete_contact(self, contact_id: int, *, elder_id: int) -> None:
        """Remove one of ``elder_id``'s family contacts (``not_found`` for anyone else's)."""
        async with self.session("delete family contact") as s:
            row = await s.get(FamilyContact, contact_id)
            if row is None or row.elder_id != elder_id:
                raise StoreError(f"no family contact {contact_id} for elder {elder_id}", code="not_found")
            await s.delete(row)
            await s.commit()

    async def contacts_for(self, elder_id: int) -> list[ContactInfo]:
        async with self.session("list family contacts") as s:
            rows = await s.scalars(
                select(FamilyContact).where(FamilyContact.elder_id == elder_id).order_by(FamilyContact.priority, FamilyContact.id)
            )
            return [ContactInfo.of(c) for c in rows.all()]

    async def contacts_by_phone(self, number: str) -> list[ContactInfo]:
        """Family members calling from this number (one person may look after several parents)."""
        n = normalize_phone(number)
        async with self.session("find family by phone") as s:
            rows = await s.scalars(select(FamilyContact).where(FamilyContact.phone == n).order_by(FamilyContact.id))
            return [ContactInfo.of(c) for c in rows.all()]

    async def _acting_contact(self, s: AsyncSession, contact_id: int, elder_id: int) -> FamilyContact:
        contact = await s.get(FamilyContact, contact_id)
        if contact is None:
            raise StoreError(f"no family contact {contact_id}", code="not_found")
        if contact.elder_id != elder_id:
            raise StoreError("this family member is not a contact of that elder", code="forbidden")
        if not contact.can_act:
            raise StoreError("this family member may not place or cancel orders", code="forbidden")
        return contact

    # ------------------------------------------------------------ orders

    async def create_order(
        self,
        *,
        elder_id: int,
        type: str,
        details: dict[str, Any] | None = None,
        idempotency_key: str,
        call_id: str | None = None,
        placed_by: str = "elder",
        contact_id: int | None = None,
    ) -> OrderResult:
        """Place a work order, committed before returning. The same ``idempotency_key`` returns the same
        order (``created=False``); reusing a key for another elder or type is a ``conflict``."""
        if type not in ORDER_TYPES:
            raise _invalid(f"order type must be one of {ORDER_TYPES}")
        if placed_by not in PLACED_BY:
            raise _invalid(f"placed_by must be one of {PLACED_BY}")
        if not idempotency_key or len(idempotency_key) > 128:
            raise _invalid("idempotency_key is required (1..128 characters)")
        details = dict(details or {})
        if type == "appointment":
            _check_appointment(details)
        async with self.session("place order") as s:
            existing = await self._order_by_key(s, idempotency_key)
            if existing is not None:
                return _same_order(existing, elder_id=elder_id, type=type)
            if placed_by == "family":
                if contact_id is None:
                    raise _invalid("a family order needs contact_id")
                await self._acting_contact(s, contact_id, elder_id)
            elif await s.scalar(select(Elder.id).where(Elder.id == elder_id)) is None:
                raise StoreError(f"no elder {elder_id}", code="not_found")
            order = WorkOrder(
                elder_id=elder_id,
                type=type,
                details=details,
                status="placed",
                placed_by=placed_by,
                placed_by_contact_id=contact_id,
                idempotency_key=idempotency_key,
                call_id=call_id,
                created_at=self.now(),
            )
            s.add(order)
            try:
                await s.commit()
            except IntegrityError:
                # a concurrent request with the same key won the race: answer with its order
                await s.rollback()
                existing = await self._order_by_key(s, idempotency_key)
                if existing is None:
                    raise
                return _same_order(existing, elder_id=elder_id, type=type)
            log.info("order %s placed: %s for elder %s by %s", order.id, type, elder_id, placed_by)
            return OrderResult(order=OrderInfo.of(order), created=True)

    async def _order_by_key(self, s: AsyncSession, key: str) -> WorkOrder | None:
        return await s.scalar(select(WorkOrder).where(WorkOrder.idempotency_key == key))

    async def get_order(self, order_id: int) -> OrderInfo:
        async with self.session("read order") as s:
            order = await s.get(WorkOrder, order_id)
            if order is None:
                raise StoreError(f"no order {order_id}", code="not_found")
            return OrderInfo.of(order)

    async def list_orders(
        self, *, elder_id: int | None = None, status: str | Iterable[str] | None = None, limit: int = 50
    ) -> list[OrderInfo]:
        """Newest first."""
        async with self.session("list orders") as s:
            q = select(WorkOrder).order_by(WorkOrder.created_at.desc(), WorkOrder.id.desc()).limit(limit)
            if elder_id is not None:
                q = q.where(WorkOrder.elder_id == elder_id)
            if status is not None:
                q = q.where(WorkOrder.status.in_([status] if isinstance(status, str) else list(status)))
            return [OrderInfo.of(o) for o in (await s.scalars(q)).all()]

    async def update_order_status(self, order_id: int, status: str) -> OrderInfo:
        """Move an order forward (placed → dispatched → answered → done; skipped steps get the same
        timestamp) or cancel an open one. Repeating the current status is a no-op."""
        if status not in ORDER_STATUSES:
            raise _invalid(f"status must be one of {ORDER_STATUSES}")
        async with self.session("update order") as s:
            order = await s.scalar(select(WorkOrder).where(WorkOrder.id == order_id).with_for_update())
            if order is None:
                raise StoreError(f"no order {order_id}", code="not_found")
            _advance(order, status, self.now())
            await s.commit()
            return OrderInfo.of(order)

    async def cancel_order(self, order_id: int) -> OrderInfo:
        return await self.update_order_status(order_id, "cancelled")

    async def family_place_order(
        self,
        *,
        contact_id: int,
        elder_id: int,
        type: str,
        details: dict[str, Any] | None = None,
        idempotency_key: str,
    ) -> OrderResult:
        """A family member orders for their parent (must be a contact of that elder with ``can_act``)."""
        return await self.create_order(
            elder_id=elder_id,
            type=type,
            details=details,
            idempotency_key=idempotency_key,
            placed_by="family",
            contact_id=contact_id,
        )

    async def family_cancel_order(self, *, contact_id: int, order_id: int) -> OrderInfo:
        """A family member cancels one of their parent's open orders."""
        async with self.session("cancel order") as s:
            order = await s.scalar(select(WorkOrder).where(WorkOrder.id == order_id).with_for_update())
            if order is None:
                raise StoreError(f"no order {order_id}", code="not_found")
            await self._acting_contact(s, contact_id, order.elder_id)
            _advance(order, "cancelled", self.now())
            await s.commit()
            return OrderInfo.of(order)

    # ------------------------------------------------------------ alerts + family notifications

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
            raise _invalid(f"alert kind must be one of {ALERT_KINDS}")
        severity = severity or DEFAULT_SEVERITY.get(kind, "warning")
        if severity not in ALERT_SEVERITIES:
            raise _invalid(f"severity must be one of {ALERT_SEVERITIES}")
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

    # the older name, kept while parallel branches move to ``raise_alert``
    create_alert = raise_alert

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
            raise _invalid("status must be acknowledged, resolved or false_alarm")
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

    # ------------------------------------------------------------ outbox

    async def pending_outbox(
        self, *, limit: int = 50, max_attempts: int = 5, channels: Iterable[str] | None = None
    ) -> list[OutboxItem]:
        """Queued rows whose retry time has come (oldest first)."""
        async with self.session("read outbox") as s:
            q = (
                select(Outbox)
                .where(
                    Outbox.status == "queued",
                    Outbox.attempts < max_attempts,
                    (Outbox.next_attempt_at.is_(None)) | (Outbox.next_attempt_at <= self.now()),
                )
                .order_by(Outbox.id)
                .limit(limit)
            )
            if channels is not None:
                q = q.where(Outbox.channel.in_(list(channels)))
            rows = await s.scalars(q)
            return [OutboxItem.of(o) for o in rows.all()]

    async def list_outbox(
        self, *, alert_id: int | None = None, status: str | None = None, limit: int = 100
    ) -> list[OutboxItem]:
        async with self.session("read outbox") as s:
            q = select(Outbox).order_by(Outbox.id).limit(limit)
            if alert_id is not None:
                q = q.where(Outbox.alert_id == alert_id)
            if status is not None:
                if status not in OUTBOX_STATUSES:
                    raise _invalid(f"status must be one of {OUTBOX_STATUSES}")
                q = q.where(Outbox.status == status)
            return [OutboxItem.of(o) for o in (await s.scalars(q)).all()]

    async def get_outbox(self, outbox_id: int) -> OutboxItem:
        async with self.session("read outbox") as s:
            row = await s.get(Outbox, outbox_id)
            if row is None:
                raise StoreError(f"no outbox row {outbox_id}", code="not_found")
            return OutboxItem.of(row)

    async def enqueue_notification(
        self, *, channel: str, recipient: str, body: str, subject: str | None = None, alert_id: int | None = None
    ) -> OutboxItem:
        if channel not in OUTBOX_CHANNELS:
            raise _invalid(f"channel must be one of {OUTBOX_CHANNELS}")
        async with self.session("enqueue notification") as s:
            row = Outbox(
                channel=channel, recipient=recipient, subject=subject, body=body, alert_id=alert_id, created_at=self.now()
            )
            s.add(row)
            await s.commit()
            return OutboxItem.of(row)

    async def _update_outbox(self, outbox_id: int, what: str, change: Callable[[Outbox], None]) -> OutboxItem:
        # FOR UPDATE (PostgreSQL): a delivery report and the submission's own update may race for the row
        async with self.session(what) as s:
            row = await s.get(Outbox, outbox_id, with_for_update=True)
            if row is None:
                raise StoreError(f"no outbox row {outbox_id}", code="not_found")
            change(row)
            await s.commit()
            return OutboxItem.of(row)

    async def claim_outbox(self, outbox_id: int, *, lease_s: float, dlr_secret: str | None = None) -> bool:
        """Take a due ``queued`` row for one attempt: it stays invisible to other dispatchers (other
        ``assistant serve`` workers on the same database) for ``lease_s``. With ``dlr_secret`` (a channel with
        delivery reports) its hash is stored first — the report may arrive before the submission returns.
        False when another worker took it, or it is no longer due."""
        now = self.now()
        values: dict[str, Any] = {"next_attempt_at": now + dt.timedelta(seconds=lease_s)}
        if dlr_secret is not None:
            values |= {"dlr_secret_hash": _secret_hash(dlr_secret), "dlr_status": None}
        async with self.session("claim outbox") as s:
            result = await s.execute(
                update(Outbox)
                .where(
                    Outbox.id == outbox_id,
                    Outbox.status == "queued",
                    (Outbox.next_attempt_at.is_(None)) | (Outbox.next_attempt_at <= now),
                )
                .values(**values)
            )
            await s.commit()
            return bool(result.rowcount)

    async def outbox_sent(self, outbox_id: int) -> OutboxItem:
        """The channel accepted the message (one attempt): ``sent`` — unless this attempt's delivery report
        already came in (then the report decided the status)."""

        def change(row: Outbox) -> None:
            row.attempts += 1
            row.sent_at = self.now()
            row.last_error = None if row.status != "queued" or row.dlr_status is None else row.last_error
            if row.status == "queued" and row.dlr_status is None:
                row.status = "sent"
                row.next_attempt_at = None

        return await self._update_outbox(outbox_id, "update outbox", change)

    async def outbox_failed(self, outbox_id: int, *, error: str, retry_at: dt.datetime | None) -> OutboxItem:
        """One failed attempt: back to ``queued`` until ``retry_at``, or ``failed`` for good when None."""

        def change(row: Outbox) -> None:
            row.attempts += 1
            row.last_error = (error or "failed")[:255]
            row.status = "queued" if retry_at is not None else "failed"
            row.next_attempt_at = retry_at

        return await self._update_outbox(outbox_id, "update outbox", change)

    async def outbox_undeliverable(self, outbox_id: int, *, reason: str) -> OutboxItem:
        """No channel can carry this row (none configured): nothing was attempted, nothing claims it went."""

        def change(row: Outbox) -> None:
            row.status = "undeliverable"
            row.last_error = reason[:255]

        return await self._update_outbox(outbox_id, "update outbox", change)

    async def outbox_delivery_report(
        self,
        outbox_id: int,
        *,
        secret: str,
        outcome: str,
        report: str,
        retry_at: dt.datetime | None = None,
    ) -> OutboxItem:
        """A delivery report for a ``sent`` row, authenticated by the secret of its current attempt.

        ``outcome``: ``delivered``; ``failed`` (back to ``queued`` until ``retry_at``, or ``failed`` for good
        when None); ``pending`` (buffered / accepted by the SMSC: only recorded). Reports for a row that is
        no longer ``sent`` (nor in flight) are recorded and change nothing. A wrong secret raises ``forbidden``."""
        if outcome not in ("delivered", "failed", "pending"):
            raise _invalid("outcome must be delivered, failed or pending")
        async with self.session("delivery report") as s:
            row = await s.get(Outbox, outbox_id, with_for_update=True)
            if row is None or not row.dlr_secret_hash or not hmac.compare_digest(row.dlr_secret_hash, _secret_hash(secret)):
                # the same answer for an unknown row and a wrong secret
                raise StoreError("delivery report not accepted", code="forbidden")
            # queued without a report yet: the submission of this attempt has not returned (reports can be faster)
            in_flight = row.status == "queued" and row.dlr_status is None
            row.dlr_status = report[:255]
            if row.status in ("sent", "no_report") or in_flight:  # (a late report still decides)
                if outcome == "delivered":
                    row.status = "delivered"
                    row.delivered_at = self.now()
                elif outcome == "failed":
                    row.last_error = f"delivery failed: {report}"[:255]
                    row.status = "queued" if retry_at is not None else "failed"
                    row.next_attempt_at = retry_at
                elif row.status != "no_report":  # buffered / accepted by the SMSC: still no delivery
                    row.status = "sent"
            await s.commit()
            return OutboxItem.of(row)

    async def outbox_sweep_no_report(self, *, after_s: float, channels: Iterable[str]) -> list[OutboxItem]:
        """``sent`` rows of ``channels`` (those with delivery reports) accepted more than ``after_s`` ago and
        still without a delivery report → ``no_report``: nobody may read "sent" as "the family has it". A
        late report still decides (``outbox_delivery_report``)."""
        channels = list(channels)
        if not channels:
            return []
        cutoff = self.now() - dt.timedelta(seconds=after_s)
        reason = f"no delivery report within {after_s:g} s"
        async with self.session("sweep outbox") as s:
            rows = (
                await s.scalars(
                    select(Outbox)
                    .where(Outbox.status == "sent", Outbox.channel.in_(channels), Outbox.sent_at <= cutoff)
                    .order_by(Outbox.id)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                row.status = "no_report"
                row.last_error = reason
            if rows:
                await s.commit()
            return [OutboxItem.of(r) for r in rows]

    async def mark_outbox(self, outbox_id: int, *, sent: bool, error: str | None = None) -> None:
        """Older form: ``sent`` → ``outbox_sent``; not sent → one failed attempt, retried at once."""
        if sent:
            await self.outbox_sent(outbox_id)
        else:
            await self.outbox_failed(outbox_id, error=error or "failed", retry_at=self.now())

    # ------------------------------------------------------------ calls and turns

    async def upsert_call(self, call_id: str, update: CallUpdate | None = None) -> CallInfo:
        """Start a call record or update the fields given (``None`` fields are left alone)."""
        if not call_id or len(call_id) > 64:
            raise _invalid("call_id is required (1..64 characters)")
        update = update or CallUpdate()
        if update.direction is not None and update.direction not in CALL_DIRECTIONS:
            raise _invalid(f"direction must be one of {CALL_DIRECTIONS}")
        if update.verification is not None and update.verification not in ("unverified", "verified", "failed"):
            raise _invalid("verification must be unverified, verified or failed")
        for attempt in range(2):
            async with self.session("record call") as s:
                call = await s.get(Call, call_id)
                if call is None:
                    call = Call(call_id=call_id, started_at=update.started_at or self.now())
                    s.add(call)
                if update.elder_id is not None and await s.get(Elder, update.elder_id) is None:
                    raise StoreError(f"no elder {update.elder_id}", code="not_found")
                for f in dataclasses.fields(update):
                    value = getattr(update, f.name)
                    if f.name != "extra" and value is not None:
                        setattr(call, f.name, normalize_phone(value) if f.name == "caller_number" else value)
                try:
                    await s.commit()
                except IntegrityError:
                    if attempt:
                        raise
                    continue  # created concurrently: update it instead
                return CallInfo.of(call)
        raise AssertionError("unreachable")

    async def get_call(self, call_id: str) -> CallInfo:
        async with self.session("read call") as s:
            call = await s.get(Call, call_id)
            if call is None:
                raise StoreError(f"no call {call_id}", code="not_found")
            return CallInfo.of(call)

    async def list_calls(self, *, elder_id: int | None = None, limit: int = 50) -> list[CallInfo]:
        async with self.session("list calls") as s:
            q = select(Call).order_by(Call.started_at.desc()).limit(limit)
            if elder_id is not None:
                q = q.where(Call.elder_id == elder_id)
            return [CallInfo.of(c) for c in (await s.scalars(q)).all()]

    async def latest_call(
        self,
        *,
        elder_id: int,
        direction: str | None = None,
        channel: str | None = None,
        since: dt.datetime | None = None,
        in_progress: bool = False,
    ) -> CallInfo | None:
        """The elder's most recent call (started at or after ``since``; not ended with ``in_progress``)."""
        async with self.session("read latest call") as s:
            q = select(Call).where(Call.elder_id == elder_id).order_by(Call.started_at.desc()).limit(1)
            if direction is not None:
                q = q.where(Call.direction == direction)
            if channel is not None:
                q = q.where(Call.channel == channel)
            if since is not None:
                q = q.where(Call.started_at >= since)
            if in_progress:
                q = q.where(Call.ended_at.is_(None))
            call = await s.scalar(q)
            return CallInfo.of(call) if call is not None else None

    async def add_turn(
        self,
        *,
        call_id: str,
        turn: int,
        speaker: str,
        text: str,
        text_redacted: str | None = None,
        asr_confidence: float | None = None,
        intent: str | None = None,
    ) -> TurnInfo:
        """Record one transcript turn; the call row is created if missing. Posting the same
        ``(call_id, turn)`` again replaces that turn (retries are harmless)."""
        if speaker not in SPEAKERS:
            raise _invalid(f"speaker must be one of {SPEAKERS}")
        if turn < 0:
            raise _invalid("turn must be >= 0")
        if not call_id or len(call_id) > 64:
            raise _invalid("call_id is required (1..64 characters)")
        for attempt in range(2):
            async with self.session("record turn") as s:
                if await s.get(Call, call_id) is None:
                    s.add(Call(call_id=call_id, started_at=self.now()))
                    await s.flush()
                row = await s.scalar(select(CallTurn).where(CallTurn.call_id == call_id, CallTurn.turn == turn))
                if row is None:
                    row = CallTurn(call_id=call_id, turn=turn, speaker=speaker, created_at=self.now())
                    s.add(row)
                row.speaker = speaker
                row.text = text
                row.text_redacted = text_redacted
                row.asr_confidence = asr_confidence
                row.intent = intent
                try:
                    await s.commit()
                except IntegrityError:
                    if attempt:
                        raise
                    continue
                return TurnInfo.of(row)
        raise AssertionError("unreachable")

    async def list_turns(self, call_id: str) -> list[TurnInfo]:
        async with self.session("read turns") as s:
            rows = await s.scalars(select(CallTurn).where(CallTurn.call_id == call_id).order_by(CallTurn.turn))
            return [TurnInfo.of(t) for t in rows.all()]

    # ------------------------------------------------------------ care schedules

    async def list_schedules(self, *, elder_id: int | None = None, enabled_only: bool = True) -> list[ScheduleInfo]:
        async with self.session("list schedules") as s:
            q = select(CareSchedule).order_by(CareSchedule.elder_id, CareSchedule.id)
            if elder_id is not None:
                q = q.where(CareSchedule.elder_id == elder_id)
            if enabled_only:
                q = q.where(CareSchedule.enabled.is_(True))
            return [ScheduleInfo.of(c) for c in (await s.scalars(q)).all()]

    # ------------------------------------------------------------ SLA

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

    # ------------------------------------------------------------ counts (health, console)

    async def counts(self) -> dict[str, int]:
        async with self.session("count") as s:
            return {
                "elders": int(await s.scalar(select(func.count(Elder.id))) or 0),
                "open_orders": int(
                    await s.scalar(select(func.count(WorkOrder.id)).where(WorkOrder.status.in_(OPEN_ORDER_STATUSES))) or 0
                ),
                "open_alerts": int(await s.scalar(select(func.count(Alert.id)).where(Alert.status == "open")) or 0),
                "pending_notifications": int(
                    await s.scalar(select(func.count(Outbox.id)).where(Outbox.status.in_(("queued", "sent")))) or 0
                ),
                "undeliverable_notifications": int(
                    await s.scalar(select(func.count(Outbox.id)).where(Outbox.status == "undeliverable")) or 0
                ),
                "no_report_notifications": int(
                    await s.scalar(select(func.count(Outbox.id)).where(Outbox.status == "no_report")) or 0
                ),
            }


# ---------------------------------------------------------------- helpers


def _same_order(existing: WorkOrder, *, elder_id: int, type: str) -> OrderResult:
    if existing.elder_id != elder_id or existing.type != type:
        raise StoreError("idempotency_key already used for a different order", code="conflict")
    return OrderResult(order=OrderInfo.of(existing), created=False)


def _advance(order: WorkOrder, status: str, now: dt.datetime) -> None:
    if status == order.status:
        return
    if order.status in ("done", "cancelled"):
        raise StoreError(f"order {order.id} is already {order.status}", code="conflict")
    if status == "cancelled":
        order.status = "cancelled"
        order.cancelled_at = now
        return
    if _ORDER_RANK[status] < _ORDER_RANK[order.status]:
        raise StoreError(f"order {order.id} cannot go from {order.status} back to {status}", code="conflict")
    rank = _ORDER_RANK[status]
    for step, attr in ((1, "dispatched_at"), (2, "answered_at"), (3, "done_at")):
        if rank >= step and getattr(order, attr) is None:
            setattr(order, attr, now)
    order.status = status


def _check_appointment(details: dict[str, Any]) -> None:
    """Appointments: ``{"hospital", "department", "when" (ISO 8601), "escort" (bool, optional)}``."""
    missing = [k for k in ("hospital", "when") if not details.get(k)]
    if missing:
        raise _invalid(f"appointment details need {', '.join(missing)}")
    try:
        dt.datetime.fromisoformat(str(details["when"]))
    except ValueError as exc:
        raise _invalid("appointment 'when' must be ISO 8601 (e.g. 2026-11-24T09:30+08:00)") from exc


def family_message(*, kind: str, elder_name: str, district: str, alert_id: int) -> str:
    """The SMS/email text a family member receives for an alert (Mandarin, short, no personal data)."""
    texts = {
        "sos": f"【平安通】{elder_name}（{district}）刚刚发出紧急求助，平安通已通知值班人员。请尽快联系老人。",
        "unwell": f"【平安通】{elder_name}（{district}）在关怀来电中表示身体不适，护士将回电。请留意。",
        "fraud": f"【平安通】{elder_name}（{district}）刚接到疑似诈骗电话。请与老人确认，切勿转账。",
    }
    return texts.get(kind, f"【平安通】{elder_name}（{district}）有新的提醒（{kind}）。") + f"（编号 {alert_id}）"
