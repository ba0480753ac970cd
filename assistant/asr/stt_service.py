"""pipecat STT service: one utterance per VAD turn, decoded by the shared recognizer off the event loop."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import replace

from loguru import logger
from pipecat.frames.frames import Frame, TranscriptionFrame, VADUserStoppedSpeakingFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from assistant.asr.base import AsrResult, RecognizerOptions
from assistant.errors import AssistantError
from assistant.session import CallSession
from assistant.settings import Settings
from assistant.turns import TurnTracker

LANGUAGES = {"cmn": Language.CMN, "yue": Language.YUE}
CLOSED_EXPECTATIONS = {"yes_no": "yes_no", "menu": "menu"}
# a free hypothesis this much longer than the matched phrase means the elder said more (a correction)
EXTRA_CHARS_FOR_FREE_TEXT = 3


def keep_what_was_said(result: AsrResult) -> AsrResult:
    """After a closed prompt: keep the matched phrase for short answers, the free text for longer ones."""
    from assistant.text.normalize import normalize_transcript

    free = normalize_transcript(result.raw_text) if result.raw_text else ""
    if not free or free == result.text:
        return result
    if not result.text or len(free) > len(result.text) + EXTRA_CHARS_FOR_FREE_TEXT:
        return replace(result, text=free)
    return result


class AssistantSTTService(SegmentedSTTService):
    """Hands each VAD segment to ``assistant.asr.registry.recognize``.

    A failed or empty recognition still yields a ``TranscriptionFrame`` (empty text, ``result`` holding
    the error code) so the dialogue can say "please say that again" instead of staying silent.
    """

    def __init__(self, *, session: CallSession, settings: Settings, tracker: TurnTracker, **kwargs):
        super().__init__(
            sample_rate=settings.audio.pipeline_sample_rate_hz,
            trailing_silence_secs=0.3,
            settings=STTSettings(model=settings.asr.default_model_cmn, language=None),
            ttfs_p99_latency=1.0,
            **kwargs,
        )
        self._session = session
        self._app_settings = settings
        self._tracker = tracker

    @property
    def wants_wav_segments(self) -> bool:
        return False

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            self._tracker.speech_ended()
        await super().process_frame(frame, direction)

    def _options(self) -> RecognizerOptions | None:
        """A closed prompt after a yes/no question or the keypad menu (short answers like 对 survive)."""
        expect = self._session.expect
        if expect not in CLOSED_EXPECTATIONS:
            return None
        from assistant.asr.prompt_options import closed_prompt

        return closed_prompt(self._session.dialect or "cmn", CLOSED_EXPECTATIONS[expect])

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        from assistant.asr.registry import recognize

        record = self._tracker.begin(source="speech")
        record.asr_start_t = time.perf_counter()
        try:
            result = await recognize(
                audio,
                sample_rate_hz=self.sample_rate,
                dialect=self._session.dialect,
                options=self._options(),
                settings=self._app_settings,
            )
            result = keep_what_was_said(result)
        except AssistantError as exc:
            record.asr_end_t = time.perf_counter()
            record.error = exc.code
            logger.warning(f"asr failed on turn {record.turn}: error[{exc.code}] {exc.message}")
            frame = TranscriptionFrame(text="", user_id=self._session.call_id, timestamp=time_now_iso8601(), result=exc)
            record.frame_id = frame.id
            yield frame
            return
        record.asr_end_t = time.perf_counter()
        if self._session.dialect is None and result.text:
            self._session.dialect = result.dialect  # decided from the first utterance, kept for the call
        record.transcript = result.text
        record.dialect = result.dialect
        record.asr_confidence = round(result.confidence, 3)
        record.asr_engine = f"{result.engine}:{result.model_id}"
        await self._tracker.notify("asr", record)
        frame = TranscriptionFrame(
            text=result.text,
            user_id=self._session.call_id,
            timestamp=time_now_iso8601(),
            language=LANGUAGES.get(result.dialect),
            result=result,
        )
        record.frame_id = frame.id
        yield frame
