"""``assistant bench latency [--data DIR] [--phone] --json``: end of speech → first reply audio.

Every clip runs as its own call through the full pipeline (VAD → ASR → Rasa → TTS) against real Rasa
servers and a throwaway store (``assistant.bench.scratch``), fed in real time as a caller speaks (so early
recognition during the end-of-turn silence counts as it would on a line). The measured time starts when the
turn is declared over (with Smart Turn: when it judged the turn finished, or the wait for an unfinished one
ran out), so the silence and the end-of-turn decision are excluded: ``bench turn-taking`` measures those. Clips: the WAVs of ``DIR`` (default ``../shared/data/mandarin_speech/wav``) plus
spoken service requests synthesized by the project's own TTS. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from assistant.audio.convert import PcmAudio, resample_pcm16
from assistant.audio.end_of_turn import smart_turn_judges
from assistant.audio.phone_channel import phone_channel
from assistant.bench.proc_memory import rss_mb
from assistant.bench.scratch import scratch_store
from assistant.bench.stats import share, stage_percentiles
from assistant.runtime import running, with_free_ports
from assistant.session import CallSession
from assistant.settings import Settings, load_settings
from assistant.simulate import load_call_audio, run_call
from assistant.tts.registry import simulated_caller_voice, synthesize

SPOKEN_REQUESTS = (
    "我想订一罐煤气",
    "帮我送两份午饭",
    "我家的水龙头坏了",
    "我想预约明天去人民医院看病",
    "我今天身体挺好的",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="folder of WAVs (or with wav/ inside); default ../shared/data/mandarin_speech")
    parser.add_argument("--phone", action="store_true", help="pass every clip through the 8 kHz G.711 line")
    parser.add_argument("--limit", type=int, default=0, help="at most this many recorded clips")
    parser.add_argument("--no-spoken", action="store_true", help="skip the synthesized spoken requests")
    parser.add_argument("--dialect", choices=["cmn", "yue"], help="callers' dialect as an elder profile gives it (default: detect)")
    parser.add_argument("--json", action="store_true", help="print JSON (always JSON; kept for symmetry)")


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return round(values[lo] + (values[hi] - values[lo]) * (k - lo), 1)


def _clips(args: argparse.Namespace, settings: Settings) -> list[Path]:
    data = Path(args.data) if args.data else settings.paths.shared_dir / "data" / "mandarin_speech"
    folder = data / "wav" if (data / "wav").is_dir() else data
    clips = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    return clips[: args.limit] if args.limit else clips


async def _spoken(settings: Settings) -> list[tuple[str, PcmAudio]]:

    out = []
    for text in SPOKEN_REQUESTS:
        speech = await synthesize(text, dialect="cmn", rate_wpm=170, volume=1.0, settings=settings,
                                  voice=simulated_caller_voice("cmn"))
        pcm = resample_pcm16(speech.pcm, from_hz=speech.sample_rate_hz, to_hz=settings.audio.pipeline_sample_rate_hz)
        out.append((f"spoken:{text}", PcmAudio(pcm=pcm, sample_rate_hz=settings.audio.pipeline_sample_rate_hz)))
    return out


async def _bench(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        return await _bench_in(args, scratch_store(settings, Path(tmp)))


async def _bench_in(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:

    settings = with_free_ports(settings)
    inputs: list[tuple[str, PcmAudio]] = [
        (p.name, load_call_audio(p, settings=settings, phone=args.phone)) for p in _clips(args, settings)
    ]
    per_turn: list[dict[str, Any]] = []
    async with running(settings, rasa_required=True) as runtime:
        if not args.no_spoken:
            spoken = await _spoken(settings)
            if args.phone:
                spoken = [(name, phone_channel(a)) for name, a in spoken]
            inputs.extend(spoken)
        # warm-up call: loads the recognizer and voices once, as a running server would have
        warm = CallSession(channel="simulate", tts_rate_wpm=settings.tts.rate_wpm)
        await run_call(inputs[0][1], session=warm, services=runtime.services, realtime=True)
        for name, audio in inputs:
            session = CallSession(channel="simulate", tts_rate_wpm=settings.tts.rate_wpm, dialect=args.dialect)
            for record in await run_call(audio, session=session, services=runtime.services, realtime=True):
                lat = record.latency_ms()
                if lat["total"] is None:
                    continue
                per_turn.append({"clip": name, "turn": record.turn, "transcript": record.transcript, "intent": record.intent,
                                 "dialect": record.dialect, "asr_early": record.asr_early,
                                 "dialect_probe": record.dialect_probe, **lat})
        children = runtime.supervisor.status() if runtime.supervisor else {}
        rss = {"assistant": rss_mb()}
        rss.update({name: rss_mb(pid=info["pid"]) for name, info in children.items() if info["pid"]})
    totals = [t["total"] for t in per_turn]
    stages = stage_percentiles(per_turn, ("asr", "nlu", "tts_first_audio"), _percentile)
    return {
        "n": len(totals),
        "asr_early_share": share(per_turn, "asr_early"),
        "dialect_probe_share": share(per_turn, "dialect_probe"),
        "p50_ms": _percentile(totals, 0.5),
        "p95_ms": _percentile(totals, 0.95),
        "stages": stages,
        "phone": args.phone,
        "dialect": args.dialect or "auto",
        "end_of_turn": "smart_turn" if settings.audio.turn_decision_silence_s > 0 else "fixed_silence",
        "smart_turn_judges": smart_turn_judges(settings.audio),
        "end_of_turn_excluded": "the silence and the decision (bench turn-taking)" if settings.audio.turn_decision_silence_s > 0
        else f"{settings.audio.vad_end_of_turn_silence_s * 1000:.0f} ms of silence",
        "rss_mb": rss,
        "per_turn": per_turn,
    }


def run(args: argparse.Namespace) -> int:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    result = asyncio.run(_bench(args, load_settings()))
    print(json.dumps(result, ensure_ascii=False))
    return 0
