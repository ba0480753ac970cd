"""End of turn by meaning (issue #19): a short silence asks Smart Turn whether the speaker has finished.

    VAD (stop after ``turn_decision_silence_s``) → EndOfTurnProcessor → STT → …

The VAD's "user stopped speaking" comes after a short silence (0.25 s). This stage holds it back, announces
the pause (``SpeechPausedFrame``: early recognition may start) and asks Smart Turn (``assistant.audio.
smart_turn``, on its own thread) about the turn's audio: after a closed prompt always, after an open one
only with ``turn_judge_open_prompts`` (off by measurement: an unjudged answer ends after the fixed silence,
or the elder's own longer wait). The held frame goes on when ``EndOfTurnPolicy``
says the turn is over (with ``early_asr_after_silence_s`` 0, no pause frames): Smart Turn judged it finished, or the silence reached the wait for an unfinished
turn (longer for a slow speaker, shorter after a closed prompt), or the model failed and the fixed
``vad_end_of_turn_silence_s`` ran out. Speech before that swallows the VAD's new "started speaking" (the
turn goes on: ``SpeechResumedFrame``), so the stages after it see one turn as before. A "started speaking"
outside a held turn passes at once: barge-in is unchanged. ``SpeakerDoneFrame`` (the screen's press-to-talk
released) ends the turn at its first pause: held now, or the next stop within ``SPEAKER_DONE_VALID_S``.

Text-aware open answers (``turn_open_text_aware``): the recogniser sends the early recognition's text of the
paused turn back up (``EarlyTranscriptFrame``, from ``AssistantSTTService``); the answer ends at once only when
Smart Turn says finished AND the words do not look unfinished (``assistant.text.turn_end``: 然后, 那个, 我想,
的, ...), waits ``turn_incomplete_max_silence_s`` when either says unfinished, and otherwise ends after the
fixed silence (``EndOfTurnPolicy.open_wait_s``). Words wait (``turn_open_words_wait``): the same words, read from a
quick words check of the last seconds (``AssistantSTTService``), can only lengthen the fixed silence of an open
answer, to ``turn_unfinished_words_silence_s``; Smart Turn is not asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from loguru import logger
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from assistant.audio.smart_turn import MODEL_WINDOW_S, completion_probability
from assistant.audio.vad import (
    EarlyTranscriptFrame,
    SpeakerDoneFrame,
    SpeechHeardFrame,
    SpeechPausedFrame,
    SpeechResumedFrame,
)
from assistant.errors import SmartTurnError
from assistant.session import CallSession
from assistant.settings import AudioSettings
from assistant.text.turn_end import sounds_unfinished

CLOSED_PROMPTS = ("yes_no", "menu")  # CallSession.expect values whose answers are short
# audio the model gets from before the speech: as pipecat feeds Smart Turn (0.5 s before the first speech; the
# VAD's "started speaking" comes vad_start_s after it)
PRE_SPEECH_S = 0.5

# after a SpeakerDoneFrame, the next pause ends the turn if it comes within this much audio (the page keeps
# sending the microphone: a release with nothing said must not cut a later hands-free turn short)
SPEAKER_DONE_VALID_S = 2.0

Judge = Callable[..., Awaitable[float]]  # (pcm16, *, sample_rate_hz) → probability the turn is complete


@dataclass(frozen=True, kw_only=True)
class EndOfTurnPolicy:
    """When a paused turn is over. Pure: silence so far, Smart Turn's verdict (if in), the kind of prompt."""

    complete_min_probability: float
    incomplete_max_silence_s: float
    closed_min_probability: float
    closed_max_silence_s: float
    fallback_silence_s: float  # the model failed: the fixed end-of-turn silence
    judge_open: bool = True  # False: an open prompt's answer is not judged; it ends after open_silence_s
    open_silence_s: float = 0.8  # the fixed silence (or the elder's own longer wait) for an unjudged answer
    open_by_text: bool = False  # an open answer is judged by Smart Turn AND its early text (``open_wait_s``)
    words_wait: bool = False  # unfinished-looking words lengthen an open answer's wait, never shorten it
    unfinished_words_silence_s: float = 2.0  # the wait after unfinished-looking words (words_wait, open_by_text)
    shorten_open: bool = True  # False: open_silence_s is the elder's own longer wait, never shortened

    @classmethod
    def from_settings(cls, audio: AudioSettings, *, max_silence_s: float | None = None) -> EndOfTurnPolicy:
        return cls(
            complete_min_probability=audio.turn_complete_min_probability,
            incomplete_max_silence_s=max_silence_s or audio.turn_incomplete_max_silence_s,
            closed_min_probability=audio.turn_closed_min_probability,
            closed_max_silence_s=audio.turn_closed_max_silence_s,
            fallback_silence_s=audio.vad_end_of_turn_silence_s,
            judge_open=audio.turn_judge_open_prompts,
            open_silence_s=max_silence_s or audio.vad_end_of_turn_silence_s,
            open_by_text=audio.turn_open_text_aware,
            words_wait=audio.turn_open_words_wait,
            unfinished_words_silence_s=audio.turn_unfinished_words_silence_s,
            shorten_open=max_silence_s is None,
        )

    def judges(self, *, closed: bool) -> bool:
        """Whether Smart Turn is asked about this turn at all."""
        return closed or self.judge_open or self.open_by_text

    def turn_over(self, *, silence_s: float, probability: float | None, failed: bool = False,
                  closed: bool = False, text: str | None = None) -> bool:
        """``text``: the early recognition's text of the turn so far, once in (read only by ``open_by_text``)."""
        if not closed and self.open_by_text:
            return silence_s >= self.open_wait_s(probability=probability, failed=failed, text=text)
        if not self.judges(closed=closed):
            return silence_s >= self.unjudged_wait_s(text=text)
        if failed:
            return silence_s >= self.fallback_silence_s
        if probability is not None and probability >= (
            self.closed_min_probability if closed else self.complete_min_probability
        ):
            return True
        return silence_s >= (self.closed_max_silence_s if closed else self.incomplete_max_silence_s)

    def unjudged_wait_s(self, *, text: str | None) -> float:
        """The silence an open answer Smart Turn does not judge ends after: the fixed silence (or the elder's own
        longer wait), lengthened to the unfinished-words wait when the words so far look unfinished (words wait)."""
        wait_s = self._unfinished_words_wait_s(text) if self.words_wait else None
        return self.open_silence_s if wait_s is None else wait_s

    def _unfinished_words_wait_s(self, text: str | None) -> float | None:
        """The wait after words that look unfinished, or None (no words yet, or they may be complete)."""
        if text is not None and sounds_unfinished(text):
            return max(self.unfinished_words_silence_s, self.open_silence_s)
        return None

    def open_wait_s(self, *, probability: float | None, failed: bool, text: str | None) -> float:
        """The silence a text-aware open answer ends after, given what is known so far: the words look unfinished
        → the unfinished-words wait; Smart Turn says unfinished → the unfinished wait; both say finished → now;
        otherwise (the verdict or the text not in yet, the model failed, the elder's own wait) the fixed
        silence."""
        words_wait_s = self._unfinished_words_wait_s(text)
        if words_wait_s is not None:
            return words_wait_s
        judged_unfinished = not failed and probability is not None and probability < self.complete_min_probability
        if judged_unfinished:
            return max(self.incomplete_max_silence_s, self.open_silence_s)
        if self.shorten_open and not failed and probability is not None and text is not None:
            return 0.0
        return self.open_silence_s


