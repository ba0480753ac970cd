"""``assistant voice coverage|import``: a dialect's recorded voice pack (``assistant.tts.voice_pack``).

- ``assistant voice coverage --dialect yue --json`` → ``{"sentences","recorded","coverage","failed_checks"}``:
  ``sentences`` counts what the pack should hold — every fixed clause of the table of bot sentences
  (``registry.fixed_clauses``), the fixed fragments of the clauses that hold a field ("订单号系" of
  "订单号系{order_id}。") and the pieces of numbers, dates, times, money, order types and districts
  (``voice_pack.PIECES``); ``recorded`` how many of them have a recording that passed its check;
  ``failed_checks`` how many have only a recording that failed it (to re-record).
- ``assistant voice import --dialect yue DIR``: ``DIR/transcripts.tsv`` lines ``<file>\\t<sentence>`` (WAV or
  any format ``read_audio`` reads). Each recording is resampled, trimmed and loudness-normalised
  (``voice_pack.prepare``), then read back by the dialect's recogniser (``settings.asr.default_model_<d>``,
  whisper-base, through the ASR registry off the event loop) and flagged when the read-back's CER against the
  sentence exceeds ``settings.tts.voice_pack_check_cer_max_<d>`` — lenient for Cantonese (0.7): whisper-base
  often writes a Cantonese reading in Mandarin words, so the check catches a wrong or empty recording, not a
  slightly different wording. A flagged recording is stored but never played. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import numpy as np

from assistant.audio.convert import read_audio
from assistant.errors import AssistantError
from assistant.phrases import DIALECTS
from assistant.settings import Settings, load_settings
from assistant.tts.voice_coverage import coverage, record, sentences, threshold
from assistant.tts.voice_pack import PACK_RATE_HZ, VoicePack, key_of, pack_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="voice_command", required=True)
    cov = sub.add_parser("coverage", help="how much of what the bot says the pack holds (JSON)")
    imp = sub.add_parser("import", help="import and check recordings: DIR/transcripts.tsv (<file>\\t<sentence>)")
    imp.add_argument("folder", type=Path)
    for p in (cov, imp):
        p.add_argument("--dialect", choices=DIALECTS, default="yue")
        p.add_argument("--pack", default="", help="pack name (default: settings.tts.voice_pack, else 'local')")
    cov.add_argument("--json", action="store_true", help="only the JSON line")
    cov.add_argument("--script", type=Path, default=None,
                     help="write DIR/transcripts.tsv naming a WAV for every sentence still to record (then record "
                     "them and `assistant voice import DIR`)")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    pack = _open(settings, args.pack, args.dialect)
    if args.voice_command == "coverage":
        report = coverage(pack, settings=settings)
        if args.script is not None:
            write_script(report["missing"], args.script)
        if not args.json:
            for text in report.pop("missing"):
                print(f"missing: {text}", file=sys.stderr)
        else:
            report.pop("missing")
        print(json.dumps(report, ensure_ascii=False))
        return 0
    report = asyncio.run(import_folder(pack, args.folder, settings=settings))
    print(json.dumps(report, ensure_ascii=False))
    return 0


def _open(settings: Settings, name: str, dialect: str) -> VoicePack:
    name = name or settings.tts.voice_pack or "local"
    return VoicePack.load(pack_dir(settings.paths.var_dir, name, dialect), dialect)


def write_script(texts: list[str], folder: Path) -> Path:
    """A recording script: ``folder/transcripts.tsv`` with one ``NNN.wav\t<sentence>`` line per sentence."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "transcripts.tsv"
    path.write_text("".join(f"{i:03d}.wav\t{text}\n" for i, text in enumerate(texts)), encoding="utf-8")
    return path


async def import_folder(pack: VoicePack, folder: Path, *, settings: Settings) -> dict:
    listing = Path(folder) / "transcripts.tsv"
    if not listing.exists():
        raise AssistantError(f"{listing} not found (lines: <file>\\t<sentence>)", code="voice_pack_input")
    wanted = sentences(pack.dialect, settings=settings)
    passed = 0
    flagged: list[dict] = []
    unknown: list[str] = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        if not line.strip() or "\t" not in line:
            continue
        name, text = (x.strip() for x in line.split("\t", 1))
        audio = await asyncio.to_thread(read_audio, Path(folder) / name, sample_rate_hz=PACK_RATE_HZ)
        check = await record(pack, text, np.frombuffer(audio.pcm, dtype="<i2"), PACK_RATE_HZ, settings=settings)
        if key_of(text, pack.dialect) not in wanted:
            unknown.append(text)
        if check["status"] == "passed":
            passed += 1
        else:
            flagged.append({"file": name, "text": text, "heard": check["heard"], "cer": check["cer"],
                            "status": check["status"]})
        print(f"[voice import] {check['status']:<6} cer {check['cer']:.2f} {text} ← heard {check['heard']}",
              file=sys.stderr)
    return {"dialect": pack.dialect, "imported": passed + len(flagged), "passed": passed, "flagged": flagged,
            "not_in_table": unknown, "threshold": threshold(pack.dialect, settings)}
