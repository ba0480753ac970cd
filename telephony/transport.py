"""A pipecat transport for one SIP call.

Input: every 20 ms RTP frame (8 kHz, decoded with our G.711, lost packets concealed) is resampled ONCE
to the pipeline rate (16 kHz by default, ``settings.audio.pipeline_sample_rate_hz``) with the stream
resampler (``assistant.audio.stream_resample``: the same samples as resampling the whole call, no clicks at
20 ms frame edges, no 95 ms bursts, 1.4 ms held back) and pushed as
``InputAudioRawFrame``; RFC 4733 digits become ``InputDTMFFrame``. Frames that arrive before the pipeline
has started are buffered, not dropped (the gateway starts the pipeline before answering anyway).

Output: the transport declares an 8 kHz output rate, so pipecat's output stage resamples TTS audio to
8 kHz and hands us 20 ms chunks (``audio_out_10ms_chunks=2``); each chunk goes to the RTP sender, which
holds at most ``barge_in_max_pending_ms`` (120 ms) ahead of the wire. An ``InterruptionFrame`` (barge-in)
clears pipecat's queue (base class) and our sender queue, so the elder hears silence within one slot.

Hang-up: the call ending sets ``transport.call_ended``; ``run_call_pipeline`` then queues an ``EndFrame``.
An ``EndFrame`` from the pipeline (the bot said goodbye) plays out the queued audio and sends BYE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    StartFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

from assistant.audio.stream_resample import StreamResampler
from assistant.errors import TelephonyError
from telephony.rtp import SAMPLE_RATE_HZ
from telephony.sip import CallEnded, PhoneCall

logger = logging.getLogger(__name__)

KeypadHook = Callable[[str], Awaitable[None]]


class TurnMeter:
    """Turn latency on the wire: end of the caller's voice (mean |x| above ``voice_level``) → first reply
    audio of a new bot talkspurt (a write after ``gap_s`` without one). Talkspurts that start while the
    caller is still talking (the greeting, a reply overlapping speech) are not turns and don't count."""

    def __init__(self, *, voice_level: float = 300.0, gap_s: float = 0.3, min_silence_s: float = 0.2) -> None:
        self.voice_level = voice_level
        self.gap_s = gap_s
        self.min_silence_s = min_silence_s
        self.last_voice: float | None = None
        self.last_write = 0.0
        self.spurt_start: float | None = None
        self.latencies_ms: list[float] = []

    @staticmethod
    def level(pcm: bytes) -> float:
        return float(np.abs(np.frombuffer(pcm, dtype="<i2")).mean()) if pcm else 0.0

    def heard(self, pcm8k: bytes, now: float) -> None:
        if self.level(pcm8k) > self.voice_level:
            self.last_voice = now

    def spoke(self, pcm: bytes, now: float) -> None:
        if self.level(pcm) < 30:
            return
        if now - self.last_write > self.gap_s:
            if self.last_voice is not None and now - self.last_voice >= self.min_silence_s and (self.spurt_start is None or self.last_voice > self.spurt_start):
                self.latencies_ms.append((now - self.last_voice) * 1000)
            self.spurt_start = now
        self.last_write = now
MAX_BUFFERED_FRAMES = 250  # 5 s of audio before the pipeline starts


def phone_transport_params(*, pipeline_sample_rate_hz: int = 16000) -> TransportParams:
    return TransportParams(
        audio_in_enabled=True,
        audio_in_sample_rate=pipeline_sample_rate_hz,
        audio_in_passthrough=True,
        audio_out_enabled=True,
        audio_out_sample_rate=SAMPLE_RATE_HZ,
        audio_out_10ms_chunks=2,
        audio_out_end_silence_secs=0,
    )


class SipInputTransport(BaseInputTransport):
    def __init__(self, *, call: PhoneCall, params: TransportParams, pipeline_sample_rate_hz: int, on_keypad: KeypadHook | None, meter: TurnMeter, **kwargs):
        super().__init__(params, **kwargs)
        self._call = call
        self._meter = meter
        self._rate = pipeline_sample_rate_hz
        self._on_keypad = on_keypad
        self._inbox: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self._resampler = StreamResampler(from_hz=SAMPLE_RATE_HZ, to_hz=pipeline_sample_rate_hz, context_in=0)
        self._pump_task: asyncio.Task | None = None
        self.started = asyncio.Event()
        self.frames_in = 0
        self.dropped_before_start = 0
        call.on_audio = self._on_audio
        call.on_dtmf = self._on_dtmf

    def _on_audio(self, pcm8k: bytes) -> None:
        self._meter.heard(pcm8k, time.monotonic())
        if not self.started.is_set() and self._inbox.qsize() >= MAX_BUFFERED_FRAMES:
            self.dropped_before_start += 1
            return
        self._inbox.put_nowait(("audio", pcm8k))

    def _on_dtmf(self, digit: str) -> None:
        self._inbox.put_nowait(("dtmf", digit))

    async def start(self, frame: StartFrame):
        await super().start(frame)
        await self.set_transport_ready(frame)
        if self._pump_task is None:
            self._pump_task = self.create_task(self._pump(), name="sip-input-pump")
        self.started.set()

    async def stop(self, frame: EndFrame):
        await super().stop(frame)
        await self._stop_pump()

    async def cancel(self, frame: CancelFrame):
        await super().cancel(frame)
        await self._stop_pump()

    async def _stop_pump(self) -> None:
        if self._pump_task is not None:
            await self.cancel_task(self._pump_task)
            self._pump_task = None

    async def _pump(self) -> None:
        while True:
            kind, value = await self._inbox.get()
            if kind == "audio":
                pcm = self._resampler.feed(value)
                if pcm:
                    self.frames_in += 1
                    await self.push_audio_frame(InputAudioRawFrame(audio=pcm, sample_rate=self._rate, num_channels=1))
            elif kind == "dtmf":
                digit = str(value)
                if self._on_keypad is not None:
                    try:
                        await self._on_keypad(digit)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        logger.exception("keypad hook failed for %s", digit)
                try:
                    button = KeypadEntry(digit)
                except ValueError:
                    continue  # A-D: not on a home phone's keypad
                await self.push_frame(InputDTMFFrame(button=button))


