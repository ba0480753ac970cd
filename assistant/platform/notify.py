"""Notification delivery: the outbox table is the queue, ``Sender``s are the channels.

``PlatformStore.create_alert`` writes outbox rows in the same transaction as the alert; the
``OutboxDispatcher`` (a background task owned by the API's cleanup_ctx) delivers pending rows through
one ``Sender`` per channel and marks them sent (or counts the failed attempt). The default senders only
log — plug a real SMS gateway or SMTP relay in with ``OutboxDispatcher(senders={"sms": MySms()})``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from assistant.errors import StoreError
from assistant.platform.store import OutboxItem, PlatformStore

log = logging.getLogger(__name__)


class Sender(Protocol):
    """One delivery channel. Raise any exception to mark the attempt failed (it is retried later)."""

    async def send(self, *, recipient: str, subject: str | None, body: str) -> None: ...


class LogSender:
    """Writes the notification to the log (the default for every channel: no network in tests)."""

    def __init__(self, *, channel: str) -> None:
        self.channel = channel
        self.sent: list[tuple[str, str]] = []

    async def send(self, *, recipient: str, subject: str | None, body: str) -> None:
        self.sent.append((recipient, body))
        log.info("notify[%s] → %s: %s", self.channel, _mask(recipient), body)


def _mask(recipient: str) -> str:
    """Log only the end of a phone number / the domain of an address."""
    if "@" in recipient:
        return "***@" + recipient.split("@", 1)[1]
    return "***" + recipient[-4:]


class OutboxDispatcher:
    def __init__(
        self,
        *,
        store: PlatformStore,
        senders: Mapping[str, Sender] | None = None,
        max_attempts: int = 5,
    ) -> None:
        self._store = store
        self._senders: dict[str, Sender] = {ch: LogSender(channel=ch) for ch in ("log", "sms", "email")}
        self._senders.update(senders or {})
        self._max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def wake(self) -> None:
        """Deliver soon (called after an alert was written)."""
        self._wake.set()

    async def deliver_pending(self, *, limit: int = 50) -> int:
        """Send what is pending once; returns how many were sent."""
        items = await self._store.pending_outbox(limit=limit, max_attempts=self._max_attempts)
        sent = 0
        for item in items:
            if await self._deliver(item):
                sent += 1
        return sent

    async def _deliver(self, item: OutboxItem) -> bool:
        sender = self._senders.get(item.channel)
        if sender is None:
            await self._store.mark_outbox(item.outbox_id, sent=False, error=f"no sender for {item.channel}")
            return False
        try:
            await sender.send(recipient=item.recipient, subject=item.subject, body=item.body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a channel failing must not stop the others
            log.warning("notify[%s] outbox %s failed: %s", item.channel, item.outbox_id, exc)
            await self._store.mark_outbox(item.outbox_id, sent=False, error=f"{type(exc).__name__}: {exc}")
            return False
        await self._store.mark_outbox(item.outbox_id, sent=True)
        return True

    def stop(self) -> None:
        """Finish the current round, then return from ``run``."""
        self._stopping.set()
        self._wake.set()

    async def run(self, *, interval_s: float) -> None:
        """Deliver until ``stop()`` or cancellation; a database outage is logged and retried next round."""
        while not self._stopping.is_set():
            try:
                await self.deliver_pending()
            except StoreError as exc:
                log.warning("outbox delivery paused: %s", exc)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
