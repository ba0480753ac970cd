"""Voice activity detection with webrtcvad, as a pipecat ``VADAnalyzer``, plus a pure offline segmenter.

webrtcvad accepts only 10/20/30 ms frames at 8/16/32/48 kHz; we analyse 30 ms frames. The end-of-turn
silence (``AudioSettings.vad_end_of_turn_silence_s``) is longer than pipecat's default because elders
pause mid-sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState
from pipecat.frames.frames import Frame, InputAudioRawFrame, SystemFrame
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection

from assistant.settings import AudioSettings

VAD_FRAME_MS = 30
SUPPORTED_RATES_HZ = (8000, 16000, 32000, 48000)


def vad_params(audio: AudioSettings, *, stop_s: float | None = None) -> VADParams:
    """``stop_s``: silence that ends speech (default the end-of-turn silence; the short decision silence when
    ``assistant.audio.end_of_turn`` decides the end of the turn)."""
    return VADParams(
        confidence=0.5,
        start_secs=audio.vad_start_s,
        stop_secs=stop_s or audio.vad_end_of_turn_silence_s,
        min_volume=audio.vad_min_volume,
    )


class WebRtcVadAnalyzer(VADAnalyzer):
    """pipecat VAD analyzer backed by webrtcvad (confidence is 1.0 for speech frames, else 0.0)."""

    def __init__(self, *, aggressiveness: int = 2, sample_rate: int | None = None, params: VADParams | None = None):
        import webrtcvad

        if not 0 <= aggressiveness <= 3:
            raise ValueError("webrtcvad aggressiveness must be 0..3")
        self._vad = webrtcvad.Vad(aggressiveness)
        super().__init__(sample_rate=sample_rate, params=params)

    def set_sample_rate(self, sample_rate: int) -> None:
        rate = self._init_sample_rate or sample_rate
        if rate not in SUPPORTED_RATES_HZ:
            raise ValueError(f"webrtcvad supports {SUPPORTED_RATES_HZ} Hz, not {rate}")
        super().set_sample_rate(sample_rate)

    def num_frames_required(self) -> int:
        return self.sample_rate * VAD_FRAME_MS // 1000

    def voice_confidence(self, buffer: bytes) -> float:
        return 1.0 if self._vad.is_speech(buffer, self.sample_rate) else 0.0

    @property
    def state(self) -> VADState:
        return self._vad_state

    @property
    def trailing_silence_s(self) -> float:
        """How long the speaker has been silent inside a turn (0 unless the turn is ending: STOPPING)."""
        if self._vad_state != VADState.STOPPING:
            return 0.0
        return self._vad_stopping_count * VAD_FRAME_MS / 1000


@dataclass
class SpeechPausedFrame(SystemFrame):
    """The caller has been silent for ``silence_s`` inside a turn: the turn may be over (early ASR may start)."""

    silence_s: float = 0.0


@dataclass
class SpeechResumedFrame(SystemFrame):
    """The caller spoke again after a ``SpeechPausedFrame``: the turn was not over."""


@dataclass
class SpeechHeardFrame(SystemFrame):
    """Speech heard after the VAD's short stop, not yet long enough to start a turn (its STARTING state): the
    end of turn's silence clock starts again, as the VAD's own does while it is stopping. Without it the clock
    ran through the first 0.2 s of resumed speech, and pauses shorter than the end-of-turn silence ended turns."""


@dataclass
class EarlyTranscriptFrame(SystemFrame):
    """Upstream, from the recogniser: the early recognition's text of a paused turn's audio so far (started at
    ``SpeechPausedFrame``; sent only while that pause is still the open one). ``EndOfTurnProcessor`` reads it."""

    text: str = ""  # what the engine returned (``AsrResult.raw_text``: punctuation kept)


@dataclass
class SpeakerDoneFrame(SystemFrame):
    """The speaker said they have finished (the screen's press-to-talk released): the turn ends at its first
    pause instead of waiting out the end-of-turn silence (``EndOfTurnProcessor``)."""


class PauseAwareVADProcessor(VADProcessor):
    """pipecat's VAD processor, plus a frame when a pause reaches ``pause_s`` and one if speech resumes.

    The end-of-turn silence is long because elders pause mid-sentence; recognition can start at the pause and
    is kept when the turn then ends without more speech. ``pause_s`` 0 (or ≥ the end-of-turn silence) disables.
    ``speech_heard``: a ``SpeechHeardFrame`` for every audio frame in which speech is starting (the end-of-turn
    stage after a short VAD stop keeps its silence clock with it).
    """

    def __init__(self, *, vad_analyzer: WebRtcVadAnalyzer, pause_s: float, speech_heard: bool = False, **kwargs):
        super().__init__(vad_analyzer=vad_analyzer, **kwargs)
        self._analyzer = vad_analyzer
        self._pause_s = pause_s
        self._speech_heard = speech_heard
        self._paused = False

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if not isinstance(frame, InputAudioRawFrame):
            return
        state = self._analyzer.state
        if self._speech_heard and state == VADState.STARTING:
            await self.push_frame(SpeechHeardFrame())
        if self._pause_s <= 0:
            return
        if not self._paused:
            silence_s = self._analyzer.trailing_silence_s
            if silence_s >= self._pause_s:
                self._paused = True
                await self.push_frame(SpeechPausedFrame(silence_s=silence_s))
        elif state == VADState.SPEAKING:
            self._paused = False
            await self.push_frame(SpeechResumedFrame())
        elif state == VADState.QUIET:
            self._paused = False  # the turn ended (VADUserStoppedSpeakingFrame went out)


@dataclass(frozen=True, kw_only=True)
class Segment:
    start_s: float
    end_s: float  # where the VAD declared the turn over (includes the end-of-turn silence)


def segment_speech(
    pcm16: bytes, *, sample_rate_hz: int, audio: AudioSettings | None = None, chunk_ms: int = 20
) -> list[Segment]:
    """Run the same analyzer the pipeline uses over a whole buffer, in ``chunk_ms`` chunks.

    Pure and synchronous (no event loop): used by evaluation and tests.
    """
    audio = audio or AudioSettings()
    analyzer = WebRtcVadAnalyzer(aggressiveness=audio.vad_aggressiveness, params=vad_params(audio))
    analyzer.set_sample_rate(sample_rate_hz)
    step = sample_rate_hz * chunk_ms // 1000 * 2
    segments: list[Segment] = []
    start: float | None = None
    previous = VADState.QUIET
    try:
        for offset in range(0, len(pcm16), step):
            state = analyzer._run_analyzer(pcm16[offset : offset + step])
            t = (offset + step) / 2 / sample_rate_hz
            if state == VADState.SPEAKING and previous in (VADState.QUIET, VADState.STARTING):
                start = max(0.0, t - audio.vad_start_s)
            elif state == VADState.QUIET and previous in (VADState.SPEAKING, VADState.STOPPING) and start is not None:
                segments.append(Segment(start_s=start, end_s=t))
                start = None
            previous = state
        if start is not None:
            segments.append(Segment(start_s=start, end_s=len(pcm16) / 2 / sample_rate_hz))
    finally:
        analyzer._executor.shutdown(wait=False)
    return segments
