"""The screen's web app on a real SQLite store (aiohttp test client; the pipeline is the TEST STAND-IN):
device tokens, the page, SOS into the alerts table, the status panel, the WebSocket's messages and the
fraud-guard panel."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import WSMsgType

from assistant.screen import app as screen_app
from assistant.screen.app import create_app, notify_call_ended, notify_platform_call, notify_suspicious_call
from assistant.screen.standin import build_standin_worker
from assistant.screen.testing import alerts, seed_demo, start_platform_call
from assistant.screen.tokens import device_token, screen_secret
from assistant.services import SERVICES_KEY


@pytest.fixture
async def client(settings, aiohttp_client):
    await seed_demo(settings, text_size="large")

    async def factory(transport, session):
        return build_standin_worker(transport=transport, session=session, settings=settings, reply_s=0.3)

    app = create_app(settings, pipeline_factory=factory)
    client = await aiohttp_client(app)
    client.token = device_token(1, secret=screen_secret(settings))  # type: ignore[attr-defined]
    return client


async def _next_json(ws, kind: str, timeout_s: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        msg = await asyncio.wait_for(ws.receive(), timeout=max(0.01, deadline - time.monotonic()))
        if msg.type == WSMsgType.TEXT:
            data = json.loads(msg.data)
            if data["type"] == kind:
                return data
        elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
            raise AssertionError(f"socket closed while waiting for {kind}")


async def test_page_needs_the_device_token(client, settings):
    assert (await client.get("/screen/1")).status == 403
    assert (await client.get("/screen/1?token=wrong")).status == 403
    other = device_token(2, secret=screen_secret(settings))  # a token for another elder
    assert (await client.get(f"/screen/1?token={other}")).status == 403
    resp = await client.get(f"/screen/1?token={client.token}")
    assert resp.status == 200
    page = await resp.text()
    assert "王秀英" in page and 'class="size-large"' in page
    for label in ("紧急求助", "叫煤气", "订餐", "找客服", "这是骗子吗"):
        assert label in page


async def test_unknown_elder_is_404(client, settings):
    token = device_token(99, secret=screen_secret(settings))
    assert (await client.get(f"/screen/99?token={token}")).status == 404


async def test_sos_creates_the_alert_row_at_once(client, settings):
    t0 = time.perf_counter()
    resp = await client.post("/screen/1/sos", headers={"X-Screen-Token": client.token})
    elapsed = time.perf_counter() - t0
    assert resp.status == 201
    body = await resp.json()
    rows = await alerts(settings, kind="sos")
    assert [r.id for r in rows] == [body["alert_id"]]
    assert rows[0].elder_id == 1 and rows[0].severity == "critical" and rows[0].detail["source"] == "screen"
    assert elapsed < 2.0
    assert (await client.post("/screen/1/sos")).status == 403


async def test_status_panel_in_plain_language(client):
    resp = await client.get(f"/screen/1/status?token={client.token}")
    texts = [line["text"] for line in (await resp.json())["lines"]]
    assert texts[0] == "煤气师傅 20 分钟内到"
    assert texts[1] == "今天的关怀电话：您说身体很好"
    assert texts[2].startswith("看病：") and "江门市人民医院" in texts[2]


async def test_websocket_voice_session_with_captions(client):
    async with client.ws_connect(f"/screen/1/ws?token={client.token}") as ws:
        ready = await _next_json(ws, "ready")
        assert ready["sample_rate_hz"] == 16000 and ready["mic_frame_ms"] == 20
        status = await _next_json(ws, "status")
        assert status["lines"][0]["text"] == "煤气师傅 20 分钟内到"
        await ws.send_str(json.dumps({"type": "button", "button": "gas"}))
        elder = await _next_json(ws, "caption")
        assert elder == {"type": "caption", "speaker": "elder", "text": "我要叫煤气", "final": True}
        reply = await _next_json(ws, "caption")
        assert reply["speaker"] == "assistant"
        audio = await asyncio.wait_for(ws.receive(), timeout=5)
        while audio.type != WSMsgType.BINARY:
            audio = await asyncio.wait_for(ws.receive(), timeout=5)
        assert len(audio.data) == 1280  # 40 ms of 16 kHz 16-bit PCM
        await ws.send_bytes(bytes(641))
        error = await _next_json(ws, "error")
        assert error["code"] == "screen_protocol"
        await ws.send_str(json.dumps({"type": "ping"}))
        assert (await _next_json(ws, "pong"))["type"] == "pong"


async def test_websocket_rejects_a_wrong_token(client):
    resp = await client.get("/screen/1/ws?token=nope")
    assert resp.status == 403


async def test_fraud_panel_shows_the_code_or_a_red_warning(client, settings):
    async with client.ws_connect(f"/screen/1/ws?token={client.token}") as ws:
        await _next_json(ws, "ready")
        # no platform call in the ledger: "is this a scammer?" → red warning
        await ws.send_str(json.dumps({"type": "fraud_check"}))
        warning = await _next_json(ws, "fraud")
        assert warning["state"] == "not_platform" and "骗子" in warning["text"]
        # the fraud guard pushes a platform call with its one-time code
        assert await notify_platform_call(client.app, elder_id=1, code="4821") == 1
        notice = await _next_json(ws, "fraud")
        assert notice["state"] == "platform_calling" and notice["code"] == "4821"
        assert notice["text"] == "平安通正在给您打电话 — 确认码 4821"
        assert await notify_suspicious_call(client.app, elder_id=1, number="075012345") == 1
        assert (await _next_json(ws, "fraud"))["state"] == "not_platform"
        assert await notify_platform_call(client.app, elder_id=2, code="1111") == 0  # nobody else's screen


async def test_fraud_check_finds_a_platform_call_in_the_ledger(client, settings):
    await start_platform_call(settings, elder_id=1)
    async with client.ws_connect(f"/screen/1/ws?token={client.token}") as ws:
        notice = await _next_json(ws, "fraud")  # the panel refresh finds the call by itself
        assert notice["state"] == "platform_calling"
        await ws.send_str(json.dumps({"type": "fraud_check"}))
        assert (await _next_json(ws, "fraud"))["state"] == "platform_calling"


async def test_sos_over_the_socket(client, settings):
    async with client.ws_connect(f"/screen/1/ws?token={client.token}") as ws:
        await _next_json(ws, "ready")
        await ws.send_str(json.dumps({"type": "sos"}))
        result = await _next_json(ws, "sos")
        assert result["ok"] is True
        assert [a.id for a in await alerts(settings, kind="sos")] == [result["alert_id"]]


async def test_screen_sos_during_a_call_with_an_open_sos_makes_one_alert_and_notifies_the_family_once(client, settings):
    """The screen's SOS goes through the platform store's ``raise_alert`` (issue #18): before, it inserted
    its own row, a second alert for the call and no family notification."""
    from assistant.platform.db import create_engine_for
    from assistant.platform.store import PlatformStore
    from assistant.screen.testing import outbox

    async with client.ws_connect(f"/screen/1/ws?token={client.token}") as ws:
        await _next_json(ws, "ready")
        call_id = screen_app_conns(client)[0].session.call_id
        engine = create_engine_for(settings)
        try:  # the elder said 救命 in this session: the dialogue's SOS (through the API) is open
            spoken = await PlatformStore(engine=engine).raise_alert(elder_id=1, call_id=call_id, kind="sos", detail={"source": "dialogue"})
        finally:
            await engine.dispose()
        assert spoken.notified >= 1
        await ws.send_str(json.dumps({"type": "sos"}))
        assert (await _next_json(ws, "sos"))["alert_id"] == spoken.alert_id
        resp = await client.post("/screen/1/sos", headers={"X-Screen-Token": client.token})
        assert (await resp.json())["alert_id"] == spoken.alert_id
    assert [a.id for a in await alerts(settings, kind="sos")] == [spoken.alert_id]
    assert len([m for m in await outbox(settings) if m.alert_id == spoken.alert_id]) == spoken.notified


async def test_screen_sos_without_the_platform_api_still_notifies_the_family(client, settings):
    from assistant.screen.testing import outbox

    resp = await client.post("/screen/1/sos", headers={"X-Screen-Token": client.token})
    alert_id = (await resp.json())["alert_id"]
    assert any(m.alert_id == alert_id and m.recipient == "13800138000" for m in await outbox(settings))


async def test_screen_sends_the_consoles_security_headers_and_allows_zoom(client):
    resp = await client.get(f"/screen/1?token={client.token}")
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    page = await resp.text()
    assert "user-scalable=no" not in page and "maximum-scale" not in page
    assert 'aria-modal="true"' in page and "按错了，取消" in page
    static = await client.get("/screen/static/screen.js")
    assert static.headers["X-Frame-Options"] == "DENY"


async def test_sos_cancel_within_the_window_marks_it_and_books_a_call_back(client, settings):
    from assistant.screen.testing import outbox

    sos = await (await client.post("/screen/1/sos", headers={"X-Screen-Token": client.token})).json()
    path = f"/screen/1/sos/{sos['alert_id']}/cancel"
    assert (await client.post(path)).status == 403
    resp = await client.post(path, headers={"X-Screen-Token": client.token})
    assert resp.status == 200
    body = await resp.json()
    assert body["ok"] is True and "打电话" in body["text"]
    [row] = await alerts(settings, kind="sos")
    assert row.status == "false_alarm" and row.detail["cancelled_by"] == "elder"
    [task] = await alerts(settings, kind="sos_cancelled")
    assert task.id == body["callback_alert_id"] and task.status == "open"
    # no dispatcher ran: the family was never told of the SOS, so no "按错了，已取消" either
    mine = [m for m in await outbox(settings) if m.alert_id == sos["alert_id"]]
    assert mine and all(m.status == "undeliverable" for m in mine) and not any("按错了" in m.body for m in mine)
    # twice → 409; another elder's token → 403
    again = await client.post(path, headers={"X-Screen-Token": client.token})
    assert again.status == 409 and (await again.json())["code"] == "conflict"


def screen_app_conns(client):
    return client.server.app[screen_app.HUB_KEY].for_elder(1)


async def test_without_voice_the_page_still_gets_panels_and_sos(settings, aiohttp_client):
    await seed_demo(settings)
    client = await aiohttp_client(create_app(settings))  # no pipeline factory, no `assistant serve` services
    token = device_token(1, secret=screen_secret(settings))
    async with client.ws_connect(f"/screen/1/ws?token={token}") as ws:
        error = await _next_json(ws, "error")
        assert error["code"] == "screen_no_voice"
        assert (await _next_json(ws, "status"))["lines"]
        await ws.send_str(json.dumps({"type": "button", "button": "gas"}))
        assert (await _next_json(ws, "error"))["code"] == "screen_no_voice"
        await ws.send_str(json.dumps({"type": "sos"}))
        assert (await _next_json(ws, "sos"))["ok"] is True


async def test_a_pushed_code_outlives_ledger_refreshes_until_the_call_ends(client, monkeypatch):
    monkeypatch.setattr(screen_app, "STATUS_REFRESH_S", 0.05)
    async with client.ws_connect(f"/screen/1/ws?token={client.token}") as ws:
        await _next_json(ws, "ready")
        await notify_platform_call(client.app, elder_id=1, code="4821")
        assert (await _next_json(ws, "fraud"))["code"] == "4821"
        await asyncio.sleep(0.4)  # several refreshes; the ledger has no such call, but the push stands
        await ws.send_str(json.dumps({"type": "fraud_check"}))
        answer = await _next_json(ws, "fraud")
        assert answer["state"] == "platform_calling" and answer["code"] == "4821"
        await notify_call_ended(client.app, elder_id=1)
        assert (await _next_json(ws, "fraud"))["state"] == "clear"
        await ws.send_str(json.dumps({"type": "fraud_check"}))
        assert (await _next_json(ws, "fraud"))["state"] == "not_platform"


async def test_the_code_comes_from_the_fraud_guards_ledger(settings, aiohttp_client):
    """With the fraud guard mounted (as in `assistant serve`), its ledger entry's one-time code is shown."""
    fraud_api = pytest.importorskip("assistant.fraud_guard.api")
    import assistant.platform.models_fraud  # noqa: F401  (its tables join Base.metadata for create_all)

    await seed_demo(settings)
    app = create_app(settings)
    fraud_api.setup_fraud_api(app)
    client = await aiohttp_client(app)
    entry = await app[SERVICES_KEY].ledger.record_outbound_call(elder_id=1, number="07503331234", purpose="care_call")
    token = device_token(1, secret=screen_secret(settings))
    async with client.ws_connect(f"/screen/1/ws?token={token}") as ws:
        notice = await _next_json(ws, "fraud")  # found by the panel refresh
        assert notice["state"] == "platform_calling" and notice["code"] == entry.code
        assert notice["text"] == f"平安通正在给您打电话 — 确认码 {entry.code}"


async def test_voice_orders_and_emergencies_show_at_once():
    from assistant.screen.app import ScreenConnection, _turn_listener
    from assistant.screen.ws_transport import ScreenLink, ScreenTransport
    from assistant.session import CallSession
    from assistant.turns import TurnRecord

    class Sock:
        closed = False
        sent: list[dict] = []

        async def send_str(self, data: str) -> None:
            self.sent.append(json.loads(data))

        async def send_bytes(self, data: bytes) -> None:
            raise AssertionError("no audio expected")

    sock = Sock()
    link = ScreenLink(ws=sock)
    session = CallSession(channel="screen", elder_id=1)
    conn = ScreenConnection(elder_id=1, session=session, link=link, transport=ScreenTransport(link=link, user_id="u"))
    listener = _turn_listener(conn)
    await listener("asr", TurnRecord(turn=1, transcript="我要叫煤气", events=[{"event": "order_placed"}]))
    assert not conn.refresh.is_set()
    assert sock.sent == [{"type": "caption", "speaker": "elder", "text": "我要叫煤气", "final": True}]
    await listener(
        "reply",
        TurnRecord(turn=1, transcript="我要叫煤气", reply_texts=["好的。", "已下单。"], events=[{"event": "order_placed", "order_id": 5}]),
    )
    assert conn.refresh.is_set()
    assert sock.sent[1:] == [{"type": "caption", "speaker": "assistant", "text": "好的。已下单。", "final": True}]
    sock.sent.clear()
    # a button turn (no ASR stage): the elder caption comes first, then the reply; an emergency shows SOS
    await listener("reply", TurnRecord(turn=2, source="system", transcript="救命", reply_texts=["马上叫人。"], events=[{"event": "emergency", "alert_id": 9}]))
    assert [m["type"] for m in sock.sent] == ["caption", "caption", "sos"]
    assert sock.sent[0]["speaker"] == "elder" and sock.sent[1]["speaker"] == "assistant"


async def test_sos_in_the_full_server_goes_through_the_platform_store(settings, aiohttp_client):
    """Mounted by `assistant serve`'s create_app: the SOS alert is the platform store's, with the family's
    notification in the outbox (same transaction), and the screen shares the store's engine."""
    from assistant.screen.testing import outbox
    from assistant.server import create_app as server_app

    await seed_demo(settings, migrations=True)
    app = server_app(settings)
    client = await aiohttp_client(app)
    token = device_token(1, secret=screen_secret(settings))
    t0 = time.perf_counter()
    resp = await client.post("/screen/1/sos", headers={"X-Screen-Token": token})
    elapsed = time.perf_counter() - t0
    assert resp.status == 201
    alert_id = (await resp.json())["alert_id"]
    rows = await alerts(settings, kind="sos")
    assert [r.id for r in rows] == [alert_id]
    assert any(m.alert_id == alert_id and m.recipient == "13800138000" for m in await outbox(settings))
    assert elapsed < 2.0
    assert app[screen_app.STORE_KEY].platform is app[SERVICES_KEY].store


async def test_releasing_press_to_talk_tells_the_pipeline_the_elder_is_done(settings, aiohttp_client):
    """ptt stop → SpeakerDoneFrame down the pipeline (the end-of-turn stage then ends the turn at its first
    pause, tests/unit/test_end_of_turn.py); ptt start interrupts as before and is not a "done"."""
    from pipecat.frames.frames import Frame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

    from assistant.audio.vad import SpeakerDoneFrame

    await seed_demo(settings)
    seen: list[Frame] = []

    class Seen(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection):
            await super().process_frame(frame, direction)
            if isinstance(frame, SpeakerDoneFrame):
                seen.append(frame)
            await self.push_frame(frame, direction)

    async def factory(transport, session):
        return PipelineWorker(Pipeline([transport.input(), Seen(), transport.output()]),
                              params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=16000),
                              idle_timeout_secs=None, enable_rtvi=False, enable_turn_tracking=False)

    client = await aiohttp_client(create_app(settings, pipeline_factory=factory))
    token = device_token(1, secret=screen_secret(settings))
    async with client.ws_connect(f"/screen/1/ws?token={token}") as ws:
        await _next_json(ws, "ready")
        await ws.send_str(json.dumps({"type": "ptt", "state": "start"}))
        await ws.send_str(json.dumps({"type": "ptt", "state": "stop"}))
        await ws.send_str(json.dumps({"type": "ping"}))
        await _next_json(ws, "pong")
        for _ in range(50):
            if seen:
                break
            await asyncio.sleep(0.02)
    assert len(seen) == 1
