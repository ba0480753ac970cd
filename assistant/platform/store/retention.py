"""The retention purge's database side: batched deletes and redactions of rows past their period.

``assistant.platform.retention`` decides the periods (``settings.privacy``), removes the recording files and
the dialogue's tracker events, and audits each pass; these methods only touch rows. Each batch of
``batch_rows`` is its own transaction, so SQLite's write lock is held briefly; ``dry_run`` only counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, func, select, update

from assistant.platform.models import Alert, Call, CallTurn, Outbox
from assistant.platform.models_console import AuditEntry, LoginAttempt
from assistant.platform.models_fraud import FraudFlagRow, LedgerEntry
from assistant.platform.store.base import StoreBase

# record kind → (table, key column, "past its period" for a cutoff)
PURGEABLE: dict[str, tuple[Any, Any, Callable[[dt.datetime], Any]]] = {
    "transcript_turns": (CallTurn, CallTurn.id, lambda c: CallTurn.created_at < c),
    "fraud_flags": (FraudFlagRow, FraudFlagRow.id, lambda c: FraudFlagRow.created_at < c),
    "calls": (Call, Call.call_id, lambda c: Call.started_at < c),
    "outbox": (Outbox, Outbox.id, lambda c: func.coalesce(Outbox.sent_at, Outbox.created_at) < c),
    "ledger": (LedgerEntry, LedgerEntry.id, lambda c: LedgerEntry.valid_until < c),
    "login_attempts": (LoginAttempt, LoginAttempt.id, lambda c: LoginAttempt.at < c),
    "audit_log": (AuditEntry, AuditEntry.id, lambda c: AuditEntry.at < c),
}


class RetentionStore(StoreBase):
    async def recording_refs(self, *, before: dt.datetime, after_call_id: str, limit: int) -> list[tuple[str, str]]:
        """(call id, audio path) of calls started before ``before`` that still point to a recording, in call-id
        order after ``after_call_id`` (one batch)."""
        async with self.session("read recordings") as s:
            rows = (await s.execute(
                select(Call.call_id, Call.audio_path)
                .where(Call.audio_path.is_not(None), Call.started_at < before, Call.call_id > after_call_id)
                .order_by(Call.call_id).limit(limit)
            )).all()
        return [(call_id, path) for call_id, path in rows]

    async def clear_recording_refs(self, call_ids: list[str]) -> None:
        async with self.session("clear recordings") as s:
            await s.execute(update(Call).where(Call.call_id.in_(call_ids)).values(audio_path=None))
            await s.commit()

    async def recording_paths(self) -> list[str]:
        """Every recording a call row points to."""
        async with self.session("read recent recordings") as s:
            return list((await s.scalars(select(Call.audio_path).where(Call.audio_path.is_not(None)))).all())

    async def redact_raw_turns(self, *, before: dt.datetime, batch_rows: int, dry_run: bool = False) -> int:
        """Turns older than ``before`` whose raw text differs from the redacted copy get the redacted copy."""
        redacted = func.coalesce(CallTurn.text_redacted, "")
        cond = (CallTurn.created_at < before, CallTurn.text != redacted)
        if dry_run:
            async with self.session("count raw turns") as s:
                return int(await s.scalar(select(func.count(CallTurn.id)).where(*cond)) or 0)
        n = 0
        while True:
            async with self.session("redact old turns") as s:
                ids = (await s.scalars(select(CallTurn.id).where(*cond).order_by(CallTurn.id).limit(batch_rows))).all()
                if not ids:
                    return n
                await s.execute(update(CallTurn).where(CallTurn.id.in_(ids)).values(text=redacted))
                await s.commit()
            n += len(ids)

    async def purge_alert_transcripts(self, *, before: dt.datetime, batch_rows: int, dry_run: bool = False) -> int:
        """Alerts older than ``before`` lose the ``transcript`` in their detail (``transcript_purged`` instead)."""
        n = 0
        after = 0
        while True:
            async with self.session("old alert transcripts") as s:
                rows = (await s.scalars(
                    select(Alert).where(Alert.created_at < before, Alert.id > after,
                                        Alert.detail["transcript"].as_string().is_not(None))
                    .order_by(Alert.id).limit(batch_rows)
                )).all()
                if not rows:
                    return n
                after = rows[-1].id
                for a in rows:
                    detail = dict(a.detail or {})
                    if "transcript" not in detail:
                        continue
                    detail.pop("transcript")
                    n += 1
                    if not dry_run:
                        a.detail = detail | {"transcript_purged": True}
                if not dry_run:
                    await s.commit()
            if len(rows) < batch_rows:
                return n

    async def purge_rows(self, kind: str, *, before: dt.datetime, batch_rows: int, dry_run: bool = False) -> int:
        """Delete (or count) the rows of ``kind`` (a ``PURGEABLE`` key) past ``before``."""
        model, key, past = PURGEABLE[kind]
        cond = past(before)
        if dry_run:
            async with self.session(f"count {model.__tablename__}") as s:
                return int(await s.scalar(select(func.count()).select_from(model).where(cond)) or 0)
        n = 0
        while True:
            async with self.session(f"purge {model.__tablename__}") as s:
                ids = (await s.scalars(select(key).where(cond).order_by(key).limit(batch_rows))).all()
                if not ids:
                    return n
                if model is Call:
                    # turns go by ON DELETE CASCADE; say so explicitly for engines without foreign keys
                    await s.execute(delete(CallTurn).where(CallTurn.call_id.in_(ids)))
                await s.execute(delete(model).where(key.in_(ids)))
                await s.commit()
            n += len(ids)
