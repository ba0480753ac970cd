"""One elder's whole record (issue #15, data protection): export in an open format (JSON + recordings, folder
or zip, 0600/0700, audited) and erasure on request (personal data gone, anonymised order statistics kept,
recordings removed, audited without personal data; other elders untouched)."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from assistant.errors import StoreError
from assistant.platform.db import create_engine_for
from assistant.platform.elder_data import ERASED_NAME, collect_elder_record, delete_elder, export_elder
from assistant.platform.migrate import upgrade_heads
from assistant.platform.models_console import AuditEntry, ConsoleNote, ConsoleUser, ConsoleUserElder
from assistant.platform.models_fraud import FraudFlagRow, LedgerEntry
from assistant.platform.retention import recordings_dir
from assistant.platform.store import CallUpdate, NewContact, PlatformStore
from assistant.settings import load_settings
from tests.platform_data import FakeClock, make_family

RAW = "我叫陈桂英，住在建设三路18号，验证码是483920"
REDACTED = "我叫[姓名]，住在[地址]，验证码是[号码]"
ADDRESS = "江门市蓬江区白沙街道建设三路18号502"
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(64))
# every personal value stored about elder 1: none may survive the erasure
PERSONAL = ("陈桂英", "建设三路", "07503201001", "13800000101", "陈志强", "13900000101", "陈丽", "13900000102",
            "chenli@example.cn", "荔枝开花", "483920", "[姓名]", "请把煤气放在门口", "人民医院", "老人说头晕")


pytest_plugins = ["tests.fixtures_pg"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request, tmp_path, monkeypatch):
    var = tmp_path / "var"
    monkeypatch.setenv("ASSISTANT_VAR_DIR", str(var))
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{var / 'p.db'}"
    else:
        url = request.getfixturevalue("pg_fresh_url")
        var.mkdir(parents=True, exist_ok=True)
    upgrade_heads(url)
    return load_settings(store={"database_url": url})


@pytest.fixture
async def store(settings):
    engine = create_engine_for(settings)
    try:
        yield PlatformStore(engine=engine, clock=FakeClock())
    finally:
        await engine.dispose()


async def _seed(store: PlatformStore, settings) -> dict:
    """Elder 1 (陈桂英) with everything the platform stores; elder 2 (李伯) with a call and an order."""
    clock = store._clock
    e1 = await make_family(store)
    async with store.session("seed") as s:
        from assistant.platform.models import Elder, ElderPhone

        elder = await s.get(Elder, e1.elder_id)
        elder.address = ADDRESS
        s.add(ElderPhone(elder_id=e1.elder_id, number="13800000101", kind="screen"))
        await s.commit()
    e2 = await store.create_elder(name="李伯", district="台山", dialect="yue", address="台山市台城街道环市路33号",
                                  phones=["0750-5502002"], safe_phrase="黄鳝饭",
                                  contacts=[NewContact(name="李美华", relation="侄女", phone="13900000201")])
    rec = recordings_dir(settings)
    rec.mkdir(parents=True, exist_ok=True)
    (rec / "call-1.wav").write_bytes(WAV)
    (rec / "call-2.wav").write_bytes(WAV[::-1])
    await store.upsert_call("call-1", CallUpdate(elder_id=e1.elder_id, caller_number="0750-3201001",
                                                 audio_path=str(rec / "call-1.wav")))
    await store.add_turn(call_id="call-1", turn=1, speaker="elder", text=RAW, text_redacted=REDACTED)
    await store.add_turn(call_id="call-1", turn=2, speaker="bot", text="好的，马上安排。", text_redacted="好的，马上安排。")
    # a call from the elder's number that was not linked to the elder (e.g. an unidentified first call)
    await store.upsert_call("call-1b", CallUpdate(caller_number="0750-3201001"))
    await store.add_turn(call_id="call-1b", turn=1, speaker="elder", text="老人说头晕", text_redacted="老人说头晕")
    await store.upsert_call("call-2", CallUpdate(elder_id=e2.elder_id, caller_number="0750-5502002",
                                                 audio_path=str(rec / "call-2.wav")))
    await store.add_turn(call_id="call-2", turn=1, speaker="elder", text="我要订餐", text_redacted="我要订餐")
    o1 = (await store.create_order(elder_id=e1.elder_id, type="gas", idempotency_key="call-1:gas", call_id="call-1",
                                   details={"address": ADDRESS, "note": "请把煤气放在门口"})).order
    o1b = (await store.create_order(elder_id=e1.elder_id, type="appointment", idempotency_key="call-1:appt",
                                    details={"hospital": "江门市人民医院", "when": "2026-12-01T09:30+08:00"})).order
    await store.update_order_status(o1.order_id, "done")
    o2 = (await store.create_order(elder_id=e2.elder_id, type="meal", idempotency_key="call-2:meal",
                                   details={"address": "台山市台城街道环市路33号"})).order
    a1 = await store.raise_alert(elder_id=e1.elder_id, call_id="call-1", kind="sos",
                                  detail={"transcript": "老人说头晕", "dialect": "yue"})
    a2 = await store.raise_alert(elder_id=e2.elder_id, call_id="call-2", kind="sos", detail={"transcript": "救命"})
    contact_ids = [c.contact_id for c in e1.contacts]
    async with store.session("seed console") as s:
        user = ConsoleUser(username="chen-son", display_name="", role="family", password_hash="x")
        s.add(user)
        await s.flush()
        s.add(ConsoleUserElder(user_id=user.id, elder_id=e1.elder_id, contact_id=contact_ids[0]))
        s.add(ConsoleNote(alert_id=a1.alert_id, author="op1", text="老人说头晕，已联系陈志强"))
        s.add(LedgerEntry(elder_id=e1.elder_id, number="07503201001", purpose="care_call", code="5521", status="answered",
                          created_at=clock() - dt.timedelta(hours=2), valid_until=clock() - dt.timedelta(hours=1)))
        s.add(LedgerEntry(elder_id=e1.elder_id, number="07503201001", purpose="care_call", code="7788", status="pending",
                          created_at=clock(), valid_until=clock() + dt.timedelta(minutes=30)))
        s.add(FraudFlagRow(call_id="call-1", elder_id=e1.elder_id, risk=0.8, scam_type="impersonation",
                           evidence={"cues": ["转账"]}, transcript_redacted=REDACTED))
        from assistant.platform.models_fraud import ElderPin

        s.add(ElderPin(elder_id=e1.elder_id, pin_hash="$argon2id$v=19$secret-hash-e1", failed_count=1))
        s.add(ElderPin(elder_id=e2.elder_id, pin_hash="$argon2id$v=19$secret-hash-e2", failed_count=0))
        for action, ttype, tid, detail in (
            ("set_safe_phrase", "elder", e1.elder_id, {}),
            ("add_contact", "contact", contact_ids[1], {"elder_id": e1.elder_id}),
            ("false_alarm", "alert", a1.alert_id, {"reason": "陈桂英只是测试按钮"}),
            ("play_audio", "call", "call-1", {}),
            ("set_safe_phrase", "elder", e2.elder_id, {}),
        ):
            s.add(AuditEntry(username="op1", role="operator", action=action, target_type=ttype, target_id=str(tid),
                             detail=detail, ip="10.0.0.9"))
        await s.commit()
    return {"e1": e1, "e2": e2, "o1": o1, "o1b": o1b, "o2": o2, "a1": a1, "a2": a2, "rec": rec}


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


async def test_export_writes_the_whole_record_privately_and_audits(store, settings, tmp_path):
    w = await _seed(store, settings)
    e1 = w["e1"].elder_id
    out = tmp_path / "exports" / "elder-1"
    result = await export_elder(store, elder_id=e1, out=out, recordings_dir=w["rec"], actor="cli:tester")
    doc_path = out / f"elder-{e1}.json"
    assert _mode(out) == 0o700 and _mode(doc_path) == 0o600
    doc = json.loads(doc_path.read_text(encoding="utf-8"))
    assert doc["format"] == "elder-assistant/elder-record" and doc["elder_id"] == e1
    assert doc["profile"]["name"] == "陈桂英" and doc["profile"]["address"] == ADDRESS
    assert doc["profile"]["safe_phrase_set"] is True
    assert "荔枝开花" not in doc_path.read_text(encoding="utf-8")  # the secret is not exported
    assert {p["number"] for p in doc["phones"]} == {"07503201001", "13800000101"}
    assert [c["name"] for c in doc["family_contacts"]] == ["陈志强", "陈丽"]
    assert len(doc["care_schedules"]) == 1 and doc["console_users"][0]["username"] == "chen-son"
    assert {o["order_id"] for o in doc["orders"]} == {w["o1"].order_id, w["o1b"].order_id}
    assert any(o["details"].get("note") == "请把煤气放在门口" for o in doc["orders"])
    calls = {c["call_id"]: c for c in doc["calls"]}
    assert set(calls) == {"call-1", "call-1b"}  # call-1b matched by the elder's number
    assert calls["call-1"]["turns"][0]["text"] == RAW and calls["call-1"]["turns"][0]["text_redacted"] == REDACTED
    assert calls["call-1"]["recording"] == "recordings/call-1.wav"
    assert (out / "recordings" / "call-1.wav").read_bytes() == WAV and _mode(out / "recordings" / "call-1.wav") == 0o600
    assert not (out / "recordings" / "call-2.wav").exists()  # another elder's recording
    assert [a["alert_id"] for a in doc["alerts"]] == [w["a1"].alert_id]
    assert doc["alerts"][0]["notes"][0]["text"].startswith("老人说头晕")
    assert {o["recipient"] for o in doc["outbox"]} == {"13900000101", "13900000102", "chenli@example.cn"}
    assert sorted(e["code"] for e in doc["ledger"]) == ["(still valid: not exported)", "5521"]
    assert doc["fraud_flags"][0]["scam_type"] == "impersonation"
    actions = sorted(a["action"] for a in doc["audit"])
    assert actions == ["add_contact", "false_alarm", "play_audio", "set_safe_phrase"]  # not elder 2's row
    assert "李伯" not in doc_path.read_text(encoding="utf-8")
    # another area's table with an elder_id (the keypad PIN): exported without its hash
    assert doc["other"]["elder_pins"] == [{"elder_id": e1, "failed_count": 1, "locked_until": None,
                                           "updated_at": doc["other"]["elder_pins"][0]["updated_at"]}]
    assert "secret-hash" not in doc_path.read_text(encoding="utf-8")
    assert result.recordings == 1 and result.counts["orders"] == 2
    async with store.session("t") as s:
        rows = (await s.scalars(select(AuditEntry).where(AuditEntry.action == "export_elder"))).all()
    assert len(rows) == 1 and rows[0].username == "cli:tester" and rows[0].target_id == str(e1)
    assert "陈" not in json.dumps(rows[0].detail, ensure_ascii=False)


async def test_export_as_zip_and_never_over_an_existing_path(store, settings, tmp_path):
    w = await _seed(store, settings)
    e1 = w["e1"].elder_id
    out = tmp_path / "e1.zip"
    await export_elder(store, elder_id=e1, out=out, recordings_dir=w["rec"], actor="cli:tester")
    assert _mode(out) == 0o600
    with zipfile.ZipFile(out) as z:
        assert sorted(z.namelist()) == [f"elder-{e1}.json", "recordings/call-1.wav"]
        doc = json.loads(z.read(f"elder-{e1}.json"))
        assert z.read("recordings/call-1.wav") == WAV
    assert doc["profile"]["name"] == "陈桂英"
    with pytest.raises(StoreError) as exc:
        await export_elder(store, elder_id=e1, out=out, recordings_dir=w["rec"], actor="cli:tester")
    assert exc.value.code == "exists"
    with pytest.raises(StoreError) as exc:
        await export_elder(store, elder_id=9999, out=tmp_path / "nobody", recordings_dir=w["rec"], actor="cli:tester")
    assert exc.value.code == "not_found"


async def test_delete_elder_erases_personal_data_and_leaves_other_elders(store, settings, tmp_path):
    w = await _seed(store, settings)
    e1, e2 = w["e1"].elder_id, w["e2"].elder_id
    before_e2 = await collect_elder_record(store, e2)
    before = json.dumps(await collect_elder_record(store, e1), ensure_ascii=False)
    assert [p for p in PERSONAL if p not in before] == ["荔枝开花"]  # all there but the safe phrase

    result = await delete_elder(store, elder_id=e1, actor="cli:dpo", reason="data_subject_request",
                                ticket="DSR-2026-0042", recordings_dir=w["rec"])
    assert result.counts["recordings"] == 1 and not (w["rec"] / "call-1.wav").exists()
    assert result.counts["calls"] == 2 and result.counts["family_contacts"] == 2

    after = await collect_elder_record(store, e1)
    text = json.dumps(after, ensure_ascii=False)
    leaked = [p for p in PERSONAL if p in text]
    assert leaked == []
    assert after["profile"]["name"] == ERASED_NAME and after["profile"]["address"] == ""
    assert after["profile"]["safe_phrase_set"] is False and after["profile"]["active"] is False
    assert after["phones"] == [] and after["family_contacts"] == [] and after["calls"] == []
    assert after["outbox"] == [] and after["ledger"] == [] and after["fraud_flags"] == []
    assert after["console_users"] == [] and after["care_schedules"] == []
    assert after["other"]["elder_pins"] == [] and result.counts["elder_pins"] == 1
    assert await store.list_turns("call-1") == []
    # anonymised statistics kept: the orders (type, status, times) and the alert (kind, status)
    orders = {o["order_id"]: o for o in after["orders"]}
    assert set(orders) == {w["o1"].order_id, w["o1b"].order_id}
    assert orders[w["o1"].order_id]["status"] == "done" and orders[w["o1"].order_id]["type"] == "gas"
    assert all(o["details"] == {} and o["call_id"] is None for o in orders.values())
    assert after["alerts"][0]["kind"] == "sos" and after["alerts"][0]["detail"] == {}
    assert after["alerts"][0]["notes"] == []
    # the erasure is audited: who, when, why — nothing personal
    entry = next(a for a in after["audit"] if a["action"] == "delete_elder")
    assert entry["username"] == "cli:dpo" and entry["detail"]["reason"] == "data_subject_request"
    assert entry["detail"]["ticket"] == "DSR-2026-0042"
    assert all(a["detail"] == {} for a in after["audit"] if a["action"] != "delete_elder")

    # elder 2 untouched: profile, contacts, call, turns, recording, order, alert
    after_e2 = await collect_elder_record(store, e2)
    for key in ("profile", "phones", "family_contacts", "orders", "calls", "alerts", "outbox", "audit", "other"):
        assert after_e2[key] == before_e2[key], key
    assert (w["rec"] / "call-2.wav").read_bytes() == WAV[::-1]
    assert (await store.list_turns("call-2"))[0].text == "我要订餐"
    # the phone number is free again for a new elder
    again = await store.create_elder(name="新用户", district="蓬江", phones=["0750-3201001"])
    assert (await store.elder_by_phone("0750-3201001")).elder_id == again.elder_id


async def test_delete_elder_refuses_bad_reason_and_names_in_ticket(store, settings):
    w = await _seed(store, settings)
    for kwargs in ({"reason": "because"}, {"reason": "other", "ticket": "陈桂英的请求"}):
        with pytest.raises(StoreError) as exc:
            await delete_elder(store, elder_id=w["e1"].elder_id, actor="cli:dpo", recordings_dir=w["rec"], **kwargs)
        assert exc.value.code == "invalid"
    assert (await store.get_elder(w["e1"].elder_id)).name == "陈桂英"  # nothing happened


def test_cli_export_then_delete(settings, tmp_path, capsys):
    import asyncio

    from assistant.cli import main

    async def seed() -> int:
        engine = create_engine_for(settings)
        try:
            return (await _seed(PlatformStore(engine=engine, clock=FakeClock()), settings))["e1"].elder_id
        finally:
            await engine.dispose()

    e1 = asyncio.run(seed())
    url = settings.store.database_url
    out = tmp_path / "x.zip"
    assert main(["db", "--database-url", url, "export-elder", "--elder-id", str(e1), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["recordings"] == 1 and out.exists()
    # no --confirm: refused, nothing erased
    assert main(["db", "--database-url", url, "delete-elder", "--elder-id", str(e1), "--reason", "other"]) == 2
    assert "--confirm" in capsys.readouterr().err
    assert (recordings_dir(settings) / "call-1.wav").exists()
    assert main(["db", "--database-url", url, "delete-elder", "--elder-id", str(e1), "--confirm",
                 "--reason", "family_request", "--by", "op-wang"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["recordings"] == 1
    assert not (recordings_dir(settings) / "call-1.wav").exists()
    out2 = tmp_path / "after"
    assert main(["db", "--database-url", url, "export-elder", "--elder-id", str(e1), "--out", str(out2)]) == 0
    capsys.readouterr()
    text = (out2 / f"elder-{e1}.json").read_text(encoding="utf-8")
    assert [p for p in PERSONAL if p in text] == []
    assert not (out2 / "recordings").exists()
    assert os.listdir(out2) == [f"elder-{e1}.json"]


async def test_delete_elder_removes_their_rasa_conversations(store, settings):
    from assistant.platform.retention import tracker_store_url
    from tests.unit.test_platform_retention import make_tracker, tracker_senders

    w = await _seed(store, settings)
    now = store.now().timestamp()
    path = make_tracker(settings, [("call-1", now, RAW), ("call-1b", now, "老人说头晕"), ("call-2", now, "我要订餐")])
    result = await delete_elder(store, elder_id=w["e1"].elder_id, actor="cli:dpo", reason="deceased",
                                recordings_dir=w["rec"], tracker_url=tracker_store_url(settings))
    assert result.counts["dialogue_events"] == 2
    assert tracker_senders(path) == ["call-2"]


def test_restoring_an_older_backup_does_not_bring_an_erased_elder_back(settings, tmp_path, capsys):
    import asyncio

    from assistant.cli import main
    from assistant.platform.elder_data import erasure_journal

    async def seed() -> tuple[int, int]:
        engine = create_engine_for(settings)
        try:
            w = await _seed(PlatformStore(engine=engine, clock=FakeClock()), settings)
            return w["e1"].elder_id, w["e2"].elder_id
        finally:
            await engine.dispose()

    e1, e2 = asyncio.run(seed())
    url = settings.store.database_url
    backup_file = tmp_path / "before-erasure.sqlite"
    assert main(["db", "--database-url", url, "backup", "--out", str(backup_file)]) == 0
    assert main(["db", "--database-url", url, "delete-elder", "--elder-id", str(e1), "--confirm",
                 "--reason", "data_subject_request", "--ticket", "DSR-7"]) == 0
    journal = erasure_journal(settings)
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    entry = json.loads(journal.read_text(encoding="utf-8").splitlines()[-1])
    assert entry["elder_id"] == e1 and entry["reason"] == "data_subject_request" and entry["ticket"] == "DSR-7"
    assert [p for p in PERSONAL if p in journal.read_text(encoding="utf-8")] == []
    capsys.readouterr()

    assert main(["db", "--database-url", url, "restore", "--from", str(backup_file)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["erasures_reapplied"] == [e1]
    assert main(["db", "--database-url", url, "export-elder", "--elder-id", str(e1), "--out", str(tmp_path / "x")]) == 0
    text = (tmp_path / "x" / f"elder-{e1}.json").read_text(encoding="utf-8")
    assert [p for p in PERSONAL if p in text] == []
    # the other elder came back from the backup whole; the same old backup restored again is erased again
    assert main(["db", "--database-url", url, "export-elder", "--elder-id", str(e2), "--out", str(tmp_path / "y")]) == 0
    assert "李伯" in (tmp_path / "y" / f"elder-{e2}.json").read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["db", "--database-url", url, "restore", "--from", str(backup_file)]) == 0
    assert json.loads(capsys.readouterr().out)["erasures_reapplied"] == [e1]
