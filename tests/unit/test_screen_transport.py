"""The screen's pipecat transport over a fake socket, with the TEST STAND-IN pipeline (no models, no Rasa):
captions and paced reply audio out, 20 ms frames in, barge-in stops the rest of a reply."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from pipecat.workers.runner import WorkerRunner

from assistant.screen.protocol import ScreenProtocolError
from assistant.screen.standin import build_standin_worker
from assistant.screen.ws_transport import ScreenLink, ScreenTransport, screen_transport_params
from assistant.session import CallSession


class FakeSocket:
    def __init__(self) -> None:
        self.closed = False
        self.texts: list[dict] = []
        self.audio: list[tuple[float, bytes]] = []

    async def send_str(self, data: str) -> None:
        self.texts.append(json.loads(data))

    async def send_bytes(self, data: bytes) -> None:
        self.audio.append((time.monotonic(), data))

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.texts if m["type"] == kind]


async def _wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def running(settings):
    """A running stand-in pipeline on a ScreenTransport; yields (transport, socket)."""
    sock = FakeSocket()
    session = CallSession(channel="screen", elder_id=1)
    transport = ScreenTransport(link=ScreenLink(ws=sock), user_id=session.call_id, params=screen_transport_params())
    worker = build_standin_worker(transport=transport, session=session, settings=settings, reply_s=2.0)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(transport.input_transport.ready.wait(), timeout=10)
        yield transport, sock
    finally:
        await runner.cancel(reason="test over")
        await asyncio.wait_for(task, timeout=10)


async def test_text_in_gives_captions_and_paced_audio_out(running):
    transport, sock = running
    await transport.inject_text("我要叫煤气")
    await _wait_for(lambda: len(sock.of_type("caption")) >= 2)
    captions = sock.of_type("caption")
    assert captions[0] == {"type": "caption", "speaker": "elder", "text": "我要叫煤气", "final": True}
    assert captions[1]["speaker"] == "assistant" and "我要叫煤气" in captions[1]["text"]
    await _wait_for(lambda: len(sock.audio) >= 25)
    t0 = sock.audio[0][0]
    t25 = sock.audio[24][0]
    # 40 ms chunks, sent at playback pace: 25 chunks span about a second, not a burst
    assert all(len(chunk) == 1280 for _, chunk in sock.audio[:25])
    assert 0.7 < t25 - t0 < 1.5


async def test_barge_in_stops_the_reply_and_tells_the_page(running):
    transport, sock = running
    await transport.inject_text("你好")
    await _wait_for(lambda: len(sock.audio) >= 5)
    await transport.interrupt()
    await _wait_for(lambda: sock.of_type("interrupt"))
    sent_at_interrupt = len(sock.audio)
    await asyncio.sleep(0.5)
    # a 2 s reply is 50 chunks; after the interruption at most the chunk in flight follows
    assert len(sock.audio) <= sent_at_interrupt + 2
    assert len(sock.audio) < 50


async def test_microphone_bytes_become_20ms_frames(running):
    transport, _ = running
    assert await transport.feed_audio(bytes(1000)) == 1
    assert await transport.feed_audio(bytes(280)) == 1
    assert transport.input_transport.frames_in == 2
    with pytest.raises(ScreenProtocolError):
        await transport.feed_audio(b"\x00" * 3)


async def test_audio_before_the_pipeline_starts_is_dropped(settings):
    sock = FakeSocket()
    transport = ScreenTransport(link=ScreenLink(ws=sock), user_id="u", params=screen_transport_params())
    assert await transport.feed_audio(bytes(640)) == 0
    assert transport.input_transport.frames_dropped == 1


async def test_closed_socket_takes_no_writes():
    sock = FakeSocket()
    sock.closed = True
    link = ScreenLink(ws=sock)
    assert await link.send_audio(b"\x00\x00") is False
    assert sock.audio == []