def open_answer_silence_s(audio: AudioSettings) -> float:
    """The silence before an answer to an open prompt ends: with Smart Turn judging open prompts the pause that
    asks it (the judgement and any longer wait come after), else the fixed end-of-turn silence."""
    judged = audio.turn_decision_silence_s > 0 and (audio.turn_judge_open_prompts or audio.turn_open_text_aware)
    return audio.turn_decision_silence_s if judged else audio.vad_end_of_turn_silence_s


def smart_turn_judges(audio: AudioSettings) -> str:
    """Which answers Smart Turn judges: "all", "all+text" (open answers with their early text), "closed" (yes/no
    read-backs, keypad menus) or "none" (off)."""
    if audio.turn_decision_silence_s <= 0:
        return "none"
    if audio.turn_open_text_aware:
        return "all+text"
    return "all" if audio.turn_judge_open_prompts else "closed"


def reads_words(audio: AudioSettings) -> bool:
    """Whether the end of an open answer reads the words said so far (the recogniser then sends them up at each
    pause): text-aware, or words wait while Smart Turn does not judge open answers."""
    if audio.turn_decision_silence_s <= 0:
        return False
    return audio.turn_open_text_aware or (audio.turn_open_words_wait and not audio.turn_judge_open_prompts)


def longest_end_of_turn_silence_s(audio: AudioSettings, *, max_silence_s: float | None = None) -> float:
    """The most silence a turn can take to end (feeders that send silence after speech send this much);
    ``max_silence_s``: the elder's own longer wait (``CallSession.end_of_turn_max_silence_s``)."""
    if audio.turn_decision_silence_s <= 0:
        return audio.vad_end_of_turn_silence_s
    words = audio.turn_unfinished_words_silence_s if reads_words(audio) else 0.0
    return max(audio.vad_end_of_turn_silence_s, audio.turn_incomplete_max_silence_s, audio.turn_closed_max_silence_s,
               words, max_silence_s or 0.0)


