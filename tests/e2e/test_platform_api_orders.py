"""The platform API over HTTP (aiohttp test server), on SQLite and PostgreSQL: auth, elders, calls and
turns, idempotent orders, family acting for a parent, alerts that notify the family."""

from __future__ import annotations

import pytest

from assistant.platform.api import create_app
from assistant.services import SERVICES_KEY
from tests.platform_data import AUTH, FakeClock, api_settings, eventually, make_family

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_platform"]


class RecordingSms:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, *, recipient: str, subject: str | None, body: str) -> None:
        self.sent.append((recipient, body))


@pytest.fixture
def sms() -> RecordingSms:
    return RecordingSms()


@pytest.fixture
async def api(aiohttp_client, tmp_path, db_url, sms):
    clock = FakeClock()
    app = create_app(api_settings(tmp_path, db_url), senders={"sms": sms}, clock=clock)
    client = await aiohttp_client(app)
    elder = await make_family(app[SERVICES_KEY].store)
    return client, app, elder


async def test_requests_need_the_service_token(api):
    client, _app, elder = api
    r = await client.get(f"/api/elders/{elder.elder_id}")
    assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
    r = await client.get(f"/api/elders/{elder.elder_id}", headers={"Authorization": "Bearer wrong"})
    assert r.status == 401
    r = await client.get(f"/api/elders/{elder.elder_id}", headers=AUTH)
    assert r.status == 200 and (await r.json())["name"] == "陈桂英"


async def test_elder_lookup_by_phone_hides_the_safe_phrase(api):
    client, _app, elder = api
    r = await client.get("/api/elders/by-phone", params={"number": "0750-3201001"}, headers=AUTH)
    body = await r.json()
    assert r.status == 200 and body["elder_id"] == elder.elder_id and body["dialect"] == "yue"
    assert "荔枝开花" not in await r.text() and body["has_safe_phrase"] is True
    r = await client.get("/api/elders/by-phone", params={"number": "12345"}, headers=AUTH)
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    r = await client.get("/api/elders/by-phone", headers=AUTH)
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid"


async def test_order_is_placed_once_per_idempotency_key(api):
    client, app, elder = api
    order = {"elder_id": elder.elder_id, "call_id": "call-1", "type": "gas", "details": {"cylinders": 1},
             "idempotency_key": "call-1:order_gas"}
    r1 = await client.post("/api/orders", json=order, headers=AUTH)
    b1 = await r1.json()
    assert r1.status == 201 and b1["status"] == "placed" and b1["created"] is True
    r2 = await client.post("/api/orders", json=order, headers=AUTH)
    b2 = await r2.json()
    assert r2.status == 201 and b2["order_id"] == b1["order_id"] and b2["created"] is False
    # committed: a fresh read through the store sees it
    stored = await app[SERVICES_KEY].store.get_order(b1["order_id"])
    assert stored.call_id == "call-1" and stored.details == {"cylinders": 1}
    r = await client.get(f"/api/elders/{elder.elder_id}/orders", headers=AUTH)
    assert [o["order_id"] for o in (await r.json())["orders"]] == [b1["order_id"]]
    r = await client.post(f"/api/orders/{b1['order_id']}/status", json={"status": "dispatched"}, headers=AUTH)
    assert r.status == 200 and (await r.json())["dispatched_at"] is not None
    r = await client.post(f"/api/orders/{b1['order_id']}/status", json={"status": "placed"}, headers=AUTH)
    assert r.status == 409 and (await r.json())["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"type": "taxi", "idempotency_key": "a"}, 400, "invalid"),
        ({"type": "gas"}, 400, "invalid"),
        ({"type": "gas", "idempotency_key": "b", "details": "lots"}, 400, "invalid"),
        ({"type": "gas", "idempotency_key": "c", "elder_id": 9999}, 404, "not_found"),
        ({"type": "gas", "idempotency_key": "d", "elder_id": "x"}, 400, "invalid"),
    ],
)
async def test_bad_orders_get_coded_errors_and_write_nothing(api, body, status, code):
    client, app, elder = api
    r = await client.post("/api/orders", json={"elder_id": elder.elder_id} | body, headers=AUTH)
    assert r.status == status and (await r.json())["error"]["code"] == code
    assert await app[SERVICES_KEY].store.list_orders() == []


async def test_non_json_body_is_a_coded_error(api):
    client, _app, _elder = api
    r = await client.post("/api/orders", data=b"not json", headers=AUTH)
    assert r.status == 400 and (await r.json())["error"] == {"code": "invalid", "message": "body must be JSON"}


