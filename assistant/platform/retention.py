"""Retention: personal data is deleted when its period (``settings.privacy``) has passed.

China's PIPL (art. 19, 47) asks that personal information be kept no longer than its purpose needs. What
each record kind holds and what happens to it (periods are settings; 0 keeps that kind forever):

=====================  =====================================  ================================================
record kind            personal data in it                    after its period
=====================  =====================================  ================================================
call recordings        the caller's voice                     file deleted, ``calls.audio_path`` cleared
                                                              (``recordings_retention_days``, from the call's
                                                              start; stray files in the recordings folder by
                                                              their modification time)
raw transcript text    everything said, unredacted            ``call_turns.text`` replaced by the PII gate's
                                                              redacted copy; ``transcript`` removed from alert
                                                              details (``raw_transcript_retention_days``)
transcript turns       redacted text, intents                 turns and fraud flags deleted
                                                              (``transcript_retention_days``)
call records           caller number, times, outcome          call rows deleted, with their turns and
                                                              recording (``call_record_retention_days``)
sent notifications     family phone/e-mail, elder's name      outbox rows deleted (``outbox_retention_days``,
                                                              from sending, or creation if never sent)
placed-call ledger     number dialled, one-time code          deleted once ``ledger_retention_days`` past
                                                              its validity
Rasa tracker events    what was said, caller number, elder id deleted with the raw text
                                                              (``raw_transcript_retention_days``; the dialogue
                                                              needs them only while the call lasts)
console sign-ins       user name, IP address                  deleted (``login_attempts_retention_days``)
audit log              who saw/changed what (no content)      deleted (``audit_log_retention_days``, longest:
                                                              the evidence of every access above)
work orders            elder id, service details              KEPT: business records (billing, disputes,
                                                              service statistics); erased only by
                                                              ``assistant db delete-elder``
alerts                 elder id, kind, status, times          KEPT (minus transcript text): safety records
elders, contacts       profile                                KEPT while the elder is served; erased on
                                                              request (``assistant db delete-elder``)
=====================  =====================================  ================================================

``purge(...)`` does one pass (``assistant db purge``; ``dry_run`` only counts). ``RetentionJob`` runs it
in ``assistant serve`` every ``purge_interval_s`` (a failed pass is logged and retried after
``purge_retry_s``). Each pass that deletes anything writes one audit row (``retention_purge``, counts
only). Rows go in batches of ``purge_batch_rows`` per transaction so SQLite's write lock is held briefly:
the rows are the store's (``PlatformStore.purge_rows`` and friends, ``assistant.platform.store.retention``);
the files, the periods and the audit are this module's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import StoreError
from assistant.platform.audit import RETENTION_ACTOR
from assistant.platform.store import PlatformStore
from assistant.settings import PrivacySettings, Settings

log = logging.getLogger(__name__)

PURGE_KINDS = (
    "recordings",
    "recording_refs",
    "raw_transcripts",
    "alert_transcripts",
    "dialogue_events",
    "transcript_turns",
    "fraud_flags",
    "calls",
    "outbox",
    "ledger",
    "login_attempts",
    "audit_log",
)


def recordings_dir(settings: Settings) -> Path:
    """Where call audio is kept (``assistant.call_recorder``: ``var/calls``)."""
    return settings.paths.var_dir / "calls"


def tracker_store_url(settings: Settings) -> str:
    """A synchronous SQLAlchemy URL of Rasa's tracker store (``dialogue.tracker_store_url``, else the SQLite
    file ``var/rasa/tracker.db`` that ``assistant rasa`` configures)."""
    url = settings.dialogue.tracker_store_url
    if not url:
        return f"sqlite:///{settings.paths.var_dir / 'rasa' / 'tracker.db'}"
    scheme, _, rest = url.partition("://")
    if scheme.split("+")[0] == "postgresql":
        return f"postgresql+psycopg://{rest}"
    return f"sqlite://{rest}"


def _tracker_delete(url: str, *, before_ts: float | None = None, senders: list[str] | None = None,
                    dry_run: bool = False) -> int:
    """Blocking: delete Rasa tracker events older than ``before_ts`` (unix time) or of ``senders`` (call ids).
    0 when the tracker store does not exist yet."""
    from sqlalchemy import bindparam, create_engine, inspect, text
    from sqlalchemy.pool import NullPool

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return 0
    connect_args = {"timeout": 30.0} if url.startswith("sqlite") else {"connect_timeout": 10}
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.begin() as conn:
            if not inspect(conn).has_table("events"):
                return 0
            verb = "SELECT count(*) FROM events WHERE" if dry_run else "DELETE FROM events WHERE"
            if senders is not None:
                if not senders:
                    return 0
                stmt = text(f"{verb} sender_id IN :senders").bindparams(bindparam("senders", expanding=True))
                result = conn.execute(stmt, {"senders": senders})
            else:
                result = conn.execute(text(f"{verb} timestamp < :ts"), {"ts": before_ts})
            return int(result.scalar() or 0) if dry_run else int(result.rowcount or 0)
    finally:
        engine.dispose()


async def delete_tracker_events(url: str | None, senders: list[str]) -> int:
    """Delete the Rasa conversations of these calls (erasure on request). Raises ``StoreError``."""
    if not url or not senders:
        return 0
    try:
        return await asyncio.to_thread(_tracker_delete, url, senders=senders)
    except Exception as exc:  # sqlalchemy / driver errors: one coded error for the caller
        raise StoreError(f"tracker store: {type(exc).__name__}", code="store_failed") from exc


@dataclass(frozen=True, kw_only=True)
class PurgeReport:
    at: dt.datetime
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "dry_run": self.dry_run, "counts": dict(self.counts),
                "total": self.total, "error": self.error}


def _cutoff(now: dt.datetime, days: int) -> dt.datetime | None:
    return now - dt.timedelta(days=days) if days > 0 else None


def inside(path: Path, folder: Path) -> bool:
    """``path`` resolves to somewhere under ``folder`` (recordings are only ever deleted there)."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def remove_recording(path_text: str, folder: Path) -> bool:
    """Delete one recording if it is a file under ``folder``; True when it is gone (or never existed).

    A path outside the recordings folder (``audio_path`` can be posted through the API) is never deleted:
    False, and the caller keeps the reference."""
    path = Path(path_text)
    if not inside(path, folder):
        log.warning("recording outside %s not deleted: %s", folder, path.name)
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    return True


