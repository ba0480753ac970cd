"""``assistant eval asr``: character error rate and real-time factor of a recognizer on a speech folder.

The folder holds ``transcripts.tsv`` (``wav/<file><TAB>text``, no header). ``--phone`` passes every clip
through the simulated landline first. Prints one JSON object; each run is also appended to
``reports/asr_runs.jsonl`` and summarised in ``reports/asr.md`` with a bar chart ``reports/asr_cer.png``.
``--closed`` also measures closed-prompt recognition: every clip is matched against all the folder's
transcripts as the allowed phrases (accuracy of picking its own).
``--plain`` is the issue's anchor: bare faster-whisper on the same weights (int8, beam 5, language zh, the
configured threads, every other option at faster-whisper's default: temperature fallback, timestamps, no
prompt, no VAD, no padding or clean-up) instead of the project's recognizer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from assistant.asr.base import AsrResult, RecognizerOptions
from assistant.asr.phrases import match_phrase
from assistant.asr.registry import load_recognizer_sync, model_for, recognize_sync
from assistant.asr.whisper_engine import set_encoder_margin
from assistant.audio.convert import read_audio, resample_pcm16
from assistant.audio.phone_channel import phone_channel
from assistant.errors import AsrError, AudioInputError
from assistant.settings import _coerce, load_settings
from assistant.text.normalize import cer, corpus_cer, normalize_transcript
from dialect_models import provision
from dialect_models.manifest import load_manifest
from dialect_models.vocab import load_vocabulary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="folder with transcripts.tsv and wav/")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--engine", help="faster-whisper | vosk | sherpa-onnx (its first provisioned model)")
    which.add_argument("--model", help="model id (see `assistant models list`)")
    parser.add_argument("--dialect", choices=("cmn", "yue", "auto"), default="cmn")
    parser.add_argument("--phone", action="store_true", help="through the simulated 8 kHz G.711 line")
    parser.add_argument("--closed", action="store_true", help="also score closed-prompt phrase matching")
    parser.add_argument("--grammar", action="store_true",
                        help="third TSV column names a vocabulary section: decode each clip again with that "
                             "section as its grammar and score closed-prompt accuracy")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override an AsrSettings field for this run (e.g. beam_size=1)")
    parser.add_argument("--plain", action="store_true",
                        help="the anchor: bare faster-whisper (int8, beam 5, language zh, defaults otherwise)")
    parser.add_argument("--label", default="", help="name of this run in the report")
    parser.add_argument("--limit", type=int, default=0, help="only the first N clips")
    parser.add_argument("--json", action="store_true", help="print the JSON result (default: a summary)")
    parser.add_argument("--no-report", action="store_true", help="do not write reports/")


def read_transcripts(folder: Path) -> list[tuple[str, str]]:

    tsv = folder / "transcripts.tsv"
    if not tsv.is_file():
        raise AudioInputError(f"{tsv}: no transcripts.tsv in the data folder")
    rows = []
    for n, line in enumerate(tsv.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise AudioInputError(f"{tsv}:{n}: expected <wav path><TAB><text>")
        path, text, *_ = line.split("\t")
        rows.append((path.strip(), text.strip()))
    return rows


def read_sections(folder: Path) -> dict[str, str]:
    """wav path → vocabulary section, from the optional third column of transcripts.tsv."""
    out = {}
    for line in (folder / "transcripts.tsv").read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 3 and cols[2].strip():
            out[cols[0].strip()] = cols[2].strip()
    return out


def _settings_for(args: argparse.Namespace):

    settings = load_settings()
    asr = settings.asr
    changes: dict = {}
    for item in args.set:
        field, _, value = item.partition("=")
        if not hasattr(asr, field):
            raise AsrError(f"--set {item}: AsrSettings has no field {field!r}")
        changes[field] = _coerce(value, getattr(asr, field))
    model_id = args.model
    if args.engine:
        dialects = ("cmn", "yue") if args.dialect == "auto" else (args.dialect,)
        specs = [s for s in load_manifest() if s.engine == args.engine and set(dialects) <= set(s.dialects)]
        if not specs:
            raise AsrError(f"no {args.engine} model in the manifest serves {'/'.join(dialects)}")
        present = [s for s in specs if provision.state(s, settings) == "present"]
        model_id = (present or specs)[0].id
    if model_id:
        changes.update(default_model_cmn=model_id, default_model_yue=model_id, auto_dialect_models=(model_id,))
    return dataclasses.replace(settings, asr=dataclasses.replace(asr, **changes)), model_id


def evaluate(args: argparse.Namespace) -> dict:

    settings, model_id = _settings_for(args)
    dialect = None if args.dialect == "auto" else args.dialect
    model_id = model_id or (settings.asr.auto_dialect_models[0] if dialect is None else model_for(dialect, settings))
    rows = read_transcripts(args.data)
    if args.limit:
        rows = rows[: args.limit]
    rate = settings.audio.pipeline_sample_rate_hz
    rec = load_recognizer_sync(model_id, settings=settings)  # load time is not decode time
    if args.plain:
        rec = PlainWhisper(rec, settings)
    per_file, audio_total, wall_total, cpu_total, closed_hits = [], 0.0, 0.0, 0.0, 0
    refs = [text for _, text in rows]
    sections = read_sections(args.data) if args.grammar else {}
    if args.grammar:
        vocab = load_vocabulary(dialect or "cmn")
    grammar_hits = grammar_n = 0
    for path, ref in rows:
        audio = read_audio(args.data / path, sample_rate_hz=rate)
        if args.phone:
            audio = phone_channel(audio)
        t0, c0 = time.perf_counter(), time.process_time()
        if args.plain:
            result = rec.recognize(audio.pcm, sample_rate_hz=audio.sample_rate_hz)
        else:
            result = recognize_sync(audio.pcm, sample_rate_hz=audio.sample_rate_hz, dialect=dialect, settings=settings)
        wall_total += time.perf_counter() - t0
        cpu_total += time.process_time() - c0
        audio_total += audio.duration_s
        row = {"file": path, "ref": ref, "hyp": result.text, "cer": round(cer(ref, result.text), 4),
               "dialect": result.dialect, "confidence": result.confidence, "audio_s": round(audio.duration_s, 2)}
        if path in sections:
            grammar = vocab.grammar(sections[path])
            expected = match_phrase(ref, grammar)
            closed = recognize_sync(audio.pcm, sample_rate_hz=audio.sample_rate_hz, dialect=dialect,
                                    options=RecognizerOptions(grammar=grammar), settings=settings)
            got = vocab.canonical(sections[path], closed.text) if closed.text else ""
            row["grammar"] = sections[path]
            row["expected"] = vocab.canonical(sections[path], expected.phrase) if expected else ""
            row["closed_hyp"] = got
            grammar_n += 1
            grammar_hits += int(bool(got) and got == row["expected"])
        if args.closed:
            m = match_phrase(result.text, refs)
            row["closed_pick"] = m.phrase if m else ""
            closed_hits += int(m is not None and m.phrase == ref)
        per_file.append(row)
    n = len(per_file)
    out = {
        "n": n,
        "cer": round(corpus_cer([(r["ref"], r["hyp"]) for r in per_file]), 4),
        "cer_mean_per_file": round(sum(r["cer"] for r in per_file) / n, 4) if n else 0.0,
        "rtf": round(wall_total / audio_total, 4) if audio_total else 0.0,
        # CPU seconds (all threads) per audio second: wall RTF on an idle machine is about this / threads
        "rtf_cpu": round(cpu_total / audio_total, 4) if audio_total else 0.0,
        "load_average": round(os.getloadavg()[0], 2),
        "engine": rec.engine,
        "model_id": model_id,
        "dialect": args.dialect,
        "phone": bool(args.phone),
        "data": args.data.name,
        "settings": {k: v for k, v in dataclasses.asdict(settings.asr).items() if k not in ("default_model_cmn",
                     "default_model_yue", "auto_dialect_models")},
        "per_file": per_file,
    }
    if dialect is None:
        out["dialects_detected"] = {d: sum(r["dialect"] == d for r in per_file) for d in ("cmn", "yue")}
    if args.closed:
        out["closed_accuracy"] = round(closed_hits / n, 4) if n else 0.0
    if grammar_n:
        out["grammar_accuracy"] = round(grammar_hits / grammar_n, 4)
        out["open_exact"] = round(sum(r["cer"] == 0 for r in per_file) / n, 4)
    if args.plain:
        out["plain"] = True
    if args.label or args.plain:
        out["label"] = args.label or "plain faster-whisper (anchor)"
    return out


class PlainWhisper:
    """The anchor: the loaded whisper weights decoded by bare ``WhisperModel.transcribe``."""

    engine = "faster-whisper"

    def __init__(self, rec, settings) -> None:

        if getattr(rec, "engine", "") != "faster-whisper":
            raise AsrError("--plain needs a faster-whisper model")
        self.model_id = rec.model_id
        self._model = rec._model
        self._lock = rec._lock
        self._beam = 5

    def recognize(self, pcm16: bytes, *, sample_rate_hz: int):
        import numpy as np


        pcm = resample_pcm16(pcm16, from_hz=sample_rate_hz, to_hz=16000)
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0

        with self._lock:
            set_encoder_margin(None)  # the whole 30 s window, as faster-whisper does
            segments, _ = self._model.transcribe(x, language="zh", beam_size=self._beam)
            raw = "".join(s.text for s in segments).strip()
        return AsrResult(text=normalize_transcript(raw), raw_text=raw, confidence=0.0, dialect="cmn",
                         engine=self.engine, model_id=self.model_id, audio_s=len(x) / 16000)


def _run_label(r: dict) -> str:
    base = r.get("label") or f"{r['model_id']} {r['dialect']}"
    return f"{r['data']} {base}{' phone' if r['phone'] else ''}"


def write_report(result: dict, reports_dir: Path) -> Path:
    """Append the run and rewrite reports/asr.md and reports/asr_cer.png (latest run per label)."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    runs_file = reports_dir / "asr_runs.jsonl"
    summary = {k: v for k, v in result.items() if k != "per_file"}
    summary["time"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    summary["command"] = " ".join(["assistant", "eval", "asr", *sys.argv[3:]]) if len(sys.argv) > 3 else ""
    with runs_file.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(summary, ensure_ascii=False) + "\n")
    latest: dict[str, dict] = {}
    for line in runs_file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            latest[_run_label(r)] = r
    runs = sorted(latest.values(), key=_run_label)
    lines = [
        "# ASR evaluation runs",
        "",
        "Written by `assistant eval asr` (latest run per data set / model / dialect / channel / label).",
        "CER = total character edits / total reference characters after `assistant.text.normalize`"
        " (simplified script, no punctuation, digits spelled out); mean = average of per-file CERs;"
        " RTF = wall time / audio time on this machine (shared: see the load average column);"
        " CPU-s/audio-s = process CPU time / audio time (on an idle machine wall RTF ≈ this / threads).",
        "",
        "| run | n | CER | mean CER | RTF | CPU-s/audio-s | load | closed acc. | when (UTC) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        closed = f"{r['closed_accuracy']:.2f}" if "closed_accuracy" in r else ""
        if "grammar_accuracy" in r:
            closed = f"grammar {r['grammar_accuracy']:.2f} (open exact {r['open_exact']:.2f})"
        lines.append(f"| {_run_label(r)} | {r['n']} | {r['cer']:.3f} | {r.get('cer_mean_per_file', 0):.3f} | "
                     f"{r['rtf']:.3f} | {r.get('rtf_cpu', 0):.3f} | {r.get('load_average', '')} | {closed} | "
                     f"{r.get('time', '')} |")
    lines += [
        "",
        "closed acc.: with `--closed`, share of clips whose open hypothesis is matched (phrase scoring) to its own"
        " transcript among all the folder's transcripts; with `--grammar`, share of clips decoded with their"
        " vocabulary section as the grammar that come out as the expected canonical answer.",
        "",
        "![CER per run](asr_cer.png)",
        "",
    ]
    md = reports_dir / "asr.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    _chart(runs, reports_dir / "asr_cer.png")
    return md


def _chart(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [_run_label(r) for r in runs]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(runs) + 1.2))
    ax.barh(range(len(runs)), [r["cer"] for r in runs], color="#4c72b0")
    ax.set_yticks(range(len(runs)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("character error rate (lower is better)")
    for i, r in enumerate(runs):
        ax.text(r["cer"], i, f" {r['cer']:.3f} (RTF {r['rtf']:.2f})", va="center", fontsize=7)
    ax.set_xlim(0, max([0.5, *[r["cer"] * 1.35 for r in runs]]))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:

    result = evaluate(args)
    if not args.no_report:
        write_report(result, load_settings().paths.reports_dir)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(f"{_run_label(result)}: n={result['n']} CER={result['cer']:.3f} "
              f"(mean {result['cer_mean_per_file']:.3f}) RTF={result['rtf']:.3f}")
        for r in result["per_file"]:
            print(f"  {r['cer']:.2f}  {r['ref']}  |  {r['hyp']}")
    return 0
