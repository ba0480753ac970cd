"""Fraud dialogue JSONL (shared format) and the deterministic held-out split of the dev corpus."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from pypinyin import Style, lazy_pinyin

from assistant.errors import FraudGuardError
from assistant.fraud_guard.text import strip_punct

HELDOUT_BUCKETS = 5  # 1 in 5 dialogues (by hashed id) is held out


def load_dialogues(path: Path) -> list[dict]:
    if not path.exists():
        raise FraudGuardError(f"no such dialogue file: {path}", code="fraud_data_missing")
    out: list[dict] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FraudGuardError(f"{path}:{n}: not JSON ({exc.msg})", code="fraud_data_invalid") from exc
        if d.get("label") not in ("fraud", "legit") or not isinstance(d.get("turns"), list):
            raise FraudGuardError(f"{path}:{n}: needs label fraud|legit and turns", code="fraud_data_invalid")
        out.append(d)
    return out


def is_heldout(dialogue_id: str) -> bool:
    h = hashlib.sha1(dialogue_id.encode("utf-8")).digest()
    return h[0] % HELDOUT_BUCKETS == 0


def split(dialogues: list[dict], part: str) -> list[dict]:
    """``part`` = "train" | "heldout" | "all"."""
    if part == "all":
        return dialogues
    want = part == "heldout"
    return [d for d in dialogues if is_heldout(str(d["id"])) == want]


def caller_text(dialogue: dict) -> str:
    return "\n".join(t.get("text", "") for t in dialogue["turns"] if t.get("speaker") == "caller")


def asr_noise(dialogues: list[dict], rate: float, *, seed: int = 20) -> list[dict]:
    """Swap a fraction ``rate`` of Chinese characters for another character with the same toneless pinyin
    (drawn from the characters of these dialogues), deterministically; punctuation is removed as well."""
    chars = sorted({ch for d in dialogues for t in d["turns"] for ch in t.get("text", "") if "\u4e00" <= ch <= "\u9fff"})
    by_sound: dict[str, list[str]] = {}
    sound = dict(zip(chars, lazy_pinyin(chars, style=Style.NORMAL), strict=True))
    for ch in chars:
        by_sound.setdefault(sound[ch], []).append(ch)
    rng = random.Random(seed)

    def noisy(text: str) -> str:
        out = []
        for ch in strip_punct(text):
            alts = by_sound.get(sound.get(ch, ""), [])
            if len(alts) > 1 and rng.random() < rate:
                ch = rng.choice([a for a in alts if a != ch])
            out.append(ch)
        return "".join(out)

    return [dict(d, turns=[dict(t, text=noisy(t.get("text", ""))) for t in d["turns"]]) for d in dialogues]
