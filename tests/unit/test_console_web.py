"""Console and family portal over HTTP: roles, CSRF, redaction, audit, actions, live events."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from assistant.console import users
from assistant.console.app import HUB_KEY, create_app
from assistant.console.seed import DemoIds, seed_demo
from assistant.platform.models import Alert, Elder, FamilyContact, Outbox, WorkOrder
from assistant.platform.models_console import AuditEntry, ConsoleNote
from assistant.services import SERVICES_KEY
from tests.unit.console_helpers import PASSWORD, csrf_from, login, write_wav


@dataclass
class Env:
    client: TestClient
    app: object
    ids: DemoIds
    settings: object

    def db(self):
        return self.app[SERVICES_KEY].sessions()

    async def as_user(self, name: str, area: str = "console") -> str:
        """Sign in and return the page's CSRF token."""
        self.client.session.cookie_jar.clear()
        out = await login(self.client, name, area=area)
        assert out.status == 303, out.text
        page = await self.client.get(out.location)
        assert page.status == 200
        return csrf_from(await page.text())

    async def audit(self, action: str) -> list[AuditEntry]:
        async with self.db() as db:
            return list((await db.execute(select(AuditEntry).where(AuditEntry.action == action))).scalars())


@pytest.fixture
async def env(aiohttp_client, settings) -> Env:
    app = create_app(settings)
    client = await aiohttp_client(app)
    wav = write_wav(settings.paths.var_dir / "calls" / "demo.wav")
    async with app[SERVICES_KEY].sessions() as db:
        ids = await seed_demo(db, audio_path=wav)
        for name, role in (("op", "operator"), ("sup", "supervisor")):
            await users.create_user(db, username=name, role=role, password=PASSWORD)
        await users.create_user(db, username="fam_a", role="family", password=PASSWORD, elder_ids=(ids.elder_a,),
                               contact_ids={ids.elder_a: ids.contact_a})
        await users.create_user(db, username="fam_b", role="family", password=PASSWORD, elder_ids=(ids.elder_b,))
    return Env(client=client, app=app, ids=ids, settings=settings)


async def test_signed_out_is_sent_to_login(env):
    for path in ("/console/", f"/console/alerts/{env.ids.fraud_alert}", "/console/orders", "/family/"):
        resp = await env.client.get(path, allow_redirects=False)
        assert resp.status == 303 and "/login?next=" in resp.headers["Location"], path
    resp = await env.client.get(f"/console/calls/{env.ids.fraud_call}/audio", allow_redirects=False)
    assert resp.status == 303  # no audio without a session


async def test_queue_most_urgent_first(env):
    await env.as_user("op")
    html = await (await env.client.get("/console/")).text()
    sos = html.index(f"/console/alerts/{env.ids.sos_alert}")
    fraud = html.index(f"/console/alerts/{env.ids.fraud_alert}")
    assert sos < fraud  # critical before urgent
    assert "冒充公检法" in html and "0.93" in html
    frag = await (await env.client.get("/console/?fragment=1&kind=fraud")).text()
    assert frag.startswith("<table") and f"/console/alerts/{env.ids.sos_alert}" not in frag


async def test_transcript_is_redacted_highlighted_and_view_is_audited(env):
    await env.as_user("op")
    resp = await env.client.get(f"/console/alerts/{env.ids.fraud_alert}")
    html = await resp.text()
    assert resp.status == 200
    assert "62220212345678" not in html and "13800138000" not in html
    assert "＊＊＊" in html
    assert '<mark class="evidence">安全账户</mark>' in html
    assert 'class="conf low">55%' in html  # low ASR confidence flagged
    assert f"/console/calls/{env.ids.fraud_call}/audio" in html
    assert "查看原文" not in html  # operators cannot reveal
    views = await env.audit("view_transcript")
    assert [(v.username, v.target_id) for v in views] == [("op", str(env.ids.fraud_alert))]


