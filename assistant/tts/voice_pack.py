"""Recorded voice packs: a real local voice reads every fixed sentence once (issue #19, telephone-style prompts).

A pack lives in ``var/voice_packs/<pack>/<dialect>/`` (``settings.tts.voice_pack`` names the pack):
``manifest.json`` maps each recorded text to its WAV file::

    {"dialect": "yue", "sample_rate_hz": 16000,
     "entries": {"好，帮你订餐。": {"file": "3fa1….wav", "sha256": "…", "check": {"status": "passed",
                 "cer": 0.12, "heard": "…", "threshold": 0.6}}}}

Texts are keyed by their *core* (``core()``: punctuation and spaces removed), as the voice registry sees them
after ``speakable`` (numbers written as words). ``plan()`` cuts a clause into recorded parts (longest match
first) and uncovered runs; the registry's ``pack-<dialect>`` voice plays a clause when the pack covers it —
whole, or joined from pieces (a fixed fragment + a number read from digit pieces) with short pauses — and a
clause mostly not covered falls through to the synthetic voice. Pieces a pack should hold beyond the table's
fixed clauses (numbers, dates, times, money, order types, districts) are ``PIECES``.

Import (``assistant voice import``) normalises loudness (RMS to ``TARGET_RMS_DBFS``, peak limited), trims
leading/trailing silence and stores 16-bit mono at ``PACK_RATE_HZ``; the read-back check lives in
``assistant.tts.voice_cmd`` (it needs the recogniser).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.tts.speakable import speakable

PACK_RATE_HZ = 16000
TARGET_RMS_DBFS = -20.0
PEAK_LIMIT = 0.9  # of full scale
TRIM_BELOW_PEAK_DB = -35.0  # a sample this far below the peak counts as silence when trimming
TRIM_MARGIN_MS = 30
JOIN_PAUSE_MS = 120  # between pieces joined into one clause: short, natural
MIN_COVERED = 0.5  # a clause less covered than this is spoken wholly by the synthetic voice

# pieces the pack should hold beyond the table's fixed clauses, as ``speakable`` writes them per dialect
_DIGITS = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "两", "百", "千"]
PIECES: dict[str, list[str]] = {
    "cmn": [*_DIGITS, "万", "点", "半", "分", "年", "月", "日", "号", "元", "块", "角", "上午", "下午", "今天", "明天",
            "煤气", "订餐", "报修", "看病",
            "蓬江区", "江海区", "新会区", "台山", "开平", "鹤山", "恩平"],
    "yue": [*_DIGITS, "萬", "點", "半", "分", "年", "月", "日", "號", "蚊", "毫", "上昼", "下昼", "今日", "听日",
            "石油气", "订餐", "报修", "睇医生",
            "蓬江区", "江海区", "新会区", "台山", "开平", "鹤山", "恩平"],
}

_NOT_CORE = re.compile(r"[\W_]+")


def core(text: str) -> str:
    """A text as the pack keys it: without punctuation and spaces."""
    return _NOT_CORE.sub("", text)


def key_of(text: str, dialect: str) -> str:
    """The pack's key for a sentence as written in the table: what the voice registry will be asked to say
    (``speakable``: "请打120" → "请打一二零"), without punctuation."""
    return core(speakable(text, dialect=dialect))


def pack_dir(var_dir: Path, pack: str, dialect: str) -> Path:
    return Path(var_dir) / "voice_packs" / pack / dialect


@dataclass(frozen=True, kw_only=True)
class Part:
    text: str
    file: Path | None  # None: not recorded (the synthetic voice says it)


@dataclass(kw_only=True)
class VoicePack:
    directory: Path
    dialect: str
    entries: dict[str, dict]  # core text → {"text", "file", "sha256", "check": {...}}

    @classmethod
    def load(cls, directory: Path, dialect: str) -> VoicePack:
        """Blocking. An absent manifest is an empty pack."""
        path = Path(directory) / "manifest.json"
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        return cls(directory=Path(directory), dialect=dialect, entries=dict(data.get("entries", {})))

    def save(self) -> None:
        """Blocking: write the manifest atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        data = {"dialect": self.dialect, "sample_rate_hz": PACK_RATE_HZ, "entries": self.entries}
        tmp = self.directory / f"manifest.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.directory / "manifest.json")

    def playable(self) -> dict[str, Path]:
        """core text → WAV of every recording that passed its check."""
        return {k: self.directory / e["file"] for k, e in self.entries.items()
                if e.get("check", {}).get("status") == "passed" and (self.directory / e["file"]).exists()}

    def add(self, text: str, pcm: bytes, *, check: dict) -> Path:
        """Blocking: store a processed recording (``prepare``'s output) for ``text`` with its check result."""
        digest = hashlib.sha256(pcm).hexdigest()
        name = f"{digest[:16]}.wav"
        self.directory.mkdir(parents=True, exist_ok=True)
        write_wav(self.directory / name, pcm)
        self.entries[key_of(text, self.dialect)] = {"text": text, "file": name, "sha256": digest, "check": check}
        return self.directory / name

    def plan(self, text: str) -> list[Part] | None:
        """``text`` cut into recorded parts (longest match first) and unrecorded runs; ``None`` when less than
        ``MIN_COVERED`` of its characters are recorded (then the synthetic voice says all of it)."""
        return plan(core(text), self.playable())


