"""The call ledger: every call the platform places is written here BEFORE it is dialled.

An entry holds the elder, the number dialled, the purpose, a 4-digit one-time code and its validity window
(``settings.fraud.code_validity_s``). The code is what the elder's smart screen shows and what the bot
speaks, so a real platform call can prove itself; a scammer has no entry and no code. Family contacts get
the code through the platform outbox in the same transaction as the entry.

``CallLedger`` works on the platform database (shared ``Base``; tables from ``fraud_0001``); one ledger per
process, on the platform store's engine, is built at start-up and handed to whoever writes or reads entries
(the care-call runner, the console's call-backs, the identity proof, ``/api/verify``). An inbound call is never linked to an entry (issue #15: the caller
ID that would link it can be spoofed); the ``resumed`` status is kept only for rows written before that.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from assistant.errors import FraudGuardError
from assistant.platform.models import Elder, FamilyContact, Outbox, normalize_phone, utcnow
from assistant.platform.models_fraud import LedgerEntry
from assistant.settings import Settings

Clock = Callable[[], dt.datetime]

# codes a person might guess or mistake for a default
_WEAK_CODES = {"0000", "1111", "2222", "3333", "4444", "5555", "6666", "7777", "8888", "9999",
               "1234", "4321", "0123", "9876", "1212", "6789"}


def new_code() -> str:
    while True:
        code = f"{secrets.randbelow(10000):04d}"
        if code not in _WEAK_CODES:
            return code


async def run_in_session(sessions: async_sessionmaker[AsyncSession], fn, *, what: str, code: str):
    """``await fn(session)`` in a new session; a database or file-system failure becomes a coded
    ``FraudGuardError`` (the fraud guard's stage boundary). Shared by the call ledger and the PIN store."""
    try:
        async with sessions() as s:
            return await fn(s)
    except asyncio.CancelledError:
        raise
    except FraudGuardError:
        raise
    except (SQLAlchemyError, OSError) as exc:
        raise FraudGuardError(f"{what} failed ({type(exc).__name__})", code=code) from exc

@dataclass(frozen=True, kw_only=True)
class LedgerEntryInfo:
    entry_id: int
    elder_id: int | None
    number: str
    purpose: str
    code: str
    status: str
    created_at: dt.datetime
    valid_until: dt.datetime
    call_ref: str | None = None
    call_id: str | None = None
    resumed_call_id: str | None = None

    @property
    def id(self) -> int:
        return self.entry_id

    def is_valid(self, now: dt.datetime) -> bool:
        return self.status in ("pending", "answered", "resumed") and now <= self.valid_until

    @classmethod
    def of(cls, row: LedgerEntry) -> LedgerEntryInfo:
        return cls(entry_id=row.id, elder_id=row.elder_id, number=row.number, purpose=row.purpose, code=row.code,
                   status=row.status, created_at=row.created_at, valid_until=row.valid_until, call_ref=row.call_ref,
                   call_id=row.call_id, resumed_call_id=row.resumed_call_id)


def family_code_message(*, elder_name: str | None, code: str, purpose: str, valid_until: dt.datetime) -> str:
    who = elder_name or "您的家人"
    return (f"平安通将给{who}打电话（{purpose}），本次确认码 {code}，"
            f"{valid_until.astimezone(dt.timezone(dt.timedelta(hours=8))):%H:%M} 前有效。"
            "来电若说不出这个确认码，就不是平安通。")


class CallLedger:
    def __init__(self, *, sessionmaker: async_sessionmaker[AsyncSession], code_validity_s: float,
                 clock: Clock = utcnow, notify_family: bool = True) -> None:
        self._sessions = sessionmaker
        self._validity = dt.timedelta(seconds=code_validity_s)
        self._clock = clock
        self._notify_family = notify_family

    @classmethod
    def for_engine(cls, engine: AsyncEngine, *, settings: Settings, clock: Clock = utcnow) -> CallLedger:
        return cls(sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
                   code_validity_s=settings.fraud.code_validity_s, clock=clock)

    def now(self) -> dt.datetime:
        return self._clock()

    async def _run(self, what: str, fn):
        return await run_in_session(self._sessions, fn, what=f"call ledger: {what}", code="fraud_ledger")

    # -- writing ------------------------------------------------------------------------------------

    async def record_outbound_call(self, *, elder_id: int | None, number: str, purpose: str,
                                   call_ref: str | None = None) -> LedgerEntryInfo:
        """Write the entry (and the family's code notifications) before dialling. Same ``call_ref`` → same entry."""
        num = normalize_phone(number)
        if not num:
            raise FraudGuardError("call ledger: no number to dial", code="fraud_ledger_input")

        async def write(s: AsyncSession) -> LedgerEntryInfo:
            if call_ref is not None:
                existing = (await s.scalars(select(LedgerEntry).where(LedgerEntry.call_ref == call_ref))).first()
                if existing is not None:
                    return LedgerEntryInfo.of(existing)
            now = self.now()
            row = LedgerEntry(elder_id=elder_id, number=num, purpose=purpose[:64], code=new_code(), call_ref=call_ref,
                              status="pending", created_at=now, valid_until=now + self._validity)
            s.add(row)
            await s.flush()
            if self._notify_family and elder_id is not None:
                contacts = (await s.scalars(select(FamilyContact).where(FamilyContact.elder_id == elder_id))).all()
                elder = await s.get(Elder, elder_id)
                body = family_code_message(elder_name=elder.name if elder else None, code=row.code, purpose=purpose,
                                           valid_until=row.valid_until)
                for c in contacts:
                    if c.notify_sms and c.phone:
                        s.add(Outbox(channel="sms", recipient=c.phone, subject="平安通来电确认码", body=body, created_at=now))
            try:
                await s.commit()
            except IntegrityError:
                await s.rollback()
                again = (await s.scalars(select(LedgerEntry).where(LedgerEntry.call_ref == call_ref))).first()
                if again is None:
                    raise
                return LedgerEntryInfo.of(again)
            return LedgerEntryInfo.of(row)

        return await self._run("record", write)

    async def mark(self, entry_id: int, *, status: str, call_id: str | None = None) -> None:
        async def write(s: AsyncSession) -> None:
            values: dict = {"status": status}
            if call_id is not None:
                values["call_id"] = call_id
            await s.execute(update(LedgerEntry).where(LedgerEntry.id == entry_id).values(**values))
            await s.commit()

        await self._run("mark", write)

    # -- reading ------------------------------------------------------------------------------------

    async def get(self, entry_id: int) -> LedgerEntryInfo | None:
        async def read(s: AsyncSession):
            row = await s.get(LedgerEntry, entry_id)
            return LedgerEntryInfo.of(row) if row is not None else None

        return await self._run("get", read)

    async def current_for_number(self, number: str) -> LedgerEntryInfo | None:
        """The newest entry for this number still inside its validity window (pending, answered or resumed)."""
        num = normalize_phone(number)

        async def read(s: AsyncSession):
            q = (select(LedgerEntry)
                 .where(LedgerEntry.number == num, LedgerEntry.valid_until >= self.now(),
                        LedgerEntry.status.in_(("pending", "answered", "resumed")))
                 .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc()).limit(1))
            row = (await s.scalars(q)).first()
            return LedgerEntryInfo.of(row) if row is not None else None

        return await self._run("lookup", read) if num else None

    async def current_for_elder(self, elder_id: int) -> LedgerEntryInfo | None:
        async def read(s: AsyncSession):
            q = (select(LedgerEntry)
                 .where(LedgerEntry.elder_id == elder_id, LedgerEntry.valid_until >= self.now(),
                        LedgerEntry.status.in_(("pending", "answered", "resumed")))
                 .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc()).limit(1))
            row = (await s.scalars(q)).first()
            return LedgerEntryInfo.of(row) if row is not None else None

        return await self._run("lookup", read)

    async def expire_old(self) -> int:
        async def write(s: AsyncSession) -> int:
            res = await s.execute(update(LedgerEntry)
                                  .where(LedgerEntry.valid_until < self.now(),
                                         LedgerEntry.status.in_(("pending", "answered", "resumed")))
                                  .values(status="expired"))
            await s.commit()
            return int(res.rowcount or 0)

        return await self._run("expire", write)
