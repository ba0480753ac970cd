"""Work orders: one idempotency rule and one status machine (placed → dispatched → answered → done;
open → cancelled; done → dispatched again only by ``reopen_order``) for every area."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.errors import StoreError
from assistant.platform.models import (
    ORDER_STATUSES,
    ORDER_TYPES,
    PLACED_BY,
    Elder,
    WorkOrder,
)
from assistant.platform.store.base import StoreBase, invalid
from assistant.platform.store.elders import acting_contact
from assistant.platform.store.records import OrderInfo, OrderResult

log = logging.getLogger(__name__)

ORDER_LABEL_ZH = {"gas": "煤气", "meal": "送餐", "repair": "维修", "appointment": "医院预约"}
_ORDER_RANK = {"placed": 0, "dispatched": 1, "answered": 2, "done": 3}


class OrderStore(StoreBase):
    async def create_order(
        self,
        *,
        elder_id: int,
        type: str,
        details: dict[str, Any] | None = None,
        idempotency_key: str,
        call_id: str | None = None,
        placed_by: str = "elder",
        contact_id: int | None = None,
    ) -> OrderResult:
        """Place a work order, committed before returning. The same ``idempotency_key`` returns the same
        order (``created=False``); reusing a key for another elder or type is a ``conflict``."""
        if type not in ORDER_TYPES:
            raise invalid(f"order type must be one of {ORDER_TYPES}")
        if placed_by not in PLACED_BY:
            raise invalid(f"placed_by must be one of {PLACED_BY}")
        if not idempotency_key or len(idempotency_key) > 128:
            raise invalid("idempotency_key is required (1..128 characters)")
        details = dict(details or {})
        if type == "appointment":
            _check_appointment(details)
        async with self.session("place order") as s:
            existing = await self._order_by_key(s, idempotency_key)
            if existing is not None:
                return _same_order(existing, elder_id=elder_id, type=type)
            if placed_by == "family":
                if contact_id is None:
                    raise invalid("a family order needs contact_id")
                await acting_contact(s, contact_id, elder_id)
            elif await s.scalar(select(Elder.id).where(Elder.id == elder_id)) is None:
                raise StoreError(f"no elder {elder_id}", code="not_found")
            order = WorkOrder(
                elder_id=elder_id,
                type=type,
                details=details,
                status="placed",
                placed_by=placed_by,
                placed_by_contact_id=contact_id,
                idempotency_key=idempotency_key,
                call_id=call_id,
                created_at=self.now(),
            )
            s.add(order)
            try:
                await s.commit()
            except IntegrityError:
                # a concurrent request with the same key won the race: answer with its order
                await s.rollback()
                existing = await self._order_by_key(s, idempotency_key)
                if existing is None:
                    raise
                return _same_order(existing, elder_id=elder_id, type=type)
            log.info("order %s placed: %s for elder %s by %s", order.id, type, elder_id, placed_by)
            return OrderResult(order=OrderInfo.of(order), created=True)

    async def _order_by_key(self, s: AsyncSession, key: str) -> WorkOrder | None:
        return await s.scalar(select(WorkOrder).where(WorkOrder.idempotency_key == key))

    async def get_order(self, order_id: int) -> OrderInfo:
        async with self.session("read order") as s:
            order = await s.get(WorkOrder, order_id)
            if order is None:
                raise StoreError(f"no order {order_id}", code="not_found")
            return OrderInfo.of(order)

    async def list_orders(
        self, *, elder_id: int | None = None, status: str | Iterable[str] | None = None, limit: int = 50
    ) -> list[OrderInfo]:
        """Newest first."""
        async with self.session("list orders") as s:
            q = select(WorkOrder).order_by(WorkOrder.created_at.desc(), WorkOrder.id.desc()).limit(limit)
            if elder_id is not None:
                q = q.where(WorkOrder.elder_id == elder_id)
            if status is not None:
                q = q.where(WorkOrder.status.in_([status] if isinstance(status, str) else list(status)))
            return [OrderInfo.of(o) for o in (await s.scalars(q)).all()]

    async def update_order_status(self, order_id: int, status: str) -> OrderInfo:
        """Move an order forward (placed → dispatched → answered → done; skipped steps get the same
        timestamp) or cancel an open one. Repeating the current status is a no-op."""
        if status not in ORDER_STATUSES:
            raise invalid(f"status must be one of {ORDER_STATUSES}")
        async with self.session("update order") as s:
            order = await s.scalar(select(WorkOrder).where(WorkOrder.id == order_id).with_for_update())
            if order is None:
                raise StoreError(f"no order {order_id}", code="not_found")
            _advance(order, status, self.now())
            await s.commit()
            return OrderInfo.of(order)

    async def reopen_order(self, order_id: int, *, reason: str, call_id: str | None = None) -> OrderInfo:
        """A done order the elder says went wrong (the follow-up call's keypad 2): back to ``dispatched``
        (``done_at`` cleared), the reason and call kept in ``details["reopened"]``. An order that is not
        done (already reopened) is left as it is, so a retried alert reopens it once."""
        async with self.session("reopen order") as s:
            order = await s.scalar(select(WorkOrder).where(WorkOrder.id == order_id).with_for_update())
            if order is None:
                raise StoreError(f"no order {order_id}", code="not_found")
            if order.status == "done":
                order.status = "dispatched"
                order.done_at = None
                history = [*order.details.get("reopened", []),
                           {"at": self.now().isoformat(), "reason": reason, "call_id": call_id}]
                order.details = {**order.details, "reopened": history}
                await s.commit()
                log.info("order %s reopened: %s", order_id, reason)
            return OrderInfo.of(order)

    async def cancel_order(self, order_id: int) -> OrderInfo:
        return await self.update_order_status(order_id, "cancelled")

    async def family_place_order(
        self,
        *,
        contact_id: int,
        elder_id: int,
        type: str,
        details: dict[str, Any] | None = None,
        idempotency_key: str,
    ) -> OrderResult:
        """A family member orders for their parent (must be a contact of that elder with ``can_act``)."""
        return await self.create_order(
            elder_id=elder_id,
            type=type,
            details=details,
            idempotency_key=idempotency_key,
            placed_by="family",
            contact_id=contact_id,
        )

    async def family_cancel_order(self, *, contact_id: int, order_id: int) -> OrderInfo:
        """A family member cancels one of their parent's open orders."""
        async with self.session("cancel order") as s:
            order = await s.scalar(select(WorkOrder).where(WorkOrder.id == order_id).with_for_update())
            if order is None:
                raise StoreError(f"no order {order_id}", code="not_found")
            await acting_contact(s, contact_id, order.elder_id)
            _advance(order, "cancelled", self.now())
            await s.commit()
            return OrderInfo.of(order)


def _same_order(existing: WorkOrder, *, elder_id: int, type: str) -> OrderResult:
    if existing.elder_id != elder_id or existing.type != type:
        raise StoreError("idempotency_key already used for a different order", code="conflict")
    return OrderResult(order=OrderInfo.of(existing), created=False)


def _advance(order: WorkOrder, status: str, now: dt.datetime) -> None:
    if status == order.status:
        return
    if order.status in ("done", "cancelled"):
        raise StoreError(f"order {order.id} is already {order.status}", code="conflict")
    if status == "cancelled":
        order.status = "cancelled"
        order.cancelled_at = now
        return
    if _ORDER_RANK[status] < _ORDER_RANK[order.status]:
        raise StoreError(f"order {order.id} cannot go from {order.status} back to {status}", code="conflict")
    rank = _ORDER_RANK[status]
    for step, attr in ((1, "dispatched_at"), (2, "answered_at"), (3, "done_at")):
        if rank >= step and getattr(order, attr) is None:
            setattr(order, attr, now)
    order.status = status


def _check_appointment(details: dict[str, Any]) -> None:
    """Appointments: ``{"hospital", "department", "when" (ISO 8601), "escort" (bool, optional)}``."""
    missing = [k for k in ("hospital", "when") if not details.get(k)]
    if missing:
        raise invalid(f"appointment details need {', '.join(missing)}")
    try:
        dt.datetime.fromisoformat(str(details["when"]))
    except ValueError as exc:
        raise invalid("appointment 'when' must be ISO 8601 (e.g. 2026-11-24T09:30+08:00)") from exc
