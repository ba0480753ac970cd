"""``assistant simulate --wav FILE [--phone] [--json]``: one WAV file as one call through the full pipeline.

The file is the caller's side of a call: it is read (any rate, any channels), optionally sent through an
8 kHz G.711 µ-law line, then fed to the pipeline in 20 ms frames followed by enough silence to end the
last turn. Each turn prints one JSON line; reply audio is written to WAV files.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from assistant.audio.convert import PcmAudio, read_audio, write_wav
from assistant.audio.end_of_turn import longest_end_of_turn_silence_s
from assistant.audio.phone_channel import phone_channel
from assistant.pipeline import build_call_pipeline, pipeline_worker
from assistant.runtime import running, with_free_ports
from assistant.session import CallSession
from assistant.settings import Settings, load_settings
from assistant.turns import TurnRecord

FRAME_MS = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wav", required=True, help="audio file with the caller's speech")
    parser.add_argument("--phone", action="store_true", help="pass the audio through an 8 kHz G.711 µ-law line first")
    parser.add_argument("--json", action="store_true", help="print one JSON object per turn (default: readable lines)")
    parser.add_argument("--out", help="folder for reply WAVs (default var/simulate/<call id>)")
    parser.add_argument("--dialect", choices=["cmn", "yue"], help="the caller's dialect (default: detect)")
    parser.add_argument("--elder-id", type=int, help="simulate a call from this enrolled elder")
    parser.add_argument("--caller", help="caller number (looked up in the store)")
    parser.add_argument("--verified", action="store_true", help="treat the call as verified by the fraud guard")
    parser.add_argument(
        "--speaker", choices=["callee", "caller"], default="callee",
        help="whose voice the WAV holds: the elder (default) or the other party of a call (scam check)",
    )
    parser.add_argument("--realtime", action="store_true", help="feed audio at real-time pace (default: as fast as possible)")
    parser.add_argument("--rasa-url", help="use this running Rasa server instead of starting one")


def load_call_audio(path: str | Path, *, settings: Settings, phone: bool) -> PcmAudio:
    audio = read_audio(path, sample_rate_hz=settings.audio.pipeline_sample_rate_hz)
    if phone:
        audio = phone_channel(audio, out_rate_hz=settings.audio.pipeline_sample_rate_hz)
    return audio


def turn_json(record: TurnRecord, *, reply_wav: str | None, call_id: str) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "turn": record.turn,
        "source": record.source,
        "transcript": record.transcript,
        "dialect": record.dialect,
        "asr_confidence": record.asr_confidence,
        "asr_early": record.asr_early,
        "dialect_probe": record.dialect_probe,
        "intent": record.intent,
        "confidence": record.intent_confidence,
        "reply_text": record.reply_text,
        "reply_wav": reply_wav,
        "events": record.events,
        "error": record.error,
        "latency_ms": record.latency_ms(),
    }


async def run_call(audio: PcmAudio, *, session: CallSession, services, realtime: bool = False) -> list[TurnRecord]:
    """Feed ``audio`` through a fresh call pipeline; returns the turn records when the call has ended."""
    from pipecat.frames.frames import EndFrame, InputAudioRawFrame
    from pipecat.workers.runner import WorkerRunner

    settings = services.settings
    call = build_call_pipeline(session=session, services=services)
    worker = pipeline_worker(call, settings=settings)
    rate = audio.sample_rate_hz
    step = rate * FRAME_MS // 1000 * 2
    tail = bytes(int(rate * (longest_end_of_turn_silence_s(settings.audio) + 0.6)) * 2)
    pcm = audio.pcm + tail

    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _on_started(_worker, _frame) -> None:
        started.set()

    async def feed() -> None:
        await asyncio.wait_for(started.wait(), timeout=30)
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step]
            if len(chunk) < step:
                chunk += bytes(step - len(chunk))
            await worker.queue_frame(InputAudioRawFrame(audio=chunk, sample_rate=rate, num_channels=1))
            await asyncio.sleep(FRAME_MS / 1000 if realtime else 0)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), feed())
    return call.tracker.turns


async def _simulate(args: argparse.Namespace, settings: Settings) -> int:

    audio = load_call_audio(args.wav, settings=settings, phone=args.phone)
    settings = with_free_ports(settings)
    if args.rasa_url:
        settings = replace(settings, dialogue=replace(settings.dialogue, rasa_url=args.rasa_url))
    async with running(settings, with_rasa=not args.rasa_url) as runtime:
        session = CallSession(
            channel="simulate",
            dialect=args.dialect,
            elder_id=args.elder_id,
            caller_number=args.caller,
            tts_rate_wpm=settings.tts.rate_wpm,
            verification="verified" if args.verified else "unverified",
            heard_speaker=args.speaker,
        )
        if args.caller and args.elder_id is None and runtime.services.store is not None:
            elder = await runtime.services.store.elder_by_phone(args.caller)  # caller ID → profile
            if elder is not None:
                session.elder_id = elder.elder_id
        turns = await run_call(audio, session=session, services=runtime.services, realtime=args.realtime)
    out_dir = Path(args.out) if args.out else settings.paths.var_dir / "simulate" / session.call_id
    if not turns:
        print(f"no speech detected in {args.wav} ({audio.duration_s:.1f} s of audio)", file=sys.stderr)
        if args.json:
            print(json.dumps({"turn": 0, "transcript": "", "reply_text": "", "error": "no_speech"}, ensure_ascii=False))
        return 0
    for record in turns:
        wav_path = None
        if record.reply_audio:
            wav_path = str(
                write_wav(out_dir / f"turn-{record.turn}.wav", PcmAudio(pcm=bytes(record.reply_audio), sample_rate_hz=record.reply_sample_rate_hz))
            )
        line = turn_json(record, reply_wav=wav_path, call_id=session.call_id)
        if args.json:
            print(json.dumps(line, ensure_ascii=False), flush=True)
        else:
            print(f"[{record.turn}] 长者: {record.transcript or '(没听清)'}  → {record.intent}  | 助手: {record.reply_text}  ({wav_path})")
    return 0


def run(args: argparse.Namespace) -> int:
    import logging

    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if args.verbose else "WARNING")
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    settings = load_settings()
    return asyncio.run(_simulate(args, settings))
