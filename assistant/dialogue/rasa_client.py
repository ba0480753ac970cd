"""Client for the Rasa server's REST channel (one sender id per call).

Every failure becomes a ``DialogueError`` with a stable code: ``rasa_down`` (connection refused),
``rasa_timeout`` (slower than ``rasa_timeout_s``), ``rasa_bad_reply`` (not the JSON we expect),
``rasa_http_<status>`` (``rasa_http_401``: the server wants ``token``, ``dialogue.rasa_token``). The dialogue processor turns these into a spoken apology and an operator offer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from assistant.errors import DialogueError


@dataclass(frozen=True, kw_only=True)
class BotMessage:
    text: str | None = None
    custom: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class NluParse:
    intent: str | None
    confidence: float
    entities: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, kw_only=True)
class RasaReply:
    messages: tuple[BotMessage, ...]
    parse: NluParse | None = None
    latency_ms: float = 0.0

    @property
    def texts(self) -> list[str]:
        return [m.text for m in self.messages if m.text]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [m.custom for m in self.messages if m.custom]


@dataclass(kw_only=True)
class RasaClient:
    base_url: str
    timeout_s: float = 8.0
    # the Rasa server's --auth-token (sent as ``?token=``, as Rasa's HTTP API and our launcher expect)
    token: str = ""
    _session: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)

    async def __aenter__(self) -> RasaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, path: str, payload: dict[str, Any]) -> Any:
        url = self.base_url.rstrip("/") + path
        try:
            async with self._http().post(url, json=payload, params=self._params()) as resp:
                if resp.status != 200:
                    raise DialogueError(f"Rasa answered HTTP {resp.status} for {path}", code=f"rasa_http_{resp.status}")
                try:
                    return await resp.json(content_type=None)
                except ValueError as exc:
                    raise DialogueError(f"Rasa sent a reply that is not JSON for {path}", code="rasa_bad_reply") from exc
        except TimeoutError as exc:
            raise DialogueError(f"Rasa did not answer within {self.timeout_s:.1f} s", code="rasa_timeout") from exc
        except aiohttp.ClientConnectionError as exc:
            raise DialogueError(f"Rasa is not reachable at {self.base_url}", code="rasa_down") from exc
        except aiohttp.ClientError as exc:
            raise DialogueError(f"Rasa request failed: {type(exc).__name__}", code="rasa_down") from exc

    def _params(self) -> dict[str, str]:
        return {"token": self.token} if self.token else {}

    async def parse(self, text: str) -> NluParse:
        data = await self._post("/model/parse", {"text": text})
        if not isinstance(data, dict):
            raise DialogueError("Rasa parse reply is not an object", code="rasa_bad_reply")
        intent = data.get("intent") or {}
        return NluParse(
            intent=intent.get("name"),
            confidence=float(intent.get("confidence") or 0.0),
            entities=tuple(data.get("entities") or ()),
        )

    async def send(
        self, *, sender: str, text: str, metadata: dict[str, Any] | None = None, with_parse: bool = True
    ) -> RasaReply:
        """Send one user turn; returns the bot messages (and the NLU parse, fetched concurrently)."""
        t0 = time.perf_counter()
        payload = {"sender": sender, "message": text, "metadata": metadata or {}}
        if with_parse and not text.startswith("/"):
            raw, parse = await asyncio.gather(self._post("/webhooks/rest/webhook", payload), self.parse(text))
        else:
            raw, parse = await self._post("/webhooks/rest/webhook", payload), None
        if not isinstance(raw, list):
            raise DialogueError("Rasa webhook reply is not a list of messages", code="rasa_bad_reply")
        messages = []
        for item in raw:
            if not isinstance(item, dict):
                raise DialogueError("Rasa webhook reply holds a non-object message", code="rasa_bad_reply")
            custom = item.get("custom")
            messages.append(
                BotMessage(text=item.get("text") or None, custom=custom if isinstance(custom, dict) else None)
            )
        return RasaReply(messages=tuple(messages), parse=parse, latency_ms=(time.perf_counter() - t0) * 1000)

    async def healthy(self) -> bool:
        try:
            async with self._http().get(self.base_url.rstrip("/") + "/status", params=self._params()) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False