def plan(text: str, recorded: dict[str, Path]) -> list[Part] | None:
    if not text:
        return None
    longest = max((len(k) for k in recorded), default=0)
    parts: list[Part] = []
    gap = ""
    covered = i = 0
    while i < len(text):
        hit = next((text[i : i + n] for n in range(min(longest, len(text) - i), 0, -1) if text[i : i + n] in recorded), None)
        if hit is None:
            gap += text[i]
            i += 1
            continue
        if gap:
            parts.append(Part(text=gap, file=None))
            gap = ""
        parts.append(Part(text=hit, file=recorded[hit]))
        covered += len(hit)
        i += len(hit)
    if gap:
        parts.append(Part(text=gap, file=None))
    return parts if covered / len(text) >= MIN_COVERED else None


# -- audio -------------------------------------------------------------------------------------------


def write_wav(path: Path, pcm: bytes, sample_rate_hz: int = PACK_RATE_HZ) -> None:
    import wave

    tmp = Path(f"{path}.{os.getpid()}.tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate_hz)
        w.writeframes(pcm)
    os.replace(tmp, path)


def read_wav(path: Path) -> tuple[bytes, int]:
    """Blocking: 16-bit mono PCM of a pack WAV and its rate."""
    import wave

    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes()), w.getframerate()


def prepare(x: np.ndarray, sample_rate_hz: int) -> bytes:
    """A recording (float or int16 mono samples) made ready for the pack: resampled to ``PACK_RATE_HZ``,
    leading/trailing silence trimmed (``TRIM_BELOW_PEAK_DB`` below its peak, ``TRIM_MARGIN_MS`` kept),
    loudness normalised (RMS to ``TARGET_RMS_DBFS``, peak at most ``PEAK_LIMIT``). Raises ``ValueError`` on
    silence."""
    src = np.asarray(x)
    y = src.astype(np.float64)
    if src.dtype.kind in "iu":
        y = y / 32768.0
    if sample_rate_hz != PACK_RATE_HZ:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(sample_rate_hz), PACK_RATE_HZ)
        y = resample_poly(y, PACK_RATE_HZ // g, int(sample_rate_hz) // g)
    peak = float(np.abs(y).max(initial=0.0))
    if peak < 1e-3:
        raise ValueError("the recording is silent")
    loud = np.flatnonzero(np.abs(y) > peak * 10 ** (TRIM_BELOW_PEAK_DB / 20))
    margin = PACK_RATE_HZ * TRIM_MARGIN_MS // 1000
    y = y[max(0, int(loud[0]) - margin) : min(y.size, int(loud[-1]) + margin)]
    rms = float(np.sqrt(np.mean(y**2))) or 1e-9
    gain = min(10 ** (TARGET_RMS_DBFS / 20) / rms, PEAK_LIMIT / peak)
    return np.clip(np.round(y * gain * 32767.0), -32768, 32767).astype("<i2").tobytes()


def join(pieces: list[bytes], *, pause_ms: int = JOIN_PAUSE_MS) -> bytes:
    """PCM pieces (all at ``PACK_RATE_HZ``) joined with ``pause_ms`` of silence between them."""
    gap = b"\x00\x00" * (PACK_RATE_HZ * pause_ms // 1000)
    return gap.join(p for p in pieces if p)
