"""Early recognition's text goes back up to the end-of-turn decision (``EarlyTranscriptFrame``), only while its
pause is still the open one: not after the speaker went on, and not once the turn has ended."""

import asyncio

from assistant.asr.base import AsrResult

RATE = 16000


def _fake_recognize(monkeypatch, *, delay_s: float, raw_text: str = "我想订，", words_delay_s: float = 0.0,
                    options_seen: list | None = None) -> list[int]:
    import assistant.asr.stt_service as stt_service

    calls: list[int] = []

    async def recognize(pcm16, *, sample_rate_hz, dialect, options, settings, call_id=None):
        calls.append(len(pcm16))
        if options_seen is not None:
            options_seen.append(options)
        words = options is not None and options.words_check
        await asyncio.sleep(words_delay_s if words else delay_s)
        return AsrResult(text="我想订", raw_text="words:" + raw_text if words else raw_text, confidence=0.9,
                         dialect="cmn", engine="fake", model_id="fake")

    monkeypatch.setattr(stt_service, "recognize", recognize)
    return calls


async def _run(settings, frames_after_pause):
    from pipecat.frames.frames import InputAudioRawFrame, VADUserStartedSpeakingFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.tests.utils import SleepFrame, run_test

    from assistant.asr.stt_service import AssistantSTTService
    from assistant.audio.vad import EarlyTranscriptFrame, SpeechPausedFrame
    from assistant.session import CallSession
    from assistant.turns import TurnTracker

    stt = AssistantSTTService(session=CallSession(channel="simulate", dialect="cmn"), settings=settings,
                              tracker=TurnTracker())
    audio = [InputAudioRawFrame(audio=bytes(640), sample_rate=RATE, num_channels=1) for _ in range(250)]
    frames = [VADUserStartedSpeakingFrame(), *audio, SpeechPausedFrame(silence_s=0.25), *frames_after_pause,
              SleepFrame(sleep=0.3)]
    _, up = await run_test(Pipeline([stt]), frames_to_send=frames)
    return [f.text for f in up if isinstance(f, EarlyTranscriptFrame)]


async def test_the_early_text_goes_up_while_the_pause_is_open(settings, monkeypatch):
    from pipecat.tests.utils import SleepFrame

    calls = _fake_recognize(monkeypatch, delay_s=0.05)
    assert await _run(_words_wait(settings, False), [SleepFrame(sleep=0.2)]) == ["我想订，"]  # comma kept
    assert len(calls) == 1


async def test_no_early_text_after_the_speaker_went_on(settings, monkeypatch):
    from pipecat.tests.utils import SleepFrame

    from assistant.audio.vad import SpeechResumedFrame

    calls = _fake_recognize(monkeypatch, delay_s=0.2)
    assert await _run(_words_wait(settings, False), [SleepFrame(sleep=0.05), SpeechResumedFrame()]) == []
    assert len(calls) == 1  # it had started


async def test_no_early_text_once_the_turn_has_ended(settings, monkeypatch):
    from pipecat.frames.frames import VADUserStoppedSpeakingFrame

    calls = _fake_recognize(monkeypatch, delay_s=0.1)
    assert await _run(settings, [VADUserStoppedSpeakingFrame()]) == []
    assert len(calls) == 1  # the early result served the turn's transcript instead


def _words_wait(settings, on: bool = True):
    import dataclasses

    return dataclasses.replace(settings, audio=dataclasses.replace(settings.audio, turn_open_words_wait=on))


async def test_with_words_wait_a_quick_words_check_of_the_last_seconds_goes_up_first(settings, monkeypatch):
    from pipecat.tests.utils import SleepFrame

    from assistant.asr.stt_service import WORDS_CHECK_S

    seen: list = []
    calls = _fake_recognize(monkeypatch, delay_s=0.15, words_delay_s=0.02, options_seen=seen)
    texts = await _run(_words_wait(settings), [SleepFrame(sleep=0.3)])
    assert texts == ["words:我想订，", "我想订，"]  # the words check first, then the early recognition's text
    assert [o is not None and o.words_check for o in seen] == [True, False]  # started first
    assert calls[0] <= int(WORDS_CHECK_S * RATE) * 2 < calls[1]  # only the last seconds (5 s of audio were sent)


async def test_no_words_check_text_after_the_speaker_went_on(settings, monkeypatch):
    from pipecat.tests.utils import SleepFrame

    from assistant.audio.vad import SpeechResumedFrame

    calls = _fake_recognize(monkeypatch, delay_s=0.2, words_delay_s=0.2)
    assert await _run(_words_wait(settings), [SleepFrame(sleep=0.05), SpeechResumedFrame()]) == []
    assert len(calls) == 2  # both had started


async def test_no_words_check_without_words_wait(settings, monkeypatch):
    from pipecat.tests.utils import SleepFrame

    seen: list = []
    _fake_recognize(monkeypatch, delay_s=0.05, options_seen=seen)
    assert await _run(_words_wait(settings, False), [SleepFrame(sleep=0.2)]) == ["我想订，"]
    assert not any(o is not None and o.words_check for o in seen)
