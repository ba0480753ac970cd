"""One elder's whole record across every area's tables: collected for an export (PIPL art. 45) and erased
on request (art. 47). What goes, what is kept and why: ``assistant.platform.elder_data``, which writes the
files, removes recordings and keeps the erasure journal around these two methods."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, inspect, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.errors import StoreError
from assistant.platform.audit import add_audit
from assistant.platform.models import (
    Alert,
    Call,
    CallTurn,
    CareSchedule,
    Elder,
    ElderPhone,
    FamilyContact,
    Outbox,
    WorkOrder,
)
from assistant.platform.models_console import AuditEntry, ConsoleNote, ConsoleUser, ConsoleUserElder
from assistant.platform.models_fraud import FraudFlagRow, LedgerEntry
from assistant.platform.store.base import StoreBase, iso
from assistant.platform.store.records import (
    AlertInfo,
    CallInfo,
    ContactInfo,
    OrderInfo,
    ScheduleInfo,
    TurnInfo,
)

ERASED_NAME = "（已删除）"

# tables handled one by one below; any OTHER table with an ``elder_id`` column (another area's, e.g. the keypad
# PIN) is exported generically (secret-looking columns left out) and its rows deleted on erasure
HANDLED_TABLES = frozenset({
    "elders", "elder_phones", "family_contacts", "calls", "call_turns", "work_orders", "alerts", "outbox",
    "care_schedules", "console_user_elders", "console_audit_log", "console_notes", "fraud_call_ledger", "fraud_flags",
})
_SECRET_COLUMN = re.compile(r"hash|secret|token|password|salt|pin$|code$", re.IGNORECASE)


async def _other_elder_tables(s: AsyncSession) -> list[str]:
    """Tables of the live database, not handled above, that have an ``elder_id`` column."""

    def find(sync_conn) -> list[str]:
        insp = inspect(sync_conn)
        return sorted(t for t in insp.get_table_names() if t not in HANDLED_TABLES
                      and any(c["name"] == "elder_id" for c in insp.get_columns(t)))

    return await (await s.connection()).run_sync(find)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, bytes):
        return None
    return v



@dataclass(frozen=True, kw_only=True)
class ErasedRows:
    counts: dict[str, int] = field(default_factory=dict)
    audio_paths: list[str] = field(default_factory=list)  # recordings to remove now that the rows are gone
    call_ids: list[str] = field(default_factory=list)  # the dialogue's tracker events to delete


class ElderRecordStore(StoreBase):
    async def elder_record(self, elder_id: int) -> dict[str, Any]:
        """Everything stored about one elder, as JSON-able data (no files read; ``assistant.platform.elder_data``
        writes the export)."""
        now = self.now()
        async with self.session("export elder") as s:
            elder, numbers, contacts = await _elder_refs(s, elder_id)
            profile = {
                "elder_id": elder.id,
                "name": elder.name,
                "dialect": elder.dialect,
                "district": elder.district,
                "address": elder.address,
                "tts_rate_wpm": elder.tts_rate_wpm,
                "volume": elder.volume,
                "text_size": elder.text_size,
                "tts_voice": elder.tts_voice,
                "end_of_turn_max_silence_s": elder.end_of_turn_max_silence_s,
                "active": elder.active,
                "created_at": iso(elder.created_at),
                "safe_phrase_set": bool(elder.safe_phrase),
            }
            phones = [{"number": p.number, "kind": p.kind, "is_primary": p.is_primary} for p in elder.phones]
            contact_rows = [ContactInfo.of(c).to_json() | {"created_at": iso(c.created_at)} for c in contacts]
            schedules = [ScheduleInfo.of(c).to_json() for c in (await s.scalars(
                select(CareSchedule).where(CareSchedule.elder_id == elder_id).order_by(CareSchedule.id))).all()]
            links = [
                {"user_id": u.id, "username": u.username, "role": u.role, "contact_id": link.contact_id}
                for link, u in (await s.execute(
                    select(ConsoleUserElder, ConsoleUser).join(ConsoleUser, ConsoleUser.id == ConsoleUserElder.user_id)
                    .where(ConsoleUserElder.elder_id == elder_id).order_by(ConsoleUser.id))).all()
            ]
            orders = [OrderInfo.of(o) for o in (await s.scalars(
                select(WorkOrder).where(WorkOrder.elder_id == elder_id).order_by(WorkOrder.id))).all()]
            calls = list((await s.scalars(_calls_query(elder_id, numbers))).all())
            call_ids = [c.call_id for c in calls]
            turns: dict[str, list[dict[str, Any]]] = {cid: [] for cid in call_ids}
            if call_ids:
                for t in (await s.scalars(select(CallTurn).where(CallTurn.call_id.in_(call_ids))
                                          .order_by(CallTurn.call_id, CallTurn.turn))).all():
                    turns[t.call_id].append(TurnInfo.of(t).to_json())
            alerts = list((await s.scalars(select(Alert).where(Alert.elder_id == elder_id).order_by(Alert.id))).all())
            alert_ids = [a.id for a in alerts]
            notes: dict[int, list[dict[str, Any]]] = {}
            if alert_ids:
                for n in (await s.scalars(select(ConsoleNote).where(ConsoleNote.alert_id.in_(alert_ids))
                                          .order_by(ConsoleNote.id))).all():
                    notes.setdefault(n.alert_id or 0, []).append(
                        {"note_id": n.id, "author": n.author, "text": n.text, "created_at": iso(n.created_at)})
            recipients = [c.phone for c in contacts] + [c.email for c in contacts if c.email]
            outbox_cond = []
            if alert_ids:
                outbox_cond.append(Outbox.alert_id.in_(alert_ids))
            if recipients:
                outbox_cond.append(Outbox.recipient.in_(recipients))
            outbox = []
            if outbox_cond:
                outbox = [
                    {"outbox_id": o.id, "channel": o.channel, "recipient": o.recipient, "subject": o.subject,
                     "body": o.body, "alert_id": o.alert_id, "created_at": iso(o.created_at), "sent_at": iso(o.sent_at),
                     "attempts": o.attempts}
                    for o in (await s.scalars(select(Outbox).where(or_(*outbox_cond)).order_by(Outbox.id))).all()
                ]
            ledger_cond = [LedgerEntry.elder_id == elder_id]
            if numbers:
                ledger_cond.append(LedgerEntry.number.in_(numbers))
            ledger = [
                {"ledger_id": e.id, "number": e.number, "purpose": e.purpose, "status": e.status,
                 "code": e.code if e.valid_until <= now else "(still valid: not exported)",
                 "created_at": iso(e.created_at), "valid_until": iso(e.valid_until), "call_id": e.call_id,
                 "resumed_call_id": e.resumed_call_id, "resumed_at": iso(e.resumed_at)}
                for e in (await s.scalars(select(LedgerEntry).where(or_(*ledger_cond)).order_by(LedgerEntry.id))).all()
            ]
            flag_cond = [FraudFlagRow.elder_id == elder_id]
            if call_ids:
                flag_cond.append(FraudFlagRow.call_id.in_(call_ids))
            flags = [
                {"flag_id": f.id, "call_id": f.call_id, "risk": f.risk, "scam_type": f.scam_type, "evidence": f.evidence,
                 "transcript_redacted": f.transcript_redacted, "alert_id": f.alert_id, "created_at": iso(f.created_at)}
                for f in (await s.scalars(select(FraudFlagRow).where(or_(*flag_cond)).order_by(FraudFlagRow.id))).all()
            ]
            audit = [audit_json(a) for a in await _audit_rows(s, elder_id, contacts, orders, alert_ids, call_ids)]
            other: dict[str, list[dict[str, Any]]] = {}
            for table in await _other_elder_tables(s):
                rows = (await s.execute(text(f'SELECT * FROM "{table}" WHERE elder_id = :e'), {"e": elder_id})).mappings()
                other[table] = [{k: _jsonable(v) for k, v in r.items() if not _SECRET_COLUMN.search(k)} for r in rows]
        return {
            "exported_at": now.isoformat(),
            "elder_id": elder_id,
            "profile": profile,
            "phones": phones,
            "family_contacts": contact_rows,
            "care_schedules": schedules,
            "console_users": links,
            "orders": [o.to_json() for o in orders],
            "calls": [CallInfo.of(c).to_json() | {"turns": turns[c.call_id], "recording": None} for c in calls],
            "alerts": [AlertInfo.of(a).to_json() | {"notes": notes.get(a.id, [])} for a in alerts],
            "outbox": outbox,
            "ledger": ledger,
            "fraud_flags": flags,
            "audit": audit,
            "other": other,
            "left_out": {
                "safe_phrase": "a secret that proves the platform's identity on calls: only whether one is set",
                "valid_one_time_codes": "codes still valid at export time",
                "secrets": "hashes, tokens and codes in other tables (e.g. the keypad PIN's hash)",
            },
        }

    async def erase_elder(self, elder_id: int, *, actor: str, reason: str, ticket: str | None = None) -> ErasedRows:
        """Erase the elder's personal rows in one transaction (``assistant.platform.elder_data.delete_elder`` says
        what goes and what is kept, and removes the recordings after this commits); audited as ``delete_elder``."""
        counts: dict[str, int] = {}
        audio: list[str] = []
        async with self.session("delete elder") as s:
            elder, numbers, contacts = await _elder_refs(s, elder_id)
            contact_ids = [c.id for c in contacts]
            recipients = [c.phone for c in contacts] + [c.email for c in contacts if c.email]
            calls = list((await s.scalars(_calls_query(elder_id, numbers))).all())
            call_ids = [c.call_id for c in calls]
            audio = [c.audio_path for c in calls if c.audio_path]
            alert_ids = list((await s.scalars(select(Alert.id).where(Alert.elder_id == elder_id))).all())
            order_ids = list((await s.scalars(select(WorkOrder.id).where(WorkOrder.elder_id == elder_id))).all())
            orders_as_info = [OrderInfo.of(o) for o in (await s.scalars(
                select(WorkOrder).where(WorkOrder.elder_id == elder_id))).all()]
            audit_rows = await _audit_rows(s, elder_id, contacts, orders_as_info, alert_ids, call_ids)

            async def run(name: str, stmt) -> None:
                counts[name] = counts.get(name, 0) + int((await s.execute(stmt)).rowcount or 0)

            if call_ids:
                await run("fraud_flags", delete(FraudFlagRow).where(
                    or_(FraudFlagRow.elder_id == elder_id, FraudFlagRow.call_id.in_(call_ids))))
                await run("transcript_turns", delete(CallTurn).where(CallTurn.call_id.in_(call_ids)))
                await run("calls", delete(Call).where(Call.call_id.in_(call_ids)))
            else:
                await run("fraud_flags", delete(FraudFlagRow).where(FraudFlagRow.elder_id == elder_id))
            ledger_cond = [LedgerEntry.elder_id == elder_id]
            if numbers:
                ledger_cond.append(LedgerEntry.number.in_(numbers))
            await run("ledger", delete(LedgerEntry).where(or_(*ledger_cond)))
            outbox_cond = []
            if alert_ids:
                outbox_cond.append(Outbox.alert_id.in_(alert_ids))
            if recipients:
                outbox_cond.append(Outbox.recipient.in_(recipients))
            if outbox_cond:
                await run("outbox", delete(Outbox).where(or_(*outbox_cond)))
            if alert_ids:
                await run("notes", delete(ConsoleNote).where(ConsoleNote.alert_id.in_(alert_ids)))
                await run("alerts_anonymised", update(Alert).where(Alert.id.in_(alert_ids)).values(detail={}, call_id=None))
            if call_ids:
                await run("notes", delete(ConsoleNote).where(ConsoleNote.call_id.in_(call_ids)))
            for oid in order_ids:
                await run("orders_anonymised", update(WorkOrder).where(WorkOrder.id == oid).values(
                    details={}, call_id=None, placed_by_contact_id=None, idempotency_key=f"erased:{oid}"))
            await run("console_links", delete(ConsoleUserElder).where(ConsoleUserElder.elder_id == elder_id))
            for table in await _other_elder_tables(s):
                await run(table, text(f'DELETE FROM "{table}" WHERE elder_id = :e').bindparams(e=elder_id))
            await run("care_schedules", delete(CareSchedule).where(CareSchedule.elder_id == elder_id))
            await run("phones", delete(ElderPhone).where(ElderPhone.elder_id == elder_id))
            if contact_ids:
                await run("family_contacts", delete(FamilyContact).where(FamilyContact.id.in_(contact_ids)))
            await run("elder_anonymised", update(Elder).where(Elder.id == elder_id).values(
                name=ERASED_NAME, address="", safe_phrase=None, tts_rate_wpm=None, volume=None, text_size=None,
                tts_voice=None, end_of_turn_max_silence_s=None,
                active=False))
            for a in audit_rows:
                a.detail = {}
            counts["audit_detail_cleared"] = len(audit_rows)
            counts = {k: v for k, v in counts.items() if v}
            detail: dict[str, Any] = {"reason": reason, "counts": counts | {"recordings": len(audio)}}
            if ticket:
                detail["ticket"] = ticket
            add_audit(s, at=self.now(), actor=actor, action="delete_elder", target_type="elder", target_id=elder_id,
                      detail=detail)
            await s.commit()
            s.expunge_all()
        return ErasedRows(counts=counts, audio_paths=audio, call_ids=call_ids)

    async def is_erased(self, elder_id: int) -> bool:
        """No such elder, or only its tombstone left (an erasure already applied)."""
        async with self.session("check erasure") as s:
            elder = await s.get(Elder, elder_id)
            return elder is None or (elder.name == ERASED_NAME and not elder.phones and not elder.contacts)


async def _elder_refs(s: AsyncSession, elder_id: int) -> tuple[Elder, list[str], list[FamilyContact]]:
    elder = await s.get(Elder, elder_id)
    if elder is None:
        raise StoreError(f"no elder {elder_id}", code="not_found")
    numbers = [p.number for p in elder.phones]
    return elder, numbers, list(elder.contacts)


def _calls_query(elder_id: int, numbers: list[str]):
    cond = Call.elder_id == elder_id
    if numbers:
        cond = or_(cond, Call.caller_number.in_(numbers))
    return select(Call).where(cond).order_by(Call.started_at, Call.call_id)


async def _audit_rows(s: AsyncSession, elder_id: int, contacts, orders, alert_ids, call_ids) -> list[Any]:
    targets: list[tuple[str, list[str]]] = [
        ("elder", [str(elder_id)]),
        ("contact", [str(c.id) for c in contacts]),
        ("order", [str(o.order_id) for o in orders]),
        ("alert", [str(a) for a in alert_ids]),
        ("call", list(call_ids)),
    ]
    conds = [(AuditEntry.target_type == t) & AuditEntry.target_id.in_(ids) for t, ids in targets if ids]
    rows = {a.id: a for a in (await s.scalars(select(AuditEntry).where(or_(*conds)))).all()}
    # entries whose target is something else but whose detail names the elder (e.g. link_elder on a user)
    for a in (await s.scalars(select(AuditEntry).where(AuditEntry.target_type.in_(("user", "contact"))))).all():
        if isinstance(a.detail, dict) and a.detail.get("elder_id") == elder_id:
            rows[a.id] = a
    return [rows[k] for k in sorted(rows)]



def audit_json(a: Any) -> dict[str, Any]:
    return {"audit_id": a.id, "at": iso(a.at), "username": a.username, "role": a.role, "action": a.action,
            "target_type": a.target_type, "target_id": a.target_id, "detail": a.detail}


