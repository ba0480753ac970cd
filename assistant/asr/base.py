"""The recognizer interface every engine implements (vosk-style: feed PCM, get partials and a final result).

Engines are loaded once per process (see ``registry``) and shared by all calls; a ``RecognizerSession`` is
per utterance and is used from one worker thread at a time. All methods here are blocking: async callers
run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class AsrToken:
    text: str
    confidence: float
    start_s: float | None = None
    end_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class AsrResult:
    text: str  # normalised for downstream use (simplified script, digits for times/quantities)
    raw_text: str  # what the engine returned
    confidence: float  # 0..1, utterance level
    dialect: str  # "cmn" | "yue"
    engine: str
    model_id: str
    is_final: bool = True
    tokens: tuple[AsrToken, ...] = field(default_factory=tuple)
    audio_s: float = 0.0
    decode_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class RecognizerOptions:
    """Per-utterance options. ``grammar`` restricts output to one of the phrases (closed prompts);
    ``phrases`` biases an open prompt (hotwords / phrase scoring). The load, set by the registry (not by
    callers): ``others``, how many other utterances were being recognised when this one started, and
    ``other_calls``, how many other calls were open; an engine may then trade some accuracy for speed.
    ``words_check``: not a transcript but a quick look at the last words for the end-of-turn decision
    (``assistant.text.turn_end``): the engine takes its fastest trade-off, and the load does not count it."""

    grammar: Sequence[str] | None = None
    phrases: Sequence[str] | None = None
    others: int = 0
    other_calls: int = 0
    words_check: bool = False


class RecognizerSession(ABC):
    @abstractmethod
    def accept_audio(self, pcm16: bytes) -> AsrResult | None:
        """Feed 16-bit mono PCM at the recognizer's rate; may return a partial result."""

    @abstractmethod
    def final(self) -> AsrResult:
        """End of utterance: the final result (empty text when nothing was recognised)."""


class Recognizer(ABC):
    engine: str
    model_id: str
    dialect: str
    sample_rate_hz: int

    @abstractmethod
    def session(self, options: RecognizerOptions | None = None) -> RecognizerSession: ...

    def transcribe(self, pcm16: bytes, options: RecognizerOptions | None = None) -> AsrResult:
        """Whole-utterance convenience: feed everything, return the final result."""
        s = self.session(options)
        s.accept_audio(pcm16)
        return s.final()
