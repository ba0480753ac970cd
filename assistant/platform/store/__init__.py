"""``PlatformStore``: the one door to the platform database; every area reads and writes through it.

One small module per record kind, composed into the one facade ``PlatformStore``:

- ``elders`` — elders, phones, family contacts, care schedules, the safe phrase;
- ``orders`` — work orders (one idempotency rule, one status machine);
- ``alerts`` — ``raise_alert`` (the one way any area raises an alert), operators' status changes, SLA scan;
- ``outbox`` — family notifications and queued requests, claims, delivery reports;
- ``calls`` — calls and transcript turns;
- ``elder_records`` — one elder's whole record across every area's tables: collected for an export,
  erased on request (``assistant.platform.elder_data`` writes the files and the journal);
- ``retention`` — the purge's batched deletes and redactions (``assistant.platform.retention`` decides the
  periods and removes the files);
- ``records`` — the frozen results (``ElderInfo``, ``OrderInfo``, ...) and inputs (``NewContact``, ``CallUpdate``);
- ``base`` — engine, clock, ``session(what)``.

Rules
- Every method opens its own short transaction and commits before it returns: when ``create_order``
  returns, the order is on disk. If the commit fails nothing is reported as placed.
- Database failures never cross this boundary raw: they become ``StoreError`` with a stable code
  (``assistant.errors.http_status`` maps codes to HTTP statuses):
  ``store_failed`` (database unreachable / locked / refused the write), ``not_found``, ``invalid``,
  ``forbidden`` (a family member acting outside their rights), ``conflict`` (idempotency key reused for a
  different order, or a status change that goes backwards).
- Results are frozen dataclasses with ``to_json()``; no ORM object leaves a session.
- Time comes from the injectable ``clock`` (UTC-aware), so SLA tests run on a fake clock.
- Other areas' own tables (console users and audit, the fraud guard's ledger, call jobs) are theirs; they
  use ``store.session(what)`` for the same error rule.
"""

from __future__ import annotations

from sqlalchemy import func, select

from assistant.platform.models import OPEN_ORDER_STATUSES, Alert, Elder, Outbox, WorkOrder
from assistant.platform.store.alerts import DEFAULT_SEVERITY, FAMILY_NOTIFY_KINDS, AlertStore, family_message
from assistant.platform.store.base import Clock, StoreBase
from assistant.platform.store.calls import CallStore
from assistant.platform.store.elder_records import ElderRecordStore, ErasedRows
from assistant.platform.store.elders import ElderStore
from assistant.platform.store.orders import ORDER_LABEL_ZH, OrderStore
from assistant.platform.store.outbox import OutboxStore
from assistant.platform.store.records import (
    AlertInfo,
    CallInfo,
    CallUpdate,
    ContactInfo,
    ElderInfo,
    NewContact,
    NewSchedule,
    OrderInfo,
    OrderResult,
    OutboxItem,
    PhoneInfo,
    ScheduleInfo,
    SosCancel,
    TurnInfo,
)
from assistant.platform.store.retention import RetentionStore


class PlatformStore(ElderStore, OrderStore, AlertStore, OutboxStore, CallStore, ElderRecordStore, RetentionStore, StoreBase):
    """The facade: ``PlatformStore(engine=..., clock=...)``; each record kind's methods come from its module."""

    # health and the console's header
    async def counts(self) -> dict[str, int]:
        async with self.session("count") as s:
            return {
                "elders": int(await s.scalar(select(func.count(Elder.id))) or 0),
                "open_orders": int(
                    await s.scalar(select(func.count(WorkOrder.id)).where(WorkOrder.status.in_(OPEN_ORDER_STATUSES))) or 0
                ),
                "open_alerts": int(await s.scalar(select(func.count(Alert.id)).where(Alert.status == "open")) or 0),
                "pending_notifications": int(
                    await s.scalar(select(func.count(Outbox.id)).where(Outbox.status.in_(("queued", "sent")))) or 0
                ),
                "undeliverable_notifications": int(
                    await s.scalar(select(func.count(Outbox.id)).where(Outbox.status == "undeliverable")) or 0
                ),
                "no_report_notifications": int(
                    await s.scalar(select(func.count(Outbox.id)).where(Outbox.status == "no_report")) or 0
                ),
            }


__all__ = [
    "DEFAULT_SEVERITY",
    "FAMILY_NOTIFY_KINDS",
    "ORDER_LABEL_ZH",
    "AlertInfo",
    "SosCancel",
    "CallInfo",
    "CallUpdate",
    "Clock",
    "ContactInfo",
    "ElderInfo",
    "ErasedRows",
    "NewContact",
    "NewSchedule",
    "OrderInfo",
    "OrderResult",
    "OutboxItem",
    "PhoneInfo",
    "PlatformStore",
    "ScheduleInfo",
    "TurnInfo",
    "family_message",
]
