"""The real whisper-base model on real clips from ../shared, plus the inputs a phone line really sends:
silence, line noise only, clipped (overdriven) speech, a 2 s turn and a 30 s monologue."""

from __future__ import annotations

import json

import numpy as np
import pytest

from assistant.asr import registry
from assistant.asr.base import RecognizerOptions
from assistant.audio.convert import read_audio, write_wav
from assistant.audio.phone_channel import phone_channel
from assistant.settings import load_settings
from assistant.text.normalize import cer
from tests.conftest import shared_path
from tests.e2e.conftest import need_whisper, run_cli

pytestmark = pytest.mark.e2e
RATE = 16000
CCTV = "各位观众晚上好"


@pytest.fixture(scope="module")
def asr_settings():
    need_whisper()
    return load_settings()  # the real models folder


def clip(name: str, folder: str = "mandarin_speech"):
    return read_audio(shared_path("data", folder, "wav", name), sample_rate_hz=RATE)


async def test_mandarin_clip_at_16k_and_through_the_phone_line(asr_settings):
    audio = clip("speechcolab_MINI_ZH_CCTV_1.wav")
    wide = await registry.recognize(audio.pcm, sample_rate_hz=RATE, dialect="cmn", options=None, settings=asr_settings)
    assert cer(CCTV, wide.text) <= 0.3, wide.text
    assert wide.engine == "faster-whisper" and wide.dialect == "cmn" and 0.0 < wide.confidence <= 1.0
    line = phone_channel(audio, out_rate_hz=8000)  # what the gateway hands over before resampling
    narrow = await registry.recognize(line.pcm, sample_rate_hz=8000, dialect="cmn", options=None, settings=asr_settings)
    assert cer(CCTV, narrow.text) <= 0.3, narrow.text


async def test_closed_prompt_snaps_to_an_allowed_phrase(asr_settings):
    audio = clip("firered_aishell2_IT0011W0001.wav")  # 换一首歌
    grammar = ["换一首歌", "打电话", "订煤气", "不要"]
    r = await registry.recognize(
        audio.pcm, sample_rate_hz=RATE, dialect="cmn", options=RecognizerOptions(grammar=grammar), settings=asr_settings
    )
    assert r.text == "换一首歌"


async def test_silence_gives_empty_text(asr_settings):
    r = await registry.recognize(b"\x00\x00" * RATE * 2, sample_rate_hz=RATE, dialect="cmn", options=None,
                                 settings=asr_settings)
    assert r.text == "" and r.confidence == 0.0 and r.audio_s == pytest.approx(2.0)


async def test_line_noise_only_returns_cleanly_without_a_sentence(asr_settings):
    rng = np.random.default_rng(7)
    noise = (rng.normal(0, 600, RATE * 3)).astype("<i2").tobytes()  # hiss at about -35 dBFS
    from assistant.audio.convert import PcmAudio

    line = phone_channel(PcmAudio(pcm=noise, sample_rate_hz=RATE))
    r = await registry.recognize(line.pcm, sample_rate_hz=RATE, dialect="cmn", options=None, settings=asr_settings)
    assert len(r.text) <= 4, r.text  # no hallucinated subtitle credits
    assert r.confidence < 0.5


async def test_clipped_audio_still_recognised(asr_settings):
    audio = clip("speechcolab_MINI_ZH_CCTV_1.wav")
    x = np.frombuffer(audio.pcm, dtype="<i2").astype(np.int32) * 8
    clipped = np.clip(x, -32768, 32767).astype("<i2")
    assert np.mean(np.abs(clipped) == 32767) > 0.01  # really overdriven
    r = await registry.recognize(clipped.tobytes(), sample_rate_hz=RATE, dialect="cmn", options=None,
                                 settings=asr_settings)
    assert cer(CCTV, r.text) <= 0.5, r.text


async def test_two_second_turn(asr_settings):
    audio = clip("firered_aishell2_IT0011W0001.wav")  # 1.99 s
    pcm = audio.pcm + b"\x00\x00" * (2 * RATE - len(audio.pcm) // 2)
    r = await registry.recognize(pcm, sample_rate_hz=RATE, dialect="cmn", options=None, settings=asr_settings)
    assert r.audio_s == pytest.approx(2.0, abs=0.01)
    assert cer("换一首歌", r.text) <= 0.5, r.text


async def test_thirty_second_monologue_returns_whole(asr_settings):
    audio = clip("xg0054024_52710_82710.wav", "cantonese_speech")  # 30.6 s of Cantonese
    pcm = audio.pcm[: 30 * RATE * 2]
    r = await registry.recognize(pcm, sample_rate_hz=RATE, dialect="yue", options=None, settings=asr_settings)
    assert r.audio_s == pytest.approx(30.0, abs=0.01)
    assert len(r.text) >= 60, r.text  # the whole half minute, not just its first sentence
    assert r.dialect == "yue"


async def test_auto_dialect_on_a_mandarin_clip(asr_settings):
    audio = clip("mindaudio_aishell1_BAC009S0002W0123.wav")  # 也成为地方政府的眼中钉
    r = await registry.recognize(audio.pcm, sample_rate_hz=RATE, dialect=None, options=None, settings=asr_settings)
    assert r.dialect == "cmn"
    assert cer("也成为地方政府的眼中钉", r.text) <= 0.2, r.text


def test_eval_cli_prints_one_json_object(tmp_path):
    need_whisper()
    src = clip("speechcolab_MINI_ZH_CCTV_1.wav")
    write_wav(tmp_path / "wav" / "a.wav", src)
    (tmp_path / "transcripts.tsv").write_text(f"wav/a.wav\t{CCTV}\n", encoding="utf-8")
    proc = run_cli("eval", "asr", "--data", str(tmp_path), "--phone", "--json", "--no-report")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"n", "cer", "rtf", "engine", "model_id", "dialect", "phone", "per_file"} <= set(out)
    assert out["n"] == 1 and out["phone"] is True and out["model_id"] == "whisper-base"
    assert out["per_file"][0]["file"] == "wav/a.wav" and out["cer"] <= 0.3
