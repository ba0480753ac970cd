"""The Rasa REST client against small aiohttp servers standing in for Rasa (a fake: the real server is
exercised in tests/e2e). Covers: normal reply, Rasa down, slow, malformed and HTTP errors."""

import asyncio
import socket

import pytest
from aiohttp import web

from assistant.dialogue.rasa_client import RasaClient
from assistant.errors import DialogueError


def _app(webhook, parse=None) -> web.Application:
    app = web.Application()
    app.router.add_post("/webhooks/rest/webhook", webhook)

    async def default_parse(request):
        body = await request.json()
        return web.json_response({"text": body["text"], "intent": {"name": "order_gas", "confidence": 0.93}})

    app.router.add_post("/model/parse", parse or default_parse)
    return app


async def _serve(aiohttp_server, app):
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


async def test_reply_with_text_and_custom_event(aiohttp_server):
    seen = {}

    async def webhook(request):
        seen.update(await request.json())
        return web.json_response([{"recipient_id": "c1", "text": "好的"}, {"recipient_id": "c1", "custom": {"event": "slower"}}])

    url = await _serve(aiohttp_server, _app(webhook))
    async with RasaClient(base_url=url) as client:
        reply = await client.send(sender="c1", text="我要煤气", metadata={"dialect": "cmn"})
    assert reply.texts == ["好的"]
    assert reply.events == [{"event": "slower"}]
    assert reply.parse.intent == "order_gas" and reply.parse.confidence == pytest.approx(0.93)
    assert seen == {"sender": "c1", "message": "我要煤气", "metadata": {"dialect": "cmn"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_rasa_down_is_a_coded_error():
    async with RasaClient(base_url=f"http://127.0.0.1:{_free_port()}", timeout_s=1.0) as client:
        with pytest.raises(DialogueError) as err:
            await client.send(sender="c1", text="你好")
    assert err.value.code == "rasa_down"


async def test_slow_rasa_times_out(aiohttp_server):
    async def webhook(request):
        await asyncio.sleep(2.0)
        return web.json_response([])

    url = await _serve(aiohttp_server, _app(webhook))
    async with RasaClient(base_url=url, timeout_s=0.3) as client:
        with pytest.raises(DialogueError) as err:
            await client.send(sender="c1", text="你好", with_parse=False)
    assert err.value.code == "rasa_timeout"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [("not json", 200, "rasa_bad_reply"), ('{"text": "x"}', 200, "rasa_bad_reply"), ("[1, 2]", 200, "rasa_bad_reply"), ("oops", 500, "rasa_http_500")],
)
async def test_malformed_replies(aiohttp_server, body, status, code):
    async def webhook(request):
        return web.Response(text=body, status=status, content_type="application/json")

    url = await _serve(aiohttp_server, _app(webhook))
    async with RasaClient(base_url=url) as client:
        with pytest.raises(DialogueError) as err:
            await client.send(sender="c1", text="你好", with_parse=False)
    assert err.value.code == code
