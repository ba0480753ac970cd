"""Fraud dialogue JSONL (shared format) and the deterministic held-out split of the dev corpus."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from assistant.errors import FraudGuardError

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
