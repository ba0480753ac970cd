"""TEST STAND-IN pipeline for the screen: no ASR, no Rasa, no TTS. Never used in production.

It exists so the screen's transport, page and protocol can be tested without models or Rasa:

    transport in → VAD (webrtcvad, the project's analyzer) → StandInEcho → transport out

``StandInEcho`` answers each VAD turn with a caption "（测试）听到 N.N 秒讲话" and a short tone as
"speech"; text from buttons gets "（测试）收到：<text>". When the elder speaks while the tone plays it
broadcasts an interruption (barge-in), like the real dialogue stage does.
"""

from __future__ import annotations

import math

import numpy as np
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    TranscriptionFrame,
    TTSTextFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.utils.time import time_now_iso8601

from assistant.audio.vad import WebRtcVadAnalyzer, vad_params
from assistant.session import CallSession
from assistant.settings import Settings

STANDIN_PREFIX = "（测试）"


def tone(*, duration_s: float, sample_rate_hz: int, freq_hz: float = 440.0, level: float = 0.2) -> bytes:
    n = int(duration_s * sample_rate_hz)
    t = np.arange(n) / sample_rate_hz
    ramp = np.minimum(1.0, np.minimum(t, t[::-1] if n else t) / 0.01)
    x = level * np.sin(2 * math.pi * freq_hz * t) * ramp
    return np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes()


class StandInEcho(FrameProcessor):
    """TEST STAND-IN for STT + dialogue + TTS (see module docstring)."""

    def __init__(self, *, session: CallSession, sample_rate_hz: int, reply_s: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self._session = session
        self._rate = sample_rate_hz
        self._reply_s = reply_s
        self._speech_bytes = 0
        self._in_turn = False
        self._bot_speaking = False
        self.turns: list[str] = []
        self.interruptions = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._in_turn, self._speech_bytes = True, 0
            if self._bot_speaking:
                self.interruptions += 1
                await self.push_frame(frame, direction)
                await self.broadcast_interruption()
                return
        elif isinstance(frame, InputAudioRawFrame) and self._in_turn:
            self._speech_bytes += len(frame.audio)
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and self._in_turn:
            self._in_turn = False
            seconds = self._speech_bytes / 2 / self._rate
            await self.push_frame(frame, direction)
            heard = f"{STANDIN_PREFIX}听到 {seconds:.1f} 秒讲话"
            await self.push_frame(TranscriptionFrame(text=heard, user_id=self._session.call_id, timestamp=time_now_iso8601()))
            await self._reply(f"{STANDIN_PREFIX}我听到您说话了")
            return
        elif isinstance(frame, TranscriptionFrame) and direction == FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
            await self._reply(f"{STANDIN_PREFIX}收到：{frame.text}")
            return
        await self.push_frame(frame, direction)

    async def _reply(self, text: str) -> None:
        self.turns.append(text)
        await self.push_frame(TTSTextFrame(text, text_type="sentence"))
        await self.push_frame(
            OutputAudioRawFrame(audio=tone(duration_s=self._reply_s, sample_rate_hz=self._rate), sample_rate=self._rate, num_channels=1)
        )


def build_standin_worker(*, transport, session: CallSession, settings: Settings, reply_s: float = 1.0) -> PipelineWorker:
    """TEST STAND-IN: a worker running transport → VAD → ``StandInEcho`` → transport."""
    rate = settings.audio.pipeline_sample_rate_hz
    vad = VADProcessor(
        vad_analyzer=WebRtcVadAnalyzer(aggressiveness=settings.audio.vad_aggressiveness, params=vad_params(settings.audio)),
        audio_idle_timeout=0,
    )
    echo = StandInEcho(session=session, sample_rate_hz=rate, reply_s=reply_s)
    pipeline = Pipeline([transport.input(), vad, echo, transport.output()])
    return PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=rate, audio_out_sample_rate=rate),
        idle_timeout_secs=None,
        enable_rtvi=False,
        enable_turn_tracking=False,
        conversation_id=session.call_id,
    )
