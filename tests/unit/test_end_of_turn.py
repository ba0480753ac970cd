"""End of turn by meaning (issue #19): the pure policy, and the processor behind the VAD with a stand-in judge.

The real Smart Turn model runs in tests/e2e/test_turn_taking.py; here the judge is a function the test picks.
"""

import asyncio

import pytest

from assistant.audio.end_of_turn import EndOfTurnPolicy
from assistant.errors import SmartTurnError
from assistant.session import CallSession
from assistant.settings import AudioSettings
from tests.unit.test_audio_vad import RATE, silence, voiced

# Smart Turn judging every answer: decision after 0.25 s, unfinished waits 1.5 s, closed 0.6 s, fallback 0.8 s
AUDIO = AudioSettings(turn_judge_open_prompts=True)  # Smart Turn judges open answers (words wait then unused)
DEFAULT = AudioSettings()  # by measurement, only answers to closed prompts are judged


# --- the policy (pure) ---

def test_a_finished_turn_ends_at_the_decision_silence():
    policy = EndOfTurnPolicy.from_settings(AUDIO)
    assert policy.turn_over(silence_s=0.25, probability=0.9)
    assert not policy.turn_over(silence_s=0.25, probability=None)  # no verdict yet


def test_an_unfinished_turn_waits_for_the_long_silence():
    policy = EndOfTurnPolicy.from_settings(AUDIO)
    assert not policy.turn_over(silence_s=1.2, probability=0.2)
    assert policy.turn_over(silence_s=1.5, probability=0.2)


def test_a_slow_speaker_waits_longer():
    policy = EndOfTurnPolicy.from_settings(AUDIO, max_silence_s=2.5)
    assert not policy.turn_over(silence_s=2.0, probability=0.2)
    assert policy.turn_over(silence_s=2.5, probability=0.2)


def test_a_closed_prompt_ends_sooner():
    policy = EndOfTurnPolicy.from_settings(AUDIO)
    assert policy.turn_over(silence_s=0.25, probability=0.35, closed=True)
    assert not policy.turn_over(silence_s=0.25, probability=0.35)
    assert policy.turn_over(silence_s=0.6, probability=0.1, closed=True)
    assert not policy.turn_over(silence_s=0.6, probability=0.1)


def test_a_failed_model_falls_back_to_the_fixed_silence():
    policy = EndOfTurnPolicy.from_settings(AUDIO)
    assert not policy.turn_over(silence_s=0.7, probability=None, failed=True)
    assert policy.turn_over(silence_s=0.8, probability=None, failed=True)


def test_by_default_an_open_answer_ends_after_the_fixed_silence_whatever_the_model_says():
    policy = EndOfTurnPolicy.from_settings(DEFAULT)
    assert not policy.judges(closed=False) and policy.judges(closed=True)
    assert not policy.turn_over(silence_s=0.25, probability=0.99)
    assert policy.turn_over(silence_s=0.8, probability=None)
    assert policy.turn_over(silence_s=0.3, probability=0.35, closed=True)  # closed prompts: judged as before


def test_by_default_a_slow_speakers_open_answer_waits_their_own_silence():
    policy = EndOfTurnPolicy.from_settings(DEFAULT, max_silence_s=2.5)
    assert not policy.turn_over(silence_s=2.0, probability=None)
    assert policy.turn_over(silence_s=2.5, probability=None)


# text-aware open answers (session 9): Smart Turn AND the early recognition's text
TEXT = AudioSettings(turn_open_text_aware=True)


def test_text_aware_an_open_answer_ends_at_once_when_the_model_and_the_words_say_finished():
    policy = EndOfTurnPolicy.from_settings(TEXT)
    assert policy.judges(closed=False)
    assert policy.turn_over(silence_s=0.3, probability=0.9, text="我想订两罐煤气")
    assert not policy.turn_over(silence_s=0.3, probability=0.9, text=None)  # the words not in yet
    assert not policy.turn_over(silence_s=0.3, probability=None, text="我想订两罐煤气")  # no verdict yet


