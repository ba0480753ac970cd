"""Client of the Platform API (``docs/contracts.md``) for the action server. No Rasa import.

Base URL from ``ASSISTANT_API_URL`` (default ``http://127.0.0.1:8080``), bearer token from
``ASSISTANT_SERVICE_TOKEN``; both are read when a client is made, never at import. Every failure is a
``PlatformApiError`` with a stable code: ``api_down`` (cannot connect), ``api_timeout``,
``api_http_<status>`` (unexpected status), ``api_bad_reply`` (not the JSON we expect).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import aiohttp

DEFAULT_API_URL = "http://127.0.0.1:8080"


class PlatformApiError(Exception):
    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, kw_only=True)
class PlatformApi:
    base_url: str
    token: str
    timeout_s: float = 5.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> PlatformApi:
        env = dict(os.environ if env is None else env)
        return cls(
            base_url=(env.get("ASSISTANT_API_URL") or DEFAULT_API_URL).rstrip("/"),
            token=env.get("ASSISTANT_SERVICE_TOKEN", ""),
            timeout_s=float(env.get("ASSISTANT_API_TIMEOUT_S", "5")),
        )

    async def _request(self, method: str, path: str, *, json: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as http:
                async with http.request(method, self.base_url + path, json=json, headers=headers) as resp:
                    if resp.status not in ok:
                        raise PlatformApiError(f"{method} {path} answered HTTP {resp.status}", code=f"api_http_{resp.status}")
                    try:
                        return await resp.json(content_type=None)
                    except ValueError as exc:
                        raise PlatformApiError(f"{method} {path} did not answer JSON", code="api_bad_reply") from exc
        except TimeoutError as exc:
            raise PlatformApiError(f"{method} {path} timed out after {self.timeout_s:.1f} s", code="api_timeout") from exc
        except aiohttp.ClientConnectionError as exc:
            raise PlatformApiError(f"platform API not reachable at {self.base_url}", code="api_down") from exc
        except aiohttp.ClientError as exc:
            raise PlatformApiError(f"{method} {path} failed: {type(exc).__name__}", code="api_down") from exc

    async def get_elder(self, elder_id: Any) -> dict[str, Any]:
        data = await self._request("GET", f"/api/elders/{elder_id}")
        if not isinstance(data, dict):
            raise PlatformApiError("elder record is not an object", code="api_bad_reply")
        return data

    async def get_call(self, call_id: str) -> dict[str, Any]:
        data = await self._request("GET", f"/api/calls/{call_id}")
        if not isinstance(data, dict):
            raise PlatformApiError("call record is not an object", code="api_bad_reply")
        return data

    async def place_order(
        self, *, elder_id: Any, call_id: str, order_type: str, details: dict[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        """POST /api/orders; returns ``{"order_id", "status"}`` only when the store answered 201."""
        body = {
            "elder_id": elder_id,
            "call_id": call_id,
            "type": order_type,
            "details": details,
            "idempotency_key": idempotency_key,
        }
        # only 201 means the store committed the order: anything else is a failure for the elder
        data = await self._request("POST", "/api/orders", json=body, ok=(201,))
        if not isinstance(data, dict) or not data.get("order_id"):
            raise PlatformApiError("order reply has no order_id", code="api_bad_reply")
        return data

    async def raise_alert(self, *, elder_id: Any, call_id: str, kind: str, detail: dict[str, Any]) -> dict[str, Any]:
        body = {"elder_id": elder_id, "call_id": call_id, "kind": kind, "detail": detail}
        data = await self._request("POST", "/api/alerts", json=body, ok=(200, 201))
        return data if isinstance(data, dict) else {}
