"""The elder's smart screen: kiosk page, its WebSocket (voice + captions + panels) and the SOS endpoint.

Routes (all need a device token that is not revoked, ``?token=`` or the ``X-Screen-Token`` header; see
``tokens.py``; an open page whose device is revoked is closed at the next panel refresh):
- ``GET  /screen/{elder_id}``          the kiosk page (server-rendered HTML, vanilla JS, 1024×600)
- ``GET  /screen/{elder_id}/ws``       WebSocket: mic PCM in, reply PCM + JSON messages out (``protocol.py``)
- ``POST /screen/{elder_id}/sos``      raise an SOS alert now → ``{"alert_id": ...}``
- ``GET  /screen/{elder_id}/status``   the status panel as JSON
- ``GET  /screen/static/...``          page script, styles, AudioWorklet

One pipeline per open page: ``build_call_pipeline`` with a ``CallSession(channel="screen")`` seeded from
the elder row (dialect, speech rate, volume). Panels (orders, care call, appointment, fraud guard) are
refreshed every ``STATUS_REFRESH_S`` and pushed at once by ``notify_platform_call`` /
``notify_suspicious_call`` (for the phone gateway and the fraud guard).

Entry points: ``setup_screen(app)`` (``assistant serve``: the app holds the process's ``Services``) and ``create_app(settings)`` (tests).
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import WSMsgType, web
from loguru import logger

from assistant.audio.end_of_turn import longest_end_of_turn_silence_s
from assistant.errors import AssistantError, StoreError
from assistant.pipeline import build_call_pipeline, pipeline_worker
from assistant.screen.protocol import (
    BUTTON_TEXTS,
    FRAUD_CHECK_TEXT,
    Caption,
    ErrorMessage,
    FraudNotice,
    Pong,
    Ready,
    ScreenProtocolError,
    ServerMessage,
    SosResult,
    Status,
    parse_control,
)
from assistant.screen.store_view import ElderView, PlatformCall, PlatformCallLookup, ScreenStore
from assistant.screen.tokens import load_registry, registry_path, screen_secret, token_device
from assistant.screen.ws_transport import ScreenLink, ScreenTransport, screen_transport_params
from assistant.services import SERVICES_KEY, services_ctx
from assistant.session import CallSession
from assistant.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"
STATUS_REFRESH_S = 5.0
WS_CLOSE_REVOKED = 4403  # close code sent to a page whose device token was revoked
PUSH_HOLD_S = 600.0  # a pushed "platform is calling" notice outlives ledger refreshes this long
# the alert reaches the operators at once; family hear from them / by SMS when one is configured (issue #16)
SOS_TEXT = "已通知服务中心值班人员，请别着急，马上有人联系您"
# "按错了，取消" is offered this long after an SOS (the server allows a few seconds more for the network)
SOS_CANCEL_WINDOW_S = 10.0
SOS_CANCEL_GRACE_S = 5.0
SOS_CANCELLED_TEXT = "已取消。值班人员还会打电话给您，确认您平安"


class ScreenError(AssistantError):
    code = "screen_failed"


# builds the worker for one page: (transport, session) → a PipelineWorker (not yet running)
PipelineFactory = Callable[[ScreenTransport, CallSession], Awaitable["object"]]


@dataclass(kw_only=True, eq=False)
class ScreenConnection:
    elder_id: int
    session: CallSession
    link: ScreenLink
    transport: ScreenTransport
    fraud_state: FraudNotice | None = None
    # who showed the fraud panel: "ledger" (the panel refresh; it also clears it), "push" (the fraud guard or
    # the gateway, held for PUSH_HOLD_S or until notify_call_ended), "check" (the elder's own question)
    fraud_source: str = ""
    fraud_shown_t: float = 0.0
    last_status: str = ""
    pipeline_running: bool = False
    device_id: str | None = None  # the enrolled screen (``elder-<id>``: the elder's shared token)
    refresh: asyncio.Event = field(default_factory=asyncio.Event)

    def show_fraud(self, notice: FraudNotice, *, source: str) -> None:
        self.fraud_state, self.fraud_source, self.fraud_shown_t = notice, source, time.monotonic()

    def pushed_platform_call(self) -> PlatformCall | None:
        """A "platform is calling" notice the fraud guard pushed recently (still standing)."""
        notice = self.fraud_state
        if (
            notice is not None
            and notice.state == "platform_calling"
            and self.fraud_source == "push"
            and time.monotonic() - self.fraud_shown_t < PUSH_HOLD_S
        ):
            return PlatformCall(call_id="", code=notice.code, caller_name=notice.caller_name)
        return None


@dataclass(kw_only=True)
class ScreenHub:
    """Open pages per elder, so that other areas can push to them."""

    connections: dict[int, set[ScreenConnection]] = field(default_factory=dict)

    def add(self, conn: ScreenConnection) -> None:
        self.connections.setdefault(conn.elder_id, set()).add(conn)

    def remove(self, conn: ScreenConnection) -> None:
        conns = self.connections.get(conn.elder_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.connections[conn.elder_id]

    def for_elder(self, elder_id: int) -> list[ScreenConnection]:
        return list(self.connections.get(elder_id, ()))

    async def publish(self, elder_id: int, message: ServerMessage) -> int:
        """Send to every open page of this elder; returns how many got it."""
        sent = 0
        for conn in self.for_elder(elder_id):
            if isinstance(message, FraudNotice):
                conn.show_fraud(message, source="push")
            sent += int(await conn.link.send(message))
        return sent


STORE_KEY = web.AppKey("screen_store", ScreenStore)
HUB_KEY = web.AppKey("screen_hub", ScreenHub)
SECRET_KEY = web.AppKey("screen_secret", bytes)
PIPELINE_FACTORY_KEY = web.AppKey("screen_pipeline_factory", object)
FRAUD_LOOKUP_KEY = web.AppKey("screen_fraud_lookup", object)
SOS_TIMES_KEY = web.AppKey("screen_sos_times", list)


# -- notifications from other areas -------------------------------------------------------------------


def platform_calling_notice(call: PlatformCall) -> FraudNotice:
    code = f" — 确认码 {call.code}" if call.code else ""
    return FraudNotice(
        state="platform_calling",
        code=call.code,
        caller_name=call.caller_name,
        text=f"{call.caller_name}正在给您打电话{code}",
    )


def not_platform_notice(*, number: str | None = None, caller_name: str = "平安通") -> FraudNotice:
    return FraudNotice(
        state="not_platform",
        number=number,
        caller_name=caller_name,
        text=f"{caller_name}现在没有给您打电话！自称{caller_name}的可能是骗子。不要给钱，不要说验证码，请挂断。",
    )


async def notify_platform_call(app: web.Application, *, elder_id: int, code: str | None, caller_name: str = "平安通") -> int:
    """The platform is calling the elder's landline now: show the one-time code on their screens."""
    notice = platform_calling_notice(PlatformCall(call_id="", code=code, caller_name=caller_name))
    return await app[HUB_KEY].publish(elder_id, notice)