class SipOutputTransport(BaseOutputTransport):
    def __init__(self, *, call: PhoneCall, params: TransportParams, max_pending_ms: float, meter: TurnMeter, **kwargs):
        super().__init__(params, **kwargs)
        self._call = call
        self._meter = meter
        self._max_pending_ms = max_pending_ms
        self.frames_out = 0
        self.interruptions = 0
        self.muted = False  # the call is handed over to a person: the bot's audio goes nowhere

    async def start(self, frame: StartFrame):
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if isinstance(frame, InterruptionFrame):
            self.interruptions += 1
            self._call.clear_playback()
        await super().process_frame(frame, direction)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        call = self._call
        if self.muted:
            return True
        if call.state == "ringing":  # audio produced before the answer (greeting): wait for the line
            await call.wait_settled()
        if call.state != "active" or call.stream is None:
            return False
        await call.stream.wait_for_space(max_pending_ms=self._max_pending_ms)
        self._meter.spoke(frame.audio, time.monotonic())
        call.play(frame.audio)
        self.frames_out += 1
        return True

    async def stop(self, frame: EndFrame):
        await super().stop(frame)
        if self._call.state == "active" and not self.muted:  # the bot ended the call: let the goodbye play out, then BYE
            await self._call.wait_played(timeout_s=15.0)
            await self._call.hangup()


class SipCallTransport(BaseTransport):
    """``input()``/``output()`` for one ``PhoneCall``; ``call_ended`` is set when either side hangs up."""

    def __init__(
        self,
        *,
        call: PhoneCall,
        pipeline_sample_rate_hz: int = 16000,
        max_pending_ms: float = 120.0,
        on_keypad: KeypadHook | None = None,
        params: TransportParams | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.call = call
        self._params = params or phone_transport_params(pipeline_sample_rate_hz=pipeline_sample_rate_hz)
        self.meter = TurnMeter()
        self._input = SipInputTransport(
            call=call, params=self._params, pipeline_sample_rate_hz=pipeline_sample_rate_hz, on_keypad=on_keypad, meter=self.meter, name=f"{self.name}#input"
        )
        self._output = SipOutputTransport(call=call, params=self._params, max_pending_ms=max_pending_ms, meter=self.meter, name=f"{self.name}#output")
        self.call_ended = asyncio.Event()
        call.add_end_callback(self._ended)

    def _ended(self, ended: CallEnded) -> None:
        self.call_ended.set()

    # --- hand-over to a person (telephony.handover) ------------------------------------------------
    @property
    def handed_over(self) -> bool:
        return self._output.muted

    def hand_over(self) -> None:
        """The bot stops speaking (its audio is dropped) and its queued audio is cleared; the caller's
        audio is the hand-over's (it sets ``call.on_audio``). The pipeline keeps running."""
        self._output.muted = True
        self.call.clear_playback()

    def take_back(self) -> None:
        """Nobody took the call: the bot listens and speaks again."""
        self._output.muted = False
        self.call.on_audio = self._input._on_audio
        self.call.on_dtmf = self._input._on_dtmf

    def input(self) -> SipInputTransport:
        return self._input

    def output(self) -> SipOutputTransport:
        return self._output

    @property
    def started(self) -> asyncio.Event:
        return self._input.started


async def run_call_pipeline(
    *,
    transport: SipCallTransport,
    pipeline,
    conversation_id: str,
    pipeline_sample_rate_hz: int = 16000,
    before_answer: Callable[[object], Awaitable[None]] | None = None,
    end_grace_s: float = 3.0,
) -> None:
    """Run ``pipeline`` for the life of the call: start it, answer an inbound call once it is running
    (so the first 160 ms reach the VAD), queue ``EndFrame`` on hang-up, cancel if it does not finish."""
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.workers.runner import WorkerRunner

    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=pipeline_sample_rate_hz, audio_out_sample_rate=SAMPLE_RATE_HZ),
        idle_timeout_secs=None,
        enable_rtvi=False,
        enable_turn_tracking=False,
        conversation_id=conversation_id,
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    run_task = asyncio.create_task(runner.run(), name=f"pipeline-{conversation_id[:12]}")
    call = transport.call
    try:
        async with asyncio.timeout(10):
            await transport.started.wait()
        if before_answer is not None:
            await before_answer(worker)
        if call.direction == "inbound" and call.state == "ringing":
            try:
                await call.answer()
            except TelephonyError as exc:  # e.g. a late offer whose ACK brought no usable answer (BYE sent)
                logger.info("call %s not answered: error[%s] %s", call.call_id, exc.code, exc.message)
                return
        ended = asyncio.create_task(transport.call_ended.wait())
        try:
            await asyncio.wait({run_task, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        if not run_task.done():
            await worker.queue_frame(EndFrame())
            try:
                async with asyncio.timeout(end_grace_s):
                    await asyncio.shield(run_task)
            except TimeoutError:
                await worker.cancel(reason="call ended")
    finally:
        if not run_task.done():
            with contextlib.suppress(Exception):
                await worker.cancel(reason="gateway stopping")
            run_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await run_task
        if call.state != "ended" and not transport.handed_over:  # a handed-over call ends with its bridge
            await call.hangup()