async def test_turn_without_stored_redaction_is_still_redacted(env):
    async with env.db() as db:
        from assistant.platform.models import CallTurn

        turn = (await db.execute(select(CallTurn).where(CallTurn.call_id == "call-demo-sos"))).scalars().first()
        turn.text = "我的身份证是440701194501011234，快来"
        turn.text_redacted = None
        await db.commit()
    await env.as_user("op")
    html = await (await env.client.get(f"/console/alerts/{env.ids.sos_alert}")).text()
    assert "440701194501011234" not in html and "快来" in html


async def test_reveal_only_for_supervisor_and_logged(env):
    token = await env.as_user("op")
    resp = await env.client.post(f"/console/alerts/{env.ids.fraud_alert}/reveal", data={"_csrf": token})
    assert resp.status == 403
    assert "62220212345678" not in await resp.text()
    token = await env.as_user("sup")
    page = await (await env.client.get(f"/console/alerts/{env.ids.fraud_alert}")).text()
    assert "查看原文" in page
    resp = await env.client.post(f"/console/alerts/{env.ids.fraud_alert}/reveal", data={"_csrf": token})
    html = await resp.text()
    assert resp.status == 200 and "62220212345678" in html and "未脱敏原文" in html
    reveals = await env.audit("reveal_transcript")
    assert [(r.username, r.role) for r in reveals] == [("sup", "supervisor")]


async def test_forged_form_without_csrf_is_refused(env):
    token = await env.as_user("op")
    for data in ({}, {"_csrf": "forged"}, {"_csrf": token[:-1] + ("A" if token[-1] != "A" else "B")}):
        resp = await env.client.post(f"/console/alerts/{env.ids.fraud_alert}/acknowledge", data=data,
                                     allow_redirects=False)
        assert resp.status == 403
    async with env.db() as db:
        assert (await db.get(Alert, env.ids.fraud_alert)).status == "open"
    assert len(await env.audit("csrf_refused")) == 3
    resp = await env.client.post(f"/console/alerts/{env.ids.fraud_alert}/acknowledge",
                                 headers={"X-CSRF-Token": token}, allow_redirects=False)
    assert resp.status == 303


async def test_alert_actions_change_state_and_are_audited(env):
    token = await env.as_user("op")
    a = env.ids.fraud_alert
    r = await env.client.post(f"/console/alerts/{a}/acknowledge", data={"_csrf": token}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].endswith("done=acknowledge")
    await env.client.post(f"/console/alerts/{a}/note", data={"_csrf": token, "text": "已致电女儿核实"})
    await env.client.post(f"/console/alerts/{a}/callback", data={"_csrf": token})
    await env.client.post(f"/console/alerts/{a}/false-alarm", data={"_csrf": token, "reason": "女儿确认是银行真实来电"})
    async with env.db() as db:
        alert = await db.get(Alert, a)
        assert alert.status == "false_alarm" and alert.acknowledged_by == "op" and alert.resolved_at
        notes = (await db.execute(select(ConsoleNote))).scalars().all()
        assert [n.text for n in notes] == ["已致电女儿核实"]
        outbox = (await db.execute(select(Outbox).where(Outbox.subject == "callback_request"))).scalars().all()
        assert len(outbox) == 1 and json.loads(outbox[0].body)["number"] == "07503331234"
    actions = [e.action for e in await env.audit("acknowledge")] + [e.action for e in await env.audit("false_alarm")]
    assert actions == ["acknowledge", "false_alarm"]
    lines = (env.settings.paths.var_dir / "fraud_feedback.jsonl").read_text().splitlines()
    record = json.loads(lines[-1])
    assert record["alert_id"] == a and record["label"] == "legit" and record["scam_type"] == "冒充公检法"
    assert "62220212345678" not in lines[-1]  # feedback carries the redacted transcript only
    html = await (await env.client.get(f"/console/alerts/{a}")).text()
    assert "已致电女儿核实" in html and "标记误报（op）" in html  # timeline shows the actions
    again = await env.client.post(f"/console/alerts/{a}/false-alarm", data={"_csrf": token})
    assert again.status == 409