async def notify_suspicious_call(app: web.Application, *, elder_id: int, number: str | None = None) -> int:
    """A call claims to be the platform and the ledger has no such call: red warning on the screens."""
    return await app[HUB_KEY].publish(elder_id, not_platform_notice(number=number))


async def notify_call_ended(app: web.Application, *, elder_id: int) -> int:
    return await app[HUB_KEY].publish(elder_id, FraudNotice(state="clear"))


# -- helpers -------------------------------------------------------------------------------------------


def _elder_id(request: web.Request) -> int:
    try:
        return int(request.match_info["elder_id"])
    except ValueError as exc:
        raise web.HTTPNotFound(text="no such screen") from exc


async def _device_allowed(app: web.Application, elder_id: int, device_id: str | None) -> bool:
    """Is this device enrolled for the elder and not revoked? The registry file is read each time (tiny), so a
    revocation by ``assistant screen --revoke`` in another process counts at once."""
    registry = await asyncio.to_thread(load_registry, registry_path(app[SERVICES_KEY].settings))
    return registry.allows(elder_id, device_id)


async def _authorize_device(request: web.Request) -> tuple[int, str]:
    elder_id = _elder_id(request)
    token = request.query.get("token") or request.headers.get("X-Screen-Token")
    device_id = token_device(elder_id, token, secret=request.app[SECRET_KEY])
    if device_id is None or not await _device_allowed(request.app, elder_id, device_id):
        raise web.HTTPForbidden(text="this screen is not enrolled (ask the family to set it up again)")
    return elder_id, device_id


