"""The one web application of ``assistant serve``: ``/health``, the platform API, the fraud-guard lookup,
the operator console and family portal, the smart screen (each area mounts its own routes). The areas'
handlers find the process's ``Services`` (``assistant.services``) under ``SERVICES_KEY``, the only app key
that holds collaborators.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from assistant import __version__
from assistant.console.app import setup_console
from assistant.errors import AssistantError, http_status
from assistant.fraud_guard.api import setup_fraud_api
from assistant.platform.api import setup_platform_api, sms_health, store_health
from assistant.screen.app import setup_screen
from assistant.services import SERVICES_KEY, Services, services_ctx
from assistant.settings import Settings
from telephony.metrics import setup_metrics
from telephony.warn_api import setup_warning_api

STARTED_KEY = web.AppKey("started_at", float)
# what `serve` started and how that went: name → {"ok": bool | None, "error": code, ...}; ok None = off on purpose
COMPONENTS_KEY = web.AppKey("components", dict)


def report_component(app: web.Application, name: str, *, ok: bool | None, error: str | None = None, **detail: Any) -> None:
    """Record a component's state for ``/health`` (``ok=None``: switched off on purpose, not a fault)."""
    entry: dict[str, Any] = {"ok": ok, **detail}
    if error:
        entry["error"] = error
    app.setdefault(COMPONENTS_KEY, {})[name] = entry


# each area mounts its routes (all of them on the one ``Services``)
AREAS = (setup_platform_api, setup_fraud_api, setup_console, setup_screen, setup_metrics, setup_warning_api)


@web.middleware
async def json_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except AssistantError as exc:
        return web.json_response({"error": {"code": exc.code, "message": exc.message}}, status=http_status(exc.code))


async def health(request: web.Request) -> web.Response:
    app = request.app
    body: dict[str, Any] = {
        "status": "ok",
        "version": __version__,
        "uptime_s": round(time.monotonic() - app[STARTED_KEY], 1),
    }
    services = app[SERVICES_KEY]
    supervisor = services.supervisor
    body["rasa"] = supervisor.status() if supervisor is not None else "not running"
    components = {name: dict(entry) for name, entry in (app.get(COMPONENTS_KEY) or {}).items()}
    if supervisor is not None:  # a child that died or is being restarted: calls go to operators meanwhile
        children = body["rasa"]
        down = sorted(name for name, child in children.items() if not child["running"])
        components["dialogue"] = {"ok": not down, **({"error": "rasa_down", "down": down} if down else {})}
    body["components"] = components
    if any(entry.get("ok") is False for entry in components.values()):
        body["status"] = "degraded"
    try:
        body["store"] = await store_health(services)
    except AssistantError as exc:
        body["store"] = {"ok": False, "error": exc.code}
        body["status"] = "degraded"
    body["sms"] = sms_health(services)  # "not configured": family SMS are not sent (rows stay undeliverable)
    return web.json_response(body, status=200 if body["status"] == "ok" else 503)


def create_app(settings: Settings, *, services: Services | None = None) -> web.Application:
    """The web app on ``services`` (``assistant serve`` builds them first), or on services of its own built
    when the app starts (tests, tools)."""
    app = web.Application(middlewares=[json_errors], client_max_size=32 * 1024 * 1024)
    app[STARTED_KEY] = time.monotonic()
    app[COMPONENTS_KEY] = {}
    if services is not None:
        app[SERVICES_KEY] = services
    else:
        app.cleanup_ctx.append(services_ctx(settings))
    app.router.add_get("/health", health)
    for setup in AREAS:
        setup(app)
    return app
