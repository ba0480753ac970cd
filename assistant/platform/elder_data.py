"""One elder's whole record: export (PIPL art. 45, access and portability) and erasure on request (art. 47).

Export (``assistant db export-elder --elder-id N --out PATH``): one JSON document in UTF-8 (open format,
``elder-N.json``) with the profile, phones, family contacts, care schedules, console users linked to the
elder, work orders, calls with their transcript turns (``text`` and ``text_redacted`` exactly as stored: after
the raw-transcript period ``text`` already is the redacted copy), alerts with operator notes, notifications
(outbox), placed-call ledger entries, fraud flags and the audit entries about any of these. Recordings are
copied beside it under ``recordings/``. ``PATH`` ending in ``.zip`` gives one zip file, anything else a new
folder. Files are 0600, folders 0700 (the export is personal data). Two things are left out on purpose:
the safe phrase (a secret that proves the platform's identity: the export says only whether one is set)
and one-time codes still valid. An ``export_elder`` audit row records who exported (counts only).

Erasure (``assistant db delete-elder --elder-id N --confirm --reason R``):

- deleted: phones, family contacts, care schedules, console links (family users' own accounts are theirs and
  stay), calls matched by elder or by the elder's numbers with their turns, recordings and Rasa tracker events
  (sender id = call id), fraud flags, ledger entries, notifications sent about the elder or to the contacts,
  operator notes on the elder's alerts;
- anonymised and KEPT as service statistics: the ``elders`` row becomes a tombstone (name ``（已删除）``,
  no address, no safe phrase, no preferences, inactive; district and dialect stay, coarse enough for
  per-district counts), work orders keep type/status/times/who-placed-kind but lose ``details``, the call id
  and the contact, alerts keep kind/severity/status/times but lose ``detail`` and the call id;
- audit rows about the elder keep who/when/what but their ``detail`` is emptied; one ``delete_elder`` row
  records who, when, the reason code and an optional ticket reference (no personal data).

Backups taken before an erasure still hold the elder's data. Every erasure is therefore also appended to
``var/erasures.jsonl`` (elder id, time, reason, ticket, who: no personal data; 0600), outside the database,
and ``assistant db restore`` applies that journal again to the restored database (``reapply_erasures``), so
a restore never brings an erased elder back. Backup files themselves age out by the operator's backup
rotation (see the README's data-protection section).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select, text, update

from assistant.console.models import AuditEntry, ConsoleNote, ConsoleUser, ConsoleUserElder
from assistant.errors import StoreError
from assistant.fraud_guard.models import FraudFlagRow, LedgerEntry
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
from assistant.platform.retention import delete_tracker_events, inside, remove_recording
from assistant.platform.store import (
    AlertInfo,
    CallInfo,
    ContactInfo,
    OrderInfo,
    PlatformStore,
    ScheduleInfo,
    TurnInfo,
)

EXPORT_FORMAT = "elder-assistant/elder-record"
EXPORT_VERSION = 1
ERASED_NAME = "（已删除）"
DELETE_REASONS = ("data_subject_request", "family_request", "deceased", "service_ended", "legal_order", "other")
_TICKET_RE = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")


# tables handled one by one below; any OTHER table with an ``elder_id`` column (another area's, e.g. the keypad
# PIN) is exported generically (secret-looking columns left out) and its rows deleted on erasure
HANDLED_TABLES = frozenset({
    "elders", "elder_phones", "family_contacts", "calls", "call_turns", "work_orders", "alerts", "outbox",
    "care_schedules", "console_user_elders", "console_audit_log", "console_notes", "fraud_call_ledger", "fraud_flags",
})
_SECRET_COLUMN = re.compile(r"hash|secret|token|password|salt|pin$|code$", re.IGNORECASE)


async def _other_elder_tables(s) -> list[str]:
    """Tables of the live database, not handled above, that have an ``elder_id`` column."""
    from sqlalchemy import inspect

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


def _iso(v: dt.datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


@dataclass(frozen=True, kw_only=True)
class ExportResult:
    elder_id: int
    path: Path
    recordings: int
    counts: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"elder_id": self.elder_id, "path": str(self.path), "recordings": self.recordings, "counts": self.counts}


@dataclass(frozen=True, kw_only=True)
class DeletionResult:
    elder_id: int
    counts: dict[str, int] = field(default_factory=dict)
    recordings_kept_outside: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"elder_id": self.elder_id, "counts": self.counts, "recordings_kept_outside": self.recordings_kept_outside}


# ---------------------------------------------------------------- collecting


async def _elder_refs(s, elder_id: int) -> tuple[Elder, list[str], list[FamilyContact]]:
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


async def collect_elder_record(store: PlatformStore, elder_id: int) -> dict[str, Any]:
    """Everything stored about one elder, as JSON-able data (no files read)."""

    now = store.now()
    async with store.session("export elder") as s:
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
            "active": elder.active,
            "created_at": _iso(elder.created_at),
            "safe_phrase_set": bool(elder.safe_phrase),
        }
        phones = [{"number": p.number, "kind": p.kind, "is_primary": p.is_primary} for p in elder.phones]
        contact_rows = [ContactInfo.of(c).to_json() | {"created_at": _iso(c.created_at)} for c in contacts]
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
                    {"note_id": n.id, "author": n.author, "text": n.text, "created_at": _iso(n.created_at)})
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
                 "body": o.body, "alert_id": o.alert_id, "created_at": _iso(o.created_at), "sent_at": _iso(o.sent_at),
                 "attempts": o.attempts}
                for o in (await s.scalars(select(Outbox).where(or_(*outbox_cond)).order_by(Outbox.id))).all()
            ]
        ledger_cond = [LedgerEntry.elder_id == elder_id]
        if numbers:
            ledger_cond.append(LedgerEntry.number.in_(numbers))
        ledger = [
            {"ledger_id": e.id, "number": e.number, "purpose": e.purpose, "status": e.status,
             "code": e.code if e.valid_until <= now else "(still valid: not exported)",
             "created_at": _iso(e.created_at), "valid_until": _iso(e.valid_until), "call_id": e.call_id,
             "resumed_call_id": e.resumed_call_id, "resumed_at": _iso(e.resumed_at)}
            for e in (await s.scalars(select(LedgerEntry).where(or_(*ledger_cond)).order_by(LedgerEntry.id))).all()
        ]
        flag_cond = [FraudFlagRow.elder_id == elder_id]
        if call_ids:
            flag_cond.append(FraudFlagRow.call_id.in_(call_ids))
        flags = [
            {"flag_id": f.id, "call_id": f.call_id, "risk": f.risk, "scam_type": f.scam_type, "evidence": f.evidence,
             "transcript_redacted": f.transcript_redacted, "alert_id": f.alert_id, "created_at": _iso(f.created_at)}
            for f in (await s.scalars(select(FraudFlagRow).where(or_(*flag_cond)).order_by(FraudFlagRow.id))).all()
        ]
        audit = [_audit_json(a) for a in await _audit_rows(s, AuditEntry, elder_id, contacts, orders, alert_ids, call_ids)]
        other: dict[str, list[dict[str, Any]]] = {}
        for table in await _other_elder_tables(s):
            rows = (await s.execute(text(f'SELECT * FROM "{table}" WHERE elder_id = :e'), {"e": elder_id})).mappings()
            other[table] = [{k: _jsonable(v) for k, v in r.items() if not _SECRET_COLUMN.search(k)} for r in rows]
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
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


async def _audit_rows(s, AuditEntry, elder_id: int, contacts, orders, alert_ids, call_ids) -> list[Any]:
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


def _audit_json(a: Any) -> dict[str, Any]:
    return {"audit_id": a.id, "at": _iso(a.at), "username": a.username, "role": a.role, "action": a.action,
            "target_type": a.target_type, "target_id": a.target_id, "detail": a.detail}


# ---------------------------------------------------------------- export


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_export(record: dict[str, Any], out: Path, recordings_dir: Path) -> int:
    """Blocking: the JSON and the recordings into ``out`` (a new folder, or a .zip). Returns files copied."""
    if out.exists() and (out.is_file() or any(out.iterdir())):
        raise StoreError(f"{out} already exists: choose a new path (exports are never overwritten)", code="exists")
    files: list[tuple[dict[str, Any], Path, str]] = []
    for call in record["calls"]:
        src = call.get("audio_path")
        if src and Path(src).is_file() and _inside(Path(src), recordings_dir):
            name = f"recordings/{call['call_id']}{Path(src).suffix or '.wav'}"
            files.append((call, Path(src), name))
            call["recording"] = name
    doc = json.dumps(record, ensure_ascii=False, indent=2).encode()
    json_name = f"elder-{record['elder_id']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".zip":
        tmp = Path(tempfile.mkstemp(prefix=".export-", suffix=".zip.part", dir=out.parent)[1])
        try:
            os.chmod(tmp, 0o600)
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
                z.writestr(json_name, doc)
                for _call, src, name in files:
                    z.write(src, name)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, out)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return len(files)
    out.mkdir(mode=0o700, exist_ok=True)
    os.chmod(out, 0o700)
    _write_private(out / json_name, doc)
    if files:
        (out / "recordings").mkdir(mode=0o700)
        for _call, src, name in files:
            dst = out / name
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f, open(src, "rb") as r:
                shutil.copyfileobj(r, f)
    return len(files)


def _inside(path: Path, folder: Path) -> bool:

    return inside(path, folder)


async def export_elder(
    store: PlatformStore, *, elder_id: int, out: Path, recordings_dir: Path, actor: str
) -> ExportResult:
    """Write the elder's record to ``out`` (see the module docstring) and audit the export."""
    record = await collect_elder_record(store, elder_id)
    n = await asyncio.to_thread(_write_export, record, out, recordings_dir)
    counts = {k: len(record[k]) for k in ("phones", "family_contacts", "orders", "calls", "alerts", "outbox",
                                          "ledger", "fraud_flags", "audit")}
    async with store.session("audit export") as s:
        add_audit(s, at=store.now(), actor=actor, action="export_elder", target_type="elder", target_id=elder_id,
                  detail={"counts": counts, "recordings": n, "format": "zip" if out.suffix.lower() == ".zip" else "dir"})
        await s.commit()
    return ExportResult(elder_id=elder_id, path=out, recordings=n, counts=counts)


