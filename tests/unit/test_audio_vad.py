"""The VAD segmenter on synthetic chunks: silence, a voiced burst, and pauses around the end-of-turn bound."""

import numpy as np
import pytest

from assistant.audio.vad import WebRtcVadAnalyzer, segment_speech
from assistant.settings import AudioSettings

RATE = 16000


def voiced(seconds: float, f0: float = 140.0) -> bytes:
    """A harmonic-rich, amplitude-modulated signal webrtcvad treats as speech (a synthetic vowel)."""
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 25))
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (x / np.abs(x).max() * 12000).astype("<i2").tobytes()


def silence(seconds: float) -> bytes:
    return b"\x00\x00" * int(seconds * RATE)


def test_silence_gives_no_segment():
    assert segment_speech(silence(5.0), sample_rate_hz=RATE) == []


def test_one_burst_gives_one_segment_ending_after_the_silence_bound():
    audio = AudioSettings(vad_end_of_turn_silence_s=0.8)
    segs = segment_speech(silence(0.5) + voiced(1.5) + silence(2.0), sample_rate_hz=RATE, audio=audio)
    assert len(segs) == 1
    assert 0.2 <= segs[0].start_s <= 0.8
    assert 2.0 + 0.7 <= segs[0].end_s <= 2.0 + 1.0


def test_a_pause_shorter_than_end_of_turn_keeps_one_turn():
    audio = AudioSettings(vad_end_of_turn_silence_s=0.8)
    pcm = voiced(1.0) + silence(0.5) + voiced(1.0) + silence(1.5)
    assert len(segment_speech(pcm, sample_rate_hz=RATE, audio=audio)) == 1


def test_a_long_pause_splits_turns():
    audio = AudioSettings(vad_end_of_turn_silence_s=0.8)
    pcm = voiced(1.0) + silence(1.5) + voiced(1.0) + silence(1.5)
    assert len(segment_speech(pcm, sample_rate_hz=RATE, audio=audio)) == 2


def test_phone_rate_works_and_unsupported_rate_is_refused():
    assert segment_speech(silence(1.0)[: 8000 * 2], sample_rate_hz=8000) == []
    analyzer = WebRtcVadAnalyzer()
    with pytest.raises(ValueError, match="webrtcvad supports"):
        analyzer.set_sample_rate(22050)


async def _vad_frames(pcm: bytes, *, pause_s: float, end_of_turn_s: float = 0.8) -> list[str]:
    from pipecat.frames.frames import (
        InputAudioRawFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.tests.utils import run_test

    from assistant.audio.vad import PauseAwareVADProcessor, SpeechPausedFrame, SpeechResumedFrame, vad_params

    audio = AudioSettings(vad_end_of_turn_silence_s=end_of_turn_s)
    vad = PauseAwareVADProcessor(
        vad_analyzer=WebRtcVadAnalyzer(params=vad_params(audio), sample_rate=RATE), pause_s=pause_s, audio_idle_timeout=0
    )
    step = RATE * 20 // 1000 * 2
    frames = [InputAudioRawFrame(audio=pcm[i : i + step], sample_rate=RATE, num_channels=1) for i in range(0, len(pcm), step)]
    down, _ = await run_test(vad, frames_to_send=frames)
    kinds = (VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame, SpeechPausedFrame, SpeechResumedFrame)
    return [type(f).__name__ for f in down if isinstance(f, kinds)]


async def test_a_mid_sentence_pause_is_announced_then_withdrawn_and_the_final_pause_ends_the_turn():
    pcm = voiced(1.0) + silence(0.45) + voiced(1.0) + silence(1.5)
    assert await _vad_frames(pcm, pause_s=0.25) == [
        "VADUserStartedSpeakingFrame", "SpeechPausedFrame", "SpeechResumedFrame",
        "SpeechPausedFrame", "VADUserStoppedSpeakingFrame",
    ]


async def test_no_pause_frames_when_disabled_or_the_pause_is_too_short():
    pcm = voiced(1.0) + silence(0.15) + voiced(1.0) + silence(1.5)
    assert await _vad_frames(pcm, pause_s=0.25) == [
        "VADUserStartedSpeakingFrame", "SpeechPausedFrame", "VADUserStoppedSpeakingFrame",
    ]
    assert await _vad_frames(pcm, pause_s=0.0) == ["VADUserStartedSpeakingFrame", "VADUserStoppedSpeakingFrame"]
