"""``assistant bench turn-taking [--data DIR] [--pauses] [--phone] --json``: how turns end on real recordings.

Every clip (the WAVs of ``DIR/wav`` or ``DIR``, default ``../shared/data/mandarin_speech``: transcripts are not
needed, so clips without a reference transcript count too) is played
in real time, 20 ms frames, through the pipeline's own turn-taking stages (``assistant.pipeline.
turn_taking_stages``: webrtcvad, then the end of turn by Smart Turn) followed by silence, once with the
settings and once with the fixed end-of-turn silence (``turn_decision_silence_s`` 0, the
baseline). After them stands a stand-in reply source that answers the instant the turn ends: the wait is
end of speech → end-of-turn decision reaching the reply stage (Smart Turn's inference included); recognition,
dialogue and speech synthesis are not run (``bench latency`` measures them after the end of turn; early
recognition starts at the 0.25 s pause, in parallel with the judgement).

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

The clips answer an open prompt: by default (``turn_judge_open_prompts`` off, chosen by this bench and the
8-call bench) Smart Turn does not judge them and both schemes end turns by the fixed silence;
``ASSISTANT_AUDIO_TURN_JUDGE_OPEN_PROMPTS=1`` measures Smart Turn on them (``smart_turn_judges`` says which).

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
from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame, VADUserStoppedSpeakingFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from assistant.audio.convert import PcmAudio, read_audio
from assistant.audio.end_of_turn import smart_turn_judges
from assistant.audio.phone_channel import phone_channel
from assistant.audio.smart_turn import completion_probability_sync
from assistant.pipeline import turn_taking_stages
from assistant.session import CallSession
from assistant.settings import AudioSettings, Settings, load_settings

FRAME_MS = 20
LEAD_SILENCE_S = 0.3
UTTERANCE_GAP_S = 2.0
TAIL_SILENCE_S = 2.5  # longer than the longest wait for an unfinished turn (1.5 s)
PAUSE_RANGE_S = (0.6, 1.2)
STAND_IN_REPLY = "stand-in: first reply audio the instant the end of turn reaches the reply stage (no ASR/NLU/TTS)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="folder with transcripts.tsv + WAVs; default ../shared/data/mandarin_speech")
    parser.add_argument("--pauses", action="store_true", help="insert 0.6–1.2 s pauses at word boundaries")
    parser.add_argument("--phone", action="store_true", help="through the 8 kHz G.711 line, fed at 8 kHz")
    parser.add_argument("--limit", type=int, default=0, help="at most this many clips")
    parser.add_argument("--seed", type=int, default=19, help="seed of the pause lengths")
    parser.add_argument("--per-clip", action="store_true", help="include each clip's result")
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
    """Stands where the reply starts: notes the audio position and the time each turn's end reaches it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.audio_s = 0.0
        self.turn_ends: list[tuple[float, float]] = []  # (audio position s, perf_counter)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.audio_s += len(frame.audio) / 2 / frame.sample_rate
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and direction == FrameDirection.DOWNSTREAM:
            self.turn_ends.append((self.audio_s, time.perf_counter()))
        await self.push_frame(frame, direction)


async def play(clip: Clip, *, audio: AudioSettings) -> list[dict[str, Any]]:
    """One clip through the turn-taking stages in real time: per utterance, its turn ends and the wait."""
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.workers.runner import WorkerRunner

    rate = clip.audio.sample_rate_hz
    stand_in = ReplyStandIn()
    stages = turn_taking_stages(session=CallSession(channel="simulate"), audio=audio)
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
    rows = []
    for start, end in clip.utterances_s:
        final = next(((pos, t) for pos, t in ends if pos >= end), None)
        wait_ms = None
        if final is not None:
            at_s = LEAD_SILENCE_S + end
            frame = int(at_s * 1000) // FRAME_MS  # the frame holding the end of speech, and where in it
            wait_ms = round((final[1] - fed_at[frame]) * 1000 - (at_s * 1000 - frame * FRAME_MS), 1)
        rows.append({"clip": clip.name, "utterance_s": [start, end], "pauses_s": list(clip.pauses_s),
                     "turn_ends_s": [round(pos, 2) for pos, _ in ends if start - UTTERANCE_GAP_S < pos < end + UTTERANCE_GAP_S],
                     "premature_cut": any(start < pos < end for pos, _ in ends), "wait_ms": wait_ms})
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    waits = [r["wait_ms"] for r in rows if r["wait_ms"] is not None]
    pct = (lambda q: round(float(np.percentile(waits, q)), 1)) if waits else (lambda q: None)
    return {
        "n": len(rows),
        "premature_cut_rate": round(sum(r["premature_cut"] for r in rows) / len(rows), 3) if rows else None,
        "wait_p50_ms": pct(50),
        "wait_p95_ms": pct(95),
    }


async def bench(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    data = Path(args.data) if args.data else settings.paths.shared_dir / "data" / "mandarin_speech"
    clips = load_clips(data, phone=args.phone, limit=args.limit)
    if args.pauses:
        rng = random.Random(args.seed)
        clips = [with_pauses(c, rng) for c in clips]
    completion_probability_sync(bytes(32000), sample_rate_hz=16000)  # load the model once, as a server has
    fixed = dataclasses.replace(settings.audio, turn_decision_silence_s=0.0)
    smart_rows = [row for c in clips for row in await play(c, audio=settings.audio)]
    fixed_rows = [row for c in clips for row in await play(c, audio=fixed)]
    a = settings.audio
    result: dict[str, Any] = {
        **summary(smart_rows),
        "load_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "variant": "pauses" if args.pauses else "clips",
        "phone": args.phone,
        "reply": STAND_IN_REPLY,
        # the clips answer an open prompt: with turn_judge_open_prompts off (the default) Smart Turn is not
        # asked and the scheme is the fixed silence; ASSISTANT_AUDIO_TURN_JUDGE_OPEN_PROMPTS=1 measures it
        "smart_turn_judges": smart_turn_judges(a),
        "settings": {"turn_decision_silence_s": a.turn_decision_silence_s,
                     "turn_judge_open_prompts": a.turn_judge_open_prompts,
                     "turn_complete_min_probability": a.turn_complete_min_probability,
                     "turn_incomplete_max_silence_s": a.turn_incomplete_max_silence_s},
        "fixed_silence_baseline": {**summary(fixed_rows), "vad_end_of_turn_silence_s": a.vad_end_of_turn_silence_s},
        "load_1m_end": round(os.getloadavg()[0], 2),
    }
    if args.pauses:
        result["pauses_inserted"] = sum(len(c.pauses_s) for c in clips)
    if args.per_clip:
        result["per_clip"] = smart_rows
        result["fixed_silence_baseline"]["per_clip"] = fixed_rows
    return result


def run(args: argparse.Namespace) -> int:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    print(json.dumps(asyncio.run(bench(args, load_settings())), ensure_ascii=False))
    return 0
