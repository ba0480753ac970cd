"""The operator console (``/console``) and the family portal (``/family``): aiohttp, server-rendered.

``setup_console(app, settings=...)`` mounts both on the integrator's application (``assistant serve``);
``create_app(settings)`` builds a stand-alone application for tests and the benchmark.

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

from assistant.console import auth, models, views_console, views_family, views_users
from assistant.console.events import POLL_INTERVAL_S, EventHub, watch_database
from assistant.console.web import (
    CALLBACK_DIALLER_KEY,
    CONSOLE_SETTINGS_KEY,
    CSP,
    HUB_KEY,
    LEDGER_KEY,
    SAFE_METHODS,
    SESSIONS_KEY,
    STATIC_DIR,
    STORE_KEY,
    client_ip,
    console_principal,
    guarded,
    require_elder,
)
from assistant.fraud_guard import models as fraud_models
from assistant.fraud_guard.ledger import CallLedger
from assistant.platform import api
from assistant.platform.db import create_engine_for, session_factory
from assistant.platform.models import Base
from assistant.platform.store import PlatformStore
from assistant.settings import Settings

log = logging.getLogger(__name__)
_TABLES = (models, fraud_models)  # imported for their tables on Base.metadata (create_schema)

# for the areas and tests that reach the console's shared pieces through this module
__all__ = ["CALLBACK_DIALLER_KEY", "HUB_KEY", "SESSIONS_KEY", "STORE_KEY", "client_ip", "console_principal",
           "create_app", "guarded", "require_elder", "setup_console"]

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
    sessions = request.app.get(SESSIONS_KEY)
    if sessions is None:
        return
    async with sessions() as db:
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


def _database_ctx(settings: Settings, *, create_schema: bool):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        engine = create_engine_for(settings)
        if create_schema:
            async with engine.begin() as conn:  # every table, the console's and the fraud guard's included
                await conn.run_sync(Base.metadata.create_all)
        sessions = session_factory(engine)
        app[SESSIONS_KEY] = sessions
        app[STORE_KEY] = PlatformStore(engine=engine, sessionmaker=sessions)
        app[LEDGER_KEY] = CallLedger.for_engine(engine, settings=settings)
        try:
            yield
        finally:
            await engine.dispose()

    return ctx


async def _watcher_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(
        watch_database(app[HUB_KEY], app[SESSIONS_KEY], interval_s=POLL_INTERVAL_S), name="console-events"
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _close_streams(app: web.Application) -> None:
    app[HUB_KEY].close()


def setup_console(app: web.Application, *, settings: Settings, create_schema: bool = False) -> None:
    """Mount the console (``/console``) and the family portal (``/family``) on ``app``.

    The database comes from ``settings.store.database_url``; its tables are created by
    ``assistant db upgrade`` (``create_schema=True`` creates them directly, for tests).
    """
    app[CONSOLE_SETTINGS_KEY] = settings
    app[HUB_KEY] = EventHub()
    app.cleanup_ctx.append(_database_ctx(settings, create_schema=create_schema))
    app.cleanup_ctx.append(_watcher_ctx)
    app.on_shutdown.append(_close_streams)
    app.on_response_prepare.append(_security_headers)
    app.router.add_static("/console/static", STATIC_DIR, name="console_static")
    _register_api_auth(app)
    views_console.add_routes(app.router)
    views_family.add_routes(app.router)
    views_users.add_routes(app.router)


def create_app(settings: Settings, *, create_schema: bool = True) -> web.Application:
    app = web.Application()
    setup_console(app, settings=settings, create_schema=create_schema)
    return app
