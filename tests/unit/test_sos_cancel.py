"""'按错了，取消' after a screen SOS (issue #26): the SOS is marked cancelled by the elder, an operator call-back
task is raised, family members are told '按错了，已取消' only if they had been sent the SOS, and SOS messages still
waiting in the queue never go out. Too late, twice, or someone else's SOS → refused, nothing changes."""

from __future__ import annotations

import pytest

from assistant.errors import StoreError
from tests.platform_data import make_family

pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_platform"]

WINDOW_S = 15.0


async def test_cancel_before_the_family_was_told_withdraws_their_messages(store, clock):
    elder = await make_family(store)
    sos = await store.raise_alert(elder_id=elder.elder_id, kind="sos", detail={"source": "screen"})
    assert sos.notified == 3
    clock.advance(4)
    done = await store.cancel_sos_by_elder(sos.alert_id, elder_id=elder.elder_id, window_s=WINDOW_S)

    assert done.sos.status == "false_alarm" and done.sos.detail["cancelled_by"] == "elder"
    assert done.sos.resolved_at is not None
    assert done.withdrawn == 3 and done.family_told == 0
    rows = await store.list_outbox(alert_id=sos.alert_id)
    assert len(rows) == 3 and {r.status for r in rows} == {"undeliverable"}
    assert not any("按错了" in r.body for r in rows)
    task = await store.get_alert(done.callback_alert_id)
    assert task.kind == "sos_cancelled" and task.status == "open" and task.elder_id == elder.elder_id
    assert task.detail["sos_alert_id"] == sos.alert_id and "回电" in task.detail["summary"]
    assert task.severity == "urgent"


async def test_cancel_after_the_family_was_told_tells_them(store, clock):
    elder = await make_family(store)
    sos = await store.raise_alert(elder_id=elder.elder_id, kind="sos")
    rows = await store.list_outbox(alert_id=sos.alert_id)
    first, second, email = rows
    await store.outbox_sent(first.outbox_id)  # this SMS went out
    assert await store.claim_outbox(email.outbox_id, lease_s=30)  # this one is on its way
    clock.advance(8)
    done = await store.cancel_sos_by_elder(sos.alert_id, elder_id=elder.elder_id, window_s=WINDOW_S)

    assert done.withdrawn == 1 and done.family_told == 2
    after = {r.outbox_id: r for r in await store.list_outbox(alert_id=sos.alert_id)}
    assert after[second.outbox_id].status == "undeliverable"
    cancels = [r for r in after.values() if "按错了，已取消" in r.body]
    assert sorted((r.channel, r.recipient) for r in cancels) == sorted(
        [(first.channel, first.recipient), (email.channel, email.recipient)])
    assert all(r.status == "queued" for r in cancels)


async def test_cancel_too_late_twice_or_not_an_sos_is_refused(store, clock):
    elder = await make_family(store)
    other = await make_family(store, phone="0750-3201002")
    sos = await store.raise_alert(elder_id=elder.elder_id, kind="sos")
    unwell = await store.raise_alert(elder_id=elder.elder_id, kind="unwell")
    with pytest.raises(StoreError) as exc:
        await store.cancel_sos_by_elder(sos.alert_id, elder_id=other.elder_id, window_s=WINDOW_S)
    assert exc.value.code == "not_found"
    with pytest.raises(StoreError) as exc:
        await store.cancel_sos_by_elder(unwell.alert_id, elder_id=elder.elder_id, window_s=WINDOW_S)
    assert exc.value.code == "not_found"
    clock.advance(WINDOW_S + 1)
    with pytest.raises(StoreError) as exc:
        await store.cancel_sos_by_elder(sos.alert_id, elder_id=elder.elder_id, window_s=WINDOW_S)
    assert exc.value.code == "conflict"
    assert (await store.get_alert(sos.alert_id)).status == "open"
    assert [a.kind for a in await store.list_alerts(elder_id=elder.elder_id)] != [] and not await store.list_alerts(
        kind="sos_cancelled")

    fresh = await store.raise_alert(elder_id=elder.elder_id, kind="sos")
    await store.cancel_sos_by_elder(fresh.alert_id, elder_id=elder.elder_id, window_s=WINDOW_S)
    with pytest.raises(StoreError) as exc:
        await store.cancel_sos_by_elder(fresh.alert_id, elder_id=elder.elder_id, window_s=WINDOW_S)
    assert exc.value.code == "conflict"
    assert len(await store.list_alerts(kind="sos_cancelled")) == 1
