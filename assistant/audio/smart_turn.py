"""Smart Turn v3.2 (pipecat's bundled ONNX model): has the speaker finished their turn, judged from the audio.

One model per process, loaded on first use and shared by every call; inference runs on one process-wide
worker thread (never on the event loop). The model takes the last 8 s of a turn at 16 kHz; 8 kHz phone audio
is resampled first. Multilingual (Chinese included).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np

from assistant.audio.convert import pcm16_to_float, resample_pcm16
from assistant.errors import SmartTurnError

MODEL_RATE_HZ = 16000
MODEL_WINDOW_S = 8
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"

_lock = threading.Lock()
_session = None
_executor: ThreadPoolExecutor | None = None


def model_path() -> str:
    return str(resources.files("pipecat.audio.turn.smart_turn.data").joinpath(MODEL_FILE))


def _model():
    global _session
    with _lock:
        if _session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.inter_op_num_threads = 1
            options.intra_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            _session = ort.InferenceSession(model_path(), sess_options=options)
        return _session


def _worker() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")
        return _executor


def completion_probability_sync(pcm16: bytes, *, sample_rate_hz: int) -> float:
    """Probability (0..1) that the turn in ``pcm16`` (mono, ending now) is complete. Blocking: CPU work."""
    from pipecat.audio.turn.smart_turn._whisper_features import compute_whisper_log_mel_features

    if sample_rate_hz != MODEL_RATE_HZ:
        pcm16 = resample_pcm16(pcm16, from_hz=sample_rate_hz, to_hz=MODEL_RATE_HZ)
    samples = pcm16_to_float(pcm16)[-MODEL_WINDOW_S * MODEL_RATE_HZ :]
    samples = np.pad(samples, (MODEL_WINDOW_S * MODEL_RATE_HZ - len(samples), 0))
    features = compute_whisper_log_mel_features(samples.astype(np.float32), do_normalize=True)
    outputs = _model().run(None, {"input_features": np.expand_dims(features, axis=0)})
    return float(np.asarray(outputs[0]).reshape(-1)[0])


async def completion_probability(pcm16: bytes, *, sample_rate_hz: int) -> float:
    """``completion_probability_sync`` on the shared Smart Turn thread."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(
            _worker(), lambda: completion_probability_sync(pcm16, sample_rate_hz=sample_rate_hz)
        )
    except Exception as exc:  # onnxruntime raises its own classes; the turn then ends by the fixed silence
        raise SmartTurnError(f"Smart Turn inference failed: {exc}") from exc
