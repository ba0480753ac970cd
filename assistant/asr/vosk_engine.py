"""vosk (Kaldi) recognizer: streaming partial results, and real grammars for closed prompts.

A closed prompt builds ``KaldiRecognizer(model, rate, json.dumps(phrases + ["[unk]"]))``: the decoder can
only output those phrases (or ``[unk]``). Chinese phrases are offered both whole and split into
characters, because the small Mandarin model's lexicon holds words and single characters; the output is
then mapped back to the phrase it spells.
"""

from __future__ import annotations

import json
import threading
import time

from assistant.asr.base import AsrResult, AsrToken, Recognizer, RecognizerOptions, RecognizerSession
from assistant.asr.phrases import match_phrase
from assistant.text.normalize import normalize_transcript

UNKNOWN = "[unk]"


def grammar_json(phrases: list[str]) -> str:
    """The grammar string vosk takes: each phrase whole and character by character, plus ``[unk]``."""
    out: list[str] = []
    for p in phrases:
        p = p.strip()
        if not p:
            continue
        for form in (p, " ".join(ch for ch in p if not ch.isspace())):
            if form not in out:
                out.append(form)
    return json.dumps([*out, UNKNOWN], ensure_ascii=False)


class VoskRecognizer(Recognizer):
    engine = "vosk"

    def __init__(self, *, model_id: str, model_dir: str, dialect: str, sample_rate_hz: int = 16000) -> None:
        import vosk  # optional engine (extra "vosk"): loaded only when used

        vosk.SetLogLevel(-1)
        self.model_id = model_id
        self.dialect = dialect
        self.sample_rate_hz = sample_rate_hz
        self._model = vosk.Model(model_dir)
        self._lock = threading.Lock()  # building recognizers on one model from several threads

    def session(self, options: RecognizerOptions | None = None) -> RecognizerSession:
        import vosk  # optional engine (extra "vosk"): loaded only when used

        options = options or RecognizerOptions()
        with self._lock:
            if options.grammar:
                kaldi = vosk.KaldiRecognizer(self._model, self.sample_rate_hz, grammar_json(list(options.grammar)))
            else:
                kaldi = vosk.KaldiRecognizer(self._model, self.sample_rate_hz)
        kaldi.SetWords(True)
        return _VoskSession(self, kaldi, options)


class _VoskSession(RecognizerSession):
    def __init__(self, rec: VoskRecognizer, kaldi, options: RecognizerOptions) -> None:
        self._rec = rec
        self._kaldi = kaldi
        self._options = options
        self._words: list[dict] = []
        self._audio_bytes = 0
        self._decode_s = 0.0

    def accept_audio(self, pcm16: bytes) -> AsrResult | None:
        t0 = time.perf_counter()
        self._audio_bytes += len(pcm16)
        if self._kaldi.AcceptWaveform(pcm16):
            self._words.extend(json.loads(self._kaldi.Result()).get("result", []))
            self._decode_s += time.perf_counter() - t0
            return None
        partial = json.loads(self._kaldi.PartialResult()).get("partial", "")
        self._decode_s += time.perf_counter() - t0
        if not partial:
            return None
        return self._result(partial, 0.0, (), is_final=False)

    def final(self) -> AsrResult:
        t0 = time.perf_counter()
        self._words.extend(json.loads(self._kaldi.FinalResult()).get("result", []))
        self._decode_s += time.perf_counter() - t0
        words = [w for w in self._words if w.get("word") and w["word"] != UNKNOWN]
        tokens = tuple(
            AsrToken(text=w["word"], confidence=float(w.get("conf", 0.0)), start_s=w.get("start"), end_s=w.get("end"))
            for w in words
        )
        raw = " ".join(t.text for t in tokens)
        confidence = sum(t.confidence for t in tokens) / len(tokens) if tokens else 0.0
        result = self._result(raw, confidence, tokens, is_final=True)
        if self._options.grammar and result.text:
            m = match_phrase(result.text, list(self._options.grammar))
            if m is not None:
                result = self._result(raw, confidence, tokens, is_final=True, text=m.phrase)
        return result

    def _result(self, raw: str, confidence: float, tokens, *, is_final: bool, text: str | None = None) -> AsrResult:
        return AsrResult(
            text=normalize_transcript(raw) if text is None else text,
            raw_text=raw,
            confidence=round(confidence, 4),
            dialect=self._rec.dialect,
            engine=self._rec.engine,
            model_id=self._rec.model_id,
            is_final=is_final,
            tokens=tokens,
            audio_s=self._audio_bytes / 2 / self._rec.sample_rate_hz,
            decode_s=self._decode_s,
        )