async def _authorize(request: web.Request) -> int:
    return (await _authorize_device(request))[0]


async def _elder(request: web.Request, elder_id: int) -> ElderView:
    elder = await request.app[STORE_KEY].elder(elder_id)
    if elder is None:
        raise web.HTTPNotFound(text="no such elder")
    return elder


async def _lookup_platform_call(app: web.Application, elder_id: int) -> PlatformCall | None:
    """Is the platform calling this elder? A registered lookup, else the fraud guard's call ledger (with the
    one-time code), else an open outbound call row in the calls table (no code)."""
    lookup: PlatformCallLookup | None = app.get(FRAUD_LOOKUP_KEY)  # type: ignore[assignment]
    if lookup is not None:
        return await lookup(elder_id)
    try:
        entry = await app[SERVICES_KEY].ledger.current_for_elder(elder_id)
    except AssistantError as exc:
        logger.warning(f"screen {elder_id}: call ledger unavailable: error[{exc.code}] {exc.message}")
    else:
        if entry is not None:
            return PlatformCall(call_id=entry.call_id or "", code=entry.code)
    return await app[STORE_KEY].platform_call(elder_id)


async def _raise_sos(app: web.Application, *, elder_id: int, call_id: str | None, via: str) -> int:
    t0 = time.perf_counter()
    alert_id = await app[STORE_KEY].raise_sos(elder_id=elder_id, call_id=call_id, detail={"source": "screen", "via": via})
    elapsed_ms = (time.perf_counter() - t0) * 1000
    app[SOS_TIMES_KEY].append(elapsed_ms)
    logger.warning(f"SOS from the screen of elder {elder_id}: alert {alert_id} ({elapsed_ms:.1f} ms)")
    return alert_id


# -- HTTP routes ---------------------------------------------------------------------------------------


async def screen_page(request: web.Request) -> web.Response:
    elder_id = await _authorize(request)
    elder = await _elder(request, elder_id)
    token = request.query.get("token", "")
    config = {
        "elderId": elder_id,
        "token": token,
        "wsPath": f"/screen/{elder_id}/ws",
        "sosPath": f"/screen/{elder_id}/sos",
        "statusPath": f"/screen/{elder_id}/status",
        "workletPath": "/screen/static/mic-worklet.js",
        "sosCancelS": SOS_CANCEL_WINDOW_S,
    }
    page = (STATIC_DIR / "screen.html").read_text(encoding="utf-8")
    page = (
        page.replace("{{NAME}}", html.escape(elder.name))
        .replace("{{TEXT_SIZE}}", html.escape(elder.text_size))
        .replace("{{CONFIG}}", html.escape(json.dumps(config), quote=True))
    )
    return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})


async def sos(request: web.Request) -> web.Response:
    elder_id = await _authorize(request)
    call_id = None
    conns = request.app[HUB_KEY].for_elder(elder_id)
    if conns:
        call_id = conns[0].session.call_id
    alert_id = await _raise_sos(request.app, elder_id=elder_id, call_id=call_id, via="http")
    for conn in conns:
        if conn.pipeline_running:
            await conn.transport.interrupt()
        await conn.link.send(SosResult(ok=True, alert_id=alert_id, text=SOS_TEXT))
    return web.json_response({"ok": True, "alert_id": alert_id, "text": SOS_TEXT}, status=201)


async def sos_cancel(request: web.Request) -> web.Response:
    """"按错了，取消" within the window: 200 with the text to show; too late or not this elder's open SOS →
    409 / 404 (the SOS stands, the operator calls back as for any SOS)."""
    elder_id = await _authorize(request)
    try:
        alert_id = int(request.match_info["alert_id"])
    except ValueError as exc:
        raise web.HTTPNotFound() from exc
    try:
        result = await request.app[STORE_KEY].cancel_sos(
            elder_id=elder_id, alert_id=alert_id, window_s=SOS_CANCEL_WINDOW_S + SOS_CANCEL_GRACE_S
        )
    except StoreError as exc:
        if exc.code not in ("conflict", "not_found"):
            raise
        status = 409 if exc.code == "conflict" else 404
        return web.json_response({"ok": False, "code": exc.code, "text": SOS_TEXT}, status=status)
    logger.warning(f"SOS {alert_id} cancelled on the screen of elder {elder_id}: call-back task {result.callback_alert_id}")
    return web.json_response({"ok": True, "alert_id": alert_id, "callback_alert_id": result.callback_alert_id,
                              "text": SOS_CANCELLED_TEXT})


