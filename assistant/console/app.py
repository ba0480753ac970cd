"""The operator console (``/console``) and the family portal (``/family``): aiohttp, server-rendered.

``setup_console(app)`` mounts both on the integrator's application (``assistant serve``), whose
``app[SERVICES_KEY]`` (``assistant.services``) gives the console its database sessions, store, ledger and
call-back dialler; ``create_app(settings)`` builds a stand-alone application with services of its own for
tests and the benchmark.

Every page handler is wrapped by ``guarded``: it loads the session from the cookie, checks the role,
checks the CSRF token on every state-changing request, and hands the handler the ``Principal`` and an
``AsyncSession``. Family users only ever reach their own parents (``require_elder`` → 403).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from assistant.console import (
    auth,
    views_console,
    views_elders,
    views_family,
    views_medication,
    views_outbound,
    views_users,
    views_voice,
    views_warnings,
)
from assistant.console.events import POLL_INTERVAL_S, EventHub, watch_database
from assistant.console.web import (
    CSP,
    HUB_KEY,
    SAFE_METHODS,
    STATIC_DIR,
    client_ip,
    console_principal,
    guarded,
    require_elder,
)
from assistant.platform import api
from assistant.services import SERVICES_KEY, services_ctx
from assistant.settings import Settings

log = logging.getLogger(__name__)

# for the areas and tests that reach the console's shared pieces through this module
__all__ = ["HUB_KEY", "SERVICES_KEY", "client_ip", "console_principal", "create_app", "guarded", "require_elder",
           "setup_console"]

async def api_auth_hook(request: web.Request) -> str | None:
    """For the platform API (``AUTH_HOOKS_KEY``): a signed-in operator/supervisor/admin may call ``/api``
    with their console session; state-changing calls must carry the session's ``X-CSRF-Token``. Family
    sessions are not accepted there (the API does not check whose parent an elder is)."""
    principal = await console_principal(request)
    if principal is None or not principal.is_staff:
        return None
    if request.method not in SAFE_METHODS and not auth.tokens_equal(
        request.headers.get("X-CSRF-Token"), principal.csrf_token
    ):
        return None
    return f"console:{principal.username}"


async def api_audit_hook(request: web.Request, principal: str, action: str, target_type: str, target_id: str) -> None:
    """For the platform API (``AUDIT_HOOKS_KEY``): a console user's read of personal data through ``/api``
    (e.g. a call's masked transcript) goes to the console's audit log like a page view."""
    if not principal.startswith("console:"):
        return
    services = request.app.get(SERVICES_KEY)
    if services is None:
        return
    async with services.sessions() as db:
        p = await auth.load_principal(db, request.cookies.get(auth.SESSION_COOKIE))
        await auth.audit(db, p, action, target_type=target_type, target_id=target_id[:64], ip=client_ip(request),
                         username=principal.removeprefix("console:"))
        await db.commit()


def _register_api_auth(app: web.Application) -> None:
    app.setdefault(api.AUTH_HOOKS_KEY, []).append(api_auth_hook)
    app.setdefault(api.AUDIT_HOOKS_KEY, []).append(api_audit_hook)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith(("/console", "/family")):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if not request.path.startswith("/console/static"):
            response.headers.setdefault("Cache-Control", "no-store")


async def _watcher_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(
        watch_database(app[HUB_KEY], app[SERVICES_KEY].sessions, interval_s=POLL_INTERVAL_S), name="console-events"
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _close_streams(app: web.Application) -> None:
    app[HUB_KEY].close()


def setup_console(app: web.Application) -> None:
    """Mount the console (``/console``) and the family portal (``/family``) on ``app`` (after the services:
    its event watcher polls their database)."""
    app[HUB_KEY] = EventHub()
    app.cleanup_ctx.append(_watcher_ctx)
    app.on_shutdown.append(_close_streams)
    app.on_response_prepare.append(_security_headers)
    app.router.add_static("/console/static", STATIC_DIR, name="console_static")
    _register_api_auth(app)
    views_console.add_routes(app.router)
    views_family.add_routes(app.router)
    views_users.add_routes(app.router)
    views_voice.add_routes(app.router)
    views_elders.add_routes(app.router)
    views_warnings.add_routes(app.router)
    views_medication.add_routes(app.router)
    views_outbound.add_routes(app.router)


def create_app(settings: Settings, *, create_schema: bool = True) -> web.Application:
    """The console alone, on services of its own (tables created directly unless ``create_schema=False``;
    the SLA, outbox and retention loops are not run)."""
    app = web.Application()
    app.cleanup_ctx.append(services_ctx(settings, create_schema=create_schema, run_loops=False))
    setup_console(app)
    return app
