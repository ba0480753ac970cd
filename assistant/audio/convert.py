"""Reading audio files and changing sample rates — done here, once, for every stage.

``read_audio`` turns any WAV/FLAC/OGG file (any rate, any channel count, int or float) into 16-bit mono
PCM at the rate asked for, or raises ``AudioInputError`` with a one-line reason.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

from assistant.errors import AudioInputError


@dataclass(frozen=True, kw_only=True)
class PcmAudio:
    """16-bit little-endian mono PCM."""

    pcm: bytes
    sample_rate_hz: int

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate_hz

    def samples(self) -> np.ndarray:
        return np.frombuffer(self.pcm, dtype="<i2")


def resample_pcm16(pcm: bytes, *, from_hz: int, to_hz: int) -> bytes:
    """Polyphase resampling with an anti-aliasing filter (scipy), int16 in and out."""
    if from_hz == to_hz or not pcm:
        return pcm
    from scipy.signal import resample_poly

    g = gcd(from_hz, to_hz)
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    y = resample_poly(x, to_hz // g, from_hz // g)
    return np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()


def float_to_pcm16(x: np.ndarray) -> bytes:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2").tobytes()


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def read_audio(path: str | Path, *, sample_rate_hz: int) -> PcmAudio:
    """Read an audio file as mono 16-bit PCM at ``sample_rate_hz``."""
    path = Path(path)
    if not path.exists():
        raise AudioInputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioInputError(f"{path}: the file is empty")
    try:
        import soundfile

        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises its own LibsndfileError / RuntimeError types
        raise AudioInputError(f"{path}: not a readable audio file ({type(exc).__name__})") from exc
    if data.shape[0] == 0:
        raise AudioInputError(f"{path}: the file holds no audio samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    pcm = float_to_pcm16(mono)
    return PcmAudio(pcm=resample_pcm16(pcm, from_hz=int(rate), to_hz=sample_rate_hz), sample_rate_hz=sample_rate_hz)


def write_wav(path: str | Path, audio: PcmAudio) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(audio.sample_rate_hz)
        w.writeframes(audio.pcm)
    return path
