"""The platform API under ``/api`` (see docs/contracts.md, "Platform API").

``setup_platform_api(app)`` mounts the routes on the integrator's app; the handlers use the process's
``Services`` (``assistant.services``: store, outbox, SLA watcher, retention job, service token) under
``SERVICES_KEY``. ``create_app(settings)`` is a bare application that builds its own services (tests).

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

import datetime as dt
import functools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from assistant.console.redaction import personal_of, redact_detail, redacted_text
from assistant.errors import StoreError, http_status
from assistant.platform.models import ORDER_TYPES
from assistant.platform.notify import KannelSms, OutboxDispatcher, Sender, TrackingSender
from assistant.platform.retention import RetentionJob
from assistant.platform.store import AlertInfo, CallUpdate, PlatformStore
from assistant.services import SERVICES_KEY, Services, service_token, services_ctx
from assistant.settings import Settings

log = logging.getLogger(__name__)

AuthHook = Callable[[web.Request], Awaitable[str | None]]

AUTH_HOOKS_KEY = web.AppKey("platform_auth_hooks", list)
AUDIT_HOOKS_KEY = web.AppKey("platform_audit_hooks", list)
_PRINCIPAL = web.RequestKey("platform_principal", str)


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
    token = request.app[SERVICES_KEY].service_token
    if header.startswith("Bearer ") and token:
        if secrets.compare_digest(header[7:].strip().encode(), token.encode()):
            return "service"
    for hook in request.app.get(AUTH_HOOKS_KEY, []):
        principal = await hook(request)
        if principal:
            return principal
    return None


def _store(request: web.Request) -> PlatformStore:
    return request.app[SERVICES_KEY].store


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
    dispatcher = request.app[SERVICES_KEY].outbox
    if alert.notified:
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


def setup_platform_api(app: web.Application) -> None:
    """Mount the ``/api`` routes on ``app``; its handlers use ``app[SERVICES_KEY]`` (the process's services)."""
    app.setdefault(AUTH_HOOKS_KEY, [])
    app.setdefault(AUDIT_HOOKS_KEY, [])
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, _api(handler))


def create_app(
    settings: Settings,
    *,
    senders: Mapping[str, Sender] | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> web.Application:
    """A bare application with only the platform API and a ``/health``, on services of its own (tests, tools)."""
    app = web.Application()
    app.cleanup_ctx.append(services_ctx(settings, senders=senders, clock=clock))
    setup_platform_api(app)

    async def health(request: web.Request) -> web.Response:
        services = request.app[SERVICES_KEY]
        try:
            store = await store_health(services)
        except StoreError as exc:
            return web.json_response(
                {"status": "degraded", "store": {"ok": False, "error": exc.code}, "sms": sms_health(services)},
                status=503,
            )
        return web.json_response({"status": "ok", "store": store, "sms": sms_health(services)})

    app.router.add_get("/health", health)
    return app


def sms_health(services: Services) -> str | dict[str, Any]:
    """For ``/health``: ``"not configured"`` (family SMS stay undeliverable), or the SMS channel's state."""
    dispatcher = services.outbox
    if dispatcher.is_deferred("sms"):
        return {"channel": "kannel", "sending_here": False, "last_error": dispatcher.last_error}
    if not dispatcher.can_deliver("sms"):
        return "not configured"
    sender = dispatcher.sender("sms")
    dlr = services.dlr
    return {
        "channel": "kannel" if isinstance(sender, KannelSms) else type(sender).__name__,
        "delivery_reports": isinstance(sender, TrackingSender),
        "dlr_listening": f"{dlr.host}:{dlr.port}" if dlr is not None else None,
        "last_error": dispatcher.last_error,
    }


async def store_health(services: Services) -> dict[str, Any]:
    """For the integrator's ``/health``: ``{"ok", "backend", "latency_ms", "sla_rounds"}``; raises
    ``StoreError`` when the database cannot be reached."""
    store = services.store
    latency_ms = await store.ping()
    return {
        "ok": True,
        "backend": store.engine.dialect.name,
        "latency_ms": round(latency_ms, 2),
        "sla_rounds": services.sla.rounds,
        "retention": _retention_health(services.retention),
    }


def _retention_health(job: RetentionJob) -> dict[str, Any]:
    """The retention purge's last pass (a failing purge is not an outage, but someone should see it)."""
    last = job.last
    return {"rounds": job.rounds, "failures": job.failures, "last_at": last.at.isoformat() if last else None,
            "last_error": last.error if last else None}


__all__ = [
    "AUDIT_HOOKS_KEY",
    "AUTH_HOOKS_KEY",
    "ORDER_TYPES",
    "SERVICES_KEY",
    "create_app",
    "family_notice",
    "service_token",
    "setup_platform_api",
    "sms_health",
    "store_health",
]
