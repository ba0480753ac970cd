"""``POST /api/warnings`` and ``GET /api/warnings/{broadcast}``: warning broadcasts through the platform API
(same bearer token and coded JSON errors as ``assistant.platform.api``; ``telephony.broadcasts``).

``POST /api/warnings`` ``{"broadcast_id"?, "kind": "typhoon"|"heat"|"outage", "fields"?: {...}}`` or
``{"text": "..."}``, optional ``"districts": ["蓬江", ...]`` → ``201 {"broadcast", "elders", "added",
"capacity_calls_per_h", "nodes", "expected_calls", "expected_done_s", "expected_done_at"}`` (the same
``broadcast_id`` again adds nobody; the expected time to reach every elder comes from the call engine's
reported capacity, ``telephony.capacity``; null while no engine node runs). ``GET /api/warnings/{broadcast}`` → the delivery report
``{district: {planned, heard, need_help, answered, no_answer, failed, pending}}``.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from assistant.errors import StoreError, TelephonyError
from assistant.platform.api import _api, _body, _dict, _store, _str
from assistant.platform.models import DISTRICTS
from assistant.services import SERVICES_KEY
from telephony.broadcasts import Broadcast, warning_report
from telephony.call_jobs import CallJobStore
from telephony.capacity import broadcast_estimate
from telephony.gateway_service import send_warning


def _jobs(request: web.Request) -> CallJobStore:
    return CallJobStore.for_engine(request.app[SERVICES_KEY].engine, now=lambda: dt.datetime.now().astimezone())


async def post_warning(request: web.Request) -> web.Response:
    body = await _body(request)
    districts = body.get("districts") or []
    if not isinstance(districts, list) or any(d not in DISTRICTS for d in districts):
        raise StoreError(f"districts must be a list of {', '.join(DISTRICTS)}", code="invalid")
    now = dt.datetime.now().astimezone()
    kind, text = _str(body.get("kind"), "kind"), _str(body.get("text"), "text")
    try:
        broadcast = Broadcast(broadcast_id=_str(body.get("broadcast_id"), "broadcast_id")
                              or f"{kind or 'text'}-{now.astimezone(dt.UTC):%Y%m%d%H%M%S}",
                              kind=kind, text=text, fields={k: str(v) for k, v in _dict(body.get("fields"), "fields").items()})
    except TelephonyError as exc:
        raise StoreError(exc.message, code="invalid") from exc
    planned = await send_warning(store=_store(request), jobs=_jobs(request), broadcast=broadcast, districts=districts,
                                 quiet_hours=request.app[SERVICES_KEY].settings.telephony.quiet_hours, now=now)
    eta = await broadcast_estimate(_jobs(request), broadcast.broadcast_id,
                                   telephony=request.app[SERVICES_KEY].settings.telephony)
    return web.json_response({"broadcast": broadcast.broadcast_id, **planned, **eta}, status=201)


async def get_warning(request: web.Request) -> web.Response:
    broadcast = request.match_info["broadcast"]
    report = await warning_report(_jobs(request), broadcast_id=broadcast)
    if broadcast not in report:
        raise StoreError(f"no broadcast {broadcast}", code="not_found")
    return web.json_response(report[broadcast])


def setup_warning_api(app: web.Application) -> None:
    app.router.add_post("/api/warnings", _api(post_warning))
    app.router.add_get("/api/warnings/{broadcast}", _api(get_warning))
