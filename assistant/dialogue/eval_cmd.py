"""``assistant eval nlu --data FILE.tsv [--url URL] [--json]``: intent accuracy of the Rasa model.

The TSV has a header and the columns ``text<TAB>intent[<TAB>lang]`` (``lang``: ``cmn`` or ``yue``; guessed
from Cantonese function words when the column is missing). Each text goes to ``POST /model/parse`` of
- the server at ``--url``, or
- the configured ``dialogue.rasa_url`` when it answers and ``--no-running`` is not given, or
- a Rasa server started for the evaluation (``rasa run --enable-api`` on a free loopback port, the trained
  model in ``intents/models``; about 15–30 s to start), stopped afterwards.

``out_of_scope`` in the TSV and ``nlu_fallback`` from the model are the same label ("not understood").
Prints ``{"n", "accuracy", "macro_f1", "per_intent", "per_lang", "errors", "confusion_png"}``; the confusion
matrix is drawn to ``reports/nlu_confusion.png`` (or ``--png``).

``--spoken`` measures ASR + NLU instead of NLU alone: each text is spoken by the project's own TTS
(``assistant.tts.registry.synthesize``, the default voice of its language), passed through the simulated
8 kHz G.711 line with ``--phone``, recognised with the production ASR settings (the language column as the
caller's known dialect; ``--auto-dialect`` lets the recogniser detect it) and the *transcript* goes to Rasa.
``--intents`` keeps only some intents (default with ``--spoken``: the in-domain requests and check-in
answers, ``SPOKEN_INTENTS``). The result adds ``asr_cer`` (corpus CER of the transcripts against the texts),
``rtf`` and per-example ``transcript`` in ``errors``; the confusion matrix goes to
``reports/asr_spoken_intent_confusion.png``. Synthetic voices are cleaner than an elder on a phone line:
this compares settings and catches regressions, it is not a promise about real callers.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import signal
import socket
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.asr import registry as asr_registry
from assistant.audio.convert import PcmAudio, resample_pcm16
from assistant.audio.phone_channel import phone_channel
from assistant.dialogue.rasa_cli import (
    LAUNCHER,
    _child_env,
    model_path,
    rasa_python,
    rasa_token,
    rasa_token_file,
)
from assistant.errors import AssistantError, DialogueError
from assistant.settings import _coerce, load_settings
from assistant.text.normalize import corpus_cer
from assistant.tts import registry as tts_registry

FALLBACK = "nlu_fallback"
# in-domain requests and check-in answers (issue #4: "gas, meals, repair, appointment, check-in answers")
SPOKEN_INTENTS = ("order_gas", "order_meal", "request_repair", "book_appointment", "checkin_well", "checkin_unwell")
_YUE_MARKERS = set("嘅咗唔冇係佢喺啲嚟乜咩嘢哋畀俾睇㗎噉咁揾搵攞瞓嗰啱喇嘞晒嚿冚")


@dataclass(frozen=True, kw_only=True)
class Example:
    text: str
    intent: str
    lang: str


class EvalDataError(AssistantError):
    code = "eval_data"


def canonical(intent: str | None) -> str:
    if not intent or intent in {"out_of_scope", FALLBACK}:
        return FALLBACK
    return intent


def guess_lang(text: str) -> str:
    return "yue" if _YUE_MARKERS.intersection(text) else "cmn"


def read_tsv(path: Path) -> list[Example]:
    if not path.exists():
        raise EvalDataError(f"no such file: {path}")
    rows: list[Example] = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if not header or [h.strip().lower() for h in header[:2]] != ["text", "intent"]:
            raise EvalDataError(f"{path}: the first line must be the header text<TAB>intent[<TAB>lang]")
        for n, row in enumerate(reader, start=2):
            if not row or not row[0].strip() or row[0].startswith("#"):
                continue
            if len(row) < 2 or not row[1].strip():
                raise EvalDataError(f"{path}:{n}: expected text<TAB>intent")
            lang = row[2].strip() if len(row) > 2 and row[2].strip() else guess_lang(row[0])
            rows.append(Example(text=row[0].strip(), intent=canonical(row[1].strip()), lang=lang))
    if not rows:
        raise EvalDataError(f"{path}: no examples")
    return rows


def score(gold: list[str], predicted: list[str], langs: list[str]) -> dict[str, Any]:
    """Accuracy, macro F1 over the gold labels, per-intent P/R/F1 and per-language accuracy."""
    labels = sorted(set(gold))
    per_intent: dict[str, dict[str, float]] = {}
    for label in labels:
        tp = sum(1 for g, p in zip(gold, predicted, strict=True) if g == label and p == label)
        fp = sum(1 for g, p in zip(gold, predicted, strict=True) if g != label and p == label)
        fn = sum(1 for g, p in zip(gold, predicted, strict=True) if g == label and p != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_intent[label] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": tp + fn,
        }
    per_lang: dict[str, dict[str, float]] = {}
    by_lang: dict[str, list[bool]] = defaultdict(list)
    for g, p, lang in zip(gold, predicted, langs, strict=True):
        by_lang[lang].append(g == p)
    for lang, hits in sorted(by_lang.items()):
        per_lang[lang] = {"n": len(hits), "accuracy": round(sum(hits) / len(hits), 4)}
    n = len(gold)
    return {
        "n": n,
        "accuracy": round(sum(g == p for g, p in zip(gold, predicted, strict=True)) / n, 4) if n else 0.0,
        "macro_f1": round(sum(v["f1"] for v in per_intent.values()) / len(per_intent), 4) if per_intent else 0.0,
        "per_intent": per_intent,
        "per_lang": per_lang,
    }


def plot_confusion(gold: list[str], predicted: list[str], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return None
    labels = sorted(set(gold) | set(predicted))
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for g, p in zip(gold, predicted, strict=True):
        matrix[index[g], index[p]] += 1
    fig, ax = plt.subplots(figsize=(1 + 0.5 * len(labels), 1 + 0.5 * len(labels)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for (i, j), value in np.ndenumerate(matrix):
        if value:
            ax.text(j, i, str(value), ha="center", va="center", fontsize=6, color="white" if value > matrix.max() / 2 else "black")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- talking to Rasa ----------------------------------------------------------------------------------------
async def parse_all(url: str, texts: list[str], *, token: str = "", concurrency: int = 4,
                    timeout_s: float = 30.0) -> list[tuple[str, float]]:
    import aiohttp

    sem = asyncio.Semaphore(concurrency)
    params = {"token": token} if token else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:

        async def one(text: str) -> tuple[str, float]:
            async with sem:
                try:
                    async with http.post(url.rstrip("/") + "/model/parse", json={"text": text}, params=params) as resp:
                        if resp.status != 200:
                            raise DialogueError(f"/model/parse answered HTTP {resp.status}", code=f"rasa_http_{resp.status}")
                        data = await resp.json(content_type=None)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise DialogueError(f"Rasa is not reachable at {url}: {type(exc).__name__}", code="rasa_down") from exc
            intent = data.get("intent") or {}
            return canonical(intent.get("name")), float(intent.get("confidence") or 0.0)

        return list(await asyncio.gather(*(one(t) for t in texts)))


def _reachable(url: str, token: str = "") -> bool:
    import urllib.parse
    import urllib.request

    query = "?" + urllib.parse.urlencode({"token": token}) if token else ""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/status" + query, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NluServer:
    """``rasa run --enable-api`` on a free loopback port with the trained model (NLU use only), token-checked
    like the supervised server (``self.token``)."""

    def __init__(self, *, settings: Any, start_timeout_s: float = 240.0) -> None:
        self._settings = settings
        self._timeout_s = start_timeout_s
        self._proc: subprocess.Popen | None = None
        self.url = ""
        self.token = ""

    def __enter__(self) -> NluServer:

        settings = self._settings
        if not model_path(settings).exists():
            raise DialogueError("no trained Rasa model (run `assistant rasa train`)", code="rasa_no_model")
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = settings.paths.var_dir / "logs" / "rasa-eval.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        token_file = rasa_token_file(settings)
        self.token = token_file.read_text().strip()
        argv = [str(rasa_python(settings)), LAUNCHER, "rasa", "--token-file", str(token_file), "--",
                "run", "--enable-api", "-i", "127.0.0.1", "-p", str(port), "--model", str(model_path(settings))]  # fmt: skip
        with open(log, "wb") as out:
            self._proc = subprocess.Popen(
                argv, cwd=settings.paths.intents_dir, env=_child_env(), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + self._timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DialogueError(f"the Rasa server exited while starting; see {log}", code="rasa_down")
            if _reachable(self.url, self.token):
                return self
            time.sleep(0.5)
        self.__exit__()
        raise DialogueError(f"the Rasa server did not start within {self._timeout_s:.0f} s; see {log}", code="rasa_timeout")

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def evaluate(examples: list[Example], url: str, *, token: str = "") -> tuple[dict[str, Any], list[str]]:
    predictions = asyncio.run(parse_all(url, [e.text for e in examples], token=token))
    predicted = [p for p, _ in predictions]
    result = score([e.intent for e in examples], predicted, [e.lang for e in examples])
    result["errors"] = [
        {"text": e.text, "gold": e.intent, "predicted": p, "confidence": round(c, 3), "lang": e.lang}
        for e, (p, c) in zip(examples, predictions, strict=True)
        if p != e.intent
    ]
    return result, predicted


# -- spoken: TTS → (phone line) → ASR → NLU -----------------------------------------------------------------
async def _speak_all(examples: list[Example], *, settings: Any, rate_wpm: int) -> list[Any]:

    rate = settings.audio.pipeline_sample_rate_hz
    out = []
    for e in examples:
        # through the module: a test stands in a voice for ``tts_registry.synthesize``
        speech = await tts_registry.synthesize(e.text, dialect=e.lang, rate_wpm=rate_wpm, volume=1.0,
                                               settings=settings, voice=tts_registry.simulated_caller_voice(e.lang))
        out.append((PcmAudio(pcm=resample_pcm16(speech.pcm, from_hz=speech.sample_rate_hz, to_hz=rate),
                             sample_rate_hz=rate), speech.voice))
    return out


def transcribe_spoken(
    examples: list[Example], *, settings: Any, phone: bool, auto_dialect: bool, rate_wpm: int
) -> tuple[list[str], dict[str, Any]]:
    """Speak every example, optionally through the phone line, and recognise it: (transcripts, ASR stats)."""
    spoken = asyncio.run(_speak_all(examples, settings=settings, rate_wpm=rate_wpm))
    texts: list[str] = []
    wall = audio_s = 0.0
    voices: dict[str, set[str]] = defaultdict(set)
    for e, (audio, voice) in zip(examples, spoken, strict=True):
        voices[e.lang].add(voice)
        if phone:
            audio = phone_channel(audio)
        t0 = time.perf_counter()
        result = asr_registry.recognize_sync(audio.pcm, sample_rate_hz=audio.sample_rate_hz,
                                             dialect=None if auto_dialect else e.lang, settings=settings)
        wall += time.perf_counter() - t0
        audio_s += audio.duration_s
        texts.append(result.text)
    per_lang_cer = {
        lang: round(corpus_cer([(e.text, t) for e, t in zip(examples, texts, strict=True) if e.lang == lang]), 4)
        for lang in sorted({e.lang for e in examples})
    }
    stats = {
        "asr_cer": round(corpus_cer([(e.text, t) for e, t in zip(examples, texts, strict=True)]), 4),
        "asr_cer_per_lang": per_lang_cer,
        "rtf": round(wall / audio_s, 4) if audio_s else 0.0,
        "load_average": round(os.getloadavg()[0], 2),
        "phone": phone,
        "dialect": "auto" if auto_dialect else "known",
        "voices": {k: sorted(v) for k, v in voices.items()},
        "asr_model": settings.asr.default_model_cmn,
    }
    return texts, stats


def _evaluate_texts(examples: list[Example], heard: list[str], url: str, *, token: str = "") -> tuple[dict[str, Any], list[str]]:
    """Like ``evaluate`` but Rasa parses ``heard`` (the transcripts); errors show both texts."""
    said = [h for h in heard if h.strip()]  # nothing recognised is "not understood" without asking Rasa
    parsed = iter(asyncio.run(parse_all(url, said, token=token)) if said else [])
    predictions = [next(parsed) if h.strip() else (FALLBACK, 0.0) for h in heard]
    predicted = [p for p, _ in predictions]
    result = score([e.intent for e in examples], predicted, [e.lang for e in examples])
    result["errors"] = [
        {"text": e.text, "transcript": h, "gold": e.intent, "predicted": p, "confidence": round(c, 3), "lang": e.lang}
        for e, h, p, (_, c) in zip(examples, heard, predicted, predictions, strict=True)
        if p != e.intent
    ]
    return result, predicted


# -- CLI ----------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, nargs="+",
                        help="TSV file(s) with header text<TAB>intent[<TAB>lang]")
    parser.add_argument("--url", help="a running Rasa server (default: dialogue.rasa_url if it answers, else start one)")
    parser.add_argument("--no-running", action="store_true", help="always start a fresh server with intents/models")
    parser.add_argument("--png", type=Path, help="confusion matrix image (default reports/nlu_confusion.png)")
    parser.add_argument("--json", action="store_true", help="print JSON only (default: JSON plus a one-line summary on stderr)")
    parser.add_argument("--spoken", action="store_true",
                        help="speak each text with the project's TTS and send the ASR transcript to Rasa (ASR + NLU)")
    parser.add_argument("--phone", action="store_true", help="with --spoken: through the simulated 8 kHz G.711 line")
    parser.add_argument("--auto-dialect", action="store_true",
                        help="with --spoken: let the recogniser detect the dialect (default: the lang column)")
    parser.add_argument("--intents", help="comma-separated intents to keep (default with --spoken: the in-domain "
                                          "requests and check-in answers)")
    parser.add_argument("--lang", help="comma-separated languages to keep (cmn, yue)")
    parser.add_argument("--rate-wpm", type=int, default=150, help="with --spoken: TTS speaking rate")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="with --spoken: override an AsrSettings field (e.g. whisper_prompt=false)")


def run(args: argparse.Namespace) -> int:
    import sys


    settings = load_settings()
    paths = args.data if isinstance(args.data, list) else [args.data]
    examples = [e for path in paths for e in read_tsv(path)]
    intents = args.intents.split(",") if args.intents else (SPOKEN_INTENTS if args.spoken else None)
    if intents:
        examples = [e for e in examples if e.intent in intents]
    if args.lang:
        examples = [e for e in examples if e.lang in args.lang.split(",")]
    if not examples:
        raise EvalDataError("no examples left after --intents / --lang")
    heard: list[str] | None = None
    asr_stats: dict[str, Any] = {}
    if args.spoken:
        settings = _with_asr_overrides(settings, args.set)
        heard, asr_stats = transcribe_spoken(examples, settings=settings, phone=args.phone,
                                             auto_dialect=args.auto_dialect, rate_wpm=args.rate_wpm)


    def _run(url: str, token: str) -> tuple[dict[str, Any], list[str]]:
        if heard is None:
            return evaluate(examples, url, token=token)
        return _evaluate_texts(examples, heard, url, token=token)

    url = args.url
    token = rasa_token(settings)
    if url is None and not args.no_running and _reachable(settings.dialogue.rasa_url, token):
        url = settings.dialogue.rasa_url
    if url is not None:
        result, predicted = _run(url, token)
        result["server"] = url
    else:
        with NluServer(settings=settings) as server:
            result, predicted = _run(server.url, server.token)
        result["server"] = "started for this evaluation"
    result.update(asr_stats)
    default_png = "asr_spoken_intent_confusion.png" if args.spoken else "nlu_confusion.png"
    png = plot_confusion([e.intent for e in examples], predicted, args.png or settings.paths.reports_dir / default_png)
    result["confusion_png"] = str(png) if png else None
    print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 2))
    if not args.json:
        langs = ", ".join(f"{k} {v['accuracy']:.3f} (n={v['n']})" for k, v in result["per_lang"].items())
        extra = f"; ASR CER {result['asr_cer']:.3f}, RTF {result['rtf']:.2f}" if args.spoken else ""
        print(f"accuracy {result['accuracy']:.3f}, macro F1 {result['macro_f1']:.3f}; {langs}{extra}", file=sys.stderr)
    return 0


def _with_asr_overrides(settings: Any, items: list[str]) -> Any:
    import dataclasses


    asr = settings.asr
    changes = {}
    for item in items:
        field, _, value = item.partition("=")
        if not hasattr(asr, field):
            raise EvalDataError(f"--set {item}: AsrSettings has no field {field!r}")
        changes[field] = _coerce(value, getattr(asr, field))
    return dataclasses.replace(settings, asr=dataclasses.replace(asr, **changes)) if changes else settings
