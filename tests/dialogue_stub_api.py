"""STUB of the Platform API for dialogue tests — NOT the real store (that is assistant/platform, issue #5 store).

Implements just what the action server calls (``docs/contracts.md``): ``GET /api/elders/{id}``,
``POST /api/orders`` (201, same idempotency key → same order), ``POST /api/alerts``, ``GET /health``.
It records every request so tests can assert what the actions sent; ``fail_orders`` makes orders fail (503).
Runs its own event loop in a thread so sync and async tests can both use it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

STUB_TOKEN = "stub-service-token"
ELDER = {"elder_id": 7, "name": "陈伯", "address": "江门市蓬江区建设路八十八号", "phone": "0750-0000000"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(kw_only=True)
class StubPlatformApi:
    port: int = field(default_factory=free_port)
    orders: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    unauthorised: int = 0
    fail_orders: bool = False
    family_notice: str = "none"  # what POST /api/alerts says about family messages (on_its_way / undeliverable)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _authorised(self, request: web.Request) -> bool:
        ok = request.headers.get("Authorization") == f"Bearer {STUB_TOKEN}"
        if not ok:
            self.unauthorised += 1
        return ok

    async def _elder(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorised"}, status=401)
        if request.match_info["elder_id"] != str(ELDER["elder_id"]):
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(ELDER)

    async def _order(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorised"}, status=401)
        if self.fail_orders:
            return web.json_response({"error": "store_failed"}, status=503)
        body = await request.json()
        for existing in self.orders:
            if existing["idempotency_key"] == body["idempotency_key"]:
                return web.json_response({"order_id": existing["order_id"], "status": "placed"}, status=201)
        order_id = f"ord-{1000 + len(self.orders) + 1}"
        self.orders.append({**body, "order_id": order_id})
        return web.json_response({"order_id": order_id, "status": "placed"}, status=201)

    async def _alert(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorised"}, status=401)
        body = await request.json()
        alert_id = len(self.alerts) + 1
        self.alerts.append({**body, "alert_id": alert_id})
        return web.json_response(
            {"alert_id": alert_id, "family_notice": self.family_notice, "family_notified": self.family_notice == "on_its_way"},
            status=201,
        )

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "stub": True})

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/api/elders/{elder_id}", self._elder)
        app.router.add_post("/api/orders", self._order)
        app.router.add_post("/api/alerts", self._alert)
        return app

    def start(self) -> StubPlatformApi:
        ready = threading.Event()

        def _run() -> None:
            self._loop = asyncio.new_event_loop()
            self._runner = web.AppRunner(self._app())
            self._loop.run_until_complete(self._runner.setup())
            self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=_run, name="stub-platform-api", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("stub platform API did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
