"""Which recognizer serves a call, loaded once per process, and running it off the event loop.

- ``get_recognizer(model_id, settings=...)`` loads a model the first time it is asked for (in a worker
  thread, one load at a time per process) and returns the same object afterwards.
- ``recognize(pcm16, sample_rate_hz=..., dialect=..., options=..., settings=...)`` resamples once to the
  model's rate, picks the model for the dialect (``settings.asr.default_model_<dialect>``) and decodes in
  ``asyncio.to_thread``. ``dialect=None`` auto-detects: every model in ``settings.asr.auto_dialect_models``
  decodes the utterance (whisper once per dialect, with that dialect's prompt, the views side by side on one
  encoding); the result with the best confidence plus Cantonese-character evidence wins, and its dialect is
  reported.
- ``recognize_sync`` is the same for command-line tools and evaluation (no event loop).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from dataclasses import replace

from assistant.asr.base import AsrResult, Recognizer, RecognizerOptions
from assistant.asr.dialect_id import cantonese_score
from assistant.asr.sherpa_engine import SherpaSenseVoiceRecognizer
from assistant.asr.vosk_engine import VoskRecognizer
from assistant.asr.whisper_engine import WhisperDecoding, WhisperRecognizer
from assistant.audio.convert import resample_pcm16
from assistant.errors import AsrError, AssistantError
from assistant.settings import Settings
from dialect_models import provision
from dialect_models.manifest import get_spec
from dialect_models.vocab import load_vocabulary

DIALECTS = ("cmn", "yue")
# model_id → factory(settings) for models not in the manifest (tests, plugins)
_FACTORIES: dict[str, Callable[[Settings], Recognizer]] = {}
_CACHE: dict[tuple[str, str], Recognizer] = {}  # (models_dir, model_id) → loaded recognizer
_VIEWS: dict[tuple[str, str, str], Recognizer] = {}  # (models_dir, model_id, dialect) → recognizer
_THREAD_LOCK = threading.Lock()
_LOOP_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
_RUNNING = [0]  # decodes running (or waiting for their model) in worker threads, all models
_RUNNING_LOCK = threading.Lock()
_IN_FLIGHT = [0]  # utterances being recognised by ``recognize`` (each decoded in one or more views)
_CALLS: set[str] = set()  # calls open in this process (``call_started`` / ``call_ended``)


def call_started(call_id: str) -> None:
    """A call's speech recognition is running (its STT service started): the machine is shared."""
    _CALLS.add(call_id)


def call_ended(call_id: str) -> None:
    _CALLS.discard(call_id)


def register_model(model_id: str, factory: Callable[[Settings], Recognizer]) -> None:
    """Make ``model_id`` loadable through ``factory`` instead of the manifest (used by tests)."""
    _FACTORIES[model_id] = factory


def clear_cache() -> None:
    """Forget loaded models (tests; a running assistant never needs this)."""
    with _THREAD_LOCK:
        _CACHE.clear()
        _VIEWS.clear()


def _key(model_id: str, settings: Settings) -> tuple[str, str]:
    return (str(settings.paths.models_dir), model_id)


def _load(model_id: str, settings: Settings) -> Recognizer:
    if model_id in _FACTORIES:
        return _FACTORIES[model_id](settings)

    spec = get_spec(model_id)
    folder = provision.require(model_id, settings)
    if spec.engine == "faster-whisper":
        return WhisperRecognizer(
            model_id=model_id,
            model_dir=str(folder),
            dialect="auto",
            threads=settings.asr.threads,
            decode_workers=settings.asr.decode_workers,
            compute_type=settings.asr.compute_type,
            decoding=whisper_decoding("auto", settings),
        )
    if spec.engine == "vosk":
        return VoskRecognizer(model_id=model_id, model_dir=str(folder), dialect=spec.dialects[0])
    if spec.engine == "sherpa-onnx":
        return SherpaSenseVoiceRecognizer(
            model_id=model_id, model_dir=str(folder), threads=settings.asr.threads
        )
    raise AsrError(f"model {model_id}: unknown engine {spec.engine!r}")


