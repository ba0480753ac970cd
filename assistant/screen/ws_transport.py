"""A pipecat transport over the smart screen's WebSocket (aiohttp on our side, the kiosk page on the other).

- Input: the WebSocket handler hands each binary message to ``ScreenTransport.feed_audio``; it is
  re-chunked into 20 ms ``InputAudioRawFrame``s at 16 kHz and goes through the base class's audio queue
  (VAD runs in the pipeline). Buttons become ``TranscriptionFrame``s (``inject_text``), as if spoken.
- Output: reply audio (``OutputAudioRawFrame``, chunked by the base class) goes out as binary PCM at the
  pipeline's output rate, paced on a monotonic clock like a sound card, so that an interruption stops
  what has not been sent yet. Captions go out as JSON the moment their frames pass: ``TranscriptionFrame``
  (what the elder said) and ``TTSTextFrame`` (what the assistant says). ``InterruptionFrame`` → an
  ``interrupt`` message: the page stops playback at once (barge-in).

Modelled on pipecat's ``transports/websocket/fastapi.py``; the socket is anything with ``send_str``,
``send_bytes`` and ``closed`` (aiohttp's ``WebSocketResponse``, or a fake in tests).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from loguru import logger
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    StartFrame,
    TranscriptionFrame,
    TTSTextFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor, FrameProcessorSetup
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams
from pipecat.utils.time import time_now_iso8601

from assistant.audio.vad import SpeakerDoneFrame
from assistant.screen.protocol import (
    MIC_FRAME_BYTES,
    MIC_SAMPLE_RATE_HZ,
    Caption,
    Interrupt,
    PcmFramer,
    ServerMessage,
    check_audio,
)


class ScreenSocket(Protocol):
    closed: bool

    async def send_str(self, data: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...


class ScreenLink:
    """The page's socket with one write lock: captions, audio and panel updates come from several tasks."""

    def __init__(self, *, ws: ScreenSocket):
        self._ws = ws
        self._lock = asyncio.Lock()

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def send(self, message: ServerMessage) -> bool:
        return await self._write(message.to_json())

    async def send_audio(self, pcm: bytes) -> bool:
        return await self._write(pcm)

    async def _write(self, data: str | bytes) -> bool:
        if self._ws.closed:
            return False
        try:
            async with self._lock:
                if isinstance(data, bytes):
                    await self._ws.send_bytes(data)
                else:
                    await self._ws.send_str(data)
        except asyncio.CancelledError:
            raise
        except (ConnectionError, RuntimeError) as exc:  # aiohttp: ClientConnectionResetError / closing socket
            logger.debug(f"screen socket write failed: {exc}")
            return False
        return True


def screen_transport_params(*, out_sample_rate_hz: int = MIC_SAMPLE_RATE_HZ) -> TransportParams:
    return TransportParams(
        audio_in_enabled=True,
        audio_in_sample_rate=MIC_SAMPLE_RATE_HZ,
        audio_in_channels=1,
        audio_out_enabled=True,
        audio_out_sample_rate=out_sample_rate_hz,
        audio_out_channels=1,
        audio_out_10ms_chunks=4,  # 40 ms per binary message: small enough for quick barge-in
        audio_out_end_silence_secs=0,
    )