def _stray_recordings(folder: Path, cutoff: dt.datetime, referenced: list[str]) -> list[Path]:
    """Files under ``folder`` last written before ``cutoff`` that no call row points to (blocking)."""
    if not folder.is_dir():
        return []
    keep = {str(Path(p).resolve()) for p in referenced}
    limit = cutoff.timestamp()
    out = []
    for p in folder.rglob("*"):
        try:
            if p.is_symlink() or not p.is_file():
                continue
            if p.stat().st_mtime < limit and str(p.resolve()) not in keep:
                out.append(p)
        except OSError:
            continue
    return out


class Purger:
    """One retention pass over the store and the recordings folder."""

    def __init__(
        self, *, store: PlatformStore, privacy: PrivacySettings, recordings_dir: Path, tracker_url: str | None = None
    ) -> None:
        self._store = store
        self._tracker_url = tracker_url
        self._p = privacy
        self._dir = recordings_dir
        self._batch = max(int(privacy.purge_batch_rows), 1)

    async def purge(self, *, now: dt.datetime | None = None, dry_run: bool = False) -> PurgeReport:
        """Delete (or with ``dry_run`` count) everything past its period. Raises ``StoreError``/``OSError``."""
        now = now or self._store.now()
        p = self._p
        counts: dict[str, int] = dict.fromkeys(PURGE_KINDS, 0)
        cut = {
            "rec": _cutoff(now, p.recordings_retention_days),
            "raw": _cutoff(now, p.raw_transcript_retention_days),
            "turns": _cutoff(now, p.transcript_retention_days),
            "calls": _cutoff(now, p.call_record_retention_days),
            "outbox": _cutoff(now, p.outbox_retention_days),
            "ledger": _cutoff(now, p.ledger_retention_days),
            "logins": _cutoff(now, p.login_attempts_retention_days),
            "audit": _cutoff(now, p.audit_log_retention_days),
        }
        # a call row deleted takes its recording with it, whatever the recordings' own period
        rec_cuts = [c for c in (cut["rec"], cut["calls"]) if c is not None]
        if rec_cuts:
            n_files, n_refs = await self._recordings(max(rec_cuts), dry_run)
            counts["recordings"] += n_files
            counts["recording_refs"] += n_refs
        if cut["rec"] is not None:
            counts["recordings"] += await self._strays(cut["rec"], dry_run)
        if cut["raw"] is not None:
            counts["raw_transcripts"] = await self._store.redact_raw_turns(before=cut["raw"], batch_rows=self._batch, dry_run=dry_run)
            counts["alert_transcripts"] = await self._store.purge_alert_transcripts(
                before=cut["raw"], batch_rows=self._batch, dry_run=dry_run)
            if self._tracker_url:
                try:
                    counts["dialogue_events"] = await asyncio.to_thread(
                        _tracker_delete, self._tracker_url, before_ts=cut["raw"].timestamp(), dry_run=dry_run
                    )
                except Exception as exc:  # the tracker store is Rasa's: report, retry with the next pass
                    raise StoreError(f"tracker store: {type(exc).__name__}: {str(exc)[:200]}") from exc
        rows = (("transcript_turns", "turns"), ("fraud_flags", "turns"), ("calls", "calls"), ("outbox", "outbox"),
                ("ledger", "ledger"), ("login_attempts", "logins"), ("audit_log", "audit"))
        for kind, period in rows:
            if cut[period] is not None:
                counts[kind] = await self._store.purge_rows(kind, before=cut[period], batch_rows=self._batch, dry_run=dry_run)
        report = PurgeReport(at=now, dry_run=dry_run, counts=counts)
        if not dry_run and report.total:
            await self._store.record_audit(actor=RETENTION_ACTOR, action="retention_purge", target_type="retention",
                                           detail={"counts": {k: v for k, v in counts.items() if v}}, at=now)
            log.info("retention purge: %s", {k: v for k, v in counts.items() if v})
        return report

    # ------------------------------------------------------------ recordings

    async def _recordings(self, cutoff: dt.datetime, dry_run: bool) -> tuple[int, int]:
        files = refs = 0
        after = ""
        while True:
            rows = await self._store.recording_refs(before=cutoff, after_call_id=after, limit=self._batch)
            if not rows:
                return files, refs
            after = rows[-1][0]
            cleared = []
            for call_id, path in rows:
                if dry_run:
                    files += int(await asyncio.to_thread(lambda p=path: inside(Path(p), self._dir) and Path(p).exists()))
                    refs += 1
                    continue
                existed = await asyncio.to_thread(Path(path).exists)
                if await asyncio.to_thread(remove_recording, path, self._dir):
                    files += int(existed)
                    cleared.append(call_id)
                else:
                    cleared.append(call_id)  # outside our folder: forget the reference, leave the file
            if cleared:
                await self._store.clear_recording_refs(cleared)
                refs += len(cleared)
            if len(rows) < self._batch:
                return files, refs

    async def _strays(self, cutoff: dt.datetime, dry_run: bool) -> int:
        recent = await self._store.recording_paths()
        stray = await asyncio.to_thread(_stray_recordings, self._dir, cutoff, recent)
        if not dry_run:
            for path in stray:
                with contextlib.suppress(FileNotFoundError):
                    await asyncio.to_thread(path.unlink)
        return len(stray)


