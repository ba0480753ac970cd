"""The recognizer registry: load once per process, load and decode off the event loop, resample once,
pick the model per dialect, auto-detect. Uses ``FakeRecognizer`` — a FAKE engine defined here (no model,
no speech recognition) so that only the registry's own behaviour is under test."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

import numpy as np
import pytest

from assistant.asr import registry
from assistant.asr.base import AsrResult, Recognizer, RecognizerOptions, RecognizerSession
from assistant.errors import AsrError, ModelMissingError


class FakeRecognizer(Recognizer):
    """FAKE engine for tests: answers a fixed text; records what it was fed and on which thread."""

    engine = "fake"

    def __init__(self, *, model_id: str, dialect: str, text: str, confidence: float, decode_delay_s: float = 0.0):
        self.model_id = model_id
        self.dialect = dialect
        self.sample_rate_hz = 16000
        self.text = text
        self.confidence = confidence
        self.decode_delay_s = decode_delay_s
        self.fed_bytes: list[int] = []
        self.decode_threads: list[str] = []

    def session(self, options: RecognizerOptions | None = None) -> RecognizerSession:
        return _FakeSession(self)


class _FakeSession(RecognizerSession):
    def __init__(self, rec: FakeRecognizer):
        self.rec = rec
        self.n = 0

    def accept_audio(self, pcm16: bytes):
        self.n += len(pcm16)
        return None

    def final(self) -> AsrResult:
        time.sleep(self.rec.decode_delay_s)
        self.rec.fed_bytes.append(self.n)
        self.rec.decode_threads.append(threading.current_thread().name)
        return AsrResult(
            text=self.rec.text, raw_text=self.rec.text, confidence=self.rec.confidence, dialect=self.rec.dialect,
            engine="fake", model_id=self.rec.model_id, audio_s=self.n / 2 / 16000,
        )


@pytest.fixture
def fakes(settings):
    """Two fake models registered under test ids; settings routing cmn/yue/auto to them."""
    registry.clear_cache()
    loads: list[tuple[str, str]] = []
    made: dict[str, FakeRecognizer] = {}

    def factory(model_id, dialect, text, conf, delay=0.0):
        def make(_settings):
            time.sleep(0.05)  # a slow load, so that concurrent callers overlap
            loads.append((model_id, threading.current_thread().name))
            made[model_id] = FakeRecognizer(
                model_id=model_id, dialect=dialect, text=text, confidence=conf, decode_delay_s=delay
            )
            return made[model_id]

        return make

    registry.register_model("fake-cmn", factory("fake-cmn", "cmn", "我要订煤气", 0.9))
    registry.register_model("fake-yue", factory("fake-yue", "yue", "我要叫石油气", 0.6, delay=0.3))
    s = dataclasses.replace(
        settings,
        asr=dataclasses.replace(
            settings.asr, default_model_cmn="fake-cmn", default_model_yue="fake-yue",
            auto_dialect_models=("fake-cmn", "fake-yue"),
        ),
    )
    yield s, loads, made
    registry.clear_cache()
    registry._FACTORIES.pop("fake-cmn", None)
    registry._FACTORIES.pop("fake-yue", None)


async def test_concurrent_callers_share_one_load_done_off_the_loop(fakes):
    s, loads, _ = fakes
    recs = await asyncio.gather(*(registry.get_recognizer("fake-cmn", settings=s) for _ in range(5)))
    assert len({id(r) for r in recs}) == 1
    assert len(loads) == 1
    assert loads[0][1] != threading.main_thread().name  # loaded in a worker thread
    assert await registry.get_recognizer("fake-cmn", settings=s) is recs[0]


async def test_recognize_resamples_phone_audio_once_and_routes_by_dialect(fakes):
    s, _, made = fakes
    pcm8k = np.zeros(8000, dtype="<i2").tobytes()  # 1 s at 8 kHz
    result = await registry.recognize(pcm8k, sample_rate_hz=8000, dialect="cmn", options=None, settings=s)
    assert result.model_id == "fake-cmn" and result.text == "我要订煤气"
    assert made["fake-cmn"].fed_bytes == [32000]  # 1 s at 16 kHz
    yue = await registry.recognize(pcm8k, sample_rate_hz=8000, dialect="yue", options=None, settings=s)
    assert yue.model_id == "fake-yue" and yue.dialect == "yue"


async def test_auto_dialect_keeps_the_most_confident_candidate(fakes):
    s, _, _ = fakes
    pcm = np.zeros(16000, dtype="<i2").tobytes()
    result = await registry.recognize(pcm, sample_rate_hz=16000, dialect=None, options=None, settings=s)
    assert result.model_id == "fake-cmn" and result.dialect == "cmn"


def test_auto_pick_prefers_cantonese_evidence_in_a_cantonese_decoding():
    def r(text, conf, dialect):
        return AsrResult(text=text, raw_text=text, confidence=conf, dialect=dialect, engine="fake", model_id="m")

    cmn, yue = r("他们在这里吃饭", 0.60, "cmn"), r("佢哋喺度食饭", 0.55, "yue")
    assert registry._pick([cmn, yue]) is yue
    assert registry._pick([r("", 0.0, "cmn"), r("", 0.0, "yue")]).dialect == "cmn"


async def test_decoding_does_not_block_the_event_loop(fakes):
    s, _, made = fakes
    await registry.get_recognizer("fake-yue", settings=s)  # decode takes 0.3 s
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    pcm = np.zeros(1600, dtype="<i2").tobytes()
    await registry.recognize(pcm, sample_rate_hz=16000, dialect="yue", options=None, settings=s)
    task.cancel()
    assert ticks >= 10  # the loop kept running while the fake decoded
    assert made["fake-yue"].decode_threads[-1] != threading.main_thread().name


def test_sync_helper_uses_the_same_cache(fakes):
    s, loads, _ = fakes
    a = registry.recognize_sync(b"\x00\x00" * 1600, sample_rate_hz=16000, dialect="cmn", settings=s)
    b = registry.recognize_sync(b"\x00\x00" * 1600, sample_rate_hz=16000, dialect="cmn", settings=s)
    assert a.text == b.text == "我要订煤气"
    assert [m for m, _ in loads].count("fake-cmn") == 1


async def test_missing_model_names_the_fetch_command(settings):
    registry.clear_cache()
    s = dataclasses.replace(settings, asr=dataclasses.replace(settings.asr, default_model_cmn="vosk-model-small-cn-0.22"))
    with pytest.raises(ModelMissingError, match="assistant models fetch vosk-model-small-cn-0.22"):
        await registry.recognize(b"\x00\x00" * 160, sample_rate_hz=16000, dialect="cmn", options=None, settings=s)


async def test_bad_input_is_a_coded_error(fakes):
    s, _, _ = fakes
    with pytest.raises(AsrError):
        await registry.recognize(b"\x00", sample_rate_hz=16000, dialect="cmn", options=None, settings=s)
    with pytest.raises(AsrError):
        await registry.recognize(b"", sample_rate_hz=16000, dialect="klingon", options=None, settings=s)


async def test_an_utterance_is_told_the_load_other_utterances_and_other_calls(fakes):
    s, _, _ = fakes
    seen: list[tuple[str, int, int]] = []  # (model, other utterances in flight, other calls open)

    class _Options(FakeRecognizer):
        def transcribe(self, pcm16, options=None):
            seen.append((self.model_id, options.others, options.other_calls))
            return super().transcribe(pcm16, options)

    for model_id in ("fake-a", "fake-b"):
        rec = _Options(model_id=model_id, dialect="cmn", text="好", confidence=0.9, decode_delay_s=0.1)
        registry.register_model(model_id, lambda _s, rec=rec: rec)
    s = dataclasses.replace(s, asr=dataclasses.replace(s.asr, default_model_cmn="fake-a",
                                                       auto_dialect_models=("fake-a", "fake-b")))
    pcm = b"\x01\x00" * 1600

    async def say(*, dialect="cmn", call_id=None, options=None):
        await registry.recognize(pcm, sample_rate_hz=16000, dialect=dialect, options=options, settings=s,
                                 call_id=call_id)

    try:
        await say()
        assert seen == [("fake-a", 0, 0)]
        seen.clear()
        await asyncio.gather(say(), say(), say())
        assert sorted(n for _, n, _ in seen) == [0, 1, 2]  # three callers at once: 0, 1 and 2 others in flight
        seen.clear()
        # an unknown caller's candidates are one utterance: told the same (whisper's views share one encoding)
        await say(dialect=None, options=RecognizerOptions(phrases=("煤气",)))
        assert sorted(seen) == [("fake-a", 0, 0), ("fake-b", 0, 0)]
        assert registry._IN_FLIGHT[0] == 0 and registry.decodes_running() == 0
        seen.clear()
        # a words check (end of turn) in flight does not make the next utterance's decode "shared"
        await asyncio.gather(say(options=RecognizerOptions(words_check=True)), say())
        assert [n for _, n, _ in seen] == [0, 0]
        seen.clear()
        registry.call_started("call-1")
        registry.call_started("call-2")
        try:
            await say(call_id="call-1")  # one other call open
            await say()  # not a call (evaluation): both are others
        finally:
            registry.call_ended("call-1")
            registry.call_ended("call-2")
        await say(call_id="call-1")
        assert [c for _, _, c in seen] == [1, 2, 0]
    finally:
        registry._FACTORIES.pop("fake-a", None)
        registry._FACTORIES.pop("fake-b", None)