class ScreenInputTransport(BaseInputTransport):
    def __init__(self, *, params: TransportParams, user_id: str, **kwargs):
        super().__init__(params, **kwargs)
        self._user_id = user_id
        self._framer = PcmFramer(frame_bytes=MIC_FRAME_BYTES)
        self._ready = asyncio.Event()
        self.frames_in = 0
        self.frames_dropped = 0

    @property
    def ready(self) -> asyncio.Event:
        return self._ready

    async def start(self, frame: StartFrame):
        await super().start(frame)
        await self.set_transport_ready(frame)
        self._ready.set()

    async def feed_audio(self, data: bytes) -> int:
        """Queue one binary message from the page; returns the number of 20 ms frames it made."""
        pcm = check_audio(data)
        if not self._ready.is_set():
            self.frames_dropped += 1  # the pipeline has not started yet: nothing can hear it
            return 0
        frames = self._framer.push(pcm)
        for chunk in frames:
            await self.push_audio_frame(InputAudioRawFrame(audio=chunk, sample_rate=MIC_SAMPLE_RATE_HZ, num_channels=1))
        self.frames_in += len(frames)
        return len(frames)

    async def inject_text(self, text: str) -> None:
        """Text the elder chose on screen (a button) goes to the dialogue as if spoken."""
        await self.push_frame(TranscriptionFrame(text=text, user_id=self._user_id, timestamp=time_now_iso8601()))

    async def interrupt(self) -> None:
        """Stop the assistant talking (press-to-talk pressed, SOS): an interruption both ways."""
        await self.broadcast_interruption()

    async def speaker_done(self) -> None:
        """Press-to-talk released: the elder has finished; the turn ends at its first pause."""
        await self.push_frame(SpeakerDoneFrame())


class ScreenOutputTransport(BaseOutputTransport):
    """``captions_from_frames``: caption ``TranscriptionFrame``/``TTSTextFrame`` as they pass (pipelines without
    a turn tracker); the real pipeline captions from its turn tracker instead (sooner, see ``app.py``)."""

    def __init__(self, *, params: TransportParams, link: ScreenLink, captions_from_frames: bool = True, **kwargs):
        super().__init__(params, **kwargs)
        self._link = link
        self.captions_from_frames = captions_from_frames
        self._send_interval_s = 0.0
        self._next_send_t = 0.0
        self.audio_bytes_out = 0
        self.captions_out = 0

    async def setup(self, setup: FrameProcessorSetup):
        await super().setup(setup)
        self._send_interval_s = self.audio_chunk_size / 2 / self.sample_rate  # one chunk of playback

    async def start(self, frame: StartFrame):
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if direction == FrameDirection.DOWNSTREAM and self.captions_from_frames:
            if isinstance(frame, TranscriptionFrame) and frame.text.strip():
                self.captions_out += 1
                await self._link.send(Caption(speaker="elder", text=frame.text.strip()))
            elif isinstance(frame, TTSTextFrame) and frame.text.strip():
                self.captions_out += 1
                await self._link.send(Caption(speaker="assistant", text=frame.text.strip()))
        if isinstance(frame, InterruptionFrame):
            self._next_send_t = 0.0
            await self._link.send(Interrupt())
        await super().process_frame(frame, direction)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        if self._link.closed:
            return False
        if not await self._link.send_audio(frame.audio):
            return False
        self.audio_bytes_out += len(frame.audio)
        await self._pace()
        return True

    async def _pace(self) -> None:
        """Sleep like a sound card would: one chunk of audio per chunk duration."""
        now = time.monotonic()
        wait = max(0.0, self._next_send_t - now)
        await asyncio.sleep(wait)
        self._next_send_t = (time.monotonic() if wait == 0 else self._next_send_t) + self._send_interval_s


class ScreenTransport(BaseTransport):
    """One kiosk page's connection. ``feed_audio``/``inject_text``/``interrupt`` come from the socket handler."""

    def __init__(
        self,
        *,
        link: ScreenLink,
        user_id: str,
        params: TransportParams | None = None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self._params = params or screen_transport_params()
        self._link = link
        self._input = ScreenInputTransport(params=self._params, user_id=user_id, name=f"{self}#input")
        self._output = ScreenOutputTransport(params=self._params, link=link, name=f"{self}#output")

    def input(self) -> FrameProcessor:
        return self._input

    def output(self) -> FrameProcessor:
        return self._output

    @property
    def link(self) -> ScreenLink:
        return self._link

    @property
    def input_transport(self) -> ScreenInputTransport:
        return self._input

    @property
    def output_transport(self) -> ScreenOutputTransport:
        return self._output

    async def feed_audio(self, data: bytes) -> int:
        return await self._input.feed_audio(data)

    async def inject_text(self, text: str) -> None:
        await self._input.inject_text(text)

    async def interrupt(self) -> None:
        await self._input.interrupt()

    async def speaker_done(self) -> None:
        await self._input.speaker_done()
