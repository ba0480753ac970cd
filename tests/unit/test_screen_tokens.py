"""Screen tokens revocable per device (issue #15): each enrolled screen has its own token; revoking one refuses
it on its next request and closes its open page, while the elder's other screens keep working."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import WSMsgType

from assistant.screen import app as screen_app
from assistant.screen.app import create_app
from assistant.screen.testing import seed_demo
from assistant.screen.tokens import (
    device_token,
    enrol_device,
    list_devices,
    registry_path,
    revoke_device,
    screen_secret,
    token_device,
)


def _token(path: str) -> str:
    return path.split("token=", 1)[1]


@pytest.fixture
async def client(settings, aiohttp_client):
    await seed_demo(settings)
    return await aiohttp_client(create_app(settings))


async def test_a_revoked_screen_is_refused_and_the_others_keep_working(client, settings):
    kitchen, kitchen_path = enrol_device(settings, 1, name="厨房")
    bedroom, bedroom_path = enrol_device(settings, 1, name="卧室")
    assert kitchen.device_id != bedroom.device_id and _token(kitchen_path) != _token(bedroom_path)
    assert (await client.get(kitchen_path)).status == 200
    assert (await client.get(bedroom_path)).status == 200

    revoked = revoke_device(settings, kitchen.device_id)
    assert revoked is not None and revoked.revoked
    assert (await client.get(kitchen_path)).status == 403  # the next request, no restart
    assert (await client.get(f"/screen/1/status?token={_token(kitchen_path)}")).status == 403
    assert (await client.post(f"/screen/1/sos?token={_token(kitchen_path)}")).status == 403
    assert (await client.get(bedroom_path)).status == 200  # the elder's other screen is untouched
    listed = {d.device_id: d for d in list_devices(settings, elder_id=1)}
    assert listed[kitchen.device_id].revoked and not listed[bedroom.device_id].revoked


async def test_tokens_cannot_be_moved_forged_or_outlive_their_registry(client, settings):
    device, path = enrol_device(settings, 1)
    token = _token(path)
    assert (await client.get(f"/screen/2?token={token}")).status == 403  # another elder's page
    forged = f"{device.device_id}.{'A' * 32}"
    assert (await client.get(f"/screen/1?token={forged}")).status == 403
    other_id = device_token(1, secret=b"not the secret", device_id="deadbeef")
    assert (await client.get(f"/screen/1?token={other_id}")).status == 403
    registry_path(settings).unlink()  # enrolment lost: device tokens fail closed
    assert (await client.get(f"/screen/1?token={token}")).status == 403


async def test_the_shared_token_works_until_revoked(client, settings):
    shared = device_token(1, secret=screen_secret(settings))
    assert token_device(1, shared, secret=screen_secret(settings)) == "elder-1"
    assert (await client.get(f"/screen/1?token={shared}")).status == 200
    assert revoke_device(settings, "elder-1") is not None
    assert (await client.get(f"/screen/1?token={shared}")).status == 403
    assert revoke_device(settings, "no-such-device") is None


async def test_an_open_page_is_closed_when_its_screen_is_revoked(client, settings, monkeypatch):
    monkeypatch.setattr(screen_app, "STATUS_REFRESH_S", 0.05)
    device, path = enrol_device(settings, 1)
    other, other_path = enrol_device(settings, 1)
    async with client.ws_connect(f"/screen/1/ws?token={_token(path)}") as ws, \
            client.ws_connect(f"/screen/1/ws?token={_token(other_path)}") as ws_other:  # fmt: skip
        revoke_device(settings, device.device_id)
        while True:
            msg = await asyncio.wait_for(ws.receive(), timeout=10)
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
                break
        assert ws.close_code == screen_app.WS_CLOSE_REVOKED
        await asyncio.sleep(0.3)  # several refreshes later the other screen is still open
        assert not ws_other.closed
    assert (await client.get(f"/screen/1/ws?token={_token(path)}")).status == 403


def test_registry_is_private(settings):
    enrol_device(settings, 1)
    assert registry_path(settings).stat().st_mode & 0o777 == 0o600


def test_cli_enrols_lists_and_revokes(settings, monkeypatch, capsys):
    from assistant.cli import main

    monkeypatch.setenv("ASSISTANT_VAR_DIR", str(settings.paths.var_dir))
    assert main(["screen", "--url", "1", "--name", "客厅"]) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith("http://127.0.0.1:") and "/screen/1?token=" in url
    assert main(["screen", "--devices"]) == 0
    devices = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["elder_id"], d["name"], d["revoked_at"]) for d in devices] == [(1, "客厅", None)]
    assert main(["screen", "--revoke", devices[0]["device_id"]]) == 0
    assert json.loads(capsys.readouterr().out)["revoked_at"]
    assert main(["screen", "--revoke", "nope"]) == 2