def whisper_decoding(dialect: str, settings: Settings):
    """Decoding options for whisper in one dialect (``auto``: Mandarin prompt, dialect guessed from text)."""
    asr = settings.asr
    prompt = load_vocabulary("yue" if dialect == "yue" else "cmn").prompt if asr.whisper_prompt else None
    return WhisperDecoding(
        beam_size=asr.beam_size,
        language="zh",
        temperature=asr.whisper_temperature,
        condition_on_previous_text=False,
        vad_filter=asr.whisper_vad_filter,
        initial_prompt=prompt or None,
        phrase_min_score=asr.phrase_min_score,
        encoder_margin_s=asr.whisper_encoder_margin_s,
        shared_encoder_margin_s=asr.whisper_shared_encoder_margin_s,
        busy_encoder_margin_s=asr.whisper_busy_encoder_margin_s,
        loop_retry_repetition_penalty=asr.whisper_loop_retry_repetition_penalty,
    )


def load_recognizer_sync(model_id: str, *, settings: Settings) -> Recognizer:
    """Blocking load-once (double-checked under a thread lock)."""
    key = _key(model_id, settings)
    rec = _CACHE.get(key)
    if rec is not None:
        return rec
    with _THREAD_LOCK:
        rec = _CACHE.get(key)
        if rec is None:
            rec = _load(model_id, settings)
            _CACHE[key] = rec
    return rec


def _loop_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _LOOP_LOCKS.get(loop)
    if lock is None:
        lock = _LOOP_LOCKS[loop] = asyncio.Lock()
    return lock


async def get_recognizer(model_id: str, *, settings: Settings) -> Recognizer:
    """The loaded recognizer for ``model_id`` (loaded in a worker thread the first time)."""
    rec = _CACHE.get(_key(model_id, settings))
    if rec is not None:
        return rec
    async with _loop_lock():
        return await asyncio.to_thread(load_recognizer_sync, model_id, settings=settings)


def dialect_view(rec: Recognizer, dialect: str, settings: Settings) -> Recognizer:
    """A recognizer decoding for ``dialect``: whisper serves both dialects from one set of weights."""
    if rec.engine != "faster-whisper" or dialect not in DIALECTS:
        return rec
    key = (str(settings.paths.models_dir), rec.model_id, dialect)
    view = _VIEWS.get(key)
    if view is None:
        view = rec.with_dialect(dialect, whisper_decoding(dialect, settings))  # type: ignore[attr-defined]
        _VIEWS[key] = view
    return view


def model_for(dialect: str, settings: Settings) -> str:
    if dialect == "yue":
        return settings.asr.default_model_yue
    if dialect == "cmn":
        return settings.asr.default_model_cmn
    raise AsrError(f"unknown dialect {dialect!r} (cmn, yue or auto)")


def _decode(rec: Recognizer, pcm16: bytes, sample_rate_hz: int, options: RecognizerOptions | None) -> AsrResult:

    pcm = resample_pcm16(pcm16, from_hz=sample_rate_hz, to_hz=rec.sample_rate_hz)
    with _RUNNING_LOCK:
        _RUNNING[0] += 1
    try:
        return rec.transcribe(pcm, options)
    except AssistantError:
        raise
    except Exception as exc:  # engine internals (CTranslate2, Kaldi, onnxruntime) raise their own types
        raise AsrError(f"{rec.engine}:{rec.model_id} failed to decode ({type(exc).__name__}: {exc})") from exc
    finally:
        with _RUNNING_LOCK:
            _RUNNING[0] -= 1


def decodes_running() -> int:
    """How many decodes are running now (counted inside the worker threads, so a decode whose caller was
    cancelled still counts until its thread is done): early recognition only starts when this is below
    ``asr.decode_workers`` (an idle worker)."""
    return _RUNNING[0]


