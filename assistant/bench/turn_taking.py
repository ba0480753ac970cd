"""``assistant bench turn-taking [--data DIR] [--pauses] [--phone] --json``: how turns end on real recordings.

Every clip (the WAVs of ``DIR/wav`` or ``DIR``, default ``../shared/data/mandarin_speech``: transcripts are not
needed, so clips without a reference transcript count too) is played
in real time, 20 ms frames, through the pipeline's own turn-taking stages (``assistant.pipeline.
turn_taking_stages``: webrtcvad, then the end of turn by Smart Turn) followed by silence, once per scheme
(``--schemes``, default ``settings,fixed``: as configured, and the fixed end-of-turn silence,
``turn_decision_silence_s`` 0, the baseline; also ``smart_turn``, Smart Turn judging open answers, and ``text``,
Smart Turn + the early recognition's words). The schemes take turns clip by clip, so they share the machine's
load. After them stands a stand-in reply source that answers the instant the turn ends: the wait is end of
speech → end-of-turn decision reaching the reply stage (Smart Turn's inference included). Dialogue and speech
synthesis are not run (``bench latency`` measures them after the end of turn). Recognition is not run either,
unless ``--asr`` or the ``text`` scheme puts the real recogniser (``AssistantSTTService``, whisper through the
ASR registry, early recognition from the 0.25 s pause, the caller's dialect known: cmn) between the decision and
the stand-in: the text scheme reads its early text, and ``transcript_wait`` (end of speech → the turn's
transcript reaching the stand-in) is reported for every scheme.

- utterances: a clip's speech (30 ms frames webrtcvad mode 3 calls speech) split at silences of at least
  ``UTTERANCE_GAP_S`` (2 s: longer than any end-of-turn wait, so every scheme ends a turn there; one meeting
  clip holds three utterances); n counts utterances;
- premature cut: a turn ended inside an utterance (the speaker spoke again after it, before the gap);
- wait: an utterance's end of speech → the first turn end after it reaching the reply stage;
- ``--pauses``: each utterance of at least 0.8 s gets one (two above 4 s of speech) 0.6–1.2 s pause inserted
  at a word boundary: the quietest 10 ms point (smoothed energy) inside the middle 70 % of its speech, at
  least 0.8 s from another; a pause already there is lengthened. The pause is the clip's own room tone
  (``room_tone``); its length comes from a seeded draw.
- ``--phone``: clips go through the 8 kHz G.711 line and are fed at 8 kHz (Smart Turn resamples to 16 kHz).

The clips answer an open prompt: by default (``turn_judge_open_prompts`` and ``turn_open_text_aware`` off,
chosen by this bench and the 8-call bench) Smart Turn does not judge them and the ``settings`` scheme ends
turns by the fixed silence (``smart_turn_judges`` says which answers are judged).

Timings on a shared machine are pessimistic: ``load_1m`` is in the output.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    TranscriptionFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from assistant.asr.registry import recognize_sync
from assistant.asr.stt_service import AssistantSTTService
from assistant.audio.convert import PcmAudio, read_audio
from assistant.audio.end_of_turn import reads_words, smart_turn_judges
from assistant.audio.phone_channel import phone_channel
from assistant.audio.smart_turn import completion_probability_sync
from assistant.pipeline import turn_taking_stages
from assistant.session import CallSession
from assistant.settings import AudioSettings, Settings, load_settings
from assistant.turns import TurnTracker

FRAME_MS = 20
LEAD_SILENCE_S = 0.3
UTTERANCE_GAP_S = 2.0
TAIL_SILENCE_S = 2.5  # longer than the longest wait for an unfinished turn (2 s)
PAUSE_RANGE_S = (0.6, 1.2)
STAND_IN_REPLY = "stand-in: first reply audio the instant the end of turn reaches the reply stage (no ASR/NLU/TTS)"
WITH_ASR = ("stand-in after the real recogniser (early recognition from the 0.25 s pause; its text feeds the text "
            "scheme): the end of turn reaching the reply stage; transcript_wait = the turn's transcript reaching it")
# the schemes an open answer can end by (``scheme_audio``)
SCHEMES = {
    "settings": "as configured",
    "fixed": "fixed end-of-turn silence (turn_decision_silence_s 0): the baseline",
    "smart_turn": "Smart Turn judges open answers (turn_judge_open_prompts)",
    "text": "Smart Turn + the early recognition's text (turn_open_text_aware)",
    "words": "the fixed silence, lengthened when a quick words check looks unfinished (turn_open_words_wait)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="folder with transcripts.tsv + WAVs; default ../shared/data/mandarin_speech")
    parser.add_argument("--pauses", action="store_true", help="insert 0.6–1.2 s pauses at word boundaries")
    parser.add_argument("--phone", action="store_true", help="through the 8 kHz G.711 line, fed at 8 kHz")
    parser.add_argument("--limit", type=int, default=0, help="at most this many clips")
    parser.add_argument("--seed", type=int, default=19, help="seed of the pause lengths")
    parser.add_argument("--per-clip", action="store_true", help="include each clip's result")
    parser.add_argument("--schemes", default="settings,fixed",
                        help=f"comma-separated, in one run (same load): {', '.join(SCHEMES)}; the first is the top level")
    parser.add_argument("--asr", action="store_true",
                        help="the real recogniser (whisper, early recognition) after the decision in every scheme; "
                             "implied by the text scheme")
    parser.add_argument("--json", action="store_true", help="print JSON (always JSON; kept for symmetry)")


@dataclass(frozen=True, kw_only=True)
class Clip:
    name: str
    audio: PcmAudio
    utterances_s: tuple[tuple[float, float], ...]  # (start, end of speech), split at UTTERANCE_GAP_S
    pauses_s: tuple[float, ...] = ()  # lengths of the inserted pauses


def _clip_paths(data: Path) -> list[Path]:
    folder = data / "wav" if (data / "wav").is_dir() else data
    return sorted(folder.glob("*.wav"))


def speech_frames(pcm: bytes, rate: int) -> np.ndarray:
    """webrtcvad (mode 3) speech flag per 30 ms frame."""
    import webrtcvad

    vad = webrtcvad.Vad(3)
    step = rate * 30 // 1000 * 2
    return np.array([vad.is_speech(pcm[i : i + step], rate) for i in range(0, len(pcm) - step + 1, step)])


def utterances_s(pcm: bytes, rate: int) -> tuple[tuple[float, float], ...]:
    """Speech spans separated by at least ``UTTERANCE_GAP_S`` of non-speech."""
    flags = np.flatnonzero(speech_frames(pcm, rate))
    spans: list[tuple[float, float]] = []
    for i in flags:
        start, end = i * 0.03, (i + 1) * 0.03
        if spans and start - spans[-1][1] < UTTERANCE_GAP_S:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return tuple((round(a, 2), round(b, 2)) for a, b in spans)


def word_boundaries_s(pcm: bytes, rate: int, *, span: tuple[float, float], count: int) -> list[float]:
    """The ``count`` quietest points (10 ms energy, smoothed over 50 ms) in the middle 70 % of the speech,
    at least 0.8 s apart: the gaps between words (or syllables) of continuous speech."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    hop = rate // 100
    energy = np.sqrt(np.mean(x[: len(x) // hop * hop].reshape(-1, hop) ** 2, axis=1))
    smooth = np.convolve(energy, np.ones(5) / 5, mode="same")
    start, end = span
    lo, hi = int((start + 0.15 * (end - start)) * 100), int((end - 0.15 * (end - start)) * 100)
    chosen: list[int] = []
    for i in np.argsort(smooth[lo:hi]) + lo:
        if all(abs(i - c) >= 80 for c in chosen):
            chosen.append(int(i))
        if len(chosen) == count:
            break
    return sorted(c / 100 for c in chosen)


def room_tone(pcm: bytes, rate: int, seconds: float) -> bytes:
    """``seconds`` of the clip's own background: its quietest 200 ms, repeated. Digital silence would not do:
    webrtcvad adapts its noise estimate, and after a stretch of zeros it hears a noisy room as speech."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    hop, width = rate // 100, rate // 5
    starts = range(0, max(1, len(x) - width), hop)
    quietest = min(starts, key=lambda i: float(np.mean(x[i : i + width] ** 2)))
    piece = pcm[quietest * 2 : (quietest + width) * 2]
    n = int(seconds * rate) * 2
    return (piece * (n // max(1, len(piece)) + 1))[:n]


def with_pauses(clip: Clip, rng: random.Random) -> Clip:
    pcm, rate = clip.audio.pcm, clip.audio.sample_rate_hz
    cuts: list[float] = []
    for span in clip.utterances_s:
        if span[1] - span[0] >= 0.8:
            cuts += word_boundaries_s(pcm, rate, span=span, count=2 if span[1] - span[0] > 4.0 else 1)
    pauses = tuple(round(rng.uniform(*PAUSE_RANGE_S), 2) for _ in cuts)
    out, last = bytearray(), 0
    for at_s, pause_s in zip(cuts, pauses, strict=True):
        at = int(at_s * rate) * 2
        out += pcm[last:at] + room_tone(pcm, rate, pause_s)
        last = at
    out += pcm[last:]

    def shifted(t: float) -> float:
        return round(t + sum(p for c, p in zip(cuts, pauses, strict=True) if c < t), 2)

    return Clip(name=clip.name, audio=PcmAudio(pcm=bytes(out), sample_rate_hz=rate), pauses_s=pauses,
                utterances_s=tuple((shifted(a), shifted(b)) for a, b in clip.utterances_s))


def load_clips(data: Path, *, phone: bool, limit: int = 0) -> list[Clip]:
    clips = []
    for path in _clip_paths(data)[: limit or None]:
        audio = read_audio(path, sample_rate_hz=16000)
        if phone:
            audio = phone_channel(audio)  # 8 kHz out
        spans = utterances_s(audio.pcm, audio.sample_rate_hz)
        if spans:
            clips.append(Clip(name=path.name, audio=audio, utterances_s=spans))
    return clips


class ReplyStandIn(FrameProcessor):
    """Stands where the reply starts: notes the audio position and the time each turn's end (and, behind the
    recogniser, each transcript) reaches it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.audio_s = 0.0
        self.turn_ends: list[tuple[float, float]] = []  # (audio position s, perf_counter)
        self.transcripts: list[tuple[float, float, str]] = []  # (audio position s, perf_counter, text)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            if isinstance(frame, InputAudioRawFrame):
                self.audio_s += len(frame.audio) / 2 / frame.sample_rate
            elif isinstance(frame, VADUserStoppedSpeakingFrame):
                self.turn_ends.append((self.audio_s, time.perf_counter()))
            elif isinstance(frame, TranscriptionFrame):
                self.transcripts.append((self.audio_s, time.perf_counter(), frame.text))
        await self.push_frame(frame, direction)


def scheme_audio(name: str, audio: AudioSettings) -> AudioSettings:
    """The audio settings of a scheme (``SCHEMES``) for answers to an open prompt."""
    if name == "settings":
        return audio
    if name == "fixed":
        return dataclasses.replace(audio, turn_decision_silence_s=0.0)
    if name == "smart_turn":
        return dataclasses.replace(audio, turn_judge_open_prompts=True, turn_open_text_aware=False)
    if name == "text":
        return dataclasses.replace(audio, turn_open_text_aware=True, turn_open_words_wait=False)
    if name == "words":
        return dataclasses.replace(audio, turn_open_words_wait=True, turn_open_text_aware=False,
                                   turn_judge_open_prompts=False)
    raise ValueError(f"unknown scheme {name!r}: one of {', '.join(SCHEMES)}")


def _recogniser(session: CallSession, *, settings: Settings, rate: int) -> FrameProcessor:
    settings = dataclasses.replace(settings, audio=dataclasses.replace(settings.audio, pipeline_sample_rate_hz=rate))
    return AssistantSTTService(session=session, settings=settings, tracker=TurnTracker(listeners=[]))


async def play(clip: Clip, *, audio: AudioSettings, asr: Settings | None = None) -> list[dict[str, Any]]:
    """One clip through the turn-taking stages in real time: per utterance, its turn ends and the wait.
    ``asr``: the real recogniser (with these settings) stands between the decision and the reply stand-in."""
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.workers.runner import WorkerRunner

    rate = clip.audio.sample_rate_hz
    stand_in = ReplyStandIn()
    session = CallSession(channel="simulate", dialect="cmn" if asr is not None else None)
    stages = turn_taking_stages(session=session, audio=audio)
    if asr is not None:
        stages.append(_recogniser(session, settings=dataclasses.replace(asr, audio=audio), rate=rate))
    worker = PipelineWorker(Pipeline([*stages, stand_in]), params=PipelineParams(audio_in_sample_rate=rate),
                            idle_timeout_secs=None, enable_rtvi=False, enable_turn_tracking=False,
                            cancel_on_idle_timeout=False)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(_worker, _frame):
        started.set()

    pcm = bytes(int(LEAD_SILENCE_S * rate) * 2) + clip.audio.pcm + bytes(int(TAIL_SILENCE_S * rate) * 2)
    step = rate * FRAME_MS // 1000 * 2
    fed_at: dict[int, float] = {}

    async def feed() -> None:
        await asyncio.wait_for(started.wait(), timeout=10)
        t0 = time.perf_counter()
        for n, offset in enumerate(range(0, len(pcm) - step + 1, step)):
            delay = t0 + n * FRAME_MS / 1000 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            fed_at[n] = time.perf_counter()
            await worker.queue_frame(InputAudioRawFrame(audio=pcm[offset : offset + step], sample_rate=rate,
                                                        num_channels=1))
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner()
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), feed())
    ends = [(pos - LEAD_SILENCE_S, t) for pos, t in stand_in.turn_ends]
    texts = [(pos - LEAD_SILENCE_S, t, text) for pos, t, text in stand_in.transcripts]

    def wait_ms(end: float, t: float) -> float:
        at_s = LEAD_SILENCE_S + end
        frame = int(at_s * 1000) // FRAME_MS  # the frame holding the end of speech, and where in it
        return round((t - fed_at[frame]) * 1000 - (at_s * 1000 - frame * FRAME_MS), 1)

    rows = []
    for start, end in clip.utterances_s:
        final = next(((pos, t) for pos, t in ends if pos >= end), None)
        row = {"clip": clip.name, "utterance_s": [start, end], "pauses_s": list(clip.pauses_s),
               "turn_ends_s": [round(pos, 2) for pos, _ in ends if start - UTTERANCE_GAP_S < pos < end + UTTERANCE_GAP_S],
               "premature_cut": any(start < pos < end for pos, _ in ends),
               "wait_ms": None if final is None else wait_ms(end, final[1])}
        if asr is not None:
            heard = next(((pos, t) for pos, t, _ in texts if pos >= end), None)
            row["transcripts"] = [text for pos, _, text in texts if start < pos < end + UTTERANCE_GAP_S]
            row["transcript_wait_ms"] = None if heard is None else wait_ms(end, heard[1])
        rows.append(row)
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def pct(key: str, q: int) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return round(float(np.percentile(values, q)), 1) if values else None

    out = {
        "n": len(rows),
        "premature_cut_rate": round(sum(r["premature_cut"] for r in rows) / len(rows), 3) if rows else None,
        "premature_cuts": sum(r["premature_cut"] for r in rows),
        "wait_p50_ms": pct("wait_ms", 50),
        "wait_p95_ms": pct("wait_ms", 95),
    }
    if any("transcript_wait_ms" in r for r in rows):
        out |= {"transcript_wait_p50_ms": pct("transcript_wait_ms", 50),
                "transcript_wait_p95_ms": pct("transcript_wait_ms", 95)}
    return out