def test_text_aware_unfinished_words_wait_the_long_silence_whatever_the_model_says():
    policy = EndOfTurnPolicy.from_settings(TEXT)
    for text in ("我想订两罐煤气然后", "我要那个", "我想", "嗯", ""):
        assert not policy.turn_over(silence_s=1.9, probability=0.99, text=text), text
        assert policy.turn_over(silence_s=TEXT.turn_unfinished_words_silence_s, probability=0.99, text=text), text
    assert not policy.turn_over(silence_s=1.2, probability=None, failed=True, text="然后")  # the model failed


def test_text_aware_a_turn_the_model_judges_unfinished_waits_the_long_silence():
    policy = EndOfTurnPolicy.from_settings(TEXT)
    assert not policy.turn_over(silence_s=1.2, probability=0.2, text="我想订两罐煤气")
    assert not policy.turn_over(silence_s=1.2, probability=0.2, text=None)
    assert policy.turn_over(silence_s=1.5, probability=0.2, text=None)


def test_text_aware_without_the_words_or_the_model_the_fixed_silence_decides():
    policy = EndOfTurnPolicy.from_settings(TEXT)
    assert not policy.turn_over(silence_s=0.7, probability=0.9, text=None)
    assert policy.turn_over(silence_s=0.8, probability=0.9, text=None)  # no early text in time: as before
    assert policy.turn_over(silence_s=0.8, probability=None, text=None)
    assert not policy.turn_over(silence_s=0.7, probability=None, failed=True, text="我想订两罐煤气")
    assert policy.turn_over(silence_s=0.8, probability=None, failed=True, text="我想订两罐煤气")


def test_text_aware_never_shortens_a_slow_speakers_own_wait():
    policy = EndOfTurnPolicy.from_settings(TEXT, max_silence_s=2.5)
    assert not policy.turn_over(silence_s=2.0, probability=0.99, text="我想订两罐煤气")
    assert policy.turn_over(silence_s=2.5, probability=0.99, text="我想订两罐煤气")
    assert not policy.turn_over(silence_s=2.0, probability=0.99, text="然后")


def test_text_aware_leaves_closed_prompts_as_they_were():
    policy, before = EndOfTurnPolicy.from_settings(TEXT), EndOfTurnPolicy.from_settings(DEFAULT)
    for p, silence_s, text in ((0.35, 0.3, "对"), (0.1, 0.6, "然后"), (0.1, 0.5, "对")):
        assert policy.turn_over(silence_s=silence_s, probability=p, closed=True, text=text) == \
            before.turn_over(silence_s=silence_s, probability=p, closed=True)


# --- the processor behind the real VAD ---

def _recogniser(text: str):
    """Stands where the recogniser is: at each pause it sends ``text`` back up, as early recognition does."""
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

    from assistant.audio.vad import EarlyTranscriptFrame, SpeechPausedFrame

    class EarlyText(FrameProcessor):
        async def process_frame(self, frame, direction):
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)
            if isinstance(frame, SpeechPausedFrame):
                await self.push_frame(EarlyTranscriptFrame(text=text), FrameDirection.UPSTREAM)

    return EarlyText()


