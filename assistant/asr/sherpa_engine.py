"""sherpa-onnx SenseVoice (int8 ONNX): Mandarin and Cantonese in one model, with its own language id.

SenseVoice tags each utterance with a language (``<|zh|>``, ``<|yue|>``, ...): that tag is the dialect
reported. It takes no grammar or hotwords, so closed prompts go through phrase scoring like whisper.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from assistant.asr.base import AsrResult, Recognizer, RecognizerOptions, RecognizerSession
from assistant.asr.dialect_id import guess_dialect
from assistant.asr.phrases import match_phrase
from assistant.text.normalize import normalize_transcript

SAMPLE_RATE_HZ = 16000
LANG_TO_DIALECT = {"zh": "cmn", "yue": "yue"}
PHRASE_MIN_SCORE = 0.5


def dialect_of(lang_tag: str, text: str) -> str:
    """``<|yue|>`` → yue, ``<|zh|>`` → cmn; other languages fall back to the text's own evidence."""
    lang = lang_tag.strip("<|>").lower()
    return LANG_TO_DIALECT.get(lang) or guess_dialect(text)


class SherpaSenseVoiceRecognizer(Recognizer):
    engine = "sherpa-onnx"

    def __init__(self, *, model_id: str, model_dir: str, threads: int, dialect: str = "auto") -> None:
        import sherpa_onnx  # optional engine (extra "sherpa"): loaded only when used

        folder = Path(model_dir)
        self.model_id = model_id
        self.dialect = dialect
        self.sample_rate_hz = SAMPLE_RATE_HZ
        self._rec = sherpa_onnx.OfflineRecognizer.from_sense_voice(
            model=str(folder / "model.int8.onnx"),
            tokens=str(folder / "tokens.txt"),
            num_threads=threads,
            use_itn=True,
            language="auto",
        )
        self._lock = threading.Lock()

    def session(self, options: RecognizerOptions | None = None) -> RecognizerSession:
        return _SherpaSession(self, options or RecognizerOptions())

    def decode(self, pcm16: bytes, options: RecognizerOptions) -> AsrResult:
        t0 = time.perf_counter()
        audio_s = len(pcm16) / 2 / SAMPLE_RATE_HZ
        raw, lang = "", ""
        if audio_s >= 0.1:
            samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
            with self._lock:
                stream = self._rec.create_stream()
                stream.accept_waveform(SAMPLE_RATE_HZ, samples)
                self._rec.decode_stream(stream)
            raw, lang = stream.result.text.strip(), getattr(stream.result, "lang", "")
        text = normalize_transcript(raw)
        confidence = 0.8 if text else 0.0  # SenseVoice gives no utterance score through sherpa-onnx
        if options.grammar and text:
            m = match_phrase(text, list(options.grammar))
            if m is None or m.score < PHRASE_MIN_SCORE:
                text, confidence = "", 0.2
            else:
                text, confidence = m.phrase, confidence * m.score
        return AsrResult(
            text=text,
            raw_text=raw,
            confidence=confidence,
            dialect=dialect_of(lang, text) if self.dialect == "auto" else self.dialect,
            engine=self.engine,
            model_id=self.model_id,
            audio_s=audio_s,
            decode_s=time.perf_counter() - t0,
        )


class _SherpaSession(RecognizerSession):
    def __init__(self, rec: SherpaSenseVoiceRecognizer, options: RecognizerOptions) -> None:
        self._rec = rec
        self._options = options
        self._buf = bytearray()

    def accept_audio(self, pcm16: bytes) -> AsrResult | None:
        self._buf.extend(pcm16)
        return None

    def final(self) -> AsrResult:
        pcm, self._buf = bytes(self._buf), bytearray()
        return self._rec.decode(pcm, self._options)
