"""Helpers for the screen's tests and demos: a fresh schema and a demo elder with orders and calls.

Nothing here runs at import time; production code never imports this module.
"""

from __future__ import annotations

import datetime as dt

from assistant.platform.db import create_engine_for, session_factory
from assistant.platform.migrate import upgrade_heads_async
from assistant.platform.models import Alert, Base, Call, Elder, FamilyContact, Outbox, WorkOrder, utcnow
from assistant.settings import Settings


async def create_schema(settings: Settings, *, migrations: bool = False) -> None:
    """The platform's tables. ``migrations=True`` runs the Alembic migrations (as ``assistant db upgrade``)
    so that a full server started afterwards finds the database up to date; else ``create_all`` (fast)."""
    if migrations:
        await upgrade_heads_async(settings.store.database_url)
        return
    engine = create_engine_for(settings)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
    finally:
        await engine.dispose()


async def seed_demo(
    settings: Settings, *, elder_id: int = 1, text_size: str = "normal", with_orders: bool = True, migrations: bool = False
) -> int:
    """One elder (王秀英) with an open gas order, a care call today and an appointment in two days."""
    await create_schema(settings, migrations=migrations)
    engine = create_engine_for(settings)
    now = utcnow()
    try:
        async with session_factory(engine)() as s:
            async with s.begin():
                s.add(
                    Elder(
                        id=elder_id,
                        name="王秀英",
                        district="蓬江",
                        address="蓬江区建设路12号3楼",
                        dialect="cmn",
                        text_size=text_size,
                        tts_rate_wpm=110,
                        volume=0.9,
                    )
                )
            async with s.begin():
                s.add(FamilyContact(elder_id=elder_id, name="李明", relation="儿子", phone="13800138000", priority=1))
            if with_orders:
                async with s.begin():
                    s.add_all(
                        [
                            WorkOrder(elder_id=elder_id, type="gas", status="answered", details={"eta_minutes": 20}, idempotency_key=f"demo-gas-{elder_id}"),
                            WorkOrder(
                                elder_id=elder_id,
                                type="appointment",
                                status="placed",
                                details={
                                    "when": (now + dt.timedelta(days=2)).replace(hour=1, minute=30, second=0, microsecond=0).isoformat(),
                                    "hospital": "江门市人民医院",
                                    "department": "心内科",
                                    "escort": True,
                                },
                                idempotency_key=f"demo-appt-{elder_id}",
                            ),
                            Call(
                                call_id=f"demo-care-{elder_id}",
                                elder_id=elder_id,
                                direction="outbound",
                                channel="phone",
                                # seconds ago, not minutes: just after local midnight "2 minutes ago" was
                                # yesterday's call and the panel rightly said there was none today
                                started_at=now - dt.timedelta(seconds=2),
                                ended_at=now - dt.timedelta(seconds=1),
                                outcome="well",
                            ),
                        ]
                    )
    finally:
        await engine.dispose()
    return elder_id


async def start_platform_call(settings: Settings, *, elder_id: int, call_id: str = "platform-call-1") -> str:
    """An outbound platform call to the elder, in progress (what the fraud panel looks for)."""
    engine = create_engine_for(settings)
    try:
        async with session_factory(engine)() as s, s.begin():
            s.add(Call(call_id=call_id, elder_id=elder_id, direction="outbound", channel="phone", started_at=utcnow()))
    finally:
        await engine.dispose()
    return call_id


async def alerts(settings: Settings, *, kind: str | None = None) -> list[Alert]:
    from sqlalchemy import select

    engine = create_engine_for(settings)
    try:
        async with session_factory(engine)() as s:
            query = select(Alert).order_by(Alert.id)
            if kind is not None:
                query = query.where(Alert.kind == kind)
            return list((await s.scalars(query)).all())
    finally:
        await engine.dispose()


async def outbox(settings: Settings) -> list[Outbox]:
    from sqlalchemy import select

    engine = create_engine_for(settings)
    try:
        async with session_factory(engine)() as s:
            return list((await s.scalars(select(Outbox).order_by(Outbox.id))).all())
    finally:
        await engine.dispose()
