"""The TTS engine interface. Engines are blocking; async callers use ``asyncio.to_thread``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class VoiceRequest:
    text: str
    dialect: str  # "cmn" | "yue"
    rate_wpm: int
    volume: float = 1.0


@dataclass(frozen=True, kw_only=True)
class SpeechAudio:
    pcm: bytes  # 16-bit mono
    sample_rate_hz: int
    voice: str


class TtsEngine(ABC):
    voice: str
    dialects: tuple[str, ...]

    @abstractmethod
    def synthesize(self, request: VoiceRequest) -> SpeechAudio: ...
