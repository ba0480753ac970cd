"""PlatformStore on SQLite and PostgreSQL: idempotent orders, commit-before-confirm, family rights,
alerts with outbox notifications, calls and turns, SLA alerts on a fake clock."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from assistant.errors import StoreError
from assistant.platform.db import create_engine_for
from assistant.platform.models import Alert, Outbox, WorkOrder
from assistant.platform.store import CallUpdate, PlatformStore
from assistant.settings import StoreSettings
from tests.platform_data import make_family

# fixtures: db_url (SQLite + PostgreSQL), store, clock; pg_server/pg_fresh_url
pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_platform"]


def fail_commits(store: PlatformStore):
    """Make every COMMIT fail like a lost disk/connection; returns the undo function."""

    def boom(conn):
        raise OperationalError("COMMIT", {}, Exception("simulated: database went away"))

    event.listen(store.engine.sync_engine, "commit", boom)
    return lambda: event.remove(store.engine.sync_engine, "commit", boom)


async def count(store: PlatformStore, model) -> int:
    async with store.session("count") as s:
        return int(await s.scalar(select(func.count()).select_from(model)))


# ---------------------------------------------------------------- orders


async def test_same_idempotency_key_returns_same_order(store):
    elder = await make_family(store)
    first = await store.create_order(elder_id=elder.elder_id, type="gas", details={"qty": 1},
                                     idempotency_key="call-1:gas", call_id="call-1")
    again = await store.create_order(elder_id=elder.elder_id, type="gas", details={"qty": 1},
                                     idempotency_key="call-1:gas", call_id="call-1")
    assert first.created and not again.created
    assert again.order.order_id == first.order.order_id
    assert first.order.status == "placed" and first.order.details == {"qty": 1}
    assert await count(store, WorkOrder) == 1


async def test_concurrent_requests_with_one_key_make_one_order(store):
    elder = await make_family(store)
    results = await asyncio.gather(*(
        store.create_order(elder_id=elder.elder_id, type="meal", idempotency_key="k-race") for _ in range(5)
    ))
    assert len({r.order.order_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert await count(store, WorkOrder) == 1


async def test_key_reused_for_another_order_is_a_conflict(store):
    elder = await make_family(store)
    await store.create_order(elder_id=elder.elder_id, type="gas", idempotency_key="k1")
    with pytest.raises(StoreError) as err:
        await store.create_order(elder_id=elder.elder_id, type="meal", idempotency_key="k1")
    assert err.value.code == "conflict"


async def test_order_is_committed_before_it_is_returned(store, db_url):
    elder = await make_family(store)
    placed = await store.create_order(elder_id=elder.elder_id, type="repair", details={"what": "水龙头漏水"},
                                      idempotency_key="k-commit")
    other = create_engine_for(StoreSettings(database_url=db_url))  # a second, independent connection
    try:
        seen = await PlatformStore(engine=other).get_order(placed.order.order_id)
    finally:
        await other.dispose()
    assert seen.details == {"what": "水龙头漏水"} and seen.status == "placed"


async def test_failed_commit_reports_no_order_and_writes_nothing(store):
    elder = await make_family(store)
    undo = fail_commits(store)
    try:
        with pytest.raises(StoreError) as err:
            await store.create_order(elder_id=elder.elder_id, type="gas", idempotency_key="k-fail")
    finally:
        undo()
    assert err.value.code == "store_failed"
    assert await count(store, WorkOrder) == 0
    retry = await store.create_order(elder_id=elder.elder_id, type="gas", idempotency_key="k-fail")
    assert retry.created


async def test_order_validation(store):
    elder = await make_family(store)
    with pytest.raises(StoreError) as err:
        await store.create_order(elder_id=elder.elder_id, type="taxi", idempotency_key="k")
    assert err.value.code == "invalid"
    with pytest.raises(StoreError) as err:
        await store.create_order(elder_id=999, type="gas", idempotency_key="k")
    assert err.value.code == "not_found"
    with pytest.raises(StoreError) as err:
        await store.create_order(elder_id=elder.elder_id, type="appointment", details={"hospital": "江门市中心医院"},
                                 idempotency_key="k")
    assert err.value.code == "invalid" and "when" in err.value.message
    ok = await store.create_order(
        elder_id=elder.elder_id, type="appointment", idempotency_key="k-appt",
        details={"hospital": "江门市中心医院", "department": "心内科", "when": "2026-11-25T09:30+08:00", "escort": True},
    )
    assert ok.order.type == "appointment" and ok.order.details["escort"] is True


async def test_status_moves_forward_with_timestamps(store, clock):
    elder = await make_family(store)
    order = (await store.create_order(elder_id=elder.elder_id, type="gas", idempotency_key="k")).order
    clock.advance(60)
    dispatched = await store.update_order_status(order.order_id, "dispatched")
    assert dispatched.dispatched_at == clock() and dispatched.answered_at is None
    clock.advance(60)
    done = await store.update_order_status(order.order_id, "done")
    assert done.answered_at == clock() and done.done_at == clock() and done.dispatched_at < clock()
    assert (await store.update_order_status(order.order_id, "done")).done_at == done.done_at  # no-op
    for bad in ("placed", "cancelled"):
        with pytest.raises(StoreError) as err:
            await store.update_order_status(order.order_id, bad)
        assert err.value.code == "conflict"


async def test_timestamps_are_utc_aware(store):
    elder = await make_family(store)
    order = (await store.create_order(elder_id=elder.elder_id, type="gas", idempotency_key="k")).order
    fetched = await store.get_order(order.order_id)
    assert fetched.created_at.tzinfo is not None and fetched.created_at.utcoffset() == dt.timedelta(0)
    assert fetched.created_at == order.created_at


# ---------------------------------------------------------------- family


async def test_family_member_orders_and_cancels_for_parent(store):
    elder = await make_family(store)
    son = elder.contacts[0]
    placed = await store.family_place_order(contact_id=son.contact_id, elder_id=elder.elder_id, type="meal",
                                            details={"meals": 2}, idempotency_key="fam-1")
    assert placed.order.placed_by == "family" and placed.order.placed_by_contact_id == son.contact_id
    cancelled = await store.family_cancel_order(contact_id=son.contact_id, order_id=placed.order.order_id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None


async def test_family_rights_are_enforced(store):
    elder = await make_family(store)
    other = await make_family(store, phone="0750-5502002", district="台山")
    son, daughter = elder.contacts
    with pytest.raises(StoreError) as err:  # not allowed to act
        await store.family_place_order(contact_id=daughter.contact_id, elder_id=elder.elder_id, type="gas",
                                       idempotency_key="f1")
    assert err.value.code == "forbidden"
    with pytest.raises(StoreError) as err:  # not this elder's contact
        await store.family_place_order(contact_id=son.contact_id, elder_id=other.elder_id, type="gas",
                                       idempotency_key="f2")
    assert err.value.code == "forbidden"
    theirs = await store.create_order(elder_id=other.elder_id, type="gas", idempotency_key="f3")
    with pytest.raises(StoreError) as err:
        await store.family_cancel_order(contact_id=son.contact_id, order_id=theirs.order.order_id)
    assert err.value.code == "forbidden"
    assert (await store.get_order(theirs.order.order_id)).status == "placed"
    assert await count(store, WorkOrder) == 1


# ---------------------------------------------------------------- alerts and outbox


async def test_sos_alert_notifies_family_in_priority_order(store):
    elder = await make_family(store)
    alert = await store.raise_alert(elder_id=elder.elder_id, kind="sos", call_id="c1", detail={"text": "救命"})
    assert alert.severity == "critical" and alert.status == "open" and alert.notified == 3
    rows = await store.list_outbox(alert_id=alert.alert_id)
    assert [(r.channel, r.recipient) for r in rows] == [
        ("sms", "13900000101"), ("sms", "13900000102"), ("email", "chenli@example.cn")]
    assert "紧急求助" in rows[0].body and "陈桂英" in rows[0].body


async def test_operator_only_alerts_do_not_notify_family(store):
    elder = await make_family(store)
    alert = await store.raise_alert(elder_id=elder.elder_id, kind="human", call_id="c1")
    assert alert.notified == 0 and await count(store, Outbox) == 0
    unknown_caller = await store.raise_alert(elder_id=None, kind="fraud", call_id="c2")
    assert unknown_caller.elder_id is None and await count(store, Outbox) == 0


async def test_alert_and_its_notifications_are_all_or_nothing(store):
    elder = await make_family(store)
    undo = fail_commits(store)
    try:
        with pytest.raises(StoreError):
            await store.raise_alert(elder_id=elder.elder_id, kind="unwell")
    finally:
        undo()
    assert await count(store, Alert) == 0 and await count(store, Outbox) == 0


async def test_alert_validation_and_acknowledge(store, clock):
    elder = await make_family(store)
    with pytest.raises(StoreError) as err:
        await store.raise_alert(elder_id=elder.elder_id, kind="bored")
    assert err.value.code == "invalid"
    with pytest.raises(StoreError) as err:
        await store.raise_alert(elder_id=12345, kind="sos")
    assert err.value.code == "not_found"
    with pytest.raises(StoreError) as err:
        await store.raise_alert(elder_id=elder.elder_id, kind="sos", order_id=4242)
    assert err.value.code == "not_found" and await count(store, Alert) == 0
    alert = await store.raise_alert(elder_id=elder.elder_id, kind="nurse_callback")
    clock.advance(30)
    acked = await store.set_alert_status(alert.alert_id, "acknowledged", by="operator1")
    assert acked.acknowledged_at == clock() and acked.acknowledged_by == "operator1"
    resolved = await store.set_alert_status(alert.alert_id, "resolved")
    assert resolved.resolved_at == clock() and resolved.acknowledged_by == "operator1"
    assert [a.alert_id for a in await store.list_alerts(status="open")] == []


# ---------------------------------------------------------------- elders, calls, turns


async def test_elder_lookup_by_any_phone_format(store):
    elder = await make_family(store)
    found = await store.elder_by_phone("0750 320-1001")
    assert found is not None and found.elder_id == elder.elder_id
    assert await store.elder_by_phone("0750-0000000") is None
    body = found.to_json()
    assert "safe_phrase" not in body and body["has_safe_phrase"] is True
    assert await store.safe_phrase(elder.elder_id) == "荔枝开花"
    assert [c.name for c in await store.contacts_by_phone("139-0000-0101")] == ["陈志强"]
    assert (await store.list_schedules(elder_id=elder.elder_id))[0].days == (1, 3, 5)


async def test_calls_and_turns(store):
    elder = await make_family(store)
    call = await store.upsert_call("call-7", CallUpdate(elder_id=elder.elder_id, channel="phone",
                                                        caller_number="0750-3201001", dialect="yue"))
    assert call.verified is False and call.caller_number == "07503201001"
    call = await store.upsert_call("call-7", CallUpdate(verification="verified"))
    assert call.verified and call.dialect == "yue"
    await store.add_turn(call_id="call-7", turn=0, speaker="bot", text="您好")
    await store.add_turn(call_id="call-7", turn=1, speaker="elder", text="我要煤气", asr_confidence=0.8,
                         intent="order_gas")
    await store.add_turn(call_id="call-7", turn=1, speaker="elder", text="我要订煤气", asr_confidence=0.9,
                         intent="order_gas")  # retry replaces
    turns = await store.list_turns("call-7")
    assert [(t.turn, t.text) for t in turns] == [(0, "您好"), (1, "我要订煤气")]
    # a turn for a call nobody announced creates the call row
    await store.add_turn(call_id="call-8", turn=0, speaker="caller", text="喂")
    assert (await store.get_call("call-8")).verification == "unverified"
    with pytest.raises(StoreError) as err:
        await store.get_call("nope")
    assert err.value.code == "not_found"


# ---------------------------------------------------------------- SLA


async def test_sla_alerts_fire_once_on_a_fake_clock(store, clock):
    elder = await make_family(store)
    late = (await store.create_order(elder_id=elder.elder_id, type="gas", idempotency_key="late")).order
    quick = (await store.create_order(elder_id=elder.elder_id, type="meal", idempotency_key="quick")).order
    cancelled = (await store.create_order(elder_id=elder.elder_id, type="repair", idempotency_key="c")).order
    await store.cancel_order(cancelled.order_id)
    scan = {"dispatch_sla_s": 180, "answer_sla_s": 1800}

    clock.advance(100)
    await store.update_order_status(quick.order_id, "dispatched")
    clock.advance(79)  # 179 s
    assert await store.sla_scan(**scan) == []
    clock.advance(2)  # 181 s
    alerts = await store.sla_scan(**scan)
    assert [(a.kind, a.order_id) for a in alerts] == [("sla_dispatch", late.order_id)]
    assert alerts[0].elder_id == elder.elder_id and alerts[0].detail["waited_s"] == 181
    assert await store.sla_scan(**scan) == []  # once

    clock.advance(1800 - 181 + 1)
    await store.update_order_status(late.order_id, "answered")
    alerts = await store.sla_scan(**scan)
    assert [(a.kind, a.order_id) for a in alerts] == [("sla_answer", quick.order_id)]
    clock.advance(3600)
    assert await store.sla_scan(**scan) == []
    assert len(await store.list_alerts(kind=["sla_dispatch", "sla_answer"])) == 2


def test_areas_beside_the_store_reach_the_data_only_through_it():
    """Issue #18: the screen's view, the elder export/erasure and the retention purge used to walk the tables
    themselves (elder_data repeated the store's model imports); now they call store methods."""
    import ast
    from pathlib import Path

    import assistant

    root = Path(assistant.__file__).parent
    for rel in ("screen/store_view.py", "platform/elder_data.py", "platform/retention.py"):
        tree = ast.parse((root / rel).read_text(encoding="utf-8"))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        # (retention.py keeps sqlalchemy for Rasa's tracker store, which is not the platform's data)
        forbidden = {"sqlalchemy.orm"} | (set() if rel == "platform/retention.py" else {"sqlalchemy"})
        assert not imported & forbidden, rel
        assert "assistant.platform.models_console" not in imported and "assistant.platform.models_fraud" not in imported, rel
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "assistant.platform.models"
                 for a in n.names}
        assert not names & {"Alert", "Call", "CallTurn", "Elder", "WorkOrder", "Outbox", "FamilyContact", "CareSchedule"}, rel