def warm_up(settings: Settings, *, asr: PcmAudio | None) -> None:
    """Load the models once, as a running server has them (``asr``: speech to decode twice: whisper's first
    decodes of speech are several times slower than the later ones)."""
    completion_probability_sync(bytes(32000), sample_rate_hz=16000)
    if asr is not None:
        for _ in range(2):
            recognize_sync(asr.pcm, sample_rate_hz=asr.sample_rate_hz, dialect="cmn", settings=settings)


async def bench(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    data = Path(args.data) if args.data else settings.paths.shared_dir / "data" / "mandarin_speech"
    schemes = [name.strip() for name in (getattr(args, "schemes", None) or "settings,fixed").split(",") if name.strip()]
    audios = {name: scheme_audio(name, settings.audio) for name in schemes}  # unknown names fail before playing
    asr = getattr(args, "asr", False) or any(reads_words(audio) for audio in audios.values())
    clips = load_clips(data, phone=args.phone, limit=args.limit)
    if args.pauses:
        rng = random.Random(args.seed)
        clips = [with_pauses(c, rng) for c in clips]
    await asyncio.to_thread(warm_up, settings, asr=clips[0].audio if asr and clips else None)
    # clip by clip, every scheme in turn: the schemes share the machine's load as evenly as a run can
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in audios}
    load = round(os.getloadavg()[0], 2)
    for clip in clips:
        for name, audio in audios.items():
            rows[name] += await play(clip, audio=audio, asr=settings if asr else None)
    runs = {name: {**summary(rows[name]), "smart_turn_judges": smart_turn_judges(audio), "rows": rows[name]}
            for name, audio in audios.items()}
    first = schemes[0]
    a = settings.audio
    result: dict[str, Any] = {
        **{k: v for k, v in runs[first].items() if k != "rows"},
        "scheme": first,
        "load_1m": load,
        "load_1m_end": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "variant": "pauses" if args.pauses else "clips",
        "phone": args.phone,
        "reply": WITH_ASR if asr else STAND_IN_REPLY,
        "settings": {"turn_decision_silence_s": a.turn_decision_silence_s,
                     "turn_judge_open_prompts": a.turn_judge_open_prompts,
                     "turn_open_text_aware": a.turn_open_text_aware,
                     "turn_open_words_wait": a.turn_open_words_wait,
                     "turn_unfinished_words_silence_s": a.turn_unfinished_words_silence_s,
                     "turn_complete_min_probability": a.turn_complete_min_probability,
                     "turn_incomplete_max_silence_s": a.turn_incomplete_max_silence_s,
                     "vad_end_of_turn_silence_s": a.vad_end_of_turn_silence_s},
        "schemes": {name: {k: v for k, v in run.items() if k != "rows"} for name, run in runs.items()},
    }
    if "fixed" in runs and first != "fixed":
        result["fixed_silence_baseline"] = {**result["schemes"]["fixed"],
                                            "vad_end_of_turn_silence_s": a.vad_end_of_turn_silence_s}
    if args.pauses:
        result["pauses_inserted"] = sum(len(c.pauses_s) for c in clips)
    if args.per_clip:
        result["per_clip"] = runs[first]["rows"]
        for name, run in runs.items():
            result["schemes"][name]["per_clip"] = run["rows"]
    return result


def run(args: argparse.Namespace) -> int:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    print(json.dumps(asyncio.run(bench(args, load_settings())), ensure_ascii=False))
    return 0
