"""Work-order SLA watcher.

An order not dispatched within ``dispatch_sla_s`` (180 s) raises an ``sla_dispatch`` operator alert; one
not answered within ``answer_sla_s`` (1800 s) raises ``sla_answer``. Each is raised once per order (the
store marks the order in the same transaction). The watcher is a background task owned by the API's
cleanup_ctx; the clock and the sleep are injectable so tests run it on a fake clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from assistant.errors import StoreError
from assistant.platform.store import AlertInfo, PlatformStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SlaRound:
    """What one scan did (for tests and logs)."""

    at: dt.datetime
    alerts: tuple[AlertInfo, ...]
    error: str | None = None


class SlaWatcher:
    def __init__(
        self,
        *,
        store: PlatformStore,
        dispatch_sla_s: float,
        answer_sla_s: float,
        interval_s: float,
        clock: Callable[[], dt.datetime] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        on_alerts: Callable[[list[AlertInfo]], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._dispatch_sla_s = dispatch_sla_s
        self._answer_sla_s = answer_sla_s
        self._interval_s = interval_s
        self._clock = clock or store.now
        self._sleep = sleep or self._pause
        self._stopping = asyncio.Event()
        self._on_alerts = on_alerts
        self.rounds = 0
        self.last: SlaRound | None = None

    async def check_once(self) -> SlaRound:
        now = self._clock()
        try:
            alerts = await self._store.sla_scan(
                dispatch_sla_s=self._dispatch_sla_s, answer_sla_s=self._answer_sla_s, now=now
            )
        except StoreError as exc:
            log.warning("SLA scan skipped: %s", exc)
            self.last = SlaRound(at=now, alerts=(), error=exc.code)
        else:
            self.last = SlaRound(at=now, alerts=tuple(alerts))
            if alerts and self._on_alerts is not None:
                await self._on_alerts(alerts)
        self.rounds += 1
        return self.last

    def stop(self) -> None:
        """Finish the current scan, then return from ``run`` (no cancellation in the middle of a query)."""
        self._stopping.set()

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def run(self) -> None:
        """Scan every ``interval_s`` until ``stop()`` or cancellation (which propagates)."""
        while not self._stopping.is_set():
            await self.check_once()
            if self._stopping.is_set():
                break
            await self._sleep(self._interval_s)
