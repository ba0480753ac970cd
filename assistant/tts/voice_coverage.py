"""What a recorded voice pack should hold, how much it does, and the automatic check of one recording.

Shared by ``assistant voice`` (``voice_cmd``) and the console's recording page (``console.views_voice``):
- ``sentences(dialect)``: everything the pack should hold — every fixed clause of the table of bot sentences
  (``registry.fixed_clauses``), the fixed fragments of the clauses that hold a field ("订单号系" of
  "订单号系{order_id}。"), the field-free pieces of ``phrases.toml`` and ``voice_pack.PIECES`` (numbers, dates,
  times, money, order types, districts);
- ``coverage(pack)``: ``{"dialect","sentences","recorded","coverage","failed_checks","missing"}``;
- ``record(pack, text, samples, rate)``: prepare (``voice_pack.prepare``: trim, loudness), read back by the
  dialect's recogniser (whisper-base through the ASR registry, off the loop), store with the check's verdict
  (CER ≤ ``settings.tts.voice_pack_check_cer_max_<d>``; lenient for Cantonese, which whisper-base reads back
  half in Mandarin words).
"""

from __future__ import annotations

import asyncio
import re

import numpy as np

from assistant.asr.registry import recognize
from assistant.phrases import PIECES, Phrasebook
from assistant.settings import Settings
from assistant.text.normalize import cer
from assistant.tts.registry import fixed_clauses, split_clauses
from assistant.tts.voice_pack import PACK_RATE_HZ, VoicePack, key_of, prepare
from assistant.tts.voice_pack import PIECES as NUMBER_PIECES

FIELD_MARK = "〇〇"  # stands for a field's value while a template is cut into clauses


def sentences(dialect: str, *, settings: Settings) -> dict[str, str]:
    """key → sentence as written, for everything the ``dialect`` pack should hold (see the module docstring)."""
    phrases = Phrasebook(platform_name=settings.platform.name)
    texts = [clause for d, clause in fixed_clauses(phrases) if d == dialect]
    utterances = [t for d, t in phrases.utterances() if d == dialect]
    pieces = [v[dialect].replace("{platform}", settings.platform.name) for v in PIECES.values() if v.get(dialect)]
    for text in [*utterances, *pieces]:
        for clause in split_clauses(re.sub(r"\{\w+\}", FIELD_MARK, text)):
            if FIELD_MARK in clause:  # its fixed fragments: "订单号系" of "订单号系〇〇。"
                texts += [f for f in clause.split(FIELD_MARK) if re.sub(r"[\W_]", "", f)]
            elif text in pieces:  # a field-free piece (utterances' field-free clauses are fixed_clauses)
                texts.append(clause)
    texts += NUMBER_PIECES[dialect]
    out: dict[str, str] = {}
    for text in texts:
        out.setdefault(key_of(text, dialect), text.strip())
    out.pop("", None)
    return out


def coverage(pack: VoicePack, *, settings: Settings) -> dict:
    wanted = sentences(pack.dialect, settings=settings)
    playable = pack.playable()
    recorded = [k for k in wanted if k in playable]
    failed = [k for k in wanted if k not in playable and k in pack.entries
              and pack.entries[k].get("check", {}).get("status") == "failed"]
    return {"dialect": pack.dialect, "sentences": len(wanted), "recorded": len(recorded),
            "coverage": round(len(recorded) / len(wanted), 3) if wanted else 0.0, "failed_checks": len(failed),
            "missing": [text for k, text in wanted.items() if k not in playable]}


def threshold(dialect: str, settings: Settings) -> float:
    return float(getattr(settings.tts, f"voice_pack_check_cer_max_{dialect}"))


async def check_recording(pcm: bytes, text: str, *, dialect: str, settings: Settings) -> dict:
    """The automatic check of one prepared recording: the recogniser's read-back and its CER."""
    result = await recognize(pcm, sample_rate_hz=PACK_RATE_HZ, dialect=dialect, options=None, settings=settings)
    limit = threshold(dialect, settings)
    error = round(cer(text, result.text), 3)
    return {"status": "passed" if error <= limit else "failed", "cer": error, "heard": result.text,
            "threshold": limit}


async def record(pack: VoicePack, text: str, samples: np.ndarray, sample_rate_hz: int, *, settings: Settings) -> dict:
    """Prepare, check and store one recording of ``text``; the check's verdict (``status`` "silent" when the
    recording holds no sound: then nothing is stored). Saves the manifest."""
    try:
        pcm = await asyncio.to_thread(prepare, samples, sample_rate_hz)
    except ValueError:
        return {"status": "silent", "cer": 1.0, "heard": "", "threshold": threshold(pack.dialect, settings)}
    check = await check_recording(pcm, text, dialect=pack.dialect, settings=settings)
    await asyncio.to_thread(pack.add, text, pcm, check=check)
    await asyncio.to_thread(pack.save)
    return check
