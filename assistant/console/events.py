"""Live updates for open console pages (server-sent events).

``EventHub`` fans events out to one bounded queue per open page. Events come from two places: the
console's own actions (published at once) and ``watch_database``, one background task per app (owned by
``cleanup_ctx``) that polls for alerts and orders written by other processes (the pipeline, the action
server, the SLA watcher), for order status changes, outbox delivery states and the steps of live hand-overs
(the phone gateway: the operator whose phone rings gets a pop-up). Family pages only receive events about their
own parents (``elder_id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from assistant.console.handover import is_mine
from assistant.platform.models import OPEN_ORDER_STATUSES, Alert, HandoverEvent, Outbox, WorkOrder

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 2.0
KEEPALIVE_S = 15.0
QUEUE_MAX = 100


@dataclass(kw_only=True, eq=False)
class Subscriber:
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    # None = staff (everything); otherwise only events about these elders
    elder_ids: frozenset[int] | None = None

    def wants(self, event: dict[str, Any]) -> bool:
        return self.elder_ids is None or event.get("elder_id") in self.elder_ids


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()

    def __len__(self) -> int:
        return len(self._subscribers)

    def subscribe(self, *, elder_ids: frozenset[int] | None) -> Subscriber:
        sub = Subscriber(elder_ids=elder_ids)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def publish(self, event: dict[str, Any]) -> None:
        for sub in list(self._subscribers):
            if sub.wants(event):
                with contextlib.suppress(asyncio.QueueFull):  # a stuck page misses events, it reloads
                    sub.queue.put_nowait(event)

    def close(self) -> None:
        for sub in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)


async def watch_database(hub: EventHub, sessions: async_sessionmaker[AsyncSession], *, interval_s: float) -> None:
    """Publish ``alert`` / ``order`` events for rows other processes write. Runs until cancelled.

    Alerts: every row with a higher id than last time. Orders: new ones and status changes of open ones
    (an open order that is no longer open is published with its new status). Outbox rows (staff only: no
    elder_id): new ones and state changes of queued / sent / no_report ones (queued → sent → delivered /
    failed / no_report → late delivered)."""
    last_alert: int | None = None
    last_order = 0
    open_orders: dict[int, tuple[int, str]] = {}  # id → (elder_id, status)
    last_outbox = 0
    moving: dict[int, tuple[int | None, str]] = {}  # outbox id → (alert_id, status) while queued / sent
    last_handover = 0
    while True:
        try:
            async with sessions() as db:
                if last_alert is None:
                    last_alert = int(await db.scalar(select(func.coalesce(func.max(Alert.id), 0))) or 0)
                    last_order = int(await db.scalar(select(func.coalesce(func.max(WorkOrder.id), 0))) or 0)
                    last_outbox = int(await db.scalar(select(func.coalesce(func.max(Outbox.id), 0))) or 0)
                    last_handover = int(await db.scalar(select(func.coalesce(func.max(HandoverEvent.id), 0))) or 0)
                else:
                    for a in (await db.execute(select(Alert).where(Alert.id > last_alert).order_by(Alert.id))).scalars():
                        last_alert = a.id
                        hub.publish({"type": "alert", "id": a.id, "kind": a.kind, "severity": a.severity,
                                     "elder_id": a.elder_id, "status": a.status})
                rows = (
                    await db.execute(
                        select(WorkOrder.id, WorkOrder.elder_id, WorkOrder.status).where(
                            WorkOrder.status.in_(OPEN_ORDER_STATUSES) | (WorkOrder.id > last_order)
                        )
                    )
                ).all()
                seen: dict[int, tuple[int, str]] = {}
                newest_order = last_order
                for oid, elder_id, status in rows:  # (any order: compare with the last look's newest id)
                    # (on the first look every row is known: nothing is published)
                    if oid > last_order or open_orders.get(oid, (elder_id, status))[1] != status:
                        hub.publish({"type": "order", "id": oid, "elder_id": elder_id, "status": status})
                    newest_order = max(newest_order, oid)
                    if status in OPEN_ORDER_STATUSES:
                        seen[oid] = (elder_id, status)
                closed = [oid for oid in open_orders if oid not in seen]
                if closed:
                    for oid, status in (
                        await db.execute(select(WorkOrder.id, WorkOrder.status).where(WorkOrder.id.in_(closed)))
                    ).all():
                        hub.publish({"type": "order", "id": oid, "elder_id": open_orders[oid][0], "status": status})
                open_orders = seen
                last_order = newest_order
                last_outbox, moving = await _watch_outbox(db, hub, last_outbox, moving)
                last_handover = await _watch_handovers(db, hub, last_handover)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database may be briefly unavailable: keep watching
            log.warning("console event watch failed: %s", exc)
        await asyncio.sleep(interval_s)


async def _watch_outbox(
    db: AsyncSession, hub: EventHub, last_id: int, moving: dict[int, tuple[int | None, str]]
) -> tuple[int, dict[int, tuple[int | None, str]]]:
    active = ("queued", "sent", "no_report")  # (no_report may still turn delivered / failed)
    rows = (
        await db.execute(
            select(Outbox.id, Outbox.alert_id, Outbox.status).where(Outbox.status.in_(active) | (Outbox.id > last_id))
        )
    ).all()
    seen: dict[int, tuple[int | None, str]] = {}
    newest = last_id
    for oid, alert_id, status in rows:  # (any order: an index on status may return the active rows first)
        if oid > last_id or moving.get(oid, (alert_id, status))[1] != status:
            hub.publish({"type": "outbox", "id": oid, "alert_id": alert_id, "status": status})
        newest = max(newest, oid)
        if status in active:
            seen[oid] = (alert_id, status)
    gone = [oid for oid in moving if oid not in seen]
    if gone:
        for oid, status in (await db.execute(select(Outbox.id, Outbox.status).where(Outbox.id.in_(gone)))).all():
            hub.publish({"type": "outbox", "id": oid, "alert_id": moving[oid][0], "status": status})
    return newest, seen


async def _watch_handovers(db: AsyncSession, hub: EventHub, last_id: int) -> int:
    """Each new step of a live hand-over (``HandoverEvent``), staff only (no elder_id): the pages pop the
    call on the operator whose phone rings (``stream`` marks it ``mine``)."""
    rows = (await db.execute(select(HandoverEvent).where(HandoverEvent.id > last_id).order_by(HandoverEvent.id))).scalars()
    for e in rows:
        last_id = max(last_id, e.id)
        hub.publish({"type": "handover", "id": e.id, "alert_id": e.alert_id, "state": e.state,
                     "ringing": list(e.ringing or ()), "operator": e.operator})
    return last_id


async def stream(request: web.Request, hub: EventHub, *, elder_ids: frozenset[int] | None,
                 phone_uri: str | None = None) -> web.StreamResponse:
    """One SSE connection: events as ``event: <type>`` + JSON data, a comment every KEEPALIVE_S.
    ``phone_uri``: the signed-in operator's phone; ``handover`` events that ring it carry ``"mine": true``."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    sub = hub.subscribe(elder_ids=elder_ids)
    try:
        await resp.write(b"retry: 3000\n: connected\n\n")
        while True:
            try:
                event = await asyncio.wait_for(sub.queue.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                await resp.write(b": keepalive\n\n")
                continue
            if event is None:
                break
            if event["type"] == "handover":
                event = {**event, "mine": is_mine(event, phone_uri)}
            data = json.dumps(event, ensure_ascii=False)
            await resp.write(f"event: {event['type']}\ndata: {data}\n\n".encode())
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        hub.unsubscribe(sub)
    return resp
