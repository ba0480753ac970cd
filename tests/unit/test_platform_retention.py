"""Retention (issue #15, data protection): personal data past its period is purged on a fake clock —
recordings (files too), raw transcript text, transcripts, call records, notifications, ledger, sign-ins and
the audit log, each by its own setting; work orders and alerts are kept; every purge is audited; the job
runs inside the platform app (``assistant serve``) and retries after a failure."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from assistant.platform.db import create_engine_for
from assistant.platform.migrate import upgrade_heads
from assistant.platform.models_console import AuditEntry, LoginAttempt
from assistant.platform.models_fraud import FraudFlagRow, LedgerEntry
from assistant.platform.retention import RetentionJob, purge, recordings_dir
from assistant.platform.store import CallUpdate, PlatformStore
from assistant.services import SERVICES_KEY
from assistant.settings import PrivacySettings, StoreSettings, load_settings
from tests.platform_data import T0, FakeClock, make_family

DAY = 86400.0
RAW = "我叫陈桂英，住在建设三路18号"
REDACTED = "我叫[姓名]，住在[地址]"


pytest_plugins = ["tests.fixtures_pg"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request, tmp_path):
    env = {**os.environ, "ASSISTANT_VAR_DIR": str(tmp_path / "var")}
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'p.db'}"
    else:
        url = request.getfixturevalue("pg_fresh_url")
    upgrade_heads(url)
    return load_settings(env, store={"database_url": url})


@pytest.fixture
async def store(settings):
    engine = create_engine_for(settings)
    try:
        yield PlatformStore(engine=engine, clock=FakeClock())
    finally:
        await engine.dispose()


def _old_file(path: Path, when: dt.datetime, data: bytes = b"RIFF....WAVE") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


async def _call(store, settings, call_id: str, *, elder_id: int, turns: bool = True, audio: bool = True) -> Path:
    now = store.now()
    wav = _old_file(recordings_dir(settings) / f"{call_id}.wav", now)
    await store.upsert_call(call_id, CallUpdate(elder_id=elder_id, started_at=now, caller_number="0750-3201001",
                                                audio_path=str(wav) if audio else None))
    if turns:
        await store.add_turn(call_id=call_id, turn=1, speaker="elder", text=RAW, text_redacted=REDACTED)
        await store.add_turn(call_id=call_id, turn=2, speaker="bot", text="好的", text_redacted="好的")
    return wav


async def _rows(store, model, *cond):
    async with store.session("test read") as s:
        return list((await s.scalars(select(model).where(*cond))).all())


async def _seed_old_world(store, settings):
    """At T0: a call with recording and transcript, an SOS alert with transcript and family SMS (sent), a
    ledger entry, a fraud flag, a sign-in attempt, an audit row, an order; a stray and a foreign file."""
    clock = store._clock
    elder = await make_family(store)
    wav = await _call(store, settings, "old-call", elder_id=elder.elder_id)
    outside = _old_file(settings.paths.var_dir / "not-a-recording.db", clock())
    await store.upsert_call("old-foreign", CallUpdate(elder_id=elder.elder_id, started_at=clock(),
                                                      audio_path=str(outside)))
    stray = _old_file(recordings_dir(settings) / "stray.wav", clock())
    order = (await store.create_order(elder_id=elder.elder_id, type="gas", idempotency_key="k-old",
                                      details={"address": "建设三路18号"}, call_id="old-call")).order
    alert = await store.raise_alert(elder_id=elder.elder_id, call_id="old-call", kind="sos",
                                     detail={"transcript": RAW, "dialect": "yue"})
    for item in await store.pending_outbox():
        await store.mark_outbox(item.outbox_id, sent=True)
    async with store.session("seed") as s:
        s.add(LedgerEntry(elder_id=elder.elder_id, number="07503201001", purpose="care_call", code="4821",
                          status="answered", created_at=clock(), valid_until=clock() + dt.timedelta(minutes=30)))
        s.add(FraudFlagRow(call_id="old-call", elder_id=elder.elder_id, risk=0.9, scam_type="impersonation",
                           evidence={"cues": ["转账"]}, transcript_redacted=REDACTED, created_at=clock()))
        s.add(LoginAttempt(username="op1", ip="10.0.0.9", ok=False, at=clock()))
        s.add(AuditEntry(at=clock() - dt.timedelta(days=1100), username="op1", role="operator", action="view_transcript",
                         target_type="alert", target_id=str(alert.alert_id), detail={}, ip="10.0.0.9"))
        await s.commit()
    return elder, wav, outside, stray, order, alert


async def test_purge_applies_each_period_and_keeps_orders_and_alerts(store, settings):
    clock = store._clock
    elder, wav, outside, stray, order, alert = await _seed_old_world(store, settings)

    clock.advance(40 * DAY)  # past recordings (30) and raw text (30), not the others
    new_wav = await _call(store, settings, "new-call", elder_id=elder.elder_id)
    fresh_stray = _old_file(recordings_dir(settings) / "fresh.wav", clock())

    dry = await purge(store, settings=settings, dry_run=True)
    assert dry.dry_run and dry.counts["recordings"] == 2  # old-call.wav + stray.wav (not the foreign file)
    assert dry.counts["raw_transcripts"] == 1 and dry.counts["alert_transcripts"] == 1
    assert wav.exists() and stray.exists()  # a dry run changes nothing
    assert (await store.list_turns("old-call"))[0].text == RAW
    assert await _rows(store, AuditEntry, AuditEntry.action == "retention_purge") == []

    report = await purge(store, settings=settings)
    assert report.counts["recordings"] == 2
    assert report.counts["recording_refs"] == 2  # old-call and the foreign path's reference
    assert not wav.exists() and not stray.exists()
    assert outside.exists()  # outside var/calls: never deleted, however it got into audio_path
    assert new_wav.exists() and fresh_stray.exists()
    assert (await store.get_call("old-call")).audio_path is None
    assert (await store.get_call("new-call")).audio_path == str(new_wav)
    old_turns = await store.list_turns("old-call")
    assert [t.text for t in old_turns] == [REDACTED, "好的"]  # the raw text is gone, the redacted copy stays
    assert (await store.list_turns("new-call"))[0].text == RAW  # younger than 30 days: untouched
    a = await store.get_alert(alert.alert_id)
    assert "transcript" not in a.detail and a.detail["dialect"] == "yue" and a.detail["transcript_purged"]
    assert RAW not in json.dumps(a.detail, ensure_ascii=False)
    assert report.counts["audit_log"] == 1  # the 1100-day-old row (audit log is kept 1095 days)
    audits = await _rows(store, AuditEntry, AuditEntry.action == "retention_purge")
    assert len(audits) == 1 and audits[0].username == "retention"
    assert audits[0].detail["counts"]["recordings"] == 2
    assert "陈" not in json.dumps(audits[0].detail, ensure_ascii=False)
    again = await purge(store, settings=settings)
    assert again.total == 0  # idempotent: nothing left to do, and no audit row for an empty pass
    assert len(await _rows(store, AuditEntry, AuditEntry.action == "retention_purge")) == 1

    clock.advance(60 * DAY)  # T0 + 100 d: sent notifications (90) go; the T0 + 40 d recordings (30) too
    r = await purge(store, settings=settings)
    assert r.counts["outbox"] == 3  # two family SMS and one e-mail
    assert await store.list_outbox() == []
    assert r.counts["recordings"] == 2 and not new_wav.exists() and not fresh_stray.exists()

    clock.advance(100 * DAY)  # T0 + 200 d: transcripts, fraud flags, ledger and sign-ins (180) go
    r = await purge(store, settings=settings)
    assert r.counts["transcript_turns"] == 2 and r.counts["fraud_flags"] == 1  # the T0 call's turns
    assert r.counts["ledger"] == 1 and r.counts["login_attempts"] == 1
    assert await store.list_turns("old-call") == [] and len(await store.list_turns("new-call")) == 2
    assert await _rows(store, LedgerEntry) == [] and await _rows(store, FraudFlagRow) == []

    clock.advance(200 * DAY)  # T0 + 400 d: call records (365) go
    r = await purge(store, settings=settings)
    assert r.counts["calls"] == 2 and r.counts["transcript_turns"] == 2  # T0's two calls; T0 + 40 d's turns
    assert [c.call_id for c in await store.list_calls()] == ["new-call"]  # 360 days old: kept until 365
    # business and safety records stay
    assert (await store.get_order(order.order_id)).details == {"address": "建设三路18号"}
    assert (await store.get_alert(alert.alert_id)).kind == "sos"
    assert (await store.get_elder(elder.elder_id)).name == "陈桂英"


async def test_zero_days_keeps_a_kind_forever(store, settings):
    elder = await make_family(store)
    wav = await _call(store, settings, "c1", elder_id=elder.elder_id)
    store._clock.advance(5000 * DAY)
    keep_all = PrivacySettings(**{f: 0 for f in PrivacySettings.__dataclass_fields__ if f.endswith("_days")})
    from dataclasses import replace

    report = await purge(store, settings=replace(settings, privacy=keep_all))
    assert report.total == 0
    assert wav.exists() and (await store.list_turns("c1"))[0].text == RAW


async def test_a_deleted_call_takes_its_recording_even_when_recordings_are_kept(store, settings):
    from dataclasses import replace

    elder = await make_family(store)
    wav = await _call(store, settings, "c1", elder_id=elder.elder_id)
    settings = replace(settings, privacy=PrivacySettings(recordings_retention_days=0, call_record_retention_days=10))
    store._clock.advance(5 * DAY)
    assert (await purge(store, settings=settings)).counts["calls"] == 0 and wav.exists()
    store._clock.advance(6 * DAY)
    r = await purge(store, settings=settings)
    assert r.counts["calls"] == 1 and r.counts["recordings"] == 1 and not wav.exists()


async def test_retention_job_retries_after_a_failure_then_purges(tmp_path, settings):
    broken = create_engine_for(StoreSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'no-tables.db'}"))
    sleeps: list[float] = []
    privacy = PrivacySettings(purge_interval_s=3600, purge_retry_s=60)

    async def fake_sleep(s: float) -> None:
        sleeps.append(s)
        if len(sleeps) >= 2:
            job.stop()

    job = RetentionJob(store=PlatformStore(engine=broken, clock=FakeClock()), privacy=privacy,
                       recordings_dir=recordings_dir(settings), sleep=fake_sleep)
    await asyncio.wait_for(job.run(), timeout=10)
    await broken.dispose()
    assert job.failures == 2 and job.last is not None and job.last.error == "store_failed"
    assert sleeps == [60, 60]  # retried after purge_retry_s, not the hour

    engine = create_engine_for(settings)
    try:
        store = PlatformStore(engine=engine, clock=FakeClock())
        elder = await make_family(store)
        wav = await _call(store, settings, "c1", elder_id=elder.elder_id)
        store._clock.advance(31 * DAY)
        sleeps.clear()
        job = RetentionJob(store=store, privacy=privacy, recordings_dir=recordings_dir(settings), sleep=fake_sleep)
        await asyncio.wait_for(job.run(), timeout=10)
        assert job.failures == 0 and sleeps == [3600, 3600]
        assert not wav.exists()
    finally:
        await engine.dispose()


async def test_serve_runs_the_retention_job(tmp_path, aiohttp_client):
    """The platform app (what ``assistant serve`` mounts) owns the job: an old recording disappears without
    anyone running ``assistant db purge``; stopping the app stops the job."""
    from assistant.platform.api import create_app
    from tests.platform_data import api_settings, eventually

    db = tmp_path / "var" / "serve.db"
    url = f"sqlite+aiosqlite:///{db}"
    upgrade_heads(url)
    settings = api_settings(tmp_path, url)
    clock = FakeClock(T0)
    engine = create_engine_for(settings)
    try:
        store = PlatformStore(engine=engine, clock=clock)
        elder = await make_family(store)
        wav = await _call(store, settings, "c-old", elder_id=elder.elder_id)
    finally:
        await engine.dispose()
    clock.advance(45 * DAY)
    app = create_app(settings, clock=clock)
    client = await aiohttp_client(app)
    job = client.app[SERVICES_KEY].retention
    await eventually(lambda: job.rounds >= 1, timeout_s=10)
    assert not wav.exists()
    assert job.rounds >= 1 and job.last is not None and job.last.counts["recordings"] == 1
    health = await (await client.get("/health")).json()
    assert health["store"]["retention"]["rounds"] >= 1 and health["store"]["retention"]["last_error"] is None
    await client.close()
    assert job._stopping.is_set()


def test_cli_purge_dry_run_then_purge(tmp_path, monkeypatch, capsys):
    from assistant.cli import main

    var = tmp_path / "var"
    url = f"sqlite+aiosqlite:///{var / 'cli.db'}"
    upgrade_heads(url)
    monkeypatch.setenv("ASSISTANT_VAR_DIR", str(var))
    monkeypatch.setenv("ASSISTANT_PRIVACY_RECORDINGS_RETENTION_DAYS", "1")
    settings = load_settings(store={"database_url": url})

    async def seed() -> Path:
        engine = create_engine_for(settings)
        try:
            store = PlatformStore(engine=engine, clock=lambda: dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
            elder = await make_family(store)
            return await _call(store, settings, "cli-call", elder_id=elder.elder_id)
        finally:
            await engine.dispose()

    wav = asyncio.run(seed())
    assert main(["db", "--database-url", url, "purge", "--dry-run"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] is True and out["counts"]["recordings"] == 1 and wav.exists()
    assert main(["db", "--database-url", url, "purge"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["recordings"] == 1 and not wav.exists()


def make_tracker(settings, events: list[tuple[str, float, str]]) -> Path:
    """A Rasa SQL tracker store (its ``events`` table) at var/rasa/tracker.db."""
    import sqlite3

    path = settings.paths.var_dir / "rasa" / "tracker.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, sender_id VARCHAR(255) NOT NULL, type_name VARCHAR(255)"
                 " NOT NULL, timestamp FLOAT, intent_name VARCHAR(255), action_name VARCHAR(255), data TEXT)")
    for sender, ts, text in events:
        conn.execute("INSERT INTO events (sender_id, type_name, timestamp, data) VALUES (?, 'user', ?, ?)",
                     (sender, ts, json.dumps({"text": text, "metadata": {"caller_number": "07503201001"}})))
    conn.commit()
    conn.close()
    return path


def tracker_senders(path: Path) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT sender_id FROM events ORDER BY id")]
    finally:
        conn.close()


async def test_rasa_tracker_events_go_with_the_raw_text(store, settings):
    """Rasa's tracker store keeps every user message with its metadata (caller number, elder id): purged
    after ``raw_transcript_retention_days`` like the raw transcript."""
    old, new = store.now() - dt.timedelta(days=31), store.now() - dt.timedelta(days=29)
    path = make_tracker(settings, [("call-old", old.timestamp(), RAW), ("call-new", new.timestamp(), RAW)])
    dry = await purge(store, settings=settings, dry_run=True)
    assert dry.counts["dialogue_events"] == 1 and tracker_senders(path) == ["call-old", "call-new"]
    report = await purge(store, settings=settings)
    assert report.counts["dialogue_events"] == 1
    assert tracker_senders(path) == ["call-new"]
