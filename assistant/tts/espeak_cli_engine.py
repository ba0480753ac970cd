"""Fallback voice: Debian's ``espeak-ng`` command (1.51 on Debian 12), one process per utterance.

Used when the espeak-ng 1.52 build from espeakng-loader cannot be loaded. Debian's 1.51 ``cmn`` voice reads
tone numbers aloud in English, so Mandarin uses ``cmn-latn-pinyin`` there, which reads the same Chinese
characters with Pinyin rules (measured: far fewer errors than ``cmn`` on 1.51). Each call is its own
process, so this engine is thread-safe.

Licence: espeak-ng GPL-3.0-or-later (run as a separate program).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

from assistant.errors import TtsError
from assistant.tts.base import SpeechAudio, TtsEngine, VoiceRequest

# voice name (settings) → (espeak-ng -v argument, dialects)
VOICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "espeak-cli-cmn": ("cmn-latn-pinyin", ("cmn",)),
    "espeak-cli-yue": ("yue", ("yue",)),
}
TIMEOUT_S = 30.0


class EspeakCliEngine(TtsEngine):
    def __init__(self, *, voice: str, executable: str = "espeak-ng") -> None:
        if voice not in VOICES:
            raise TtsError(f"unknown espeak-ng CLI voice {voice!r}", code="tts_voice_missing")
        path = shutil.which(executable)
        if path is None:
            raise TtsError(f"{executable} is not installed (apt-get install espeak-ng)", code="tts_voice_missing")
        self.voice = voice
        self.executable = path
        self.espeak_voice, self.dialects = VOICES[voice]

    def synthesize(self, request: VoiceRequest) -> SpeechAudio:
        text = request.text.strip()
        if not text:
            raise TtsError("nothing to say (empty text)", code="tts_empty_text")
        amplitude = int(round(max(0.0, min(2.0, float(request.volume))) * 100))
        with tempfile.TemporaryDirectory(prefix="tts-") as tmp:
            out = Path(tmp) / "out.wav"
            cmd = [self.executable, "-v", self.espeak_voice, "-s", str(int(request.rate_wpm)),
                   "-a", str(amplitude), "-w", str(out), "-b", "1", "--", text]
            try:
                proc = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise TtsError(f"{self.voice}: espeak-ng failed: {exc}", code="tts_engine_failed") from exc
            if proc.returncode != 0 or not out.exists():
                msg = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise TtsError(f"{self.voice}: espeak-ng exited {proc.returncode}: {msg[0]}", code="tts_engine_failed")
            with wave.open(str(out), "rb") as w:
                rate = w.getframerate()
                pcm = w.readframes(w.getnframes())
        if not pcm:
            raise TtsError(f"{self.voice}: espeak-ng produced no samples", code="tts_engine_failed")
        return SpeechAudio(pcm=pcm, sample_rate_hz=rate, voice=self.voice)
