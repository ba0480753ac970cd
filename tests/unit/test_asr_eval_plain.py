"""``assistant eval asr --plain``: the anchor decodes with bare faster-whisper defaults (fake model)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from assistant.asr.eval_cmd import PlainWhisper
from assistant.asr.whisper_engine import encoder_margin, set_encoder_margin
from assistant.errors import AsrError


class _FakeModel:
    def __init__(self):
        self.kwargs = {}

    def transcribe(self, audio, **kwargs):
        self.kwargs = kwargs
        return iter([SimpleNamespace(text="廣州市，房地產。")]), None


def test_plain_uses_only_language_and_beam_and_normalises_the_text():
    model = _FakeModel()
    rec = SimpleNamespace(engine="faster-whisper", model_id="whisper-base", _model=model, _lock=threading.Lock())
    plain = PlainWhisper(rec, settings=None)
    set_encoder_margin(500)  # left over from a busy decode in this thread
    pcm = (np.sin(np.arange(8000) / 3) * 5000).astype("<i2").tobytes()
    result = plain.recognize(pcm, sample_rate_hz=8000)
    assert model.kwargs == {"language": "zh", "beam_size": 5}
    assert encoder_margin() is None  # the whole 30 s window
    assert result.text == "广州市房地产" and result.raw_text == "廣州市，房地產。"
    assert result.audio_s == pytest.approx(1.0)


def test_plain_refuses_other_engines():
    with pytest.raises(AsrError):
        PlainWhisper(SimpleNamespace(engine="vosk"), settings=None)
