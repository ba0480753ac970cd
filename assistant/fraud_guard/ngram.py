"""Char 2–3-gram linear model over the caller's turns (pure Python at run time).

Features are binary n-gram presence over the caller's normalised text so far (punctuation removed),
L2-normalised by the number of distinct n-grams: ``logit = b + Σ w[g] / sqrt(n)``. This is exactly
scikit-learn's ``CountVectorizer(binary=True) → Normalizer(l2) → LogisticRegression`` except that unknown
n-grams also count in ``n`` (a slightly more conservative score). Updating per turn is O(turn length).

Weights: ``assistant/fraud_guard/ngram_weights.json`` (committed, < 1 MB; trained by
``python -m assistant.fraud_guard.train`` on the training split of ../shared). Missing file → no model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from assistant.fraud_guard.text import normalize, strip_punct

WEIGHTS_PATH = Path(__file__).with_name("ngram_weights.json")
NGRAM_RANGE = (2, 3)


def char_ngrams(text: str, lo: int = NGRAM_RANGE[0], hi: int = NGRAM_RANGE[1]) -> set[str]:
    t = strip_punct(normalize(text))
    out: set[str] = set()
    for n in range(lo, hi + 1):
        for i in range(len(t) - n + 1):
            out.add(t[i : i + n])
    return out


def prepare(text: str) -> str:
    """The text the vectorizer sees at training time (same normalisation as at run time)."""
    return strip_punct(normalize(text))


@dataclass(kw_only=True)
class NgramState:
    seen: set[str] = field(default_factory=set)
    weight_sum: float = 0.0
    tail: str = ""  # last characters of the previous turn: n-grams do not cross turns


@dataclass(frozen=True, kw_only=True)
class NgramModel:
    weights: dict[str, float]
    bias: float
    meta: dict

    def new_state(self) -> NgramState:
        return NgramState()

    def update(self, state: NgramState, text: str) -> None:
        for g in char_ngrams(text) - state.seen:
            state.seen.add(g)
            state.weight_sum += self.weights.get(g, 0.0)

    def logit(self, state: NgramState) -> float:
        if not state.seen:
            return 0.0
        return self.bias + state.weight_sum / math.sqrt(len(state.seen))

    def score_text(self, text: str) -> float:
        s = self.new_state()
        self.update(s, text)
        return self.logit(s)

    @classmethod
    def load(cls, path: Path) -> NgramModel:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(weights=data["weights"], bias=float(data["bias"]), meta=data.get("meta", {}))

    def save(self, path: Path) -> None:
        data = {"meta": self.meta, "bias": round(self.bias, 5), "weights": {k: round(v, 4) for k, v in self.weights.items()}}
        path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> NgramModel:
    return NgramModel.load(Path(path))


def load_default_model(path: Path | None = None) -> NgramModel | None:
    p = path or WEIGHTS_PATH
    if not p.exists():
        return None
    return _load_cached(str(p), p.stat().st_mtime)
