"""Raw transcripts only through the reveal flow; redaction with the elder's own data (issue #15, items 7 and 8).

One application with the platform API and the console (as ``assistant serve`` mounts them), a real SQLite
database, an elder with a safe phrase and a family contact, and a call whose turns were written by the
pipeline's ``CallRecorder``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from assistant.call_recorder import CallRecorder
from assistant.console import users
from assistant.console.app import setup_console
from assistant.platform.api import setup_platform_api
from assistant.platform.models import Alert, CallTurn
from assistant.platform.models_console import AuditEntry
from assistant.platform.store import CallUpdate, NewContact
from assistant.services import SERVICES_KEY, services_ctx
from assistant.session import CallSession
from assistant.turns import TurnRecord
from tests.unit.console_helpers import PASSWORD, csrf_from, login

NAME, ADDRESS, PHRASE, CODE = "陈桂英", "白沙街道幸福里二号楼三零一", "荔枝树下", "4821"
SON, SON_PHONE = "陈建华", "13922223333"
SAID = f"我叫{NAME}，住{ADDRESS}，验证码是{CODE}，暗语{PHRASE}，叫{SON}来，要两罐煤气下午3点送"
SECRETS = (NAME, "桂英", "幸福里", CODE, PHRASE, SON, SON_PHONE)


@dataclass
class Env:
    client: TestClient
    app: web.Application
    elder_id: int
    call_id: str
    alert_id: int

    def db(self):
        return self.app[SERVICES_KEY].sessions()

    @property
    def service(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.app[SERVICES_KEY].service_token}"}

    async def as_user(self, name: str) -> str:
        self.client.session.cookie_jar.clear()
        out = await login(self.client, name)
        assert out.status == 303, out.text
        return csrf_from(await (await self.client.get("/console/")).text())

    async def audit(self, action: str) -> list[AuditEntry]:
        async with self.db() as db:
            return list((await db.execute(select(AuditEntry).where(AuditEntry.action == action))).scalars())


@pytest.fixture
async def env(aiohttp_client, settings) -> Env:
    app = web.Application()
    app.cleanup_ctx.append(services_ctx(settings, create_schema=True))
    setup_platform_api(app)
    setup_console(app)
    client = await aiohttp_client(app)
    store = app[SERVICES_KEY].store
    elder = await store.create_elder(name=NAME, district="蓬江", address=ADDRESS, phones=["13812345678"],
                                     safe_phrase=PHRASE,
                                     contacts=[NewContact(name=SON, relation="儿子", phone=SON_PHONE)])
    call_id = "call-raw-1"
    await store.upsert_call(call_id, CallUpdate(elder_id=elder.elder_id, direction="inbound", channel="phone"))
    recorder = CallRecorder(store=store, session=CallSession(channel="phone", call_id=call_id,
                                                             elder_id=elder.elder_id), calls_dir=settings.paths.var_dir)
    record = TurnRecord(turn=1, transcript=SAID, intent="order_gas")
    record.reply_texts = [f"好的{NAME}，两罐煤气下午3点送到。"]
    await recorder.on_turn("reply", record)
    alert = await store.raise_alert(elder_id=elder.elder_id, call_id=call_id, kind="human",
                                     detail={"transcript": SAID, "summary": SAID, "reason": "asked_for_human"})
    async with app[SERVICES_KEY].sessions() as db:
        for name, role in (("op", "operator"), ("sup", "supervisor")):
            await users.create_user(db, username=name, role=role, password=PASSWORD)
    return Env(client=client, app=app, elder_id=elder.elder_id, call_id=call_id, alert_id=alert.alert_id)


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def _words(body: object) -> str:
    """Every string in a JSON body except timestamps (``...at``), whose microseconds may contain the code."""
    if isinstance(body, dict):
        return " ".join(_words(v) for k, v in body.items() if not k.endswith("at"))
    if isinstance(body, list):
        return " ".join(_words(v) for v in body)
    return str(body)


async def test_stored_turns_are_redacted_with_the_elders_data(env):
    """Item 8: the pipeline stores a redacted copy masked with the elder's own data (name, address, safe
    phrase, family) and short codes, while quantities and times stay readable; the raw text is kept for the
    audited reveal."""
    async with env.db() as db:
        turns = (await db.execute(select(CallTurn).where(CallTurn.call_id == env.call_id)
                                  .order_by(CallTurn.turn))).scalars().all()
    elder_turn, bot_turn = turns
    assert elder_turn.text == SAID
    assert _leaks(elder_turn.text_redacted) == [], elder_turn.text_redacted
    assert "两罐煤气下午3点送" in elder_turn.text_redacted
    assert NAME not in bot_turn.text_redacted and "两罐煤气下午3点送到" in bot_turn.text_redacted


async def test_console_masks_old_rows_with_the_elders_data(env):
    """Rows stored without the elder's data (older versions, API clients) are masked again for display."""
    async with env.db() as db:
        turn = (await db.execute(select(CallTurn).where(CallTurn.call_id == env.call_id, CallTurn.turn == 1))).scalar_one()
        # what was stored before: no personal data, codes < 7 digits kept
        turn.text_redacted = SAID.replace(ADDRESS, "[地址]")
        await db.commit()
    await env.as_user("op")
    html = await (await env.client.get(f"/console/alerts/{env.alert_id}")).text()
    transcript = html[html.index('class="transcript"'):]
    assert _leaks(transcript) == [], _leaks(transcript)
    assert "两罐煤气下午3点送" in transcript
    facts = html[html.index('id="h-facts"'):html.index('id="h-act"')]
    assert CODE not in facts and PHRASE not in facts  # the alert's free-text summary is masked too


