"""The platform API under ``/api`` (see docs/contracts.md, "Platform API").

``setup_platform_api(app, settings=...)`` mounts the routes on the integrator's app and adds a
cleanup_ctx that creates the engine (and brings the schema to heads when ``store.auto_migrate``), puts a
``PlatformStore`` under ``STORE_KEY``, runs the SLA watcher and the outbox dispatcher, and disposes of it
all at shutdown. ``create_app(settings)`` is the same on a bare application (tests).

Auth: ``Authorization: Bearer <service token>``; other areas (the console) may append an
``async def(request) -> str | None`` to ``app[AUTH_HOOKS_KEY]`` that returns a principal for a logged-in
session, and an ``async def(request, principal, action, target_type, target_id) -> None`` to
``app[AUDIT_HOOKS_KEY]`` to log reads of personal data. Errors are ``{"error": {"code", "message"}}`` with
the status from ``assistant.errors.http_status``.

Personal data: transcripts (``GET /api/calls/{id}?turns=1``) and alert ``detail`` are always returned
masked with the elder's own data (``assistant.console.redaction``); the raw text is only reachable through
the console's reveal flow (supervisors, audited). An alert status change records the authenticated
principal, never a ``by`` from the body.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from assistant.errors import StoreError, http_status
from assistant.platform.db import create_engine_for, describe_url
from assistant.platform.models import ORDER_TYPES, utcnow
from assistant.platform.notify import DlrReceiver, KannelSms, OutboxDispatcher, Sender, TrackingSender
from assistant.platform.retention import RetentionJob, recordings_dir, tracker_store_url
from assistant.platform.sla import SlaWatcher
from assistant.platform.store import AlertInfo, CallUpdate, PlatformStore
from assistant.settings import Settings

log = logging.getLogger(__name__)

AuthHook = Callable[[web.Request], Awaitable[str | None]]

STORE_KEY = web.AppKey("platform_store", PlatformStore)
SLA_KEY = web.AppKey("platform_sla_watcher", SlaWatcher)
OUTBOX_KEY = web.AppKey("platform_outbox", OutboxDispatcher)
DLR_KEY = web.AppKey("platform_sms_dlr", DlrReceiver)
SERVICE_TOKEN_KEY = web.AppKey("platform_service_token", str)
AUTH_HOOKS_KEY = web.AppKey("platform_auth_hooks", list)
AUDIT_HOOKS_KEY = web.AppKey("platform_audit_hooks", list)
# optional, set before start-up (tests): a UTC clock and extra notification senders
CLOCK_KEY = web.AppKey("platform_clock", object)
SENDERS_KEY = web.AppKey("platform_senders", dict)
_SETTINGS_KEY = web.AppKey("platform_settings", Settings)
RETENTION_KEY = web.AppKey("platform_retention", RetentionJob)
SHUTDOWN_GRACE_S = 5.0
_PRINCIPAL = web.RequestKey("platform_principal", str)


# ---------------------------------------------------------------- service token


def service_token(settings: Settings) -> str:
    """``settings.server.service_token``, else ``var/service_token`` (created once, mode 0600)."""
    if settings.server.service_token:
        return settings.server.service_token
    path = settings.paths.var_dir / "service_token"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if token:
            return token
        raise StoreError(f"{path} is empty: delete it to create a new token", code="store_config") from None
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


# ---------------------------------------------------------------- helpers


def _error(code: str, message: str, status: int) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _api(handler: Handler) -> Handler:
    """Auth + coded JSON errors for one route (independent of the host app's middlewares)."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        principal = await _authenticate(request)
        if principal is None:
            return _error("unauthorized", "missing or wrong bearer token", 401)
        request[_PRINCIPAL] = principal
        try:
            return await handler(request)
        except StoreError as exc:
            return _error(exc.code, exc.message, http_status(exc.code))
        except web.HTTPException:
            raise
        except Exception:  # a bug: log it, answer JSON, keep serving
            log.exception("platform API %s %s failed", request.method, request.path)
            return _error("internal", "internal error (logged)", 500)

    return wrapper


async def _authenticate(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    token = request.app.get(SERVICE_TOKEN_KEY)
    if header.startswith("Bearer ") and token:
        if secrets.compare_digest(header[7:].strip().encode(), token.encode()):
            return "service"
    for hook in request.app.get(AUTH_HOOKS_KEY, []):
        principal = await hook(request)
        if principal:
            return principal
    return None


def _store(request: web.Request) -> PlatformStore:
    store = request.app.get(STORE_KEY)
    if store is None:
        raise StoreError("platform store is not running")
    return store


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StoreError("body must be JSON", code="invalid") from None
    if not isinstance(body, dict):
        raise StoreError("body must be a JSON object", code="invalid")
    return body


def _int(value: Any, name: str, *, required: bool = True) -> int | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or value is None:
        raise StoreError(f"{name} must be an integer", code="invalid")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StoreError(f"{name} must be an integer", code="invalid") from None


def _str(value: Any, name: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise StoreError(f"{name} is required", code="invalid")
        return None
    if not isinstance(value, str):
        raise StoreError(f"{name} must be a string", code="invalid")
    return value


def _dict(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StoreError(f"{name} must be an object", code="invalid")
    return value


def _when(value: Any, name: str) -> dt.datetime | None:
    s = _str(value, name)
    if s is None:
        return None
    try:
        t = dt.datetime.fromisoformat(s)
    except ValueError:
        raise StoreError(f"{name} must be an ISO 8601 time", code="invalid") from None
    if t.tzinfo is None:
        raise StoreError(f"{name} needs a UTC offset", code="invalid")
    return t


def _match_int(request: web.Request, name: str) -> int:
    return int(_int(request.match_info[name], name))  # routes only match digits


# ---------------------------------------------------------------- handlers


async def get_elder(request: web.Request) -> web.Response:
    elder = await _store(request).get_elder(_match_int(request, "elder_id"))
    return web.json_response(elder.to_json())


async def elder_by_phone(request: web.Request) -> web.Response:
    number = request.query.get("number", "").strip()
    if not number:
        raise StoreError("query parameter 'number' is required", code="invalid")
    elder = await _store(request).elder_by_phone(number)
    if elder is None:
        raise StoreError("no elder with that number", code="not_found")
    return web.json_response(elder.to_json())


async def elder_orders(request: web.Request) -> web.Response:
    store = _store(request)
    elder_id = _match_int(request, "elder_id")
    await store.get_elder(elder_id)
    status = request.query.get("status")
    orders = await store.list_orders(elder_id=elder_id, status=status.split(",") if status else None)
    return web.json_response({"orders": [o.to_json() for o in orders]})


async def elder_alerts(request: web.Request) -> web.Response:
    store = _store(request)
    elder_id = _match_int(request, "elder_id")
    await store.get_elder(elder_id)
    status = request.query.get("status")
    alerts = await store.list_alerts(elder_id=elder_id, status=status.split(",") if status else None)
    return web.json_response({"alerts": await _masked_alerts(store, alerts)})


async def elder_schedules(request: web.Request) -> web.Response:
    schedules = await _store(request).list_schedules(elder_id=_match_int(request, "elder_id"), enabled_only=False)
    return web.json_response({"schedules": [s.to_json() for s in schedules]})


async def list_schedules(request: web.Request) -> web.Response:
    schedules = await _store(request).list_schedules()
    return web.json_response({"schedules": [s.to_json() for s in schedules]})


async def _personal(store: PlatformStore, elder_id: int | None) -> Any:
    """The elder's values to mask (``console.redaction.Personal``), or None."""
    from assistant.console.redaction import personal_of

    if elder_id is None:
        return None
    try:
        elder = await store.get_elder(elder_id)
    except StoreError as exc:
        if exc.code == "not_found":
            return None
        raise
    return personal_of(elder, safe_phrase=await store.safe_phrase(elder_id) or "")


async def _audit(request: web.Request, action: str, target_type: str, target_id: str | int) -> None:
    for hook in request.app.get(AUDIT_HOOKS_KEY, []):
        await hook(request, request[_PRINCIPAL], action, target_type, str(target_id))


async def _masked_alerts(store: PlatformStore, alerts: list[AlertInfo]) -> list[dict[str, Any]]:
    """Alerts as JSON with every string of ``detail`` masked with their elder's data."""
    from assistant.console.redaction import redact_detail

    personal: dict[int | None, Any] = {}
    out = []
    for a in alerts:
        if a.elder_id not in personal:
            personal[a.elder_id] = await _personal(store, a.elder_id)
        body = a.to_json()
        body["detail"] = redact_detail(body.get("detail") or {}, personal[a.elder_id])
        out.append(body)
    return out


async def get_call(request: web.Request) -> web.Response:
    """A call; with ``?turns=1`` its transcript, masked (``text``; the raw text is not served here: the
    console's reveal flow is the one audited way to it). A console user's read is audited."""
    from assistant.console.redaction import redacted_text

    store = _store(request)
    call = await store.get_call(request.match_info["call_id"])
    body = call.to_json()
    if request.query.get("turns") in ("1", "true"):
        personal = await _personal(store, call.elder_id)
        turns = []
        for t in await store.list_turns(call.call_id):
            turn = t.to_json()
            turn["text"] = redacted_text(text=t.text, text_redacted=t.text_redacted, personal=personal)
            turn["text_redacted"] = turn["text"]
            turn["redacted"] = True
            turns.append(turn)
        body["turns"] = turns
        await _audit(request, "api_view_turns", "call", call.call_id)
    return web.json_response(body)


async def post_call(request: web.Request) -> web.Response:
    body = await _body(request)
    call_id = _str(body.get("call_id"), "call_id", required=True)
    update = CallUpdate(
        elder_id=_int(body.get("elder_id"), "elder_id", required=False),
        direction=_str(body.get("direction"), "direction"),
        channel=_str(body.get("channel"), "channel"),
        caller_number=_str(body.get("caller_number"), "caller_number"),
        started_at=_when(body.get("started_at"), "started_at"),
        ended_at=_when(body.get("ended_at"), "ended_at"),
        dialect=_str(body.get("dialect"), "dialect"),
        verification=_str(body.get("verification"), "verification"),
        outcome=_str(body.get("outcome"), "outcome"),
        audio_path=_str(body.get("audio_path"), "audio_path"),
    )
    call = await _store(request).upsert_call(call_id, update)
    return web.json_response(call.to_json(), status=200)


async def post_turn(request: web.Request) -> web.Response:
    body = await _body(request)
    conf = body.get("asr_confidence")
    if conf is not None and (isinstance(conf, bool) or not isinstance(conf, int | float)):
        raise StoreError("asr_confidence must be a number", code="invalid")
    turn = await _store(request).add_turn(
        call_id=request.match_info["call_id"],
        turn=int(_int(body.get("turn"), "turn")),
        speaker=_str(body.get("speaker"), "speaker", required=True),
        text=_str(body.get("text"), "text") or "",
        text_redacted=_str(body.get("text_redacted"), "text_redacted"),
        asr_confidence=float(conf) if conf is not None else None,
        intent=_str(body.get("intent"), "intent"),
    )
    return web.json_response(turn.to_json(), status=201)


async def post_order(request: web.Request) -> web.Response:
    body = await _body(request)
    placed_by = _str(body.get("placed_by"), "placed_by") or "elder"
    if placed_by == "family":
        raise StoreError("family orders go to /api/family/{contact_id}/orders", code="invalid")
    result = await _store(request).create_order(
        elder_id=int(_int(body.get("elder_id"), "elder_id")),
        type=_str(body.get("type"), "type", required=True),
        details=_dict(body.get("details"), "details"),
        idempotency_key=_str(body.get("idempotency_key"), "idempotency_key", required=True),
        call_id=_str(body.get("call_id"), "call_id"),
        placed_by=placed_by,
    )
    return _order_response(result.order, created=result.created)


def _order_response(order: Any, *, created: bool) -> web.Response:
    # replays answer exactly like the first time (same status code), with "created": false
    return web.json_response(
        {"order_id": order.order_id, "status": order.status, "type": order.type, "created": created,
         "order": order.to_json()},
        status=201,
    )


async def get_order(request: web.Request) -> web.Response:
    order = await _store(request).get_order(_match_int(request, "order_id"))
    return web.json_response(order.to_json())


async def post_order_status(request: web.Request) -> web.Response:
    body = await _body(request)
    order = await _store(request).update_order_status(
        _match_int(request, "order_id"), _str(body.get("status"), "status", required=True)
    )
    return web.json_response(order.to_json())


async def family_post_order(request: web.Request) -> web.Response:
    body = await _body(request)
    result = await _store(request).family_place_order(
        contact_id=_match_int(request, "contact_id"),
        elder_id=int(_int(body.get("elder_id"), "elder_id")),
        type=_str(body.get("type"), "type", required=True),
        details=_dict(body.get("details"), "details"),
        idempotency_key=_str(body.get("idempotency_key"), "idempotency_key", required=True),
    )
    return _order_response(result.order, created=result.created)


async def family_cancel_order(request: web.Request) -> web.Response:
    order = await _store(request).family_cancel_order(
        contact_id=_match_int(request, "contact_id"), order_id=_match_int(request, "order_id")
    )
    return web.json_response(order.to_json())


async def post_alert(request: web.Request) -> web.Response:
    body = await _body(request)
    alert = await _store(request).raise_alert(
        elder_id=_int(body.get("elder_id"), "elder_id", required=False),
        call_id=_str(body.get("call_id"), "call_id"),
        order_id=_int(body.get("order_id"), "order_id", required=False),
        kind=_str(body.get("kind"), "kind", required=True),
        severity=_str(body.get("severity"), "severity"),
        detail=_dict(body.get("detail"), "detail"),
    )
    dispatcher = request.app.get(OUTBOX_KEY)
    if dispatcher is not None and alert.notified:
        dispatcher.wake()
    notice = family_notice(alert, dispatcher)
    return web.json_response(
        {
            "alert_id": alert.alert_id,
            "status": alert.status,
            "alert": (await _masked_alerts(_store(request), [alert]))[0],
            # what the elder may be told: "on_its_way" only when a configured channel carries a family message
            "family_notice": notice,
            "family_notified": notice == "on_its_way",
        },
        status=201,
    )


def family_notice(alert: AlertInfo, dispatcher: OutboxDispatcher | None) -> str:
    """``on_its_way``: family messages were queued on a channel that can carry them; ``queued``: the channel
    is configured but this worker cannot send (another may); ``undeliverable``:
    messages were queued but no channel is configured for them; ``none``: no family message (no contact,
    an alert kind that does not notify family, or an alert raised earlier in this call)."""
    if not alert.notified:
        return "none"
    if dispatcher is not None and any(dispatcher.can_deliver(c) for c in alert.notified_channels):
        return "on_its_way"
    if dispatcher is not None and any(dispatcher.is_deferred(c) for c in alert.notified_channels):
        return "queued"  # configured, but this worker cannot send it (its report listener failed): not claimed
    return "undeliverable"


async def list_alerts(request: web.Request) -> web.Response:
    status = request.query.get("status")
    kind = request.query.get("kind")
    try:
        limit = min(int(request.query.get("limit", "50")), 500)
    except ValueError:
        raise StoreError("limit must be an integer", code="invalid") from None
    store = _store(request)
    alerts = await store.list_alerts(
        status=status.split(",") if status else None, kind=kind.split(",") if kind else None, limit=limit
    )
    return web.json_response({"alerts": await _masked_alerts(store, alerts)})


async def post_alert_status(request: web.Request) -> web.Response:
    body = await _body(request)
    store = _store(request)
    alert = await store.set_alert_status(
        _match_int(request, "alert_id"),
        _str(body.get("status"), "status", required=True),
        by=request[_PRINCIPAL],  # who is signed in / holds the token; a "by" in the body is not believed
    )
    (masked,) = await _masked_alerts(store, [alert])
    return web.json_response(masked)


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/api/elders/by-phone", elder_by_phone),
    ("GET", r"/api/elders/{elder_id:\d+}", get_elder),
    ("GET", r"/api/elders/{elder_id:\d+}/orders", elder_orders),
    ("GET", r"/api/elders/{elder_id:\d+}/alerts", elder_alerts),
    ("GET", r"/api/elders/{elder_id:\d+}/schedules", elder_schedules),
    ("GET", "/api/schedules", list_schedules),
    ("POST", "/api/calls", post_call),
    ("GET", "/api/calls/{call_id}", get_call),
    ("POST", "/api/calls/{call_id}/turns", post_turn),
    ("POST", "/api/orders", post_order),
    ("GET", r"/api/orders/{order_id:\d+}", get_order),
    ("POST", r"/api/orders/{order_id:\d+}/status", post_order_status),
    ("POST", r"/api/family/{contact_id:\d+}/orders", family_post_order),
    ("POST", r"/api/family/{contact_id:\d+}/orders/{order_id:\d+}/cancel", family_cancel_order),
    ("POST", "/api/alerts", post_alert),
    ("GET", "/api/alerts", list_alerts),
    ("POST", r"/api/alerts/{alert_id:\d+}/status", post_alert_status),
)


# ---------------------------------------------------------------- lifecycle


async def _platform_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[_SETTINGS_KEY]
    url = settings.store.database_url
    if settings.store.auto_migrate:
        from assistant.platform.migrate import upgrade_heads_async

        try:
            if await upgrade_heads_async(url):
                log.info("database migrated to heads: %s", describe_url(url))
        except StoreError as exc:
            # keep serving: every request answers 503 store_failed until the database is back
            log.error("database not migrated (%s): %s", describe_url(url), exc)
    engine = create_engine_for(settings)
    clock = app.get(CLOCK_KEY) or utcnow
    store = PlatformStore(engine=engine, clock=clock)  # type: ignore[arg-type]
    senders: dict[str, Any] = dict(app.get(SENDERS_KEY) or {})
    dispatcher = OutboxDispatcher(
        store=store,
        senders=senders,
        max_attempts=settings.sms.max_attempts,
        retry_backoff_s=settings.sms.retry_backoff_s,
        no_report_after_s=settings.sms.no_report_after_s,
    )
    kannel: KannelSms | None = None
    dlr: DlrReceiver | None = None
    if settings.sms.kannel_sendsms_url and "sms" not in senders:
        dlr = DlrReceiver(dispatcher=dispatcher, host=settings.sms.dlr_listen_host, port=settings.sms.dlr_listen_port)
        try:
            await dlr.start()
        except OSError as exc:
            # serve without sending SMS here rather than not at all: the rows stay queued (another worker with
            # its own sms.dlr_listen_port sends them), /health shows the error
            log.error("SMS not sent by this process: delivery-report listener %s:%s: %s", dlr.host, dlr.port, exc)
            await dlr.stop()
            dlr = None
            dispatcher.defer("sms", reason=f"delivery-report listener {settings.sms.dlr_listen_host}:"
                             f"{settings.sms.dlr_listen_port}: {exc.strerror or exc}")
    if dlr is not None:
        kannel = KannelSms(
            sendsms_url=settings.sms.kannel_sendsms_url,
            username=settings.sms.kannel_username,
            password=settings.sms.kannel_password,
            sender=settings.sms.sender,
            smsc_id=settings.sms.smsc_id,
            dlr_base_url=settings.sms.dlr_public_url or dlr.base_url,
            timeout_s=settings.sms.request_timeout_s,
        )
        dispatcher.add_sender("sms", kannel)
        app[DLR_KEY] = dlr

    async def wake_outbox(_alerts: list[AlertInfo]) -> None:
        dispatcher.wake()

    watcher = SlaWatcher(
        store=store,
        dispatch_sla_s=settings.store.dispatch_sla_s,
        answer_sla_s=settings.store.answer_sla_s,
        interval_s=settings.store.sla_check_interval_s,
        clock=clock,  # type: ignore[arg-type]
        on_alerts=wake_outbox,
    )
    app[STORE_KEY] = store
    app[SLA_KEY] = watcher
    app[OUTBOX_KEY] = dispatcher
    # data protection (issue #15): personal data past its retention period is purged while serve runs
    retention = RetentionJob(store=store, privacy=settings.privacy, recordings_dir=recordings_dir(settings),
                             tracker_url=tracker_store_url(settings), clock=clock)  # type: ignore[arg-type]
    app[RETENTION_KEY] = retention
    # `assistant db restore` refuses to overwrite a SQLite database while this is held
    from assistant.platform.backup import ServeLock

    serve_lock = ServeLock.for_url(url)
    if serve_lock is not None and not await asyncio.to_thread(serve_lock.acquire):
        log.warning("another process holds %s (a second serve on this database?)", serve_lock.path)
    tasks = [
        asyncio.create_task(watcher.run(), name="platform-sla-watcher"),
        asyncio.create_task(dispatcher.run(interval_s=settings.store.outbox_interval_s), name="platform-outbox"),
        asyncio.create_task(retention.run(), name="platform-retention"),
    ]
    try:
        yield
    finally:
        # let the loops finish their round (no query cancelled half-way), then cancel stragglers
        watcher.stop()
        retention.stop()
        dispatcher.stop()
        _done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)
        for task in pending:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for task, result in zip(tasks, results, strict=True):
            if isinstance(result, Exception):
                log.error("%s stopped with %r", task.get_name(), result)
        if dlr is not None:
            await dlr.stop()
        if kannel is not None:
            await kannel.close()
        if serve_lock is not None:
            serve_lock.release()
        await engine.dispose()


def setup_platform_api(
    app: web.Application,
    *,
    settings: Settings,
    senders: Mapping[str, Sender] | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> None:
    """Mount ``/api`` routes and the store's lifecycle on ``app`` (the integrator's server calls this)."""
    app[_SETTINGS_KEY] = settings
    app[SERVICE_TOKEN_KEY] = service_token(settings)
    if AUTH_HOOKS_KEY not in app:
        app[AUTH_HOOKS_KEY] = []
    if senders:
        app[SENDERS_KEY] = dict(senders)
    if clock is not None:
        app[CLOCK_KEY] = clock
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, _api(handler))
    app.cleanup_ctx.append(_platform_ctx)


def create_app(
    settings: Settings,
    *,
    senders: Mapping[str, Sender] | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> web.Application:
    """A bare application with only the platform API and a ``/health`` (tests, tools)."""
    app = web.Application()
    setup_platform_api(app, settings=settings, senders=senders, clock=clock)

    async def health(request: web.Request) -> web.Response:
        try:
            store = await store_health(request.app)
        except StoreError as exc:
            return web.json_response(
                {"status": "degraded", "store": {"ok": False, "error": exc.code}, "sms": sms_health(request.app)},
                status=503,
            )
        return web.json_response({"status": "ok", "store": store, "sms": sms_health(request.app)})

    app.router.add_get("/health", health)
    return app


def sms_health(app: web.Application) -> str | dict[str, Any]:
    """For ``/health``: ``"not configured"`` (family SMS stay undeliverable), or the SMS channel's state."""
    dispatcher = app.get(OUTBOX_KEY)
    if dispatcher is not None and dispatcher.is_deferred("sms"):
        return {"channel": "kannel", "sending_here": False, "last_error": dispatcher.last_error}
    if dispatcher is None or not dispatcher.can_deliver("sms"):
        return "not configured"
    sender = dispatcher.sender("sms")
    dlr = app.get(DLR_KEY)
    return {
        "channel": "kannel" if isinstance(sender, KannelSms) else type(sender).__name__,
        "delivery_reports": isinstance(sender, TrackingSender),
        "dlr_listening": f"{dlr.host}:{dlr.port}" if dlr is not None else None,
        "last_error": dispatcher.last_error,
    }


async def store_health(app: web.Application) -> dict[str, Any]:
    """For the integrator's ``/health``: ``{"ok", "backend", "latency_ms", "sla_rounds"}``; raises
    ``StoreError`` when the database cannot be reached."""
    store = app.get(STORE_KEY)
    if store is None:
        raise StoreError("platform store is not running")
    latency_ms = await store.ping()
    watcher = app.get(SLA_KEY)
    return {
        "ok": True,
        "backend": store.engine.dialect.name,
        "latency_ms": round(latency_ms, 2),
        "sla_rounds": watcher.rounds if watcher is not None else 0,
        "retention": _retention_health(app.get(RETENTION_KEY)),
    }


def _retention_health(job: RetentionJob | None) -> dict[str, Any] | None:
    """The retention purge's last pass (a failing purge is not an outage, but someone should see it)."""
    if job is None:
        return None
    last = job.last
    return {"rounds": job.rounds, "failures": job.failures, "last_at": last.at.isoformat() if last else None,
            "last_error": last.error if last else None}


__all__ = [
    "AUDIT_HOOKS_KEY",
    "AUTH_HOOKS_KEY",
    "ORDER_TYPES",
    "OUTBOX_KEY",
    "SERVICE_TOKEN_KEY",
    "SLA_KEY",
    "STORE_KEY",
    "create_app",
    "family_notice",
    "sms_health",
    "service_token",
    "setup_platform_api",
    "store_health",
]
