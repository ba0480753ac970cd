"""What every console page handler shares: the app keys, the client's address, the session cookie, and
``guarded`` (sign-in, role and CSRF checks around a handler). ``app.py`` mounts the views that use it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.console import auth
from assistant.console.auth import Principal
from assistant.console.events import EventHub
from assistant.console.render import error_page
from assistant.errors import AssistantError, StoreError, http_status
from assistant.services import SERVICES_KEY

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# the console's own state (its collaborators are the process's services: ``app[SERVICES_KEY]``)
HUB_KEY = web.AppKey("console_hub", EventHub)

Handler = Callable[[web.Request, Principal, AsyncSession], Awaitable[web.StreamResponse]]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def peer_ip(request: web.Request) -> str:
    """The socket peer's address (what the kernel says, not what a header claims)."""
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, tuple | list) and peer:
        return str(peer[0])
    return request.remote or ""


def client_ip(request: web.Request) -> str:
    """The address sign-in throttling and the audit log use: the socket peer; only when that peer is one of
    ``settings.server.trusted_proxies`` (a reverse proxy in front of us) the right-most ``X-Forwarded-For``
    entry that is not itself a trusted proxy."""
    ip = peer_ip(request)
    services = request.app.get(SERVICES_KEY)
    trusted = tuple(services.settings.server.trusted_proxies or ()) if services is not None else ()
    if ip and ip in trusted:
        hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if h.strip()]
        for hop in reversed(hops):
            if hop not in trusted:
                ip = hop
                break
    return ip[:64]


def set_session_cookie(resp: web.StreamResponse, request: web.Request, session_id: str) -> None:
    resp.set_cookie(
        auth.SESSION_COOKIE,
        session_id,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
        max_age=int(auth.SESSION_TTL_S),
    )


async def submitted_csrf(request: web.Request) -> str | None:
    token = request.headers.get("X-CSRF-Token")
    if token:
        return token
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get("_csrf")
        return value if isinstance(value, str) else None
    return None


def guarded(*, area: str, roles: tuple[str, ...]) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Sign-in, role and CSRF checks around a page handler."""

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def inner(request: web.Request) -> web.StreamResponse:
            sessions = request.app[SERVICES_KEY].sessions
            async with sessions() as db:
                principal = await auth.load_principal(db, request.cookies.get(auth.SESSION_COOKIE))
                await db.commit()
                if principal is None:
                    if request.method == "GET" and "text/event-stream" not in request.headers.get("Accept", ""):
                        raise web.HTTPSeeOther(f"/{area}/login?next={quote(request.path_qs, safe='')}")
                    return error_page(403, "请先登录。", area=area)
                if principal.role not in roles:
                    return error_page(403, "您的账号无权查看此页面。", principal, area=area)
                if request.method not in SAFE_METHODS:
                    if not auth.tokens_equal(await submitted_csrf(request), principal.csrf_token):
                        await auth.audit(db, principal, "csrf_refused", target_type="path", target_id=request.path[:64],
                                         ip=client_ip(request))
                        await db.commit()
                        return error_page(403, "表单已过期或来源不明（CSRF 校验失败），请刷新页面后重试。",
                                          principal, area=area)
                try:
                    return await handler(request, principal, db)
                except auth.ConsoleError as exc:
                    await db.rollback()
                    return error_page(exc.status, exc.message, principal, area=area)
                except StoreError as exc:
                    await db.rollback()
                    status = http_status(exc.code)
                    message = "数据库暂时不可用，请稍后重试。" if status == 503 else f"操作未完成：{exc.message}"
                    return error_page(status, message, principal, area=area)
                except AssistantError as exc:  # e.g. the call ledger is unavailable
                    await db.rollback()
                    log.warning("console action failed: %s: %s", exc.code, exc.message)
                    return error_page(503, f"操作未完成（{exc.code}），请稍后重试。", principal, area=area)

        return inner

    return wrap


async def console_principal(request: web.Request) -> Principal | None:
    """The console user signed in on this request (for other areas, e.g. the platform API accepting a
    console session instead of the service token). None when there is no valid session."""
    services = request.app.get(SERVICES_KEY)
    if services is None:
        return None
    async with services.sessions() as db:
        principal = await auth.load_principal(db, request.cookies.get(auth.SESSION_COOKIE))
        await db.commit()
    return principal


def require_elder(principal: Principal, elder_id: int) -> None:
    """Family users only reach their own parents; staff reach everyone."""
    if not principal.is_staff and elder_id not in principal.elder_ids:
        raise auth.ForbiddenError("无权访问这位长者的信息。")
