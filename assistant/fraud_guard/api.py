"""``GET /api/verify?number=...`` — is the platform calling this number right now, and with which code?

The smart screen polls it with the elder's number when the phone rings: a current ledger entry →
"平安通正在给您打电话 — 确认码 4821"; none → a red warning. Authenticated like the platform API
(``Authorization: Bearer <service token>``, or a console session through the platform's auth hooks).
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from assistant.errors import FraudGuardError
from assistant.platform.api import AUTH_HOOKS_KEY
from assistant.platform.models import normalize_phone
from assistant.services import SERVICES_KEY


def screen_message(entry, *, dialect: str | None = None) -> str:
    if entry is None:
        if dialect == "yue":
            return "⚠ 平安通而家冇打俾你。对方话系平安通就系假嘅，请收线，唔好俾钱或者讲验证码。"
        return "⚠ 平安通现在没有给您打电话。对方自称平安通就是假的，请挂断，不要转账、不要说验证码。"
    if dialect == "yue":
        return f"平安通正在打俾你 — 确认码 {entry.code}"
    return f"平安通正在给您打电话 — 确认码 {entry.code}"


async def _authenticated(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    token = request.app[SERVICES_KEY].service_token
    if header.startswith("Bearer ") and token and secrets.compare_digest(header[7:].strip().encode(), token.encode()):
        return True
    for hook in request.app.get(AUTH_HOOKS_KEY, []):
        if await hook(request):
            return True
    return False


def _error(code: str, message: str, status: int) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def verify(request: web.Request) -> web.Response:
    if not await _authenticated(request):
        return _error("unauthorized", "missing or wrong bearer token", 401)
    number = normalize_phone(request.query.get("number", ""))
    if len(number.lstrip("+")) < 3:
        return _error("invalid", "number is required (digits)", 400)
    ledger = request.app[SERVICES_KEY].ledger
    try:
        entry = await ledger.current_for_number(number)
    except FraudGuardError as exc:
        return _error(exc.code, exc.message, 503)
    dialect = request.query.get("dialect")
    body: dict[str, Any] = {
        "number": number,
        "calling": entry is not None,
        "code": entry.code if entry else None,
        "purpose": entry.purpose if entry else None,
        "elder_id": entry.elder_id if entry else None,
        "valid_until": entry.valid_until.isoformat() if entry else None,
        "status": entry.status if entry else None,
        "message": screen_message(entry, dialect=dialect),
        "warning": entry is None,
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def setup_fraud_api(app: web.Application) -> None:
    """Mount ``GET /api/verify`` (the ledger is ``app[SERVICES_KEY].ledger``)."""
    app.router.add_get("/api/verify", verify)
