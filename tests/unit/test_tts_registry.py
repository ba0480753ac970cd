"""Voice registry: prompt cache hits and fallback past missing or broken voices.

The engines here are FAKES, clearly named: ``FakeToneEngine`` makes a sine tone (no voice at all),
``FakeBrokenEngine`` always raises, ``FakeSilentEngine`` returns only zeros, ``fake_missing`` cannot load.
They stand in for real voices so that the registry's choices can be checked without espeak-ng.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from assistant.errors import TtsError
from assistant.tts import registry
from assistant.tts.base import SpeechAudio, TtsEngine, VoiceRequest
from assistant.tts.cache import PromptCache, make_key

RATE_HZ = 16000


class FakeToneEngine(TtsEngine):
    """FAKE voice: a 440 Hz tone, 50 ms per character. Counts its calls."""

    def __init__(self, voice: str, dialect: str) -> None:
        self.voice, self.dialects, self.calls = voice, (dialect,), []

    def synthesize(self, request: VoiceRequest) -> SpeechAudio:
        self.calls.append(request)
        n = int(RATE_HZ * 0.05 * max(1, len(request.text)))
        x = (np.sin(np.arange(n) * 2 * np.pi * 440 / RATE_HZ) * 8000 * request.volume).astype("<i2")
        return SpeechAudio(pcm=x.tobytes(), sample_rate_hz=RATE_HZ, voice=self.voice)


class FakeBrokenEngine(TtsEngine):
    """FAKE voice that loads but fails on every request (a crashed synthesizer)."""

    def __init__(self, voice: str) -> None:
        self.voice, self.dialects, self.calls = voice, ("cmn",), 0

    def synthesize(self, request: VoiceRequest) -> SpeechAudio:
        self.calls += 1
        raise RuntimeError("deliberately broken fake engine")


class FakeSilentEngine(TtsEngine):
    """FAKE voice that returns one second of digital silence."""

    voice, dialects = "fake-silent", ("cmn",)

    def synthesize(self, request: VoiceRequest) -> SpeechAudio:
        return SpeechAudio(pcm=b"\x00\x00" * RATE_HZ, sample_rate_hz=RATE_HZ, voice=self.voice)


@pytest.fixture
def fakes(settings):
    engines = {
        "fake-tone-cmn": FakeToneEngine("fake-tone-cmn", "cmn"),
        "fake-tone-yue": FakeToneEngine("fake-tone-yue", "yue"),
        "fake-broken": FakeBrokenEngine("fake-broken"),
        "fake-silent": FakeSilentEngine(),
    }
    for name, engine in engines.items():
        dialect = "yue" if name.endswith("yue") else "cmn"
        registry.register_voice(registry.VoiceInfo(voice=name, dialect=dialect, factory=lambda s, e=engine: e,
                                                   licence="test fake", description="FAKE test voice"))

    def missing(_settings):
        raise TtsError("fake_missing is not installed (FAKE)", code="tts_voice_missing")

    registry.register_voice(registry.VoiceInfo(voice="fake_missing", dialect="cmn", factory=missing,
                                               licence="test fake", description="FAKE missing voice"))
    registry.reset()
    yield engines
    registry.reset()
    for name in [*engines, "fake_missing"]:
        registry.VOICES.pop(name, None)


def with_voices(settings, *, cmn, yue=("fake-tone-yue",)):
    tts = dataclasses.replace(settings.tts, default_voice_cmn=cmn[0], voices_cmn=tuple(cmn[1:]),
                              default_voice_yue=yue[0], voices_yue=tuple(yue[1:]))
    return dataclasses.replace(settings, tts=tts)


async def test_second_request_is_served_from_memory_cache(settings, fakes):
    s = with_voices(settings, cmn=["fake-tone-cmn"])
    a = await registry.synthesize("您好，煤气20分钟后送到。", dialect="cmn", rate_wpm=130, volume=1.0, settings=s)
    b = await registry.synthesize("您好，煤气20分钟后送到。", dialect="cmn", rate_wpm=130, volume=1.0, settings=s)
    assert a.pcm == b.pcm and a.voice == "fake-tone-cmn"
    assert len(fakes["fake-tone-cmn"].calls) == 1
    # the engine was asked to say the elder-friendly text
    assert fakes["fake-tone-cmn"].calls[0].text == "您好，煤气二十分钟后送到。"
    # a different rate is a different entry
    await registry.synthesize("您好，煤气20分钟后送到。", dialect="cmn", rate_wpm=110, volume=1.0, settings=s)
    assert len(fakes["fake-tone-cmn"].calls) == 2


async def test_disk_cache_survives_a_restart(settings, fakes):
    s = with_voices(settings, cmn=["fake-tone-cmn"])
    await registry.synthesize("请稍等。", dialect="cmn", rate_wpm=130, volume=1.0, settings=s)
    assert list((s.paths.var_dir / "tts_cache").glob("*.wav"))
    registry.reset()  # forget engines and the in-memory cache, like a new process
    again = await registry.synthesize("请稍等。", dialect="cmn", rate_wpm=130, volume=1.0, settings=s)
    assert again.voice == "fake-tone-cmn"
    assert len(fakes["fake-tone-cmn"].calls) == 1
    assert registry.get_cache(s).hits_disk == 1


async def test_output_is_trimmed_and_ends_with_clause_pause(settings, fakes):
    s = with_voices(settings, cmn=["fake-tone-cmn"])
    audio = await registry.synthesize("好的", dialect="cmn", rate_wpm=130, volume=1.0, settings=s)
    x = np.frombuffer(audio.pcm, dtype="<i2")
    pause = RATE_HZ * s.tts.clause_pause_ms // 1000
    assert np.all(x[-pause:] == 0)
    assert np.abs(x[: RATE_HZ // 100 + 10]).max() > 1000  # speech starts right away


async def test_broken_engine_falls_back_with_a_log_line(settings, fakes, caplog):
    s = with_voices(settings, cmn=["fake-broken", "fake-tone-cmn"])
    with caplog.at_level(logging.WARNING, logger="assistant.tts.registry"):
        audio = await registry.synthesize("您好", dialect="cmn", rate_wpm=130, volume=1.0, settings=s)
    assert audio.voice == "fake-tone-cmn"
    assert any("fake-broken" in r.message and "falling back to fake-tone-cmn" in r.message for r in caplog.records)
    # after 3 failures in a row the broken voice is skipped without being called
    for text in ("一", "二", "三"):
        await registry.synthesize(text, dialect="cmn", rate_wpm=130, volume=1.0, settings=s)
    calls = fakes["fake-broken"].calls
    await registry.synthesize("四", dialect="cmn", rate_wpm=130, volume=1.0, settings=s)
    assert fakes["fake-broken"].calls == calls == 3
    assert "fake-broken" in registry.broken_voices()


async def test_missing_and_silent_voices_fall_through(settings, fakes, caplog):
    s = with_voices(settings, cmn=["fake_missing", "fake-silent", "fake-tone-cmn"])
    with caplog.at_level(logging.WARNING, logger="assistant.tts.registry"):
        audio = await registry.synthesize("您好", dialect="cmn", rate_wpm=130, volume=1.0, settings=s)
    assert audio.voice == "fake-tone-cmn"
    text = " ".join(r.message for r in caplog.records)
    assert "fake_missing unavailable" in text and "tts_voice_missing" in text
    assert "fake-silent failed" in text and "silence" in text


async def test_cantonese_falls_back_to_mandarin_rather_than_silence(settings, fakes, caplog):
    s = with_voices(settings, cmn=["fake-tone-cmn"], yue=["fake_missing"])
    with caplog.at_level(logging.WARNING, logger="assistant.tts.registry"):
        audio = await registry.synthesize("2罐", dialect="yue", rate_wpm=130, volume=1.0, settings=s)
    assert audio.voice == "fake-tone-cmn"
    assert fakes["fake-tone-cmn"].calls[-1].text == "两罐"  # rewritten for the voice's own dialect
    assert any("no yue voice" in r.message for r in caplog.records)


async def test_no_voice_at_all_raises_a_coded_error(settings, fakes):
    s = with_voices(settings, cmn=["fake-broken"], yue=["fake_missing"])
    with pytest.raises(TtsError) as info:
        await registry.synthesize("您好", dialect="cmn", rate_wpm=130, volume=1.0, settings=s)
    assert info.value.code == "tts_no_voice"
    with pytest.raises(TtsError) as info:
        await registry.synthesize("  ", dialect="cmn", rate_wpm=130, volume=1.0, settings=s)
    assert info.value.code == "tts_empty_text"


async def test_warm_fills_the_cache_then_serves_from_it(settings, fakes):
    s = with_voices(settings, cmn=["fake-tone-cmn"])
    prompts = [("cmn", "您好，我是社区的语音助手，请问有什么可以帮您？"), ("yue", "你好。")]
    first = await registry.warm(prompts, settings=s, rates_wpm=[130])
    assert first.synthesized == 4 and first.failed == 0  # three clauses + one
    second = await registry.warm(prompts, settings=s, rates_wpm=[130])
    assert second.synthesized == 0 and second.cached == 4


def test_prompt_cache_lru_and_prune(tmp_path):
    cache = PromptCache(directory=tmp_path, max_items=2, max_disk_files=2)
    audio = SpeechAudio(pcm=b"\x01\x00" * 100, sample_rate_hz=RATE_HZ, voice="v")
    keys = [make_key(voice="v", rate_wpm=130, volume=1.0, text=t) for t in "abc"]
    for k in keys:
        cache.put(k, audio)
    assert cache.get_memory(keys[0]) is None  # evicted from memory (LRU of 2)
    assert cache.get_disk(keys[0]) == audio  # still on disk
    assert cache.prune() == 1
    assert len(list(tmp_path.glob("*.wav"))) == 2
    assert make_key(voice="v", rate_wpm=130, volume=1.0, text="a").digest != make_key(
        voice="v", rate_wpm=130, volume=1.0, text="a", variant="b0").digest
    assert make_key(voice="v", rate_wpm=130, volume=1.0, text="a").digest != \
        make_key(voice="v", rate_wpm=130, volume=0.5, text="a").digest


async def test_synthesize_clauses_streams_in_order_with_look_ahead(settings, fakes):
    s = with_voices(settings, cmn=["fake-tone-cmn"])
    text = "好的，给您订两罐煤气。大约二十分钟送到！还有别的需要吗？"
    got = [a async for a in registry.synthesize_clauses(text, dialect="cmn", rate_wpm=130, volume=1.0, settings=s)]
    assert len(got) == 4
    from assistant.tts.speakable import speakable

    assert [c.text for c in fakes["fake-tone-cmn"].calls] == [speakable(c) for c in registry.split_clauses(text)]
    assert fakes["fake-tone-cmn"].calls[0].text == "好的"


def test_clarify_sets_peak_from_volume_and_boosts_high_frequencies():
    t = np.arange(RATE_HZ) / RATE_HZ
    low = np.sin(2 * np.pi * 300 * t) * 3000
    high = np.sin(2 * np.pi * 3000 * t) * 3000
    x = (low + high).astype("<i2")
    y = registry._clarify(x, sample_rate_hz=RATE_HZ, boost=True, volume=0.5).astype(np.float64)
    assert abs(np.abs(y).max() - 0.45 * 32767) < 200
    spectrum = np.abs(np.fft.rfft(y))
    assert spectrum[3000] > 1.6 * spectrum[300]  # equal in the input, boosted ~+6 dB at 3 kHz
    flat = registry._clarify(x, sample_rate_hz=RATE_HZ, boost=False, volume=1.0).astype(np.float64)
    flat_spectrum = np.abs(np.fft.rfft(flat))
    assert 0.9 < flat_spectrum[3000] / flat_spectrum[300] < 1.1
