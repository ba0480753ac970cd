"""pipecat STT service: one utterance per VAD turn, decoded by the shared recognizer off the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace

from loguru import logger
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    StartFrame,
    TranscriptionFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from assistant.asr.base import AsrResult, RecognizerOptions
from assistant.asr.prompt_options import closed_prompt
from assistant.asr.registry import call_ended, call_started, decodes_running, recognize
from assistant.audio.end_of_turn import reads_words
from assistant.audio.vad import EarlyTranscriptFrame, SpeechPausedFrame, SpeechResumedFrame
from assistant.errors import AssistantError
from assistant.session import CallSession
from assistant.settings import Settings
from assistant.text.normalize import normalize_transcript
from assistant.turns import TurnTracker

LANGUAGES = {"cmn": Language.CMN, "yue": Language.YUE}
CLOSED_EXPECTATIONS = {"yes_no": "yes_no", "menu": "menu"}
# a free hypothesis this much longer than the matched phrase means the elder said more (a correction)
EXTRA_CHARS_FOR_FREE_TEXT = 3
# an unknown caller's speech before a pause: this much is enough to tell Mandarin from Cantonese
DIALECT_PROBE_MIN_S = 1.5
# the words check decodes only the last this-many seconds before a pause: the end-of-turn rule reads the last words
WORDS_CHECK_S = 4.0


def keep_what_was_said(result: AsrResult) -> AsrResult:
    """After a closed prompt: keep the matched phrase for short answers, the free text for longer ones."""

    free = normalize_transcript(result.raw_text) if result.raw_text else ""
    if not free or free == result.text:
        return result
    if not result.text or len(free) > len(result.text) + EXTRA_CHARS_FOR_FREE_TEXT:
        return replace(result, text=free)
    return result


@dataclass(kw_only=True)
class EarlyRecognition:
    """Recognition started at a pause, before the end-of-turn silence ran out (``SpeechPausedFrame``)."""

    prefix: bytes  # the turn's audio up to the pause; the final segment must start with exactly this
    dialect: str | None
    options: RecognizerOptions | None
    task: asyncio.Task
    turn_ended: bool = False  # its turn's segment was queued (VADUserStoppedSpeakingFrame)

    def serves(self, audio: bytes, *, dialect: str | None, options: RecognizerOptions | None) -> bool:
        return audio.startswith(self.prefix) and dialect == self.dialect and options == self.options


class AssistantSTTService(SegmentedSTTService):
    """Hands each VAD segment to ``assistant.asr.registry.recognize``.

    A failed or empty recognition still yields a ``TranscriptionFrame`` (empty text, ``result`` holding
    the error code) so the dialogue can say "please say that again" instead of staying silent.

    Early recognition: at a ``SpeechPausedFrame`` (a pause shorter than the end-of-turn silence) the audio so
    far is decoded in the background when a decode worker is idle (``asr.decode_workers``); if the turn then
    ends with no more speech, that result is used and the reply starts up to the rest of the silence sooner. Speech resuming
    (``SpeechResumedFrame``) discards it, with one exception: while the caller's dialect is unknown (a
    number with no profile), an early recognition of at least ``DIALECT_PROBE_MIN_S`` of speech goes on as
    the dialect probe. Its dialect becomes the call's, so the rest of the turn is decoded once, in that
    dialect, instead of once per dialect (about half the decoding of an unknown caller's long first turn).
    An early recognition's text also goes back up (``EarlyTranscriptFrame``): the end of turn reads it.

    Words check (``audio.turn_open_words_wait`` or ``turn_open_text_aware``, open prompts): at the same pause
    the last ``WORDS_CHECK_S`` of speech are also decoded quickly (``RecognizerOptions.words_check``: a short
    encoder window, about 0.3 s instead of about 1 s for the whole window on 2 cores), started first so that
    its text reaches the end-of-turn decision before the fixed silence runs out. It is not a transcript; the
    early recognition's text replaces it when that comes.
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
        self._early: list[EarlyRecognition] = []  # in turn order; the last one may still be open
        self._probe: asyncio.Task | None = None  # the dialect probe of an unknown caller (see class doc)
        self._probe_decided = False  # the probe set the dialect during the current turn
        self._words: asyncio.Task | None = None  # the open pause's words check (see class doc)

    @property
    def wants_wav_segments(self) -> bool:
        return False

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            self._tracker.speech_ended()
            if self._early:
                self._early[-1].turn_ended = True
            await self._drop_words_check()
        elif isinstance(frame, SpeechPausedFrame):
            await self._start_early()
        elif isinstance(frame, SpeechResumedFrame):
            await self._drop_words_check()
            await self._drop_open_early()
        await super().process_frame(frame, direction)

    async def start(self, frame: StartFrame):

        await super().start(frame)
        call_started(self._session.call_id)

    async def stop(self, frame: EndFrame):

        try:
            await super().stop(frame)  # decodes the queued segments (using their early results)
            await self._drop_words_check()
            await self._drop_all_early()
        finally:
            call_ended(self._session.call_id)

    async def cancel(self, frame: CancelFrame):

        try:
            await self._drop_words_check()
            await self._drop_all_early()
            await super().cancel(frame)
        finally:
            call_ended(self._session.call_id)

    async def _start_early(self) -> None:

        await self._adopt_probe_dialect(wait=False)
        if not self._user_speaking or decodes_running() >= self._app_settings.asr.decode_workers:
            return  # only on an idle decode worker: never queue behind (or delay) another decode
        await self._drop_open_early()
        prefix = bytes(self._audio_buffer)
        audio = prefix + self._trailing_silence()
        dialect, options = self._session.dialect, self._options()
        if options is None and reads_words(self._app_settings.audio):  # first: its short encode must not queue
            await self._start_words_check(audio, dialect=dialect)
        task = self.create_task(
            self._recognize_early(audio, dialect=dialect, options=options),
            name="early-asr",
        )
        self._early.append(EarlyRecognition(prefix=prefix, dialect=dialect, options=options, task=task))

    async def _recognize_early(self, audio: bytes, *, dialect: str | None,
                               options: RecognizerOptions | None) -> AsrResult:
        """``_recognize``, then its text goes back up to the end-of-turn decision while its pause is still the
        open one (not resumed, not a dialect probe, its turn not yet ended)."""
        result = await self._recognize(audio, dialect=dialect, options=options)
        early = self._early[-1] if self._early else None
        if early is not None and early.task is asyncio.current_task() and not early.turn_ended:
            await self.push_frame(EarlyTranscriptFrame(text=result.raw_text), FrameDirection.UPSTREAM)
        return result

    async def _start_words_check(self, audio: bytes, *, dialect: str | None) -> None:
        await self._drop_words_check()
        tail = audio[-int(WORDS_CHECK_S * self.sample_rate) * 2 :]
        self._words = self.create_task(self._check_words(tail, dialect=dialect or "cmn"), name="words-check")

    async def _check_words(self, audio: bytes, *, dialect: str) -> None:
        """The words check (see class doc): its text goes up while its pause is still the open one."""
        try:
            result = await recognize(audio, sample_rate_hz=self.sample_rate, dialect=dialect,
                                     options=RecognizerOptions(words_check=True), settings=self._app_settings,
                                     call_id=self._session.call_id)
        except AssistantError as exc:
            logger.debug(f"call {self._session.call_id}: words check failed: error[{exc.code}]")
            return
        logger.debug(f"call {self._session.call_id}: words check of {result.audio_s:.1f}s decoded in {result.decode_s:.2f}s")
        if self._words is asyncio.current_task():
            self._words = None
            await self.push_frame(EarlyTranscriptFrame(text=result.raw_text), FrameDirection.UPSTREAM)

    async def _drop_words_check(self) -> None:
        task, self._words = self._words, None
        if task is not None and task is not asyncio.current_task():
            await self.cancel_task(task)

    async def _drop_open_early(self) -> None:
        """Speech went on after the pause: the open early recognition is for half a sentence."""
        if self._early and not self._early[-1].turn_ended:
            early = self._early.pop()
            speech_s = len(early.prefix) / 2 / self.sample_rate
            if self._probe is None and self._session.dialect is None and early.dialect is None \
                    and speech_s >= DIALECT_PROBE_MIN_S:
                self._probe = early.task
            else:
                await self.cancel_task(early.task)

    async def _drop_all_early(self) -> None:
        while self._early:
            await self.cancel_task(self._early.pop().task)
        if self._probe is not None:
            probe, self._probe = self._probe, None
            await self.cancel_task(probe)

    async def _adopt_probe_dialect(self, *, wait: bool) -> None:
        """Take the dialect probe's dialect as the call's once it is done (``wait``: wait for it)."""
        probe = self._probe
        if probe is None or not (wait or probe.done()):
            return
        self._probe = None
        if probe.cancelled():
            return
        try:
            result = await probe
        except AssistantError:
            return  # no evidence: the turn is decoded in every dialect as before
        if self._session.dialect is None and result.text:
            self._session.dialect = result.dialect
            self._probe_decided = True  # reported on the turn being decoded (``run_stt``)
            logger.debug(f"call {self._session.call_id}: dialect {result.dialect} from the first words")

    async def _take_early(self, audio: bytes, options: RecognizerOptions | None) -> asyncio.Task | None:
        """The early recognition made for this segment, if any (older unused ones are dropped)."""
        while self._early:
            early = self._early.pop(0)
            if early.serves(audio, dialect=self._session.dialect, options=options):
                return early.task
            await self.cancel_task(early.task)
        return None

    async def _recognize(self, audio: bytes, *, dialect: str | None, options: RecognizerOptions | None) -> AsrResult:

        result = await recognize(
            audio, sample_rate_hz=self.sample_rate, dialect=dialect, options=options, settings=self._app_settings,
            call_id=self._session.call_id,
        )
        return keep_what_was_said(result)

    def _options(self) -> RecognizerOptions | None:
        """A closed prompt after a yes/no question or the keypad menu (short answers like 对 survive)."""
        expect = self._session.expect
        if expect not in CLOSED_EXPECTATIONS:
            return None

        return closed_prompt(self._session.dialect or "cmn", CLOSED_EXPECTATIONS[expect])

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        record = self._tracker.begin(source="speech")
        record.asr_start_t = time.perf_counter()
        try:
            await self._adopt_probe_dialect(wait=True)
            record.dialect_probe, self._probe_decided = self._probe_decided, False
            options = self._options()
            early = await self._take_early(audio, options)
            record.asr_early = early is not None
            if early is not None:
                result = await early
            else:
                result = await self._recognize(audio, dialect=self._session.dialect, options=options)
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
