"""``assistant serve``: the web app (platform API, fraud-guard lookup, operator console, smart screen),
the supervised Rasa servers and the phone gateway, on embedded defaults. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import time
from typing import Any

from aiohttp import web
from loguru import logger

from assistant import __version__
from assistant.errors import AssistantError, http_status
from assistant.settings import Settings, load_settings

SETTINGS_KEY = web.AppKey("settings", Settings)
STARTED_KEY = web.AppKey("started_at", float)
# what `serve` started and how that went: name → {"ok": bool | None, "error": code, ...}; ok None = off on purpose
COMPONENTS_KEY = web.AppKey("components", dict)


def report_component(app: web.Application, name: str, *, ok: bool | None, error: str | None = None, **detail: Any) -> None:
    """Record a component's state for ``/health`` (``ok=None``: switched off on purpose, not a fault)."""
    entry: dict[str, Any] = {"ok": ok, **detail}
    if error:
        entry["error"] = error
    app.setdefault(COMPONENTS_KEY, {})[name] = entry

# (module, function): each area mounts its routes; a missing area is logged, not fatal
AREAS: tuple[tuple[str, str], ...] = (
    ("assistant.platform.api", "setup_platform_api"),
    ("assistant.fraud_guard.api", "setup_fraud_api"),
    ("assistant.console.app", "setup_console"),
    ("assistant.screen.app", "setup_screen"),
    ("telephony.metrics", "setup_metrics"),
)


def service_token(settings: Settings) -> str:
    """The bearer token the action server and gateways use (created under var/ at first start)."""
    from assistant.platform.api import service_token as platform_token

    return platform_token(settings)


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
    from assistant.runtime import SUPERVISOR_KEY

    supervisor = app.get(SUPERVISOR_KEY)
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
        from assistant.platform.api import store_health

        body["store"] = await store_health(app)
    except ModuleNotFoundError:
        body["store"] = "not built"
    except AssistantError as exc:
        body["store"] = {"ok": False, "error": exc.code}
        body["status"] = "degraded"
    try:
        from assistant.platform.api import sms_health

        body["sms"] = sms_health(app)  # "not configured": family SMS are not sent (rows stay undeliverable)
    except ModuleNotFoundError:
        body["sms"] = "not configured"
    return web.json_response(body, status=200 if body["status"] == "ok" else 503)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=32 * 1024 * 1024)
    app[SETTINGS_KEY] = settings
    app[STARTED_KEY] = time.monotonic()
    app[COMPONENTS_KEY] = {}
    app.router.add_get("/health", health)
    for module, func in AREAS:
        try:
            setup = getattr(importlib.import_module(module), func)
        except ModuleNotFoundError as exc:
            logger.warning(f"{module} not available ({exc.name}); its routes are not mounted")
            continue
        setup(app, settings=settings)
    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="web port (default 8080)")
    parser.add_argument("--no-rasa", action="store_true", help="do not start the Rasa servers")
    parser.add_argument("--no-phone", action="store_true", help="do not start the SIP gateway")


async def _serve(settings: Settings, *, with_rasa: bool, with_phone: bool) -> None:
    """Serve until SIGINT/SIGTERM. A signal during start-up (Rasa loads for ~30 s) stops at once: start-up is
    cancelled and what had started (child processes included) is stopped on the way out."""
    stop = asyncio.Event()
    ready = asyncio.Event()
    serving = asyncio.create_task(_serve_until(stop, ready, settings, with_rasa=with_rasa, with_phone=with_phone),
                                  name="serve")

    def on_signal() -> None:
        stop.set()
        if not ready.is_set():
            serving.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await asyncio.wait({serving})
    except asyncio.CancelledError:
        serving.cancel()
        await asyncio.wait({serving})
        raise
    if serving.cancelled():
        logger.info("stopped during start-up")
        return
    serving.result()  # start-up errors propagate to the CLI's one-line message
    logger.info("stopped cleanly")


async def _serve_until(stop: asyncio.Event, ready: asyncio.Event, settings: Settings, *, with_rasa: bool,
                       with_phone: bool) -> None:
    from assistant.runtime import running
    from telephony.gateway_service import start_gateway

    async with running(settings, with_rasa=with_rasa) as runtime:
        gateway = await start_phone(runtime, start_gateway=start_gateway) if with_phone else None
        if not with_phone:
            report_component(runtime.app, "phone", ok=None, note="--no-phone")
        ready.set()
        logger.info(f"assistant {__version__} serving on {runtime.base_url} — Ctrl-C stops")
        try:
            await stop.wait()
        finally:
            if gateway is not None:
                await gateway.stop()


async def start_phone(runtime, *, start_gateway):
    """The SIP gateway, or None when it cannot start (e.g. the SIP port is taken): the rest is served, the log
    says why and ``/health`` answers 503 "degraded" with ``components.phone.error``."""
    try:
        gateway = await start_gateway(runtime)
    except AssistantError as exc:
        logger.error(f"phone gateway not started: error[{exc.code}] {exc.message}")
        report_component(runtime.app, "phone", ok=False, error=exc.code, message=exc.message)
        return None
    report_component(runtime.app, "phone", ok=True)
    return gateway


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.host or args.port:
        server = {}
        if args.host:
            server["host"] = args.host
        if args.port:
            server["port"] = args.port
        overrides["server"] = server
    settings = load_settings(**overrides)
    logger.info(f"var: {settings.paths.var_dir}; database: {settings.store.database_url}; models: {settings.paths.models_dir}")
    asyncio.run(_serve(settings, with_rasa=not args.no_rasa, with_phone=not args.no_phone))
    return 0