# ---------------------------------------------------------------- per-elder voice and pace (issue #19)


async def test_elder_voice_and_slow_speaker_wait(store):
    elder = await make_family(store)
    assert (elder.tts_voice, elder.end_of_turn_max_silence_s) == (None, None)  # the defaults
    voices = {"pack-yue", "pack-cmn", "espeak-yue"}
    updated = await store.update_elder_speech(elder.elder_id, tts_voice="pack-yue", end_of_turn_max_silence_s=2.5,
                                              voices=voices)
    assert (updated.tts_voice, updated.end_of_turn_max_silence_s) == ("pack-yue", 2.5)
    again = await store.get_elder(elder.elder_id)
    assert (again.tts_voice, again.end_of_turn_max_silence_s) == ("pack-yue", 2.5)
    assert again.to_json()["tts_voice"] == "pack-yue"
    for bad in ({"tts_voice": "pack-xyz", "end_of_turn_max_silence_s": None},
                {"tts_voice": None, "end_of_turn_max_silence_s": 0.1},
                {"tts_voice": None, "end_of_turn_max_silence_s": 30.0}):
        with pytest.raises(StoreError) as err:
            await store.update_elder_speech(elder.elder_id, voices=voices, **bad)
        assert err.value.code == "invalid"
    kept = await store.get_elder(elder.elder_id)
    assert (kept.tts_voice, kept.end_of_turn_max_silence_s) == ("pack-yue", 2.5)  # a refused change wrote nothing
    cleared = await store.update_elder_speech(elder.elder_id, tts_voice=None, end_of_turn_max_silence_s=None,
                                              voices=voices)
    assert (cleared.tts_voice, cleared.end_of_turn_max_silence_s) == (None, None)
    with pytest.raises(StoreError) as err:
        await store.update_elder_speech(9999, tts_voice=None, end_of_turn_max_silence_s=None, voices=voices)
    assert err.value.code == "not_found"
