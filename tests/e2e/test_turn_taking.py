"""End of turn by meaning with the real Smart Turn model: real recordings played in real time through the
pipeline's turn-taking stages (webrtcvad → EndOfTurnProcessor), at 16 kHz (screen) and 8 kHz (phone line)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import shared_path
from tests.e2e.conftest import run_cli

pytestmark = pytest.mark.e2e

# read news speech with a real 0.33 s pause after 1.95 s (longer than the 0.25 s decision silence) that Smart
# Turn judges unfinished (p≈0.01) when its verdict comes before the speech goes on
PAUSED_CLIP = "mindaudio_aishell1_BAC009S0002W0122.wav"
# a finished sentence Smart Turn judges complete (p≈0.99)
FINISHED_CLIP = "wenet_aishell_BAC009S0724W0121.wav"


def _clip(name: str, *, phone: bool):
    from assistant.bench.turn_taking import load_clips

    folder = shared_path("data", "mandarin_speech", "wav")
    clips = [c for c in load_clips(folder, phone=phone) if c.name == name]
    assert len(clips) == 1
    return clips[0]


@pytest.fixture
def judged(monkeypatch):
    """Records each call of the real model (pcm length, rate, probability)."""
    import assistant.audio.end_of_turn as end_of_turn
    from assistant.audio.smart_turn import completion_probability

    calls: list[tuple[int, int, float]] = []

    async def recording(pcm: bytes, *, sample_rate_hz: int) -> float:
        p = await completion_probability(pcm, sample_rate_hz=sample_rate_hz)
        calls.append((len(pcm), sample_rate_hz, p))
        return p

    monkeypatch.setattr(end_of_turn, "completion_probability", recording)
    return calls


def _early_texts(monkeypatch) -> list[str]:
    """The texts that reach the end-of-turn decision (``EndOfTurnProcessor._on_early_text``), in order."""
    import assistant.audio.end_of_turn as end_of_turn

    heard: list[str] = []
    original = end_of_turn.EndOfTurnProcessor._on_early_text

    async def recording(self, text: str) -> None:
        heard.append(text)
        await original(self, text)

    monkeypatch.setattr(end_of_turn.EndOfTurnProcessor, "_on_early_text", recording)
    return heard


@pytest.mark.parametrize("phone", [False, True], ids=["screen-16k", "phone-8k"])
async def test_a_finished_sentence_ends_sooner_than_an_unfinished_one_may_wait(judged, phone):
    from assistant.bench.turn_taking import play
    from assistant.settings import AudioSettings

    clip = _clip(FINISHED_CLIP, phone=phone)
    audio = AudioSettings(turn_judge_open_prompts=True)
    [row] = await play(clip, audio=audio)
    assert not row["premature_cut"]
    assert judged and judged[-1][1] == clip.audio.sample_rate_hz and judged[-1][2] >= 0.5
    end_s = row["utterance_s"][1]
    # judged finished: the turn ended well before an unfinished turn's wait (1.5 s) would have run out
    assert end_s < row["turn_ends_s"][-1] < end_s + audio.turn_incomplete_max_silence_s - 0.3
    assert row["wait_ms"] is not None and row["wait_ms"] < audio.turn_incomplete_max_silence_s * 1000 - 300


@pytest.mark.parametrize("phone", [False, True], ids=["screen-16k", "phone-8k"])
async def test_a_real_mid_sentence_pause_judged_unfinished_does_not_cut_the_speaker(judged, phone):
    from assistant.bench.turn_taking import play
    from assistant.settings import AudioSettings

    clip = _clip(PAUSED_CLIP, phone=phone)
    rows = await play(clip, audio=AudioSettings(turn_judge_open_prompts=True))
    assert len(rows) == 1 and not rows[0]["premature_cut"] and rows[0]["wait_ms"] is not None
    # the model judged the turn (the pause too, unless the speaker went on before its verdict: then it was dropped)
    assert judged and all(rate == clip.audio.sample_rate_hz for _, rate, _ in judged)


def test_the_bench_prints_smart_turn_and_the_fixed_silence_baseline():
    shared_path("data", "mandarin_speech", "wav")
    proc = run_cli("bench", "turn-taking", "--limit", "2", "--json", timeout_s=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    for summary in (result, result["fixed_silence_baseline"]):
        assert summary["n"] >= 2
        assert 0.0 <= summary["premature_cut_rate"] <= 1.0
        assert 0 < summary["wait_p50_ms"] <= summary["wait_p95_ms"]
    assert result["load_1m"] >= 0 and result["reply"].startswith("stand-in")
    assert result["smart_turn_judges"] == "closed"  # the clips answer an open prompt: not judged by default


async def test_the_text_aware_scheme_reads_the_real_early_recognition(monkeypatch):
    """Scheme A with the real recogniser (whisper-base, early recognition at the pause): the words reach the
    end-of-turn decision while the turn is held, and a finished sentence is not cut."""
    import asyncio
    import dataclasses

    import assistant.bench.turn_taking as bench
    from assistant.bench.turn_taking import play, scheme_audio, warm_up
    from assistant.settings import load_settings

    settings = load_settings()  # the provisioned whisper-base, as the bench uses it
    heard = _early_texts(monkeypatch)
    clip = _clip(FINISHED_CLIP, phone=False)
    await asyncio.to_thread(warm_up, settings, asr=clip.audio)
    audio = scheme_audio("text", settings.audio)
    # a loaded box may take seconds to recognise: the test is about the words arriving, so the turn may wait
    audio = dataclasses.replace(audio, vad_end_of_turn_silence_s=5.0, turn_incomplete_max_silence_s=5.0)
    monkeypatch.setattr(bench, "TAIL_SILENCE_S", 6.0)
    monkeypatch.setattr(bench, "UTTERANCE_GAP_S", 6.0)
    [row] = await play(clip, audio=audio, asr=settings)
    assert not row["premature_cut"] and row["wait_ms"] is not None
    assert heard and heard[0].strip(), heard  # whisper's text of the audio up to the pause
    assert row["transcripts"] and row["transcripts"][0]


# real speech with a real 1.41 s pause after 我想问 (the words ask for more), then the question goes on
ASKING_CLIP = "funasr_llamacpp_sample.wav"


def _with_pause_doubled(clip):
    """The clip with its longest pause inside the speech played twice (the pause's own audio: a room tone
    spliced in is not always silence to webrtcvad)."""
    import numpy as np

    from assistant.audio.convert import PcmAudio
    from assistant.bench.turn_taking import Clip, speech_frames, utterances_s

    pcm, rate = clip.audio.pcm, clip.audio.sample_rate_hz
    speech = np.flatnonzero(speech_frames(pcm, rate))
    longest = int(np.argmax(np.diff(speech)))
    start, end = (int((speech[i] + 1) * 0.03 * rate) * 2 for i in (longest, longest + 1))
    end -= int(0.03 * rate) * 2
    out = pcm[:end] + pcm[start:end] + pcm[end:]
    return Clip(name=clip.name, audio=PcmAudio(pcm=out, sample_rate_hz=rate), utterances_s=utterances_s(out, rate))


async def test_the_words_wait_keeps_a_real_pause_after_unfinished_words_in_one_turn(monkeypatch):
    """Words wait with the real recogniser: the quick words check of the speech before the pause (whisper-base,
    short encoder window) says 我想问 — unfinished — so the turn waits past a pause that the fixed silence cuts."""
    import asyncio
    import dataclasses

    import assistant.bench.turn_taking as bench
    from assistant.bench.turn_taking import play, scheme_audio, warm_up
    from assistant.settings import load_settings
    from assistant.text.turn_end import sounds_unfinished

    settings = load_settings()
    heard = _early_texts(monkeypatch)
    monkeypatch.setattr(bench, "UTTERANCE_GAP_S", 4.0)
    monkeypatch.setattr(bench, "TAIL_SILENCE_S", 6.0)
    clip = _with_pause_doubled(_clip(ASKING_CLIP, phone=False))  # 我想问 (2.8 s) 我在…
    assert len(clip.utterances_s) == 1
    await asyncio.to_thread(warm_up, settings, asr=clip.audio)
    # a fixed silence of 1.5 s (well inside the pause) leaves a loaded box 1.25 s for the words check
    fixed = dataclasses.replace(scheme_audio("fixed", settings.audio), vad_end_of_turn_silence_s=1.5)
    words = dataclasses.replace(scheme_audio("words", settings.audio), vad_end_of_turn_silence_s=1.5,
                                turn_unfinished_words_silence_s=5.0)
    [cut] = await play(clip, audio=fixed, asr=settings)
    assert cut["premature_cut"], cut  # the fixed silence alone ends the turn inside the pause
    heard.clear()
    [kept] = await play(clip, audio=words, asr=settings)
    assert heard and sounds_unfinished(heard[0]), heard  # 我想问: the words check came in time
    assert not kept["premature_cut"], kept
    assert kept["wait_ms"] is not None
