"""The elder's keypad PIN: a factor a caller-ID spoofer does not have (issue #15).

An inbound call is never verified by its caller ID. An elder who rang from a registered number can make
the call ``verified`` by keying their 4–6 digit PIN (``*`` digits ``#``). The PIN is set by an
administrator (``assistant elder set-pin``), stored as an argon2id hash (``elder_pins``), never spoken,
logged or kept in a transcript.

Attempts are limited per elder, across all calls: ``settings.fraud.pin_max_attempts`` wrong entries in a
row lock the PIN for ``pin_lockout_s`` (every attempt is refused, right or wrong, until then) and the
caller raises an operator alert. An attempt is counted *before* its hash is checked, so calls placed in
parallel cannot try more PINs than the limit. Hashing runs in a worker thread (argon2 takes ~50 ms of CPU).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from assistant.errors import FraudGuardError
from assistant.fraud_guard.ledger import run_in_session
from assistant.platform.audit import add_audit
from assistant.platform.models import Elder, utcnow
from assistant.platform.models_fraud import ElderPin
from assistant.settings import Settings

Clock = Callable[[], dt.datetime]
PinStatus = Literal["ok", "wrong", "locked", "not_set"]

PIN_MIN_DIGITS = 4
PIN_MAX_DIGITS = 6
# PINs anyone would try first
_WEAK = {"1234", "12345", "123456", "4321", "654321", "0123", "1212", "121212", "2580", "0852", "6789", "9876"}


def pin_problem(pin: str) -> str | None:
    """Why ``pin`` cannot be an elder's PIN, or None."""
    if not (pin.isascii() and pin.isdigit()) or not PIN_MIN_DIGITS <= len(pin) <= PIN_MAX_DIGITS:
        return f"the PIN must be {PIN_MIN_DIGITS} to {PIN_MAX_DIGITS} digits"
    if len(set(pin)) == 1 or pin in _WEAK:
        return "the PIN is too easy to guess (repeated or sequential digits)"
    return None


@dataclass(frozen=True, kw_only=True)
class PinCheck:
    status: PinStatus
    remaining: int = 0  # attempts left before the lock-out ("wrong")
    locked_until: dt.datetime | None = None
    just_locked: bool = False  # this attempt locked the PIN: raise the operator alert once

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class PinStore:
    def __init__(self, *, sessionmaker: async_sessionmaker[AsyncSession], max_attempts: int, lockout_s: float,
                 clock: Clock = utcnow, hasher: PasswordHasher | None = None) -> None:
        if max_attempts < 1:
            raise FraudGuardError("pin_max_attempts must be at least 1", code="fraud_pin_config")
        self._sessions = sessionmaker
        self._max = max_attempts
        self._lockout = dt.timedelta(seconds=lockout_s)
        self._clock = clock
        self._hasher = hasher or PasswordHasher()

    @classmethod
    def for_engine(cls, engine: AsyncEngine, *, settings: Settings, clock: Clock = utcnow) -> PinStore:
        return cls(sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
                   max_attempts=settings.fraud.pin_max_attempts, lockout_s=settings.fraud.pin_lockout_s, clock=clock)

    async def _run(self, what: str, fn):
        return await run_in_session(self._sessions, fn, what=f"elder PIN: {what}", code="fraud_pin_store")

    async def set_pin(self, elder_id: int, pin: str, *, actor: str | None = None) -> None:
        """Set (or replace) the elder's PIN; clears the attempt counter and any lock-out. With ``actor``
        (``assistant pin``: ``cli:<os user>``) an audit row ``pin_set`` is written in the same transaction."""
        problem = pin_problem(pin)
        if problem is not None:
            raise FraudGuardError(problem, code="fraud_pin_input")
        pin_hash = await asyncio.to_thread(self._hasher.hash, pin)

        async def write(s: AsyncSession) -> None:
            if await s.get(Elder, elder_id) is None:
                raise FraudGuardError(f"no elder {elder_id}", code="fraud_pin_unknown_elder")
            row = await s.get(ElderPin, elder_id)
            if row is None:
                row = ElderPin(elder_id=elder_id, pin_hash=pin_hash)
                s.add(row)
            row.pin_hash, row.failed_count, row.locked_until, row.updated_at = pin_hash, 0, None, self._clock()
            self._audit(s, actor, "pin_set", elder_id)
            await s.commit()

        await self._run("set", write)

    def _audit(self, s: AsyncSession, actor: str | None, action: str, elder_id: int) -> None:
        if actor is not None:
            add_audit(s, at=self._clock(), actor=actor, action=action, target_type="elder", target_id=elder_id)

    async def clear_pin(self, elder_id: int, *, actor: str | None = None) -> bool:
        async def write(s: AsyncSession) -> bool:
            res = await s.execute(delete(ElderPin).where(ElderPin.elder_id == elder_id))
            if res.rowcount:
                self._audit(s, actor, "pin_clear", elder_id)
            await s.commit()
            return bool(res.rowcount)

        return await self._run("clear", write)

    async def has_pin(self, elder_id: int) -> bool:
        async def read(s: AsyncSession) -> bool:
            return (await s.scalar(select(ElderPin.elder_id).where(ElderPin.elder_id == elder_id))) is not None

        return await self._run("read", read)

    async def check(self, elder_id: int, pin: str) -> PinCheck:
        """One attempt. Counted first (row-locked on PostgreSQL, SQLite serialises writers), then checked."""

        async def take_attempt(s: AsyncSession) -> tuple[str, int] | PinCheck:
            row = (await s.scalars(select(ElderPin).where(ElderPin.elder_id == elder_id).with_for_update())).first()
            if row is None:
                return PinCheck(status="not_set")
            now = self._clock()
            if row.locked_until is not None and row.locked_until > now:
                return PinCheck(status="locked", locked_until=row.locked_until)
            if row.locked_until is not None:  # the lock-out is over: a fresh count
                row.locked_until, row.failed_count = None, 0
            if row.failed_count >= self._max:  # a parallel attempt used up the last try and is locking it
                row.locked_until, row.failed_count = now + self._lockout, 0
                await s.commit()
                return PinCheck(status="locked", locked_until=row.locked_until)
            row.failed_count += 1
            count = row.failed_count
            pin_hash = row.pin_hash
            await s.commit()
            return pin_hash, count

        taken = await self._run("check", take_attempt)
        if isinstance(taken, PinCheck):
            return taken
        pin_hash, count = taken
        if await asyncio.to_thread(self._verify, pin_hash, pin):

            async def reset(s: AsyncSession) -> None:
                row = await s.get(ElderPin, elder_id)
                if row is not None:
                    row.failed_count = 0
                    await s.commit()

            await self._run("reset", reset)
            return PinCheck(status="ok")
        if count < self._max:
            return PinCheck(status="wrong", remaining=self._max - count)
        until = self._clock() + self._lockout

        async def lock(s: AsyncSession) -> None:
            row = await s.get(ElderPin, elder_id)
            if row is not None:
                row.locked_until, row.failed_count = until, 0
                await s.commit()

        await self._run("lock", lock)
        return PinCheck(status="locked", locked_until=until, just_locked=True)

    def _verify(self, pin_hash: str, pin: str) -> bool:
        try:
            return self._hasher.verify(pin_hash, pin)
        except (VerificationError, InvalidHashError):
            return False
