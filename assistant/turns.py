"""Turn records: what each stage did for one user turn, and how long it took.

Stages write into the call's ``TurnTracker``; ``simulate`` prints the records as JSON lines, the server
forwards them to the smart screen (captions) and the store (transcripts). Times are ``time.perf_counter``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


def _ms(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return round((b - a) * 1000, 1)


@dataclass(kw_only=True)
class TurnRecord:
    turn: int
    source: str = "speech"  # "speech" | "dtmf" | "system"
    frame_id: int | None = None  # id of the TranscriptionFrame this turn produced
    speech_end_t: float | None = None
    asr_start_t: float | None = None
    asr_end_t: float | None = None
    transcript: str = ""
    dialect: str | None = None
    asr_confidence: float | None = None
    asr_engine: str | None = None
    asr_early: bool = False  # recognised from the pause before the end-of-turn silence ran out
    dialect_probe: bool = False  # the call's dialect came from this turn's first words (stt_service)
    intent: str | None = None
    intent_confidence: float | None = None
    nlu_start_t: float | None = None
    nlu_end_t: float | None = None
    reply_texts: list[str] = field(default_factory=list)
    # utterances that carry a secret (the identity proof: the elder's safe phrase); never stored as text
    secret_texts: set[str] = field(default_factory=set)
    events: list[dict[str, Any]] = field(default_factory=list)
    tts_request_t: float | None = None
    first_audio_t: float | None = None
    # the reply's audio, kept only when the tracker keeps it (``simulate`` writes it out); a live call's
    # tracker does not (it grew the call by every reply spoken; the call recording has the bot's audio)
    reply_audio: bytearray = field(default_factory=bytearray)
    reply_audio_bytes: int = 0
    reply_sample_rate_hz: int = 16000
    error: str | None = None

    @property
    def reply_text(self) -> str:
        return "".join(self.reply_texts)

    @property
    def acted_intent(self) -> str | None:
        """The intent the dialogue acted on in this turn: None when its decision held the intent back (read back
        and asked first, asked about as an emergency, not heard well enough: ``dialogue/decision.py``)."""
        held = any(e.get("event") == "decision" and e.get("decision") not in ("act", "emergency") for e in self.events)
        return None if held else self.intent

    def latency_ms(self) -> dict[str, float | None]:
        start = self.speech_end_t if self.speech_end_t is not None else self.asr_start_t
        return {
            "asr": _ms(self.asr_start_t, self.asr_end_t),
            "nlu": _ms(self.nlu_start_t, self.nlu_end_t),
            "tts_first_audio": _ms(self.tts_request_t, self.first_audio_t),
            "total": _ms(start, self.first_audio_t),
        }


TurnListener = Callable[[str, TurnRecord], Awaitable[None]]


@dataclass(kw_only=True)
class TurnTracker:
    """Per-call. ``listeners`` get ``(stage, record)`` after each stage: "asr", "reply", "audio"."""

    turns: list[TurnRecord] = field(default_factory=list)
    listeners: list[TurnListener] = field(default_factory=list)
    keep_reply_audio: bool = True
    _pending_speech_end_t: float | None = None
    # texts handed to TTS, in order, with the turn they answer (turns may overlap when audio comes fast)
    _replies: list[tuple[str, TurnRecord]] = field(default_factory=list)

    @property
    def current(self) -> TurnRecord | None:
        return self.turns[-1] if self.turns else None

    def for_frame(self, frame_id: int) -> TurnRecord | None:
        return next((r for r in reversed(self.turns) if r.frame_id == frame_id), None)

    def speech_ended(self) -> None:
        self._pending_speech_end_t = time.perf_counter()

    def begin(self, *, source: str = "speech") -> TurnRecord:
        record = TurnRecord(turn=len(self.turns) + 1, source=source)
        if source == "speech":
            record.speech_end_t, self._pending_speech_end_t = self._pending_speech_end_t, None
        self.turns.append(record)
        return record

    async def notify(self, stage: str, record: TurnRecord) -> None:
        for listener in self.listeners:
            await listener(stage, record)

    def queue_reply(self, record: TurnRecord, text: str) -> None:
        self._replies.append((text, record))

    def take_reply(self, text: str) -> TurnRecord | None:
        """The turn a text handed to TTS belongs to (first queued match), else the latest turn."""
        for i, (queued, record) in enumerate(self._replies):
            if queued == text or queued.startswith(text) or text.startswith(queued):
                del self._replies[: i + 1]
                return record
        return self.current

    def add_audio(self, pcm: bytes, sample_rate_hz: int, record: TurnRecord | None = None) -> TurnRecord | None:
        record = record or self.current
        if record is None:
            return None
        if record.first_audio_t is None:
            record.first_audio_t = time.perf_counter()
        record.reply_sample_rate_hz = sample_rate_hz
        record.reply_audio_bytes += len(pcm)
        if self.keep_reply_audio:
            record.reply_audio.extend(pcm)
        return record