class EndOfTurnProcessor(FrameProcessor):
    """Holds the VAD's end of turn until ``EndOfTurnPolicy`` agrees (see the module doc)."""

    def __init__(self, *, session: CallSession, audio: AudioSettings, judge: Judge | None = None, **kwargs):
        super().__init__(**kwargs)
        self._session = session
        self._audio = audio
        self._judge = judge
        self._turn_audio = bytearray()
        self._sample_rate_hz = audio.pipeline_sample_rate_hz
        self._held: VADUserStoppedSpeakingFrame | None = None
        self._silence_s = 0.0
        self._probability: float | None = None
        self._failed = False
        self._text: str | None = None  # the early recognition's text of the held turn (EarlyTranscriptFrame)
        self._judging: asyncio.Task | None = None
        self._speaker_done_s_left = 0.0  # > 0: the speaker said they are done; the next pause ends the turn

    def _policy(self) -> EndOfTurnPolicy:
        return EndOfTurnPolicy.from_settings(self._audio, max_silence_s=self._session.end_of_turn_max_silence_s)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if direction != FrameDirection.DOWNSTREAM:
            if isinstance(frame, EarlyTranscriptFrame):
                await self._on_early_text(frame.text)
            else:
                await self.push_frame(frame, direction)
            return
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(frame, direction)
            await self._on_audio(frame)
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            await self._hold(frame)
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            if self._held is not None:  # the speaker went on: the same turn
                await self._drop_held()
                if self._audio.early_asr_after_silence_s > 0:
                    await self.push_frame(SpeechResumedFrame())
            else:
                keep = self._bytes(PRE_SPEECH_S + self._audio.vad_start_s)
                del self._turn_audio[: max(0, len(self._turn_audio) - keep)]
                await self.push_frame(frame, direction)
        elif isinstance(frame, SpeechHeardFrame):
            if self._held is not None:  # silence means continuous silence, as for the VAD's own stop
                self._silence_s = 0.0
        elif isinstance(frame, SpeakerDoneFrame):
            await self.push_frame(frame, direction)
            self._speaker_done_s_left = SPEAKER_DONE_VALID_S
            if self._held is not None:
                await self._release("the speaker is done")
        elif isinstance(frame, (EndFrame, CancelFrame)):
            await self._stop_judging()
            if isinstance(frame, EndFrame) and self._held is not None:
                await self._release("call ended")
            self._held = None
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    def _bytes(self, seconds: float) -> int:
        return int(seconds * self._sample_rate_hz) * 2

    async def _on_audio(self, frame: InputAudioRawFrame) -> None:
        if frame.sample_rate != self._sample_rate_hz:
            self._turn_audio.clear()
            self._sample_rate_hz = frame.sample_rate
        self._turn_audio.extend(frame.audio)
        excess = len(self._turn_audio) - self._bytes(MODEL_WINDOW_S + 1)
        if excess > 0:
            del self._turn_audio[:excess]
        if self._speaker_done_s_left > 0 and self._held is None:
            self._speaker_done_s_left -= self._seconds(frame)
        if self._held is not None:
            self._silence_s += self._seconds(frame)
            await self._decide()

    @staticmethod
    def _seconds(frame: InputAudioRawFrame) -> float:
        return len(frame.audio) / 2 / frame.sample_rate / max(1, frame.num_channels)

    async def _hold(self, frame: VADUserStoppedSpeakingFrame) -> None:
        await self._drop_held()
        self._held = frame
        self._silence_s = frame.stop_secs
        if self._speaker_done_s_left > 0:
            await self._release("the speaker is done")
            return
        if self._audio.early_asr_after_silence_s > 0:  # early recognition starts at the decision pause
            await self.push_frame(SpeechPausedFrame(silence_s=self._silence_s))
        if self._policy().judges(closed=self._session.expect in CLOSED_PROMPTS):
            self._judging = self.create_task(self._judge_turn(bytes(self._turn_audio), self._sample_rate_hz),
                                             name="smart-turn")

    async def _judge_turn(self, pcm: bytes, sample_rate_hz: int) -> None:
        try:
            judge = self._judge or completion_probability
            self._probability = await judge(pcm, sample_rate_hz=sample_rate_hz)
            logger.debug(f"call {self._session.call_id}: Smart Turn p(complete)={self._probability:.2f}")
        except SmartTurnError as exc:
            logger.warning(f"call {self._session.call_id}: end of turn by silence: error[{exc.code}]")
            self._failed = True
        self._judging = None
        await self._decide()

    async def _on_early_text(self, text: str) -> None:
        if self._held is None:
            return  # the turn ended (or went on) before its early text came
        self._text = text
        await self._decide()

    async def _decide(self) -> None:
        if self._held is None:
            return
        closed = self._session.expect in CLOSED_PROMPTS
        if self._policy().turn_over(silence_s=self._silence_s, probability=self._probability,
                                    failed=self._failed, closed=closed, text=self._text):
            p = "none" if self._probability is None else f"{self._probability:.2f}"
            words = "none" if self._text is None else "unfinished" if sounds_unfinished(self._text) else "finished"
            await self._release(f"silence {self._silence_s:.2f}s, complete p={p}, words {words}")  # no text: secrets

    async def _release(self, why: str) -> None:
        held, self._held = self._held, None
        self._speaker_done_s_left = 0.0
        await self._stop_judging()
        self._reset_verdict()
        logger.debug(f"call {self._session.call_id}: end of turn ({why})")
        await self.push_frame(held)

    async def _drop_held(self) -> None:
        self._held = None
        await self._stop_judging()
        self._reset_verdict()

    def _reset_verdict(self) -> None:
        self._silence_s, self._probability, self._failed, self._text = 0.0, None, False, None

    async def _stop_judging(self) -> None:
        task, self._judging = self._judging, None
        if task is not None and task is not asyncio.current_task():
            await self.cancel_task(task)
