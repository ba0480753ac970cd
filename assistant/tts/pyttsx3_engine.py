"""espeak-ng 1.52 through pyttsx3: Mandarin (``sit/cmn``) and Cantonese (``sit/yue``) voices.

Debian 12's espeak-ng 1.51 reads Mandarin tone numbers aloud in English; the PyPI package
``espeakng-loader`` ships espeak-ng 1.52, whose Mandarin voice is fixed. Before pyttsx3 loads espeak-ng,
``ESPEAK_DATA_PATH`` points at the bundled data and the bundled library is loaded with ``RTLD_GLOBAL``, so
pyttsx3's own ``LoadLibrary("libespeak-ng.so.1")`` gets the 1.52 build (its SONAME matches).

espeak-ng keeps one global synthesizer per process and pyttsx3 is not thread-safe, so every call goes
through one lock (``_ESPEAK_LOCK``): engines for different voices share it. Synthesis is headless
(``save_to_file`` + ``runAndWait`` into a temporary WAV, 22,050 Hz mono).

Licence: espeak-ng is GPL-3.0-or-later (a separate shared library loaded at run time); pyttsx3 MPL-2.0;
espeakng-loader MIT.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import gc
import io
import logging
import os
import tempfile
import threading
import wave
from pathlib import Path

from assistant.errors import TtsError
from assistant.tts.base import SpeechAudio, TtsEngine, VoiceRequest

log = logging.getLogger(__name__)

# voice name (settings) → (espeak voice id, dialects)
VOICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "espeak-cmn": ("sit/cmn", ("cmn",)),
    "espeak-yue": ("sit/yue", ("yue",)),
}
MIN_VERSION = (1, 52)
SYNTH_TIMEOUT_S = 30.0

_ESPEAK_LOCK = threading.Lock()
_state: dict[str, object] = {}  # "engine": the pyttsx3 engine, "version": str, "error": TtsError


def _load_espeak_152() -> tuple[object, str]:
    """Load the bundled espeak-ng 1.52 and start pyttsx3 on it, once per process (call with the lock)."""
    if "engine" in _state:
        return _state["engine"], str(_state["version"])
    if "error" in _state:
        raise _state["error"]  # type: ignore[misc]
    try:
        import ctypes

        import espeakng_loader  # optional engine (extra "tts"), like pyttsx3 below: loaded only when used

        os.environ["ESPEAK_DATA_PATH"] = espeakng_loader.get_data_path()
        lib = ctypes.CDLL(espeakng_loader.get_library_path(), mode=ctypes.RTLD_GLOBAL)
        import pyttsx3
        from pyttsx3.drivers import _espeak

        engine = pyttsx3.init("espeak")
        lib.espeak_Info.restype = ctypes.c_char_p
        version = (lib.espeak_Info(None) or b"?").decode()
        # pyttsx3 must have bound the same library we loaded (not Debian's 1.51)
        _espeak.dll.espeak_Info.restype = ctypes.c_char_p
        bound = (_espeak.dll.espeak_Info(None) or b"?").decode()
    except Exception as exc:  # ImportError, OSError from dlopen, RuntimeError from pyttsx3
        err = TtsError(f"espeak-ng 1.52 (espeakng-loader + pyttsx3) failed to load: {type(exc).__name__}: {exc}",
                       code="tts_voice_missing")
        _state["error"] = err
        raise err from exc
    if _version_tuple(bound) < MIN_VERSION:
        err = TtsError(f"pyttsx3 bound espeak-ng {bound}, need ≥ 1.52 (1.51 mangles Mandarin)",
                       code="tts_voice_missing")
        _state["error"] = err
        raise err
    _state["engine"], _state["version"] = engine, version
    atexit.register(close_espeak)
    log.info("tts: espeak-ng %s loaded from espeakng-loader for pyttsx3", version)
    return engine, version


def close_espeak() -> None:
    """Let go of pyttsx3's engine while the interpreter is whole (at exit, registered when it loads).

    Left to the interpreter's teardown, the engine is freed after module globals are cleared, and pyttsx3's
    ``DriverProxy.__del__`` printed ``AttributeError: 'NoneType' object has no attribute 'suppress'`` at the
    end of every process that had spoken with espeak. Freed here, its ``__del__`` runs normally (it
    detaches espeak's callback). A later synthesis would load it again."""
    with _ESPEAK_LOCK:
        engine = _state.pop("engine", None)
        _state.pop("version", None)
    if engine is not None:
        del engine
        gc.collect()  # in case a reference cycle holds it


RATE_SETTLE_TIMEOUT_S = 1.0


def _set_rate(driver, rate_wpm: int) -> None:
    """Set espeak's speaking rate and wait until espeak reports it as current.

    espeak-ng runs parameter changes through its own command queue; right after an utterance a change can
    still be pending when the next text is handed over, and that text is spoken at the old rate. Setting it
    again until ``espeak_GetParameter(RATE, current)`` agrees makes "slower" reliable."""
    import time

    from pyttsx3.drivers import _espeak  # optional engine (extra "tts"), loaded by _engine() before this runs

    deadline = time.monotonic() + RATE_SETTLE_TIMEOUT_S
    while True:
        driver.setProperty("rate", rate_wpm)
        if _espeak.dll.espeak_GetParameter(_espeak.RATE, 1) == rate_wpm or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def _version_tuple(text: str) -> tuple[int, ...]:
    import re

    m = re.search(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


_ESPEAK_THREAD = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")


def _voice_ids() -> tuple[str, set[str]]:
    with _ESPEAK_LOCK:
        engine, version = _load_espeak_152()
        return version, {v.id for v in engine.getProperty("voices")}


class Pyttsx3Engine(TtsEngine):
    """One espeak-ng 1.52 voice via pyttsx3. Construction loads the library (raises ``TtsError`` if it can't)."""

    sample_rate_hz = 22050

    def __init__(self, *, voice: str) -> None:
        if voice not in VOICES:
            raise TtsError(f"unknown pyttsx3 voice {voice!r}", code="tts_voice_missing")
        self.voice = voice
        self.espeak_voice, self.dialects = VOICES[voice]
        self.version, ids = _ESPEAK_THREAD.submit(_voice_ids).result()
        if self.espeak_voice not in ids:
            raise TtsError(f"espeak-ng {self.version} has no voice {self.espeak_voice}", code="tts_voice_missing")

    def synthesize(self, request: VoiceRequest) -> SpeechAudio:
        # pyttsx3's espeak driver is thread-affine: loaded on one thread and driven from others
        # (asyncio.to_thread), the rate stopped changing, so "slower" had no effect. One thread does it all.
        return _ESPEAK_THREAD.submit(self._synthesize, request).result()

    def _synthesize(self, request: VoiceRequest) -> SpeechAudio:
        text = request.text.strip()
        if not text:
            raise TtsError("nothing to say (empty text)", code="tts_empty_text")
        with _ESPEAK_LOCK, tempfile.TemporaryDirectory(prefix="tts-") as tmp:
            engine, _ = _load_espeak_152()
            # straight to the driver (espeak_SetParameter now), not through pyttsx3's command queue: while its
            # proxy still counts as busy from the previous utterance the queued change is applied late or not
            # at all, so "slower" was ignored about one time in three (rate 90 spoken at 110, 130 at 200)
            driver = engine.proxy._driver
            driver.setProperty("voice", self.espeak_voice)
            driver.setProperty("volume", max(0.0, min(1.0, float(request.volume))))
            _set_rate(driver, int(request.rate_wpm))
            # pyttsx3's espeak driver very rarely writes an empty WAV (seen once in ~300 utterances while
            # warming the prompt cache): one retry, then the registry falls back to the next voice
            for attempt in (1, 2):
                path = Path(tmp) / f"out{attempt}.wav"
                rate, pcm = self._run_once(engine, text, path)
                if pcm:
                    return SpeechAudio(pcm=pcm, sample_rate_hz=rate, voice=self.voice)
                log.warning("tts: %s produced no samples (attempt %d)", self.voice, attempt)
        raise TtsError(f"{self.voice}: pyttsx3 produced no samples", code="tts_engine_failed")

    def _run_once(self, engine, text: str, path: Path) -> tuple[int, bytes]:
        """One pyttsx3 utterance into ``path`` (call with the lock held) → (sample rate, PCM)."""
        # pyttsx3 2.99's espeak driver returns from runAndWait as soon as espeak *starts* (its endLoop
        # command is pumped before synthesis begins); the WAV is written later from espeak's thread,
        # right before "finished-utterance". Wait for that notification.
        done = threading.Event()
        finished = False
        token = engine.connect("finished-utterance", lambda name, completed: done.set())
        try:
            # pyttsx3 prints "Audio saved to ..." on stdout; keep stdout clean for --json output
            with contextlib.redirect_stdout(io.StringIO()):
                engine.save_to_file(text, str(path))
                engine.runAndWait()
                finished = done.wait(SYNTH_TIMEOUT_S)
        finally:
            engine.disconnect(token)
            driver = getattr(getattr(engine, "proxy", None), "_driver", None)
            if driver is not None and finished:  # else the next runAndWait would speak this text again
                driver._text_to_say = None
        if not finished:
            engine.stop()
            raise TtsError(f"{self.voice}: espeak-ng did not finish in {SYNTH_TIMEOUT_S:.0f} s",
                           code="tts_engine_failed")
        if not path.exists():
            return 0, b""
        with wave.open(str(path), "rb") as w:
            return w.getframerate(), w.readframes(w.getnframes())
