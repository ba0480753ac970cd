"""Calls and their transcript turns."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from assistant.errors import StoreError
from assistant.platform.models import (
    CALL_DIRECTIONS,
    SPEAKERS,
    Call,
    CallTurn,
    Elder,
    normalize_phone,
)
from assistant.platform.store.base import StoreBase, invalid
from assistant.platform.store.records import CallInfo, CallUpdate, TurnInfo


class CallStore(StoreBase):
    async def upsert_call(self, call_id: str, update: CallUpdate | None = None) -> CallInfo:
        """Start a call record or update the fields given (``None`` fields are left alone)."""
        if not call_id or len(call_id) > 64:
            raise invalid("call_id is required (1..64 characters)")
        update = update or CallUpdate()
        if update.direction is not None and update.direction not in CALL_DIRECTIONS:
            raise invalid(f"direction must be one of {CALL_DIRECTIONS}")
        if update.verification is not None and update.verification not in ("unverified", "verified", "failed"):
            raise invalid("verification must be unverified, verified or failed")
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
            raise invalid(f"speaker must be one of {SPEAKERS}")
        if turn < 0:
            raise invalid("turn must be >= 0")
        if not call_id or len(call_id) > 64:
            raise invalid("call_id is required (1..64 characters)")
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