async def test_callback_is_registered_in_the_call_ledger(env):
    from assistant.platform.models_fraud import LedgerEntry

    token = await env.as_user("op")
    r = await env.client.post(f"/console/alerts/{env.ids.fraud_alert}/callback", data={"_csrf": token})
    html = await r.text()
    async with env.db() as db:
        entry = (await db.execute(select(LedgerEntry))).scalar_one()
        sms = (await db.execute(select(Outbox).where(Outbox.channel == "sms"))).scalars().all()
    assert entry.number == "07503331234" and entry.elder_id == env.ids.elder_a
    assert f'<strong class="code">{entry.code}</strong>' in html  # the operator tells the elder this code
    assert any(entry.code in m.body for m in sms)  # and the family got it too
    audit = await env.audit("callback")
    assert audit[0].detail["ledger_id"] == entry.id and entry.code not in json.dumps(audit[0].detail)


async def test_dispatch_moves_the_alerts_order(env):
    token = await env.as_user("op")
    async with env.db() as db:
        sla = (await db.execute(select(Alert).where(Alert.kind == "sla_answer"))).scalar_one()
        order = await db.get(WorkOrder, sla.order_id)
        order.status = "placed"
        await db.commit()
    await env.client.post(f"/console/alerts/{sla.id}/dispatch", data={"_csrf": token})
    async with env.db() as db:
        assert (await db.get(WorkOrder, sla.order_id)).status == "dispatched"
    # an SOS without an order: a dispatch notice with the address goes to the outbox
    await env.client.post(f"/console/alerts/{env.ids.sos_alert}/dispatch", data={"_csrf": token})
    async with env.db() as db:
        box = (await db.execute(select(Outbox).where(Outbox.subject == "dispatch"))).scalar_one()
        assert "新会区会城中心路" in json.loads(box.body)["address"]


async def test_audio_served_with_auth_and_logged_once(env):
    await env.as_user("op")
    resp = await env.client.get(f"/console/calls/{env.ids.fraud_call}/audio")
    body = await resp.read()
    assert resp.status == 200 and body[:4] == b"RIFF" and body[8:12] == b"WAVE"
    ranged = await env.client.get(f"/console/calls/{env.ids.fraud_call}/audio", headers={"Range": "bytes=1000-"})
    assert ranged.status == 206
    assert len(await env.audit("play_audio")) == 1
    missing = await env.client.get("/console/calls/call-demo-sos/audio")
    assert missing.status == 404


async def test_order_board_and_status_machine(env):
    token = await env.as_user("op")
    html = await (await env.client.get("/console/orders")).text()
    assert f"#{env.ids.order_a} 煤气" in html and "data-deadline=" in html
    r = await env.client.post(f"/console/orders/{env.ids.order_a}/status", data={"_csrf": token, "status": "done"})
    assert r.status == 409  # placed cannot jump to done
    r = await env.client.post(f"/console/orders/{env.ids.order_a}/status", data={"_csrf": token, "status": "dispatched"},
                              allow_redirects=False)
    assert r.status == 303
    async with env.db() as db:
        o = await db.get(WorkOrder, env.ids.order_a)
        assert o.status == "dispatched" and o.dispatched_at is not None


async def test_care_dashboard_counts(env):
    await env.as_user("op")
    html = await (await env.client.get("/console/care")).text()
    assert "各区情况" in html and "<svg" in html
    assert "陈伯" in html and "已接听" in html


async def test_audit_page_supervisor_only(env):
    await env.as_user("op")
    assert (await env.client.get("/console/audit")).status == 403
    await env.as_user("sup")
    html = await (await env.client.get("/console/audit")).text()
    assert "login" in html


async def test_family_sees_only_own_parent(env):
    token = await env.as_user("fam_a", area="family")
    own = await env.client.get(f"/family/elders/{env.ids.elder_a}")
    assert own.status == 200 and "陈伯" in await own.text()
    other = await env.client.get(f"/family/elders/{env.ids.elder_b}")
    assert other.status == 403 and "李婆婆" not in await other.text()
    r = await env.client.post(f"/family/elders/{env.ids.elder_b}/safe-phrase", data={"_csrf": token, "phrase": "月亮"})
    assert r.status == 403
    async with env.db() as db:
        assert (await db.get(Elder, env.ids.elder_b)).safe_phrase is None
    # family users never reach the operator console or transcripts
    assert (await env.client.get("/console/")).status == 403
    assert (await env.client.get(f"/console/alerts/{env.ids.fraud_alert}")).status == 403
    assert (await env.client.get(f"/console/calls/{env.ids.fraud_call}/audio")).status == 403