async def status(request: web.Request) -> web.Response:
    elder_id = await _authorize(request)
    lines = await request.app[STORE_KEY].status(elder_id)
    return web.json_response({"lines": [dataclasses.asdict(line) for line in lines]})


# -- the WebSocket -------------------------------------------------------------------------------------


async def _make_worker(app: web.Application, transport: ScreenTransport, session: CallSession, *, turn_listeners: list):
    """The call's pipeline worker: a test's stand-in (``PIPELINE_FACTORY_KEY``), else the real call pipeline
    (``assistant.pipeline``) on the pipeline services ``assistant serve`` started, with the screen's caption
    listeners."""
    factory = app.get(PIPELINE_FACTORY_KEY)
    if factory is not None:
        return await factory(transport, session)  # type: ignore[operator]
    services = app[SERVICES_KEY].pipeline
    if services is None:
        raise ScreenError("voice is not running on this server (start it with `assistant serve`)", code="screen_no_voice")
    if turn_listeners:
        services = dataclasses.replace(services, turn_listeners=[*services.turn_listeners, *turn_listeners])
        transport.output_transport.captions_from_frames = False  # the listeners caption, sooner
    call = build_call_pipeline(session=session, services=services, transport=transport)
    return pipeline_worker(call, settings=services.settings)


# dialogue events after which the status panel is refreshed at once (not at the next STATUS_REFRESH_S)
REFRESH_EVENTS = frozenset({"order_placed", "emergency", "handover"})


def _turn_listener(conn: ScreenConnection):
    """Follows the dialogue through the call's turn tracker:

    - captions as soon as each stage is done: what the elder said after ASR ("asr"), what the assistant
      will say before synthesis ("reply", with the turn's text if it came from a button), so the elder
      can read a long read-back while it is being spoken;
    - an order placed or an emergency raised by voice shows on the screen at once.
    """
    captioned: set[int] = set()  # turns whose elder caption went out

    async def listener(stage: str, record) -> None:
        if stage == "asr":
            if record.transcript.strip() and record.turn not in captioned:
                captioned.add(record.turn)
                await conn.link.send(Caption(speaker="elder", text=record.transcript.strip()))
            return
        if stage != "reply":
            return
        if record.turn not in captioned and record.transcript.strip():
            captioned.add(record.turn)
            await conn.link.send(Caption(speaker="elder", text=record.transcript.strip()))
        reply = "".join(t for t in record.reply_texts if t)
        if reply:
            await conn.link.send(Caption(speaker="assistant", text=reply))
        names = {e.get("event") for e in record.events if isinstance(e, dict)}
        if "emergency" in names:
            await conn.link.send(SosResult(ok=True, alert_id=None, text=SOS_TEXT))
        if names & REFRESH_EVENTS:
            conn.refresh.set()

    return listener


async def _panel_loop(app: web.Application, conn: ScreenConnection, stop: asyncio.Event) -> None:
    """Status and fraud panels: refresh now, then every STATUS_REFRESH_S (or when the dialogue placed an
    order) until the page goes away."""
    while not stop.is_set():
        conn.refresh.clear()
        if not await _device_allowed(app, conn.elder_id, conn.device_id):
            logger.warning(f"screen {conn.elder_id}: device {conn.device_id} was revoked; closing its page")
            ws = getattr(conn.link, "_ws", None)
            if ws is not None and not ws.closed:
                await ws.close(code=WS_CLOSE_REVOKED, message=b"device revoked")
            return
        try:
            await _refresh_panels(app, conn)
        except AssistantError as exc:
            logger.warning(f"screen {conn.elder_id}: panel refresh failed: error[{exc.code}] {exc.message}")
        waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(conn.refresh.wait())}
        try:
            await asyncio.wait(waits, timeout=STATUS_REFRESH_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)


