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


class _TwoSegments(_FakeModel):
    """A real 30 s Cantonese clip decoded like this: a long segment, then subtitle credits on the last 0.5 s."""

    def transcribe(self, audio, *, repetition_penalty, **_):
        self.penalties.append(repetition_penalty)
        mk = lambda text, start, end: SimpleNamespace(  # noqa: E731
            text=text, avg_logprob=-0.3, no_speech_prob=0.1, start=start, end=end)
        return [mk(t, i, i + 1.0) for i, t in enumerate(self.texts[repetition_penalty].split("|"))], None


def test_a_hallucinated_segment_is_dropped_not_the_whole_utterance():
    rec = WhisperRecognizer(model_id="fake", model_dir="", dialect="yue", threads=0, lock=threading.Lock(),
                            model=_TwoSegments({1.0: "六个星期嘅课程包括六堂课|字幕製作作曲"}))
    pcm = (np.sin(np.arange(32000) / 3) * 6000).astype("<i2").tobytes()
    result = rec.decode(pcm, RecognizerOptions())
    assert result.text.endswith("星期嘅课程包括六堂课")
    assert "字幕" not in result.text and len(result.tokens) == 1
    only_credits = WhisperRecognizer(model_id="fake", model_dir="", dialect="yue", threads=0, lock=threading.Lock(),
                                     model=_TwoSegments({1.0: "字幕由Amara.org社区提供"}))
    assert only_credits.decode(pcm, RecognizerOptions()).text == ""


def test_under_load_whisper_encodes_only_the_utterance_plus_a_margin():
    from assistant.asr.whisper_engine import FRAMES_PER_S, encoder_margin

    seen = []

    class _Model(_FakeModel):
        def transcribe(self, audio, *, repetition_penalty, **kw):
            seen.append(encoder_margin())
            return super().transcribe(audio, repetition_penalty=repetition_penalty, **kw)

    rec = WhisperRecognizer(model_id="fake", model_dir="", dialect="cmn", threads=0, lock=threading.Lock(),
                            model=_Model({1.0: "我要订煤气"}),
                            decoding=WhisperDecoding(encoder_margin_s=30.0, shared_encoder_margin_s=15.0,
                                                     busy_encoder_margin_s=5.0))
    pcm = (np.sin(np.arange(32000) / 3) * 6000).astype("<i2").tobytes()
    loads = [
        RecognizerOptions(),  # alone on the machine: the whole window
        RecognizerOptions(other_calls=3),  # other calls open: shared
        RecognizerOptions(others=1),  # another utterance being recognised: shared
        RecognizerOptions(others=2, other_calls=7),  # the machine is behind: busy
        RecognizerOptions(words_check=True),  # a words check for the end of turn: the fastest
    ]
    for options in loads:
        rec.decode(pcm, options)
    assert seen == [30 * FRAMES_PER_S, 15 * FRAMES_PER_S, 15 * FRAMES_PER_S, 5 * FRAMES_PER_S, 5 * FRAMES_PER_S]


def test_a_words_check_is_decoded_greedily_without_the_vad_pass_or_the_loop_retry():
    seen: list[dict] = []

    class _Model(_FakeModel):
        def transcribe(self, audio, *, repetition_penalty, **kw):
            seen.append({"beam_size": kw["beam_size"], "vad_filter": kw["vad_filter"]})
            return super().transcribe(audio, repetition_penalty=repetition_penalty, **kw)

    model = _Model({1.0: "我想问听听听听听听", 1.3: "我想问"})
    rec = WhisperRecognizer(model_id="fake", model_dir="", dialect="cmn", threads=0, lock=threading.Lock(),
                            model=model, decoding=WhisperDecoding(beam_size=5, vad_filter=True))
    pcm = (np.sin(np.arange(32000) / 3) * 6000).astype("<i2").tobytes()
    rec.decode(pcm, RecognizerOptions(words_check=True))
    assert seen == [{"beam_size": 1, "vad_filter": False}] and model.penalties == [1.0]  # no retry
    rec.decode(pcm, RecognizerOptions())  # a transcript: as configured, the loop retried
    assert seen[1:] == [{"beam_size": 5, "vad_filter": True}] * 2 and model.penalties[1:] == [1.0, 1.3]
