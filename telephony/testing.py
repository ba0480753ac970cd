"""A small stand-in pipeline for tests and the call benchmark (no models, no Rasa):

    transport.input() → VAD (webrtcvad) → ReplyBot → transport.output()

``ReplyBot`` speaks a fixed reply (a WAV or a tone) for a ``TTSSpeakFrame`` (the greeting), after each
end of the caller's speech and after each keypad press; it stops (barge-in) when the caller starts
speaking while it talks, the way ``assistant.dialogue.processor`` does.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InputDTMFFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from assistant.audio.convert import read_audio
from assistant.audio.recording import CallAudioRecorder, recording_path
from assistant.audio.vad import WebRtcVadAnalyzer, vad_params
from assistant.call_recorder import BotAudioTap, CallLifecycle
from assistant.settings import AudioSettings


def tone(*, seconds: float, hz: float = 440.0, rate: int = 16000, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * level * 32767).astype("<i2").tobytes()


class ReplyBot(FrameProcessor):
    def __init__(self, *, reply_pcm: bytes, sample_rate: int = 16000, reply_on_speech: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.reply_pcm = reply_pcm
        self.sample_rate = sample_rate
        self.reply_on_speech = reply_on_speech
        self.bot_speaking = False
        self.interruptions = 0
        self.keys: list[str] = []
        self.speech_ends: list[float] = []

    async def _reply(self) -> None:
        step = self.sample_rate // 50 * 2 * 10  # 200 ms frames
        for i in range(0, len(self.reply_pcm), step):
            await self.push_frame(TTSAudioRawFrame(audio=self.reply_pcm[i : i + step], sample_rate=self.sample_rate, num_channels=1))

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, BotStartedSpeakingFrame):
            self.bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self.bot_speaking = False
        elif isinstance(frame, VADUserStartedSpeakingFrame) and self.bot_speaking:
            self.interruptions += 1
            await self.push_frame(frame, direction)
            await self.broadcast_interruption()
            return
        elif isinstance(frame, TTSSpeakFrame):
            await self._reply()
            return
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and self.reply_on_speech:
            self.speech_ends.append(time.monotonic())
            await self.push_frame(frame, direction)
            await self._reply()
            return
        elif isinstance(frame, InputDTMFFrame):
            self.keys.append(str(frame.button.value))
            await self.push_frame(frame, direction)
            await self._reply()
            return
        await self.push_frame(frame, direction)


def bot_pipeline_factory(*, reply_pcm: bytes | None = None, reply_wav: Path | None = None, settings=None, bots: list | None = None,
                         recordings_dir: Path | None = None):
    """A ``pipeline_factory`` for ``Gateway``: VAD → ReplyBot. ``bots`` collects the ReplyBot of each call;
    ``recordings_dir``: each call is recorded there as the real pipeline records it (``<call_id>.wav``)."""

    audio = settings.audio if settings is not None else AudioSettings()
    if reply_wav is not None:
        reply_pcm = read_audio(reply_wav, sample_rate_hz=16000).pcm
    pcm = reply_pcm if reply_pcm is not None else tone(seconds=1.5)

    def factory(*, transport, session):
        from pipecat.processors.audio.vad_processor import VADProcessor

        bot = ReplyBot(reply_pcm=pcm)
        if bots is not None:
            bots.append(bot)
        vad = VADProcessor(vad_analyzer=WebRtcVadAnalyzer(aggressiveness=audio.vad_aggressiveness, params=vad_params(audio)), audio_idle_timeout=0)
        if recordings_dir is None:
            return Pipeline([transport.input(), vad, bot, transport.output()])

        recording = CallAudioRecorder(path=recording_path(recordings_dir, session.call_id), flush_s=audio.recording_flush_s)
        pipeline = Pipeline([transport.input(), CallLifecycle(recording=recording), vad, bot, transport.output(),
                             BotAudioTap(recording=recording)])
        return SimpleNamespace(pipeline=pipeline, recording=recording)  # as CallPipeline: a hand-over records on

    return factory