async def _refresh_panels(app: web.Application, conn: ScreenConnection) -> None:
    lines = await app[STORE_KEY].status(conn.elder_id)
    message = Status(lines=lines)
    encoded = message.to_json()
    if encoded != conn.last_status:
        conn.last_status = encoded
        await conn.link.send(message)
    if conn.pushed_platform_call() is not None:
        return  # the fraud guard's own notice stands until it ends the call (or PUSH_HOLD_S)
    call = await _lookup_platform_call(app, conn.elder_id)
    current = conn.fraud_state
    if call is not None:
        notice = platform_calling_notice(call)
        if current is None or current.state != "platform_calling" or current.code != notice.code:
            conn.show_fraud(notice, source="ledger")
            await conn.link.send(notice)
    elif current is not None and current.state == "platform_calling" and conn.fraud_source != "push":
        # a notice the fraud guard pushed (possibly during the lookup above) ends only with its call
        conn.show_fraud(FraudNotice(state="clear"), source="ledger")
        await conn.link.send(conn.fraud_state)


async def _fraud_check(app: web.Application, conn: ScreenConnection) -> None:
    call = conn.pushed_platform_call() or await _lookup_platform_call(app, conn.elder_id)
    notice = platform_calling_notice(call) if call is not None else not_platform_notice()
    conn.show_fraud(notice, source="check")
    await conn.link.send(notice)
    if conn.pipeline_running:
        await conn.transport.inject_text(FRAUD_CHECK_TEXT)


async def _handle_control(app: web.Application, conn: ScreenConnection, text: str) -> None:
    try:
        msg = parse_control(text)
    except ScreenProtocolError as exc:
        await conn.link.send(ErrorMessage(code=exc.code, text=exc.message))
        return
    if msg.type == "ping":
        await conn.link.send(Pong())
    elif msg.type == "hello":
        conn.last_status = ""
        await _refresh_panels(app, conn)
    elif msg.type == "sos":
        alert_id = await _raise_sos(app, elder_id=conn.elder_id, call_id=conn.session.call_id, via="ws")
        if conn.pipeline_running:
            await conn.transport.interrupt()
        await conn.link.send(SosResult(ok=True, alert_id=alert_id, text=SOS_TEXT))
    elif msg.type == "fraud_check":
        await _fraud_check(app, conn)
    elif not conn.pipeline_running:
        await conn.link.send(ErrorMessage(code="screen_no_voice", text="语音助手暂时不可用，请按紧急求助或打电话"))
    elif msg.type == "ptt" and msg.state == "start":
        await conn.transport.interrupt()  # the elder wants to talk: stop the assistant now
    elif msg.type == "ptt" and msg.state == "stop":
        await conn.transport.speaker_done()  # released: the turn ends at its first pause, not after the wait
    elif msg.type == "button" and msg.button is not None:
        await conn.transport.interrupt()
        await conn.transport.inject_text(BUTTON_TEXTS[msg.button])


async def _receive(app: web.Application, ws: web.WebSocketResponse, conn: ScreenConnection) -> None:
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            if not conn.pipeline_running:
                continue
            try:
                await conn.transport.feed_audio(msg.data)
            except ScreenProtocolError as exc:
                await conn.link.send(ErrorMessage(code=exc.code, text=exc.message))
        elif msg.type == WSMsgType.TEXT:
            try:
                await _handle_control(app, conn, msg.data)
            except AssistantError as exc:
                logger.error(f"screen {conn.elder_id}: error[{exc.code}] {exc.message}")
                await conn.link.send(ErrorMessage(code=exc.code, text=exc.message))
        elif msg.type == WSMsgType.ERROR:
            logger.warning(f"screen {conn.elder_id}: socket error {ws.exception()}")
            break


async def _run_worker(worker, conn: ScreenConnection) -> None:
    from pipecat.workers.runner import WorkerRunner

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    try:
        await runner.run()
    finally:
        conn.pipeline_running = False


