"""faster-whisper (CTranslate2, int8 on CPU): the embedded default recognizer.

Decoding choices (measured with ``assistant eval asr``; see reports/asr.md):
- language ``zh`` for both dialects (whisper-base has no ``yue``); the dialect's initial prompt, written in
  simplified characters (and colloquial Cantonese for ``yue``), steers script and wording;
- temperature 0 with no conditioning on previous text and no temperature fallback; a decoding loop
  (听听听听…, found on word characters only: a run of 。。。 is not a loop) is decoded once more with a
  repetition penalty of 1.3, and that retry is kept when it loops less without saying less (it recovers
  what the loop swallowed: Cantonese phone CER 0.345 → 0.319; no loop, no retry, no cost); whatever loop
  remains is collapsed to one unit;
- silero VAD (shipped inside faster-whisper) drops silence and line noise, which otherwise makes whisper
  hallucinate subtitles credits;
- 0.5 s of silence padded on both sides of utterances under 1.5 s (short answers cut tightly by a VAD were
  otherwise dropped);
- for closed prompts (``RecognizerOptions.grammar``) the phrases become hotwords, the no-speech gate is
  off (a one-syllable answer often scores as "no speech"), and the free hypothesis is matched to the allowed
  phrases (``assistant.asr.phrases``); for open prompts ``phrases`` become hotwords;
- a hypothesis that merely repeats the initial prompt (whisper does this on a lone syllable) is dropped;
- a words check for the end of turn (``RecognizerOptions.words_check``: only its last words are read) is decoded
  greedily, without the VAD pass or the loop retry, with the busy encoder margin, beside the shared encoder.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from assistant.asr.base import AsrResult, AsrToken, Recognizer, RecognizerOptions, RecognizerSession
from assistant.asr.dialect_id import guess_dialect
from assistant.asr.phrases import match_phrase
from assistant.text.normalize import normalize_for_scoring, normalize_transcript

SAMPLE_RATE_HZ = 16000
MIN_AUDIO_S = 0.15  # shorter than this is not an utterance
# silence added before and after every utterance: whisper (and its VAD) drop words that start or end right
# at the edge of the buffer, which is how short answers (是的 / 不要) arrive when a VAD cut them tightly
PAD_S = 0.5
PAD_BELOW_S = 1.5  # only one- or two-word answers are padded (the closed-prompt answers measured: 0.5-1.0 s)
# a unit of 1-4 characters repeated 4+ times in a row is a decoding loop (听听听听…): keep it once.
# (Temperature fallback was measured instead: on phone audio it invented text or recited the prompt.)
LOOP_RE = re.compile(r"(.{1,4}?)\1{3,}")
NON_WORD_RE = re.compile(r"[\W_]+")  # punctuation and spaces (CJK characters are word characters)
# this many other utterances in flight means the machine is behind: the busy encoder margin applies
BUSY_OTHERS = 2
SILENCE_RMS = 60.0  # int16 RMS below this is digital silence / line hum: no decoding
# phrases whisper is known to invent on silence or noise (subtitle credits, sign-offs)
HALLUCINATIONS = (
    "字幕", "订阅", "點贊", "点赞", "打赏", "明镜", "谢谢观看", "感谢观看", "请不吝", "amara", "中文字幕",
    "优优独播", "字幕志愿者", "謝謝觀看",
)


@dataclass(frozen=True, kw_only=True)
class WhisperDecoding:
    beam_size: int = 5
    language: str | None = "zh"
    temperature: float = 0.0
    condition_on_previous_text: bool = False
    vad_filter: bool = True
    no_speech_threshold: float = 0.6
    initial_prompt: str | None = None
    phrase_min_score: float = 0.5  # closed prompts: below this the answer is "not understood"
    # encode only the utterance plus this much of the zero padding instead of the full 30 s window
    # (whisper.cpp's "audio_ctx"); 30 s or more encodes the whole window. See ``trimmed_features``.
    encoder_margin_s: float = 30.0
    # the same while the machine is shared (other calls open, or another utterance being recognised: see
    # ``RecognizerOptions``): a 3 s utterance plus 15 s costs about half the whole window
    shared_encoder_margin_s: float = 30.0
    # the same when the machine is behind (``BUSY_OTHERS`` or more): a 3 s utterance plus 5 s costs a tenth of
    # the whole window; it costs some accuracy, waiting seconds for every reply costs more
    busy_encoder_margin_s: float = 30.0
    # a hypothesis that loops (``LOOP_RE``) is decoded again with this repetition penalty (1.0: no retry);
    # the retry is kept when it does not loop, or loops less (see ``_loop_share``)
    loop_retry_repetition_penalty: float = 1.3

    def encoder_margin_for(self, options: RecognizerOptions) -> float:
        """The encoder margin for an utterance decoded under ``options``' load: the whole window when alone;
        the shared margin when other calls are open or another utterance is in flight (an utterance decoded
        alone with the whole window delays every other caller's next one); the busy margin when several are,
        or for a words check (its text only has to arrive before the end-of-turn silence runs out)."""
        if options.others >= BUSY_OTHERS or options.words_check:
            return self.busy_encoder_margin_s
        if options.others or options.other_calls:
            return self.shared_encoder_margin_s
        return self.encoder_margin_s


class WhisperRecognizer(Recognizer):
    engine = "faster-whisper"

    def __init__(
        self,
        *,
        model_id: str,
        model_dir: str,
        dialect: str,
        threads: int,
        decode_workers: int = 1,
        compute_type: str = "int8",
        decoding: WhisperDecoding | None = None,
        model=None,
        lock: threading.Semaphore | None = None,
    ) -> None:
        from faster_whisper import WhisperModel  # optional engine (extra "whisper"): loaded only when used

        logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every utterance at INFO
        self.model_id = model_id
        self.dialect = dialect
        self.sample_rate_hz = SAMPLE_RATE_HZ
        self.decoding = decoding or WhisperDecoding()
        # one CTranslate2 model may serve several dialect views (``with_dialect``)
        if model is None:
            # decoding: ``decode_workers`` side by side, one thread each; encoding: a second copy of the
            # weights with ``threads`` threads, one encode at a time (the encoder does scale with threads)
            model = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=1,
                                 num_workers=max(1, decode_workers))
            encoder = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=threads,
                                   num_workers=1) if decode_workers > 1 else model
            _wrap_encoder(model, encoder.encode)
        self._model = model
        # at most ``decode_workers`` decodes at a time on the loaded model, shared by its dialect views
        self._lock = lock or threading.Semaphore(max(1, decode_workers))

    def with_dialect(self, dialect: str, decoding: WhisperDecoding) -> WhisperRecognizer:
        """The same loaded weights, decoding for another dialect (no second copy in memory)."""
        return WhisperRecognizer(
            model_id=self.model_id, model_dir="", dialect=dialect, threads=0, decoding=decoding,
            model=self._model, lock=self._lock,
        )

    def session(self, options: RecognizerOptions | None = None) -> RecognizerSession:
        return _WhisperSession(self, options or RecognizerOptions())

    def decode(self, pcm16: bytes, options: RecognizerOptions) -> AsrResult:
        t0 = time.perf_counter()
        audio_s = len(pcm16) / 2 / SAMPLE_RATE_HZ
        x = np.frombuffer(pcm16, dtype="<i2").astype(np.float32)
        if audio_s < MIN_AUDIO_S or float(np.sqrt(np.mean(x * x))) < SILENCE_RMS:
            return self._result("", "", 0.0, (), audio_s, time.perf_counter() - t0)
        d = self.decoding
        prompt = d.initial_prompt
        hotwords = None
        phrases = list(options.grammar or options.phrases or ())
        if phrases:
            # the allowed answers / domain words as context, in the prompt's own script
            hotwords = "，".join(phrases[:40])
        pad_s = PAD_S if audio_s < PAD_BELOW_S else 0.0
        pad = np.zeros(int(pad_s * SAMPLE_RATE_HZ), dtype=np.float32)
        audio = np.concatenate([pad, x / 32768.0, pad])
        margin_s = d.encoder_margin_for(options)
        if options.words_check:  # only its last words are read: greedy, no VAD pass, no loop retry
            d = replace(d, beam_size=1, vad_filter=False, loop_retry_repetition_penalty=1.0)
        with self._lock:
            set_encoder_margin(int(margin_s * FRAMES_PER_S), beside=options.words_check)
            segments = self._transcribe(audio, options, prompt, hotwords, repetition_penalty=1.0, decoding=d)
            first = "".join(s.text for s in segments)
            looped = _loop_share(first)
            if looped > 0.0 and d.loop_retry_repetition_penalty != 1.0:
                retry = self._transcribe(audio, options, prompt, hotwords,
                                         repetition_penalty=d.loop_retry_repetition_penalty)
                again = "".join(s.text for s in retry)
                # the retry is there to recover what the loop swallowed: it must not loop more, nor say less
                if _loop_share(again) < looped and len(_words(again)) >= len(_words(LOOP_RE.sub(r"\1", first))):
                    segments = retry
        # a hallucinated segment (subtitle credits on a trailing half second) is dropped, not the utterance
        segments = [s for s in segments if not _hallucinated(s.text)]
        raw = LOOP_RE.sub(r"\1", "".join(s.text for s in segments).strip())
        tokens = tuple(
            AsrToken(text=s.text.strip(), confidence=math.exp(s.avg_logprob), start_s=max(0.0, s.start - pad_s), end_s=max(0.0, s.end - pad_s))
            for s in segments
            if s.text.strip()
        )
        if _echoes_prompt(raw, prompt):
            raw, tokens = "", ()
        confidence = _confidence(segments) if tokens else 0.0
        text = normalize_transcript(raw)
        if options.grammar:
            match = match_phrase(text, list(options.grammar))
            if match is None or match.score < d.phrase_min_score:
                text, confidence = "", min(confidence, 0.2)
            else:
                text = match.phrase
                confidence = confidence * match.score
        return self._result(text, raw, confidence, tokens, audio_s, time.perf_counter() - t0)

    def _transcribe(self, audio: np.ndarray, options: RecognizerOptions, prompt: str | None, hotwords: str | None,
                    *, repetition_penalty: float, decoding: WhisperDecoding | None = None) -> list:
        d = decoding or self.decoding
        segments, _info = self._model.transcribe(
            audio,
            language=d.language,
            beam_size=d.beam_size,
            temperature=d.temperature,
            condition_on_previous_text=d.condition_on_previous_text,
            vad_filter=d.vad_filter,
            no_speech_threshold=None if options.grammar else d.no_speech_threshold,
            initial_prompt=prompt,
            hotwords=hotwords,
            without_timestamps=True,
            repetition_penalty=repetition_penalty,
        )
        return list(segments)

    def _result(self, text, raw, confidence, tokens, audio_s, decode_s) -> AsrResult:
        return AsrResult(
            text=text,
            raw_text=raw,
            confidence=round(float(confidence), 4),
            dialect=guess_dialect(text, default=self.dialect) if self.dialect == "auto" else self.dialect,
            engine=self.engine,
            model_id=self.model_id,
            tokens=tokens,
            audio_s=audio_s,
            decode_s=decode_s,
        )


FRAMES_PER_S = 100  # whisper's log-mel frames (10 ms hop)


def trimmed_features(features: np.ndarray, *, margin_frames: int | None) -> np.ndarray:
    """Drop the zero padding (``pad_or_trim`` pads the 30 s window with exact zeros) beyond ``margin_frames``.

    The encoder cost grows with its input: the full 3000-frame window costs ~0.6 s on 2 cores, a 3 s
    utterance ~0.05 s. CTranslate2 accepts shorter inputs; the decoder attends to what is there. The length
    is kept even (the encoder's stride-2 convolution).
    """
    frames = features.shape[-1]
    if margin_frames is None or margin_frames >= frames:
        return features  # the whole window (the default): no need to look for the padding
    nonzero = np.flatnonzero(np.any(features.reshape(-1, frames) != 0.0, axis=0))
    content = int(nonzero[-1]) + 1 if nonzero.size else 0
    keep = min(frames, content + margin_frames)
    keep += keep % 2
    return features[..., : min(frames, max(keep, 2))]


ENCODER_CACHE_SIZE = 4  # recent encoder outputs kept (two callers' utterances, each with two dialect views)


_ENCODE = threading.local()  # this thread's encoder margin (frames; None: the whole window)


def set_encoder_margin(frames: int | None, *, beside: bool = False) -> None:
    """The encoder margin for decodes made by this thread (read by the wrapped ``encode``); ``beside``: encode on
    this decode worker's own thread instead of queueing for the shared encoder (a words check: a short window
    whose text must come before the end-of-turn silence runs out, not after another utterance's whole window)."""
    _ENCODE.margin_frames = frames
    _ENCODE.beside = beside


def encoder_margin() -> int | None:
    return getattr(_ENCODE, "margin_frames", None)


def _wrap_encoder(model, full_encode=None) -> None:
    """Make ``model.encode`` honour this thread's ``_ENCODE.margin_frames`` (set by ``decode``), run
    ``full_encode`` (default: the model's own) one encode at a time, and reuse recent encoder outputs for
    identical features: an unknown caller's utterance is decoded once per dialect (different prompts, same
    audio, decoded side by side), and the encoder is most of the cost of a short utterance. A words check
    (``set_encoder_margin(..., beside=True)``) encodes on the model's own worker, neither queued nor cached."""
    own_encode = model.encode
    full_encode = full_encode or own_encode
    recent: OrderedDict[str, object] = OrderedDict()
    lock = threading.Lock()  # the second view waits for the first view's encode instead of repeating it

    def encode(features):
        x = np.ascontiguousarray(trimmed_features(features, margin_frames=encoder_margin()))
        if getattr(_ENCODE, "beside", False):
            return own_encode(x)
        key = hashlib.blake2b(x.tobytes(), digest_size=16).hexdigest() + str(x.shape)
        with lock:
            if key not in recent:
                recent[key] = full_encode(x)
                while len(recent) > ENCODER_CACHE_SIZE:
                    recent.popitem(last=False)
            recent.move_to_end(key)
            return recent[key]

    model.encode = encode


def _hallucinated(text: str) -> bool:
    return any(h in text.lower() for h in HALLUCINATIONS)


def _words(text: str) -> str:
    return NON_WORD_RE.sub("", text)


def _loop_share(text: str) -> float:
    """Share of ``text``'s word characters taken by decoding loops (``LOOP_RE``); 0.0 when it does not loop.
    Punctuation runs (。。。。) are not loops: whisper ends on them harmlessly."""
    text = _words(text)
    if not text:
        return 0.0
    looped = sum(len(m.group(0)) - len(m.group(1)) for m in LOOP_RE.finditer(text))
    return looped / len(text)


def _echoes_prompt(raw: str, prompt: str | None) -> bool:
    """True when the hypothesis is mostly recited from the initial prompt (whisper does this on a lone
    syllable or unintelligible audio): at least 6 characters (a caller's short answer may well repeat a
    domain word of the prompt), inside the prompt or with 60 % of its character pairs from it."""
    if not prompt:
        return False

    h, p = normalize_for_scoring(raw), normalize_for_scoring(prompt)
    if len(h) < 6:
        return False
    if h in p:
        return True
    pairs = [h[i : i + 2] for i in range(len(h) - 1)]
    prompt_pairs = {p[i : i + 2] for i in range(len(p) - 1)}
    return sum(x in prompt_pairs for x in pairs) >= 0.6 * len(pairs)


def _confidence(segments) -> float:
    """Duration-weighted exp(avg log-prob), discounted by the no-speech probability."""
    total = weight = 0.0
    for s in segments:
        w = max(0.1, s.end - s.start)
        total += w * math.exp(s.avg_logprob) * (1.0 - s.no_speech_prob)
        weight += w
    return total / weight if weight else 0.0


class _WhisperSession(RecognizerSession):
    """Buffers one utterance; whisper decodes it whole at ``final()`` (no partials)."""

    def __init__(self, recognizer: WhisperRecognizer, options: RecognizerOptions) -> None:
        self._rec = recognizer
        self._options = options
        self._buf = bytearray()

    def accept_audio(self, pcm16: bytes) -> AsrResult | None:
        self._buf.extend(pcm16)
        return None

    def final(self) -> AsrResult:
        pcm, self._buf = bytes(self._buf), bytearray()
        return self._rec.decode(pcm, self._options)
