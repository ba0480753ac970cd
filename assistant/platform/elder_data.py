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
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import StoreError
from assistant.platform.retention import delete_tracker_events, inside, remove_recording
from assistant.platform.store import PlatformStore
from assistant.platform.store.elder_records import ERASED_NAME as ERASED_NAME  # the tombstone's name

EXPORT_FORMAT = "elder-assistant/elder-record"
EXPORT_VERSION = 1
DELETE_REASONS = ("data_subject_request", "family_request", "deceased", "service_ended", "legal_order", "other")
_TICKET_RE = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")


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


async def collect_elder_record(store: PlatformStore, elder_id: int) -> dict[str, Any]:
    """Everything stored about one elder, as JSON-able data (no files read): the store's ``elder_record``."""
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, **await store.elder_record(elder_id)}


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
        if src and Path(src).is_file() and inside(Path(src), recordings_dir):
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


async def export_elder(
    store: PlatformStore, *, elder_id: int, out: Path, recordings_dir: Path, actor: str
) -> ExportResult:
    """Write the elder's record to ``out`` (see the module docstring) and audit the export."""
    record = await collect_elder_record(store, elder_id)
    n = await asyncio.to_thread(_write_export, record, out, recordings_dir)
    counts = {k: len(record[k]) for k in ("phones", "family_contacts", "orders", "calls", "alerts", "outbox",
                                          "ledger", "fraud_flags", "audit")}
    await store.record_audit(actor=actor, action="export_elder", target_type="elder", target_id=elder_id,
                             detail={"counts": counts, "recordings": n, "format": "zip" if out.suffix.lower() == ".zip" else "dir"})
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
        if await store.is_erased(elder_id):
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
    """Erase the elder's personal data (see the module docstring); one transaction for the rows (the store's
    ``erase_elder``), the recordings removed after it commits (a file left behind is still found by the
    retention purge)."""
    if reason not in DELETE_REASONS:
        raise StoreError(f"reason must be one of {', '.join(DELETE_REASONS)}", code="invalid")
    if ticket is not None and not _TICKET_RE.match(ticket):
        raise StoreError("ticket: 1-64 letters, digits or . _ : / - (a reference, not a name)", code="invalid")
    erased = await store.erase_elder(elder_id, actor=actor, reason=reason, ticket=ticket)
    counts, audio, call_ids = dict(erased.counts), erased.audio_paths, erased.call_ids
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
