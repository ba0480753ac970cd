"""``/health`` tells the truth (issue #15): a phone gateway that failed to start, or Rasa down, makes the
service "degraded" with HTTP 503 and says which component; a part switched off on purpose does not."""

from __future__ import annotations

from types import SimpleNamespace

from assistant.errors import TelephonyError
from assistant.serve import start_phone
from assistant.server import create_app, report_component
from assistant.services import SERVICES_KEY


async def test_health_is_ok_with_nothing_failed(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings))
    r = await client.get("/health")
    body = await r.json()
    assert r.status == 200 and body["status"] == "ok"
    assert body["components"] == {}


async def test_failed_phone_gateway_makes_health_degraded(aiohttp_client, settings):
    app = create_app(settings)
    client = await aiohttp_client(app)

    async def sip_port_taken(runtime):
        raise TelephonyError("cannot listen for SIP on 127.0.0.1:5070: Address already in use", code="sip_bind_failed")

    gateway = await start_phone(SimpleNamespace(app=app), start_gateway=sip_port_taken)
    assert gateway is None  # the rest is served
    r = await client.get("/health")
    body = await r.json()
    assert r.status == 503 and body["status"] == "degraded"
    assert body["components"]["phone"]["ok"] is False and body["components"]["phone"]["error"] == "sip_bind_failed"


async def test_started_phone_and_parts_off_on_purpose_are_ok(aiohttp_client, settings):
    app = create_app(settings)
    client = await aiohttp_client(app)

    async def started(runtime):
        return "gateway"

    assert await start_phone(SimpleNamespace(app=app), start_gateway=started) == "gateway"
    report_component(app, "dialogue", ok=None, note="Rasa not started here")
    r = await client.get("/health")
    body = await r.json()
    assert r.status == 200 and body["status"] == "ok"
    assert body["components"]["phone"] == {"ok": True}


async def test_rasa_that_failed_to_start_or_died_is_degraded(aiohttp_client, settings):
    app = create_app(settings)
    report_component(app, "dialogue", ok=False, error="setup_incomplete", message="the Rasa environment is missing")
    client = await aiohttp_client(app)
    r = await client.get("/health")
    assert r.status == 503 and (await r.json())["components"]["dialogue"]["error"] == "setup_incomplete"

    class DeadChild:
        def status(self):
            return {"rasa-actions": {"pid": 1, "running": True, "restarts": 0},
                    "rasa": {"pid": None, "running": False, "restarts": 2}}  # fmt: skip

    client2 = await aiohttp_client(create_app(settings))
    client2.app[SERVICES_KEY].supervisor = DeadChild()  # as assistant.runtime sets it once Rasa runs
    r = await client2.get("/health")
    body = await r.json()
    assert r.status == 503 and body["components"]["dialogue"] == {"ok": False, "error": "rasa_down", "down": ["rasa"]}


def test_listeners_beyond_loopback_are_named(settings):
    import dataclasses

    from assistant.runtime import exposed_listeners

    assert exposed_listeners(settings) == []  # the defaults: all loopback
    wide = dataclasses.replace(
        settings,
        server=dataclasses.replace(settings.server, host="0.0.0.0"),
        dialogue=dataclasses.replace(settings.dialogue, actions_host="10.0.0.5"),
        telephony=dataclasses.replace(settings.telephony, sip_host="::1"),
    )
    assert exposed_listeners(wide) == ["web app on 0.0.0.0", "action server on 10.0.0.5"]