async def test_call_record_and_transcript_turns(api):
    client, _app, elder = api
    r = await client.post("/api/calls", json={"call_id": "c-9", "elder_id": elder.elder_id, "direction": "inbound",
                                               "channel": "phone", "caller_number": "0750-3201001", "dialect": "yue"},
                          headers=AUTH)
    assert r.status == 200 and (await r.json())["verified"] is False
    for turn, speaker, text in ((0, "bot", "您好，平安通"), (1, "elder", "我要订煤气")):
        r = await client.post("/api/calls/c-9/turns", json={"turn": turn, "speaker": speaker, "text": text,
                                                            "asr_confidence": 0.9, "intent": None}, headers=AUTH)
        assert r.status == 201
    r = await client.post("/api/calls", json={"call_id": "c-9", "verification": "verified",
                                               "ended_at": "2026-11-23T01:05:00+00:00", "outcome": "order"},
                          headers=AUTH)
    assert r.status == 200
    r = await client.get("/api/calls/c-9", params={"turns": "1"}, headers=AUTH)
    body = await r.json()
    assert body["elder_id"] == elder.elder_id and body["verified"] is True and body["direction"] == "inbound"
    assert body["dialect"] == "yue" and body["ended_at"].startswith("2026-11-23T01:05:00")
    assert [t["text"] for t in body["turns"]] == ["您好，平安通", "我要订煤气"]
    r = await client.post("/api/calls/c-9/turns", json={"turn": 2, "speaker": "robot", "text": "?"}, headers=AUTH)
    assert r.status == 400
    r = await client.get("/api/calls/unknown", headers=AUTH)
    assert r.status == 404


async def test_family_member_acts_for_parent(api):
    client, _app, elder = api
    son, daughter = elder.contacts
    order = {"elder_id": elder.elder_id, "type": "appointment", "idempotency_key": "fam-appt",
             "details": {"hospital": "江门市中心医院", "department": "眼科", "when": "2026-11-26T09:00+08:00",
                         "escort": True}}
    r = await client.post(f"/api/family/{son.contact_id}/orders", json=order, headers=AUTH)
    body = await r.json()
    assert r.status == 201 and body["order"]["placed_by"] == "family"
    r = await client.post(f"/api/family/{daughter.contact_id}/orders", json=order | {"idempotency_key": "x"},
                          headers=AUTH)
    assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
    r = await client.post(f"/api/family/{daughter.contact_id}/orders/{body['order_id']}/cancel", headers=AUTH)
    assert r.status == 403
    r = await client.post(f"/api/family/{son.contact_id}/orders/{body['order_id']}/cancel", headers=AUTH)
    assert r.status == 200 and (await r.json())["status"] == "cancelled"


async def test_sos_alert_reaches_the_family_by_sms(api, sms):
    client, _app, elder = api
    r = await client.post("/api/alerts", json={"elder_id": elder.elder_id, "call_id": "c-1", "kind": "sos",
                                                "detail": {"text": "救命"}}, headers=AUTH)
    body = await r.json()
    assert r.status == 201 and body["alert"]["severity"] == "critical" and body["alert"]["notified"] == 3
    await eventually(lambda: len(sms.sent) >= 2)
    assert [to for to, _ in sms.sent] == ["13900000101", "13900000102"]
    assert all("紧急求助" in text for _, text in sms.sent)
    r = await client.get("/api/alerts", params={"status": "open"}, headers=AUTH)
    assert [a["kind"] for a in (await r.json())["alerts"]] == ["sos"]
    r = await client.post(f"/api/alerts/{body['alert_id']}/status", json={"status": "acknowledged"}, headers=AUTH)
    assert r.status == 200 and (await r.json())["acknowledged_by"] == "service"
    r = await client.post("/api/alerts", json={"elder_id": elder.elder_id, "kind": "party"}, headers=AUTH)
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid"


async def test_console_session_hook_and_internal_errors_stay_json(api, monkeypatch):
    from assistant.platform.api import AUTH_HOOKS_KEY

    client, app, elder = api

    async def console_session(request):
        return "console:alice" if request.cookies.get("session") == "ok" else None

    app[AUTH_HOOKS_KEY].append(console_session)
    r = await client.get(f"/api/elders/{elder.elder_id}", cookies={"session": "ok"})
    assert r.status == 200
    r = await client.get(f"/api/elders/{elder.elder_id}", cookies={"session": "forged"})
    assert r.status == 401

    async def broken(_elder_id):
        raise RuntimeError("bug")

    monkeypatch.setattr(app[SERVICES_KEY].store, "get_elder", broken)
    r = await client.get(f"/api/elders/{elder.elder_id}", headers=AUTH)
    assert r.status == 500 and (await r.json())["error"]["code"] == "internal"