async def _events(pcm: bytes, judge, *, session: CallSession | None = None, audio: AudioSettings = AUDIO,
                  done_at_s: float | None = None, early_text: str | None = None) -> tuple[list[str], list[int]]:
    """``done_at_s``: a SpeakerDoneFrame (press-to-talk released) after that much audio; ``early_text``: what
    a stand-in recogniser after the stages sends back up at each pause."""
    from pipecat.frames.frames import (
        InputAudioRawFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.tests.utils import SleepFrame, run_test

    from assistant.audio.vad import SpeakerDoneFrame, SpeechPausedFrame, SpeechResumedFrame
    from assistant.pipeline import turn_taking_stages

    session = session or CallSession(channel="simulate")
    stages = turn_taking_stages(session=session, audio=audio, judge=judge)
    if early_text is not None:
        stages.append(_recogniser(early_text))
    step = RATE * 20 // 1000 * 2
    frames = []
    for i in range(0, len(pcm), step):
        if done_at_s is not None and i == int(done_at_s * RATE) * 2 // step * step:
            frames.append(SpeakerDoneFrame())
        frames += [InputAudioRawFrame(audio=pcm[i : i + step], sample_rate=RATE, num_channels=1), SleepFrame(sleep=0.002)]
    down, _ = await run_test(Pipeline(stages), frames_to_send=frames)
    kinds = (VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame, SpeechPausedFrame, SpeechResumedFrame)
    names, stop_at_frame, audio_frames = [], [], 0
    for f in down:
        if isinstance(f, InputAudioRawFrame):
            audio_frames += 1
        elif isinstance(f, kinds):
            names.append(type(f).__name__.replace("Frame", "").replace("VADUser", ""))
            if isinstance(f, VADUserStoppedSpeakingFrame):
                stop_at_frame.append(audio_frames)
    return names, stop_at_frame


def _judge(probability: float, calls: list | None = None):
    async def judge(pcm: bytes, *, sample_rate_hz: int) -> float:
        await asyncio.sleep(0)
        if calls is not None:
            calls.append((len(pcm), sample_rate_hz))
        return probability
    return judge


async def test_finished_speech_ends_the_turn_after_the_short_silence():
    calls: list = []
    names, stops = await _events(voiced(1.0) + silence(1.5), _judge(0.9, calls))
    assert names == ["StartedSpeaking", "SpeechPaused", "StoppedSpeaking"]
    assert 50 + 12 <= stops[0] <= 50 + 20  # 1.0 s of speech, then ~0.25 s (12.5 frames), not 0.8 s
    assert calls and calls[0][1] == RATE and calls[0][0] >= 2 * RATE  # the turn's audio went to the judge


async def test_a_mid_sentence_pause_judged_unfinished_keeps_one_turn():
    names, _ = await _events(voiced(1.0) + silence(1.1) + voiced(1.0) + silence(2.0), _judge(0.1))
    assert names == ["StartedSpeaking", "SpeechPaused", "SpeechResumed", "SpeechPaused", "StoppedSpeaking"]


async def test_an_unfinished_turn_still_ends_after_the_long_silence():
    names, stops = await _events(voiced(1.0) + silence(2.5), _judge(0.1))
    assert names == ["StartedSpeaking", "SpeechPaused", "StoppedSpeaking"]
    assert 50 + 75 <= stops[0] <= 50 + 85  # 1.5 s of silence (+ the VAD's 30 ms frames)


async def test_a_yes_no_answer_ends_sooner():
    session = CallSession(channel="simulate", expect="yes_no")
    _, stops = await _events(voiced(0.6) + silence(1.5), _judge(0.1), session=session)
    assert 30 + 30 <= stops[0] <= 30 + 36  # the closed prompt's 0.6 s


async def test_a_slow_speaker_is_not_cut_at_the_usual_wait():
    session = CallSession(channel="simulate", end_of_turn_max_silence_s=2.5)
    names, _ = await _events(voiced(1.0) + silence(1.8) + voiced(1.0) + silence(3.0), _judge(0.1), session=session)
    assert names.count("StoppedSpeaking") == 1


async def test_a_failing_model_ends_the_turn_by_the_fixed_silence():
    async def broken(pcm: bytes, *, sample_rate_hz: int) -> float:
        raise SmartTurnError("model gone")

    names, stops = await _events(voiced(1.0) + silence(1.5), broken)
    assert names == ["StartedSpeaking", "SpeechPaused", "StoppedSpeaking"]
    assert 50 + 40 <= stops[0] <= 50 + 46  # 0.8 s


async def test_speech_after_a_finished_turn_starts_a_new_turn_for_barge_in():
    names, _ = await _events(voiced(1.0) + silence(0.6) + voiced(1.0) + silence(1.0), _judge(0.9))
    assert names == ["StartedSpeaking", "SpeechPaused", "StoppedSpeaking"] * 2


@pytest.mark.parametrize("rate", [8000, 16000])
def test_the_model_judges_phone_and_screen_audio(rate):
    """The real model on both rates, synchronously (the e2e test runs it through the pipeline)."""
    from assistant.audio.convert import resample_pcm16
    from assistant.audio.smart_turn import completion_probability_sync

    pcm = resample_pcm16(voiced(1.0) + silence(0.3), from_hz=RATE, to_hz=rate)
    p = completion_probability_sync(pcm, sample_rate_hz=rate)
    assert 0.0 <= p <= 1.0


def test_feeders_send_enough_silence_for_the_longest_wait():
    import dataclasses

    from assistant.audio.end_of_turn import longest_end_of_turn_silence_s

    assert longest_end_of_turn_silence_s(AUDIO) == AUDIO.turn_incomplete_max_silence_s
    assert longest_end_of_turn_silence_s(DEFAULT, max_silence_s=4.0) == 4.0  # a slow speaker's own wait
    fixed = dataclasses.replace(AUDIO, turn_decision_silence_s=0.0)
    assert longest_end_of_turn_silence_s(fixed) == AUDIO.vad_end_of_turn_silence_s


async def test_no_pause_frames_when_early_recognition_is_off():
    import dataclasses

    audio = dataclasses.replace(AUDIO, early_asr_after_silence_s=0.0)
    pcm = voiced(1.0) + silence(1.1) + voiced(1.0) + silence(2.0)
    names, _ = await _events(pcm, _judge(0.1), audio=audio)
    assert names == ["StartedSpeaking", "StoppedSpeaking"]


async def test_by_default_a_clause_pause_in_an_open_answer_is_not_judged_and_does_not_cut():
    """The CI failure of session 7: 要十五公斤的大罐，(pause) 一罐，今天下午送 was cut at the comma because Smart Turn
    judged the first clause finished. An open answer is not judged now: a 0.5 s pause keeps one turn."""
    calls: list = []
    pcm = voiced(1.0) + silence(0.5) + voiced(1.0) + silence(1.5)
    names, stops = await _events(pcm, _judge(0.95, calls), audio=DEFAULT)
    assert names.count("StoppedSpeaking") == 1 and not calls
    assert 125 + 40 <= stops[0] <= 125 + 46  # after the second clause's 0.8 s of silence


async def test_by_default_a_yes_no_answer_is_still_judged():
    calls: list = []
    session = CallSession(channel="simulate", expect="yes_no")
    _, stops = await _events(voiced(0.6) + silence(1.5), _judge(0.9, calls), session=session, audio=DEFAULT)
    assert calls and 30 + 12 <= stops[0] <= 30 + 20


async def test_press_to_talk_released_ends_the_turn_at_its_first_pause():
    """The screen's release says the elder is done: no 0.8 s wait (nor Smart Turn's) after it."""
    calls: list = []
    names, stops = await _events(voiced(1.0) + silence(1.5), _judge(0.1, calls), audio=DEFAULT, done_at_s=1.0)
    assert names.count("StoppedSpeaking") == 1 and not calls
    assert 50 + 12 <= stops[0] <= 50 + 20  # ~0.25 s after the speech, not 0.8 s


async def test_a_release_with_nothing_said_does_not_cut_a_later_turn():
    pcm = silence(3.0) + voiced(1.0) + silence(0.5) + voiced(1.0) + silence(1.5)
    names, _ = await _events(pcm, _judge(0.9), audio=DEFAULT, done_at_s=0.2)
    assert names.count("StoppedSpeaking") == 1  # the later hands-free turn keeps its 0.5 s pause


async def test_text_aware_finished_words_and_verdict_end_the_turn_after_the_short_silence():
    names, stops = await _events(voiced(1.0) + silence(1.5), _judge(0.9), audio=TEXT, early_text="我想订两罐煤气")
    assert names == ["StartedSpeaking", "SpeechPaused", "StoppedSpeaking"]
    assert 50 + 12 <= stops[0] <= 50 + 20  # ~0.25 s, not the fixed 0.8 s


async def test_text_aware_a_pause_after_unfinished_words_keeps_one_turn_though_the_model_says_finished():
    """Smart Turn judges phrase boundaries of fluent Mandarin finished (p 0.9+): 我想订 (1.1 s) 两罐煤气 stays whole."""
    pcm = voiced(1.0) + silence(1.1) + voiced(1.0) + silence(2.0)
    names, _ = await _events(pcm, _judge(0.95), audio=TEXT, early_text="我想订")
    assert names.count("StoppedSpeaking") == 1 and "SpeechResumed" in names
    names, _ = await _events(pcm, _judge(0.95), audio=AUDIO)  # the model alone cut it
    assert names.count("StoppedSpeaking") == 2


async def test_text_aware_without_early_text_ends_after_the_fixed_silence():
    names, stops = await _events(voiced(1.0) + silence(1.5), _judge(0.9), audio=TEXT)
    assert names == ["StartedSpeaking", "SpeechPaused", "StoppedSpeaking"]
    assert 50 + 40 <= stops[0] <= 50 + 46  # 0.8 s: the words never came


# words wait (session 10): unfinished-looking words only lengthen the fixed silence of an open answer
WORDS = AudioSettings(turn_open_words_wait=True)


def test_words_wait_never_ends_an_open_answer_before_the_fixed_silence():
    policy = EndOfTurnPolicy.from_settings(WORDS)
    assert not policy.judges(closed=False)  # Smart Turn is not asked about open answers
    for probability in (None, 0.99):
        assert not policy.turn_over(silence_s=0.7, probability=probability, text="我想订两罐煤气")
    assert policy.turn_over(silence_s=0.8, probability=None, text="我想订两罐煤气")
    assert policy.turn_over(silence_s=0.8, probability=None, text=None)  # no words in time: as before


def test_words_wait_unfinished_words_wait_the_unfinished_words_silence():
    policy = EndOfTurnPolicy.from_settings(WORDS)
    for text in ("我想问", "我想订两罐煤气，", "然后", "那个", "我要两罐"):
        assert not policy.turn_over(silence_s=1.9, probability=None, text=text), text
        assert policy.turn_over(silence_s=2.0, probability=None, text=text), text


def test_words_wait_keeps_a_slow_speakers_longer_wait_and_closed_prompts():
    policy = EndOfTurnPolicy.from_settings(WORDS, max_silence_s=2.5)
    assert not policy.turn_over(silence_s=2.2, probability=None, text="我想问")  # never shortened
    assert policy.turn_over(silence_s=2.5, probability=None, text="我想问")
    closed = EndOfTurnPolicy.from_settings(WORDS)
    assert closed.turn_over(silence_s=0.3, probability=0.35, closed=True, text="我想问")  # judged as before


def test_words_wait_is_in_the_longest_wait_feeders_send():
    from assistant.audio.end_of_turn import longest_end_of_turn_silence_s

    assert longest_end_of_turn_silence_s(WORDS) == WORDS.turn_unfinished_words_silence_s
    no_words = AudioSettings(turn_open_words_wait=False)
    assert longest_end_of_turn_silence_s(no_words) == no_words.turn_incomplete_max_silence_s


async def test_by_default_a_pause_shorter_than_the_fixed_silence_does_not_end_an_open_answer():
    """The silence clock restarts when speech is heard again, as the VAD's own stop does: before, it ran through
    the resumed speech until the VAD called it a start, so a 0.75 s pause cut the sentence in two (real speech,
    whose onset the VAD hears on and off: pauses from 0.64 s), while the fixed 0.8 s VAD kept it whole."""
    for audio in (DEFAULT, AudioSettings(turn_decision_silence_s=0.0)):  # the default and the fixed silence
        names, _ = await _events(voiced(1.0) + silence(0.75) + voiced(1.0) + silence(1.5), _judge(0.9), audio=audio)
        assert names.count("StoppedSpeaking") == 1, (audio.turn_decision_silence_s, names)
    names, _ = await _events(voiced(1.0) + silence(0.9) + voiced(1.0) + silence(1.5), _judge(0.9), audio=DEFAULT)
    assert names.count("StoppedSpeaking") == 2  # a pause longer than the fixed silence still ends the turn


async def test_a_blip_of_noise_in_the_pause_restarts_the_silence_like_the_vad():
    names, stops = await _events(voiced(1.0) + silence(0.5) + voiced(0.06) + silence(1.5), _judge(0.9), audio=DEFAULT)
    assert names.count("StoppedSpeaking") == 1
    assert stops[0] >= 50 + 25 + 3 + 40  # 0.8 s of silence after the blip, not after the first pause