async def screen_ws(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    elder_id, device_id = await _authorize_device(request)
    elder = await _elder(request, elder_id)
    settings = app[SERVICES_KEY].settings
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=64 * 1024)
    await ws.prepare(request)
    link = ScreenLink(ws=ws)
    session = CallSession(
        channel="screen",
        elder_id=elder_id,
        dialect=elder.dialect,
        tts_rate_wpm=elder.tts_rate_wpm,
        tts_volume=elder.volume,
        # the device token proves the household: the elder's own screen may show the elder's data
        verification="verified",
    )
    rate = settings.audio.pipeline_sample_rate_hz
    transport = ScreenTransport(link=link, user_id=session.call_id, params=screen_transport_params(out_sample_rate_hz=rate))
    conn = ScreenConnection(elder_id=elder_id, session=session, link=link, transport=transport, device_id=device_id)
    hub = app[HUB_KEY]
    hub.add(conn)
    stop = asyncio.Event()
    worker = None
    try:
        try:
            worker = await _make_worker(app, transport, session, turn_listeners=[_turn_listener(conn)])
        except AssistantError as exc:
            logger.warning(f"screen {elder_id}: no voice pipeline: error[{exc.code}] {exc.message}")
            await link.send(ErrorMessage(code=exc.code, text="语音助手暂时不可用，按钮和紧急求助仍然可以用"))
        if worker is not None:

            @worker.event_handler("on_pipeline_started")
            async def _started(_worker, _frame) -> None:
                conn.pipeline_running = True
                await link.send(
                    Ready(
                        session_id=session.call_id,
                        sample_rate_hz=rate,
                        end_of_turn_silence_s=longest_end_of_turn_silence_s(
                            settings.audio, max_silence_s=session.end_of_turn_max_silence_s),
                    )
                )

        async with asyncio.TaskGroup() as tg:
            worker_task = tg.create_task(_run_worker(worker, conn)) if worker is not None else None
            tg.create_task(_panel_loop(app, conn, stop))
            try:
                await _receive(app, ws, conn)
            finally:
                stop.set()
                if worker is not None and worker_task is not None and not worker_task.done():
                    await worker.cancel(reason="screen closed")
    finally:
        hub.remove(conn)
        logger.info(f"screen {elder_id}: session {session.call_id} closed")
    return ws


# -- app wiring ----------------------------------------------------------------------------------------


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    """The screen's read model over the services' platform store; its SOS alerts go through the store's
    ``raise_alert`` (one alert per call, family notifications)."""
    services = app[SERVICES_KEY]
    app[SECRET_KEY] = screen_secret(services.settings)
    store = ScreenStore(platform=services.store, settings=services.settings)
    app[STORE_KEY] = store
    yield
    await store.close()


async def _close_screens(app: web.Application) -> None:
    for conns in list(app[HUB_KEY].connections.values()):
        for conn in list(conns):
            ws = getattr(conn.link, "_ws", None)
            if ws is not None and not ws.closed:
                await ws.close(code=1001, message=b"server shutdown")


# the kiosk page's own script, worklet and WebSocket only; never framed (issue #26: as the console does)
SCREEN_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "connect-src 'self'; worker-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/screen/"):
        response.headers.setdefault("Content-Security-Policy", SCREEN_CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")


def setup_screen(app: web.Application, *, pipeline_factory: PipelineFactory | None = None) -> None:
    """Mount the smart screen's routes on ``app`` (called by ``assistant.server.create_app``; after the
    services, ``app[SERVICES_KEY]``)."""
    app[HUB_KEY] = ScreenHub()
    app[SOS_TIMES_KEY] = []
    if pipeline_factory is not None:
        app[PIPELINE_FACTORY_KEY] = pipeline_factory
    app.cleanup_ctx.append(_store_ctx)
    app.on_shutdown.append(_close_screens)
    app.on_response_prepare.append(_security_headers)
    app.router.add_static("/screen/static", STATIC_DIR, append_version=False)
    app.router.add_get("/screen/{elder_id}", screen_page)
    app.router.add_get("/screen/{elder_id}/ws", screen_ws)
    app.router.add_post("/screen/{elder_id}/sos", sos)
    app.router.add_post(r"/screen/{elder_id}/sos/{alert_id:\d+}/cancel", sos_cancel)
    app.router.add_get("/screen/{elder_id}/status", status)


def create_app(settings: Settings, *, pipeline_factory: PipelineFactory | None = None) -> web.Application:
    """A web app with only the screen, on services of its own without their background loops (tests;
    ``assistant serve`` mounts it next to the other areas)."""
    app = web.Application()
    app.cleanup_ctx.append(services_ctx(settings, run_loops=False))
    setup_screen(app, pipeline_factory=pipeline_factory)
    return app