# auto-detection: a result's score is its confidence plus this weight × the Cantonese evidence in a
# Cantonese decoding (colloquial characters); measured on ../shared clips, see reports/asr.md
YUE_MARKER_WEIGHT = 0.4


def _auto_score(r: AsrResult) -> float:
    if not r.text:
        return -1.0
    return r.confidence + (YUE_MARKER_WEIGHT * cantonese_score(r.text) if r.dialect == "yue" else 0.0)


def _pick(results: list[AsrResult]) -> AsrResult:
    """The best-scoring result (the first one when all are empty)."""
    return max(results, key=_auto_score) if any(r.text for r in results) else results[0]


def _auto_views(rec: Recognizer, settings: Settings) -> list[Recognizer]:
    """What one candidate model decodes in auto mode: whisper once per dialect, others once."""
    if rec.engine == "faster-whisper":
        return [dialect_view(rec, d, settings) for d in DIALECTS]
    return [rec]


def _auto_candidates(settings: Settings) -> list[str]:
    return list(dict.fromkeys(settings.asr.auto_dialect_models)) or [settings.asr.default_model_cmn]


def _check(pcm16: bytes, sample_rate_hz: int) -> None:
    if sample_rate_hz <= 0:
        raise AsrError(f"invalid sample rate {sample_rate_hz}")
    if len(pcm16) % 2:
        raise AsrError("PCM16 audio has an odd number of bytes")


async def recognize(
    pcm16: bytes,
    *,
    sample_rate_hz: int,
    dialect: str | None,
    options: RecognizerOptions | None,
    settings: Settings,
    call_id: str | None = None,
) -> AsrResult:
    """Recognise one utterance (of call ``call_id``) without blocking the event loop.

    It is told the load (``RecognizerOptions.others``, ``other_calls``; the same for all its dialect views, so
    they still share one encoding): whisper encodes less of its window when the machine is shared."""
    _check(pcm16, sample_rate_hz)
    options = replace(options or RecognizerOptions(), others=_IN_FLIGHT[0], other_calls=len(_CALLS - {call_id}))
    counted = 0 if options.words_check else 1  # a words check is short: it does not make the machine "shared"
    _IN_FLIGHT[0] += counted
    try:
        return await _recognize(pcm16, sample_rate_hz=sample_rate_hz, dialect=dialect, options=options,
                                settings=settings)
    finally:
        _IN_FLIGHT[0] -= counted


async def _recognize(
    pcm16: bytes, *, sample_rate_hz: int, dialect: str | None, options: RecognizerOptions, settings: Settings
) -> AsrResult:
    if dialect is not None:
        rec = dialect_view(await get_recognizer(model_for(dialect, settings), settings=settings), dialect, settings)
        return await asyncio.to_thread(_decode, rec, pcm16, sample_rate_hz, options)
    views = [
        view
        for model_id in _auto_candidates(settings)
        for view in _auto_views(await get_recognizer(model_id, settings=settings), settings)
    ]
    # side by side: whisper's views share one encoding and decode in parallel workers (``decode_workers``)
    results = await asyncio.gather(*(asyncio.to_thread(_decode, v, pcm16, sample_rate_hz, options) for v in views))
    return _pick(list(results))


def recognize_sync(
    pcm16: bytes,
    *,
    sample_rate_hz: int,
    dialect: str | None,
    options: RecognizerOptions | None = None,
    settings: Settings,
) -> AsrResult:
    """``recognize`` for code without an event loop (CLI, evaluation). Never call it from a coroutine."""
    _check(pcm16, sample_rate_hz)
    if dialect is not None:
        rec = dialect_view(load_recognizer_sync(model_for(dialect, settings), settings=settings), dialect, settings)
        return _decode(rec, pcm16, sample_rate_hz, options)
    results = [
        _decode(view, pcm16, sample_rate_hz, options)
        for model_id in _auto_candidates(settings)
        for view in _auto_views(load_recognizer_sync(model_id, settings=settings), settings)
    ]
    return _pick(results)
