"""Prompt cache: synthesized speech keyed by (voice, rate, volume, text), in memory and on disk.

Fixed sentences (every clause of ``assistant/phrases.py`` that holds no field: greetings, menus, questions)
are synthesized once — at start-up by ``assistant.tts.registry.warm`` or on first use — and then served from memory
(microseconds) or from ``var/tts_cache/<sha256>.wav`` (about a millisecond) after a restart. The key holds
the text *after* ``speakable()``, so "2罐" and "两罐" share an entry.

Memory is a bounded LRU; the disk folder is bounded by ``settings.tts.cache_max_disk_files`` (oldest files
removed by ``prune``). Writes go through a temporary file and ``os.replace`` so a crash never leaves a
half-written WAV that a later run would serve.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import wave
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from assistant.tts.base import SpeechAudio


@dataclass(frozen=True, kw_only=True)
class CacheKey:
    voice: str
    rate_wpm: int
    volume: float
    text: str
    variant: str = ""  # post-processing settings that change the audio (pause, level, boost)

    @property
    def digest(self) -> str:
        raw = f"{self.voice}\x1f{int(self.rate_wpm)}\x1f{round(float(self.volume), 3)}\x1f{self.text}\x1f{self.variant}"
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def make_key(*, voice: str, rate_wpm: int, volume: float, text: str, variant: str = "") -> CacheKey:
    return CacheKey(voice=voice, rate_wpm=int(rate_wpm), volume=round(float(volume), 3), text=text, variant=variant)


class PromptCache:
    def __init__(self, *, directory: Path | None, max_items: int = 1024, max_disk_files: int = 5000,
                 read_only_dirs: tuple[Path, ...] = ()) -> None:
        self.directory = Path(directory) if directory is not None else None
        # also looked in (never written, never pruned): the checkout's var/tts_cache, filled by the set-up's
        # pre-render, for a server or test with its own var/ (keys are content hashes: sharing is safe)
        self.read_only_dirs = tuple(Path(d) for d in read_only_dirs if self.directory is None or Path(d) != self.directory)
        self.max_items = max(1, int(max_items))
        self.max_disk_files = max(1, int(max_disk_files))
        self._memory: OrderedDict[str, SpeechAudio] = OrderedDict()
        self._lock = threading.Lock()
        self.hits_memory = 0
        self.hits_disk = 0
        self.misses = 0

    # -- memory ---------------------------------------------------------------------------------------
    def get_memory(self, key: CacheKey) -> SpeechAudio | None:
        digest = key.digest
        with self._lock:
            audio = self._memory.get(digest)
            if audio is not None:
                self._memory.move_to_end(digest)
                self.hits_memory += 1
        return audio

    def _remember(self, digest: str, audio: SpeechAudio) -> None:
        with self._lock:
            self._memory[digest] = audio
            self._memory.move_to_end(digest)
            while len(self._memory) > self.max_items:
                self._memory.popitem(last=False)

    # -- disk -----------------------------------------------------------------------------------------
    def _path(self, digest: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{digest}.wav"

    def get_disk(self, key: CacheKey) -> SpeechAudio | None:
        """Blocking: read the WAV for ``key`` (and keep it in memory). ``None`` when absent or unreadable."""
        path = self._path(key.digest)
        if path is None or not path.exists():
            path = next((p for p in (d / f"{key.digest}.wav" for d in self.read_only_dirs) if p.exists()), None)
        if path is None:
            return None
        try:
            with wave.open(str(path), "rb") as w:
                if w.getnchannels() != 1 or w.getsampwidth() != 2:
                    return None
                audio = SpeechAudio(pcm=w.readframes(w.getnframes()), sample_rate_hz=w.getframerate(), voice=key.voice)
        except (OSError, EOFError, wave.Error):
            return None
        if not audio.pcm:
            return None
        self.hits_disk += 1
        self._remember(key.digest, audio)
        return audio

    def put(self, key: CacheKey, audio: SpeechAudio, *, persist: bool = True) -> None:
        """Blocking when ``persist``: keep ``audio`` in memory and write it under the cache folder."""
        digest = key.digest
        self._remember(digest, audio)
        path = self._path(digest)
        if not persist or path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(audio.sample_rate_hz)
            w.writeframes(audio.pcm)
        os.replace(tmp, path)

    # -- async helpers --------------------------------------------------------------------------------
    async def aget(self, key: CacheKey) -> SpeechAudio | None:
        audio = self.get_memory(key)
        if audio is None and (self.directory is not None or self.read_only_dirs):
            audio = await asyncio.to_thread(self.get_disk, key)
        if audio is None:
            self.misses += 1
        return audio

    async def aput(self, key: CacheKey, audio: SpeechAudio, *, persist: bool = True) -> None:
        if persist and self.directory is not None:
            await asyncio.to_thread(self.put, key, audio, persist=True)
        else:
            self.put(key, audio, persist=False)

    def prune(self) -> int:
        """Blocking: remove the oldest files beyond ``max_disk_files``; returns how many were removed."""
        if self.directory is None or not self.directory.exists():
            return 0
        files = sorted(self.directory.glob("*.wav"), key=lambda p: p.stat().st_mtime)
        extra = files[: max(0, len(files) - self.max_disk_files)]
        for p in extra:
            p.unlink(missing_ok=True)
        for p in self.directory.glob("*.tmp"):
            p.unlink(missing_ok=True)
        return len(extra)

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()

    def __len__(self) -> int:
        return len(self._memory)