async def test_family_orders_phrase_contacts_settings(env):
    token = await env.as_user("fam_a", area="family")
    base = f"/family/elders/{env.ids.elder_a}"
    form = {"_csrf": token, "type": "meal", "note": "午餐一份", "when": "", "idempotency_key": "k1"}
    r1 = await env.client.post(f"{base}/orders", data=form, allow_redirects=False)
    r2 = await env.client.post(f"{base}/orders", data=form, allow_redirects=False)  # double submit
    assert r1.status == r2.status == 303
    async with env.db() as db:
        mine = (await db.execute(select(WorkOrder).where(WorkOrder.placed_by == "family"))).scalars().all()
        assert len(mine) == 1 and mine[0].placed_by_contact_id == env.ids.contact_a
        oid = mine[0].id
    r = await env.client.post(f"{base}/orders/{oid}/cancel", data={"_csrf": token}, allow_redirects=False)
    assert r.status == 303
    await env.client.post(f"{base}/safe-phrase", data={"_csrf": token, "phrase": "荔枝树下"})
    await env.client.post(f"{base}/contacts", data={"_csrf": token, "name": "陈大明", "relation": "儿子",
                                                    "phone": "139-0000-1111", "priority": "2"})
    await env.client.post(f"{base}/settings", data={"_csrf": token, "dialect": "yue", "rate_wpm": "100",
                                                    "volume": "0.8", "text_size": "xlarge"})
    async with env.db() as db:
        assert (await db.get(WorkOrder, oid)).status == "cancelled"
        elder = await db.get(Elder, env.ids.elder_a)
        await db.refresh(elder, ["contacts"])
        assert elder.safe_phrase == "荔枝树下"
        assert (elder.tts_rate_wpm, elder.volume, elder.text_size) == (100, 0.8, "xlarge")
        assert "13900001111" in [c.phone for c in elder.contacts]
    html = await (await env.client.get(base)).text()
    assert "荔枝树下" not in html and "安全暗语（已设置）" in html
    phrase_audit = await env.audit("set_safe_phrase")
    assert len(phrase_audit) == 1 and "荔枝树下" not in json.dumps(phrase_audit[0].detail, ensure_ascii=False)
    # cancelling another family's order through one's own parent's URL is refused
    async with env.db() as db:
        other = (await db.execute(select(WorkOrder).where(WorkOrder.elder_id == env.ids.elder_b))).scalars().first()
    r = await env.client.post(f"{base}/orders/{other.id}/cancel", data={"_csrf": token})
    assert r.status == 404


async def test_family_without_can_act_cannot_order(env):
    async with env.db() as db:
        c = await db.get(FamilyContact, env.ids.contact_a)
        c.can_act = False
        await db.commit()
    token = await env.as_user("fam_a", area="family")
    r = await env.client.post(f"/family/elders/{env.ids.elder_a}/orders",
                              data={"_csrf": token, "type": "gas", "idempotency_key": "k2"})
    assert r.status == 403


async def test_security_headers(env):
    resp = await env.client.get("/console/login")
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    html = await resp.text()
    assert "<script>" not in html and "style=" not in html


async def test_live_events_stream_new_alerts(env):
    await env.as_user("op")
    resp = await env.client.get("/console/events", headers={"Accept": "text/event-stream"})
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    assert (await resp.content.readuntil(b"\n\n")).startswith(b"retry:")
    async with env.db() as db:  # written by "another process": picked up by the watcher
        new = Alert(elder_id=env.ids.elder_a, kind="sos", severity="critical", detail={})
        db.add(new)
        await db.commit()

    async def until_new() -> bytes:
        while True:  # (seed rows written after the watcher's first look may come first)
            chunk = await resp.content.readuntil(b"\n\n")
            if f'"id": {new.id},'.encode() in chunk:
                return chunk

    chunk = await asyncio.wait_for(until_new(), timeout=10)
    assert chunk.startswith(b"event: alert") and b'"kind": "sos"' in chunk
    resp.close()


