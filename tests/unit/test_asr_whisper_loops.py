"""whisper decoding loops: measured on word characters only, retried with a repetition penalty, and the retry
kept only when it recovers content (fake model: no weights needed)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np

from assistant.asr.base import RecognizerOptions
from assistant.asr.whisper_engine import WhisperDecoding, WhisperRecognizer, _loop_share


def test_loop_share_ignores_punctuation_runs():
    assert _loop_share("六个星期嘅课程。。。。。。。") == 0.0
    assert _loop_share("说一下说一下") == 0.0
    assert _loop_share("") == 0.0
    assert 0.5 < _loop_share("首先说一句刚刚听听听听听听听听听听听听") < 0.7


class _FakeModel:
    """Answers ``texts[repetition_penalty]`` and records the penalties asked for."""

    def __init__(self, texts: dict[float, str]):
        self.texts = texts
        self.penalties: list[float] = []

    def transcribe(self, audio, *, repetition_penalty, **_):
        self.penalties.append(repetition_penalty)
        seg = SimpleNamespace(text=self.texts[repetition_penalty], avg_logprob=-0.3, no_speech_prob=0.1,
                              start=0.0, end=len(audio) / 16000)
        return [seg], None


def _decode(texts: dict[float, str], penalty: float = 1.3) -> tuple[str, list[float]]:
    model = _FakeModel(texts)
    rec = WhisperRecognizer(model_id="fake", model_dir="", dialect="cmn", threads=0, model=model,
                            lock=threading.Lock(), decoding=WhisperDecoding(loop_retry_repetition_penalty=penalty))
    pcm = (np.sin(np.arange(32000) / 3) * 6000).astype("<i2").tobytes()
    return rec.decode(pcm, RecognizerOptions()).text, model.penalties


def test_a_looping_hypothesis_is_decoded_again_and_the_fuller_retry_kept():
    text, penalties = _decode({1.0: "首先说一句刚刚听听听听听听听听", 1.3: "首先说一下刚才这个经理说完的"})
    assert penalties == [1.0, 1.3]
    assert text == "首先说一下刚才这个经理说完的"


def test_a_retry_that_says_less_is_not_kept():
    text, _ = _decode({1.0: "我要订煤气订煤气订煤气订煤气订煤气", 1.3: "我要"})
    assert text == "我要订煤气"  # the loop collapsed, the shorter retry dropped


def test_no_loop_no_retry_and_penalty_one_disables_it():
    assert _decode({1.0: "我要订煤气。。。。。"}) == ("我要订煤气", [1.0])
    assert _decode({1.0: "听听听听听听"}, penalty=1.0)[1] == [1.0]