async def purge(
    store: PlatformStore,
    *,
    settings: Settings,
    now: dt.datetime | None = None,
    dry_run: bool = False,
) -> PurgeReport:
    """One retention pass with ``settings.privacy`` (what ``assistant db purge`` runs)."""
    purger = Purger(store=store, privacy=settings.privacy, recordings_dir=recordings_dir(settings),
                    tracker_url=tracker_store_url(settings))
    return await purger.purge(now=now, dry_run=dry_run)


class RetentionJob:
    """Runs the purge every ``purge_interval_s``; a failed pass is logged and retried after ``purge_retry_s``.

    Owned by the platform API's cleanup_ctx (``assistant serve``), next to the SLA watcher; ``stop()`` lets
    the current pass finish. Clock and sleep are injectable for tests."""

    def __init__(
        self,
        *,
        store: PlatformStore,
        privacy: PrivacySettings,
        recordings_dir: Path,
        tracker_url: str | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._purger = Purger(store=store, privacy=privacy, recordings_dir=recordings_dir, tracker_url=tracker_url)
        self._privacy = privacy
        self._clock = clock or store.now
        self._sleep = sleep or self._pause
        self._stopping = asyncio.Event()
        self.rounds = 0
        self.failures = 0
        self.last: PurgeReport | None = None

    async def run_once(self) -> PurgeReport:
        now = self._clock()
        try:
            report = await self._purger.purge(now=now)
        except (StoreError, OSError) as exc:
            log.error("retention purge failed (retrying in %.0f s): %s: %s",
                      self._privacy.purge_retry_s, type(exc).__name__, exc)
            self.failures += 1
            report = PurgeReport(at=now, dry_run=False, error=getattr(exc, "code", type(exc).__name__))
        self.rounds += 1
        self.last = report
        return report

    def stop(self) -> None:
        self._stopping.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def run(self) -> None:
        while not self._stopping.is_set():
            report = await self.run_once()
            if self._stopping.is_set():
                break
            await self._sleep(self._privacy.purge_retry_s if report.error else self._privacy.purge_interval_s)


__all__ = [
    "PURGE_KINDS",
    "PurgeReport",
    "Purger",
    "RetentionJob",
    "delete_tracker_events",
    "purge",
    "recordings_dir",
    "remove_recording",
    "tracker_store_url",
]