async def test_family_events_only_about_own_parent(env):
    await env.as_user("fam_a", area="family")
    resp = await env.client.get("/family/events", headers={"Accept": "text/event-stream"})
    await resp.content.readuntil(b"\n\n")
    hub = env.app[HUB_KEY]
    hub.publish({"type": "order", "id": 1, "elder_id": env.ids.elder_b, "status": "placed"})
    hub.publish({"type": "order", "id": 2, "elder_id": env.ids.elder_a, "status": "placed"})
    chunk = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), timeout=5)
    assert b'"id": 2' in chunk
    resp.close()


async def test_fraud_guard_alert_detail_is_shown(env):
    """The shape ``FraudFlag.alert_detail()`` writes: risk, labels, platform claim, its own redacted transcript."""
    async with env.db() as db:
        alert = Alert(elder_id=env.ids.elder_a, call_id="call-not-stored", kind="fraud", severity="urgent", detail={
            "risk": 0.77, "scam_type": "冒充平安通", "evidence": ["确认码"], "evidence_labels": ["自称平台"],
            "platform_claim_without_ledger": True,
            "transcript": [{"speaker": "caller", "text": "我是平安通的，请告诉我确认码[号码]"}]})
        db.add(alert)
        await db.commit()
    await env.as_user("op")
    html = await (await env.client.get(f"/console/alerts/{alert.id}")).text()
    assert "0.77" in html and "自称平台" in html and "平台没有登记这通电话" in html
    assert '<mark class="evidence">确认码</mark>' in html and "没有通话文字记录" not in html


async def test_watcher_publishes_new_changed_and_closed_orders(env):
    from assistant.console.events import EventHub, watch_database

    hub = EventHub()
    sub = hub.subscribe(elder_ids=None)
    task = asyncio.create_task(watch_database(hub, env.app[SERVICES_KEY].sessions, interval_s=0.05))
    try:
        await asyncio.sleep(0.3)  # first look: existing rows are not news
        assert sub.queue.empty()
        async with env.db() as db:
            order = await db.get(WorkOrder, env.ids.order_a)
            order.status = "dispatched"
            await db.commit()
        event = await asyncio.wait_for(sub.queue.get(), timeout=5)
        assert (event["id"], event["status"]) == (env.ids.order_a, "dispatched")
        async with env.db() as db:
            order = await db.get(WorkOrder, env.ids.order_a)
            order.status = "cancelled"
            await db.commit()
        event = await asyncio.wait_for(sub.queue.get(), timeout=5)
        assert (event["id"], event["status"], event["elder_id"]) == (env.ids.order_a, "cancelled", env.ids.elder_a)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_handover_reasons_are_chinese_in_queue_and_alert(env):
    async with env.db() as db:
        alert = Alert(elder_id=env.ids.elder_a, kind="human", severity="urgent",
                      detail={"reason": "requested", "transcript": "我要找人"})
        db.add(alert)
        await db.commit()
    await env.as_user("op")
    queue = await (await env.client.get("/console/?kind=human")).text()
    assert "长者要求转人工" in queue and "requested" not in queue
    page = await (await env.client.get(f"/console/alerts/{alert.id}")).text()
    assert "<dt>原因</dt><dd>长者要求转人工</dd>" in page