async def test_operator_gets_masked_turns_and_alert_detail_through_the_api(env):
    """Item 7: an operator's console session on /api sees no raw transcript, and the read is audited."""
    await env.as_user("op")
    r = await env.client.get(f"/api/calls/{env.call_id}", params={"turns": "1"})
    assert r.status == 200
    body = await r.json()
    raw = _words(body)  # a timestamp once held "4821" in its microseconds (CI, 2026-12-06)
    assert _leaks(raw) == [], _leaks(raw)
    assert body["turns"][0]["redacted"] is True and "两罐煤气下午3点送" in body["turns"][0]["text"]
    views = await env.audit("api_view_turns")
    assert [(v.username, v.role, v.target_id) for v in views] == [("op", "operator", env.call_id)]
    for path in ("/api/alerts", f"/api/elders/{env.elder_id}/alerts"):
        r = await env.client.get(path)
        assert r.status == 200
        text = _words(await r.json())
        assert _leaks(text) == [], (path, _leaks(text))


async def test_service_token_gets_no_raw_transcript_either(env):
    env.client.session.cookie_jar.clear()
    r = await env.client.get(f"/api/calls/{env.call_id}", params={"turns": "1"}, headers=env.service)
    body = await r.json()
    assert r.status == 200 and _leaks(_words(body)) == []
    r = await env.client.get("/api/alerts", headers=env.service)
    assert _leaks(_words(await r.json())) == []
    # what the action server needs still works: the call's state without turns
    r = await env.client.get(f"/api/calls/{env.call_id}", headers=env.service)
    assert r.status == 200 and "turns" not in await r.json()


async def test_alert_status_change_records_the_signed_in_user_not_the_body(env):
    token = await env.as_user("op")
    r = await env.client.post(f"/api/alerts/{env.alert_id}/status", json={"status": "acknowledged", "by": "sup"},
                              headers={"X-CSRF-Token": token})
    assert r.status == 200, await r.text()
    assert (await r.json())["acknowledged_by"] == "console:op"
    async with env.db() as db:
        assert (await db.get(Alert, env.alert_id)).acknowledged_by == "console:op"
    env.client.session.cookie_jar.clear()
    r = await env.client.post("/api/alerts", json={"elder_id": env.elder_id, "kind": "unwell", "detail": {}},
                              headers=env.service)
    other = (await r.json())["alert_id"]
    r = await env.client.post(f"/api/alerts/{other}/status", json={"status": "acknowledged", "by": "op"},
                              headers=env.service)
    assert r.status == 200
    async with env.db() as db:
        assert (await db.get(Alert, other)).acknowledged_by == "service"


async def test_raw_text_only_through_the_audited_reveal(env):
    token = await env.as_user("sup")
    html = await (await env.client.post(f"/console/alerts/{env.alert_id}/reveal", data={"_csrf": token})).text()
    assert SAID in html
    assert [(r.username, r.target_id) for r in await env.audit("reveal_transcript")] == [("sup", str(env.alert_id))]