# ---------------------------------------------------------------- erasure


def erasure_journal(settings: Any) -> Path:
    """``var/erasures.jsonl``: the elders erased on request, re-applied after a restore."""
    return settings.paths.var_dir / "erasures.jsonl"


def _append_journal(path: Path, entry: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read_journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and isinstance(entry.get("elder_id"), int):
                out.append(entry)
    return out


async def reapply_erasures(
    store: PlatformStore, *, journal: Path, recordings_dir: Path, tracker_url: str | None = None
) -> list[int]:
    """After a restore: erase again every journalled elder whose personal data came back with the backup.
    Returns their ids (an already-erased or missing elder is skipped)."""
    done: list[int] = []
    for entry in await asyncio.to_thread(_read_journal, journal):
        elder_id = entry["elder_id"]
        async with store.session("check erasure") as s:
            elder = await s.get(Elder, elder_id)
            if elder is None or (elder.name == ERASED_NAME and not elder.phones and not elder.contacts):
                continue
        reason = entry.get("reason") if entry.get("reason") in DELETE_REASONS else "other"
        ticket = entry.get("ticket") if isinstance(entry.get("ticket"), str) else None
        await delete_elder(store, elder_id=elder_id, actor="restore", reason=reason, ticket=ticket,
                           recordings_dir=recordings_dir, tracker_url=tracker_url)
        done.append(elder_id)
    return done


async def delete_elder(
    store: PlatformStore,
    *,
    elder_id: int,
    actor: str,
    reason: str,
    recordings_dir: Path,
    ticket: str | None = None,
    tracker_url: str | None = None,
    journal: Path | None = None,
) -> DeletionResult:
    """Erase the elder's personal data (see the module docstring); one transaction for the rows, the
    recordings removed after it commits (a file left behind is still found by the retention purge)."""

    if reason not in DELETE_REASONS:
        raise StoreError(f"reason must be one of {', '.join(DELETE_REASONS)}", code="invalid")
    if ticket is not None and not _TICKET_RE.match(ticket):
        raise StoreError("ticket: 1-64 letters, digits or . _ : / - (a reference, not a name)", code="invalid")
    counts: dict[str, int] = {}
    audio: list[str] = []
    async with store.session("delete elder") as s:
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
        audit_rows = await _audit_rows(s, AuditEntry, elder_id, contacts, orders_as_info, alert_ids, call_ids)

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
            active=False))
        for a in audit_rows:
            a.detail = {}
        counts["audit_detail_cleared"] = len(audit_rows)
        counts = {k: v for k, v in counts.items() if v}
        detail: dict[str, Any] = {"reason": reason, "counts": counts | {"recordings": len(audio)}}
        if ticket:
            detail["ticket"] = ticket
        add_audit(s, at=store.now(), actor=actor, action="delete_elder", target_type="elder", target_id=elder_id,
                  detail=detail)
        await s.commit()
        s.expunge_all()
    kept = 0
    for path in audio:
        if not await asyncio.to_thread(remove_recording, path, recordings_dir):
            kept += 1
    counts["recordings"] = len(audio) - kept
    # the elder's conversations in Rasa's tracker store (sender id = call id): what was said, the caller number
    counts["dialogue_events"] = await delete_tracker_events(tracker_url, call_ids)
    if journal is not None:
        entry = {"elder_id": elder_id, "at": store.now().isoformat(), "reason": reason, "ticket": ticket, "by": actor}
        await asyncio.to_thread(_append_journal, journal, entry)
    return DeletionResult(elder_id=elder_id, counts=counts, recordings_kept_outside=kept)