async def test_view_only_family_member_cannot_change_phrase_or_contacts(env):
    """A family user without the right to act for the parent (no contact row with can_act) gets 403 for the
    safe phrase and for adding or deleting contacts; nothing changes; each refusal is audited."""
    async with env.db() as db:
        before = await db.get(Elder, env.ids.elder_b)
        await db.refresh(before, ["contacts"])
        phrase = before.safe_phrase
        contacts = sorted((c.id, c.phone) for c in before.contacts)
    token = await env.as_user("fam_b", area="family")
    base = f"/family/elders/{env.ids.elder_b}"
    page = await (await env.client.get(base)).text()
    assert f'action="{base}/safe-phrase"' not in page and f'action="{base}/contacts"' not in page
    assert "只能查看" in page
    attempts = [
        (f"{base}/safe-phrase", {"_csrf": token, "phrase": "骗子的暗语"}),
        (f"{base}/contacts", {"_csrf": token, "name": "假儿子", "relation": "儿子", "phone": "13900009999",
                              "priority": "1"}),
        (f"{base}/contacts/{env.ids.contact_b}/delete", {"_csrf": token}),
    ]
    for path, data in attempts:
        r = await env.client.post(path, data=data, allow_redirects=False)
        assert r.status == 403, path
    async with env.db() as db:
        after = await db.get(Elder, env.ids.elder_b)
        await db.refresh(after, ["contacts"])
        assert after.safe_phrase == phrase
        assert sorted((c.id, c.phone) for c in after.contacts) == contacts
        outbox = (await db.execute(select(Outbox).where(Outbox.recipient == "13900009999"))).scalars().all()
        assert outbox == []
    refused = await env.audit("family_refused")
    assert sorted(r.detail["action"] for r in refused) == ["add_contact", "delete_contact", "set_safe_phrase"]
    assert all(r.username == "fam_b" and r.target_id == str(env.ids.elder_b) for r in refused)
    assert await env.audit("set_safe_phrase") == [] and await env.audit("delete_contact") == []


async def test_revoking_can_act_takes_the_right_away_at_once(env):
    token = await env.as_user("fam_a", area="family")
    async with env.db() as db:
        c = await db.get(FamilyContact, env.ids.contact_a)
        c.can_act = False
        await db.commit()
    base = f"/family/elders/{env.ids.elder_a}"
    r = await env.client.post(f"{base}/safe-phrase", data={"_csrf": token, "phrase": "新暗语呀"}, allow_redirects=False)
    assert r.status == 403
    async with env.db() as db:
        assert (await db.get(Elder, env.ids.elder_a)).safe_phrase != "新暗语呀"


