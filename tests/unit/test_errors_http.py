"""One error code → HTTP status map (``assistant.errors.http_status``), used by the platform API, the console
and the server's JSON middleware. Before, the server answered every non-database error with 400
(``not_found`` included) and the three maps disagreed."""

from __future__ import annotations

import pytest
from aiohttp import web

from assistant.errors import AssistantError, StoreError, http_status
from assistant.server import create_app


@pytest.mark.parametrize(
    ("code", "status"),
    [("invalid", 400), ("forbidden", 403), ("not_found", 404), ("conflict", 409), ("exists", 409),
     ("store_failed", 503), ("store_config", 503), ("dialogue_failed", 503), ("tts_engine_failed", 503)],
)
def test_codes_map_to_statuses(code, status):
    assert http_status(code) == status


@pytest.mark.parametrize(("code", "status"), [("not_found", 404), ("conflict", 409), ("store_failed", 503), ("invalid", 400)])
async def test_server_middleware_answers_with_the_map(aiohttp_client, settings, code, status):
    app = create_app(settings)

    async def boom(request: web.Request) -> web.Response:
        raise StoreError("nothing here", code=code)

    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    r = await client.get("/boom")
    assert r.status == status
    assert (await r.json())["error"]["code"] == code


async def test_server_middleware_blames_the_server_for_unlisted_codes(aiohttp_client, settings):
    app = create_app(settings)

    async def boom(request: web.Request) -> web.Response:
        raise AssistantError("speech engine crashed", code="tts_engine_failed")

    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    assert (await client.get("/boom")).status == 503