async def test_console_writes_platform_data_only_through_the_store(env, monkeypatch):
    """Callback and dispatch requests, the safe phrase and a deleted contact are the store's writes (issue #18):
    before, the console added outbox rows and changed elders/contacts in its own session."""
    store = env.app[SERVICES_KEY].store
    calls: list[str] = []
    for name in ("enqueue_notification", "set_safe_phrase", "delete_contact"):
        original = getattr(store, name)

        async def spy(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return await _original(*args, **kwargs)

        monkeypatch.setattr(store, name, spy)
    token = await env.as_user("op")
    await env.client.post(f"/console/alerts/{env.ids.fraud_alert}/callback", data={"_csrf": token})
    await env.client.post(f"/console/alerts/{env.ids.sos_alert}/dispatch", data={"_csrf": token})
    assert calls == ["enqueue_notification", "enqueue_notification"]
    async with env.db() as db:
        rows = (await db.execute(select(Outbox).where(Outbox.subject.in_(("callback_request", "dispatch"))))).scalars().all()
        assert sorted(r.subject for r in rows) == ["callback_request", "dispatch"]
        assert all(r.created_at is not None and r.status == "queued" for r in rows)
    token = await env.as_user("fam_a", area="family")
    base = f"/family/elders/{env.ids.elder_a}"
    from assistant.platform.store import NewContact

    other = (await store.add_contact(env.ids.elder_a, NewContact(name="陈小明", phone="13900002222"))).contact_id
    r = await env.client.post(f"{base}/safe-phrase", data={"_csrf": token, "phrase": "荔枝树下"}, allow_redirects=False)
    assert r.status == 303
    r = await env.client.post(f"{base}/contacts/{other}/delete", data={"_csrf": token}, allow_redirects=False)
    assert r.status == 303
    r = await env.client.post(f"{base}/contacts/{env.ids.contact_b}/delete", data={"_csrf": token}, allow_redirects=False)
    assert r.status == 404  # another elder's contact: not found for this parent
    assert calls[2:] == ["set_safe_phrase", "delete_contact", "delete_contact"]
    async with env.db() as db:
        elder = await db.get(Elder, env.ids.elder_a)
        await db.refresh(elder, ["contacts"])
        assert elder.safe_phrase == "荔枝树下" and other not in [c.id for c in elder.contacts]
        assert await db.get(FamilyContact, env.ids.contact_b) is not None


async def test_family_chooses_voice_and_slow_speaker_wait_for_own_parent_only(env):
    token = await env.as_user("fam_a", area="family")
    base = f"/family/elders/{env.ids.elder_a}"
    form = {"_csrf": token, "dialect": "yue", "rate_wpm": "110", "volume": "1.0", "text_size": "large",
            "voice": "pack-yue", "max_silence_s": "2.5"}
    page_html = await (await env.client.get(base)).text()
    assert 'name="voice"' in page_html and "真人录音（粤语）" in page_html and "说话慢" in page_html
    # no CSRF token: refused, nothing written
    r = await env.client.post(f"{base}/settings", data={k: v for k, v in form.items() if k != "_csrf"},
                              allow_redirects=False)
    assert r.status == 403
    # another family's parent: refused
    r = await env.client.post(f"/family/elders/{env.ids.elder_b}/settings", data=form, allow_redirects=False)
    assert r.status == 403
    # an unknown voice: refused with a message, nothing written
    r = await env.client.post(f"{base}/settings", data=form | {"voice": "pack-xyz"}, allow_redirects=False)
    assert r.status == 400
    async with env.db() as db:
        for elder_id in (env.ids.elder_a, env.ids.elder_b):
            elder = await db.get(Elder, elder_id)
            assert (elder.tts_voice, elder.end_of_turn_max_silence_s) == (None, None)
    r = await env.client.post(f"{base}/settings", data=form, allow_redirects=False)
    assert r.status == 303
    async with env.db() as db:
        elder = await db.get(Elder, env.ids.elder_a)
        assert (elder.tts_voice, elder.end_of_turn_max_silence_s) == ("pack-yue", 2.5)
    changed = await env.audit("elder_settings")
    assert changed[-1].detail.items() >= {"tts_voice": "pack-yue", "end_of_turn_max_silence_s": 2.5}.items()
    assert "dialect" not in changed[-1].detail  # only what changed
    page_html = await (await env.client.get(base)).text()
    assert '<option value="pack-yue" selected>' in page_html and '<option value="2.5" selected>' in page_html
    # back to the defaults
    await env.client.post(f"{base}/settings", data=form | {"voice": "", "max_silence_s": ""})
    async with env.db() as db:
        elder = await db.get(Elder, env.ids.elder_a)
        assert (elder.tts_voice, elder.end_of_turn_max_silence_s) == (None, None)


async def test_operator_sets_elder_voice_and_pace_on_the_console_elder_page(env):
    token = await env.as_user("op")
    alert_html = await (await env.client.get(f"/console/alerts/{env.ids.fraud_alert}")).text()
    assert "/console/elders/" in alert_html  # the alert page links to its elder's settings
    base = f"/console/elders/{env.ids.elder_b}"
    html = await (await env.client.get(base)).text()
    assert "李婆婆" in html and 'name="max_silence_s"' in html and "很慢" in html
    form = {"_csrf": token, "dialect": "cmn", "rate_wpm": "120", "volume": "0.9", "text_size": "large",
            "voice": "pack-cmn", "max_silence_s": "4"}
    r = await env.client.post(f"{base}/settings", data={k: v for k, v in form.items() if k != "_csrf"},
                              allow_redirects=False)
    assert r.status == 403  # no CSRF token
    r = await env.client.post(f"{base}/settings", data=form | {"max_silence_s": "60"}, allow_redirects=False)
    assert r.status == 400  # out of range
    r = await env.client.post(f"{base}/settings", data=form, allow_redirects=False)
    assert r.status == 303
    async with env.db() as db:
        elder = await db.get(Elder, env.ids.elder_b)
        assert (elder.tts_voice, elder.end_of_turn_max_silence_s) == ("pack-cmn", 4.0)
    audited = await env.audit("elder_settings")
    assert [(a.username, a.detail["tts_voice"]) for a in audited] == [("op", "pack-cmn")]
    assert (await env.client.get("/console/elders/99999")).status == 404
    # family users never reach the console's elder page
    token = await env.as_user("fam_a", area="family")
    assert (await env.client.get(f"/console/elders/{env.ids.elder_a}")).status == 403
    r = await env.client.post(f"/console/elders/{env.ids.elder_a}/settings", data=form | {"_csrf": token})
    assert r.status == 403
