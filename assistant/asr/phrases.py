"""Closed-prompt recognition by phrase scoring: which allowed phrase does a hypothesis sound like?

whisper cannot take a grammar, so a closed prompt (yes/no, a menu, gas/meal/repair) is decoded freely
(biased with the phrases as a prompt) and the hypothesis is then matched against each allowed phrase by
a blend of toneless-pinyin similarity (catches homophones: 煤气 / 没器) and character similarity. The
best phrase wins when its score clears a threshold; otherwise the result is empty (ask again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from assistant.text.normalize import edit_distance, normalize_for_scoring


@dataclass(frozen=True, kw_only=True)
class PhraseMatch:
    phrase: str  # as written in the grammar
    score: float  # 0..1
    runner_up_score: float


@lru_cache(maxsize=8192)
def _syllables(text: str) -> tuple[str, ...]:
    from pypinyin import Style, lazy_pinyin

    return tuple(lazy_pinyin(text, style=Style.NORMAL, errors=lambda s: list(s)))


def _seq_similarity(a: Sequence[str], b: Sequence[str]) -> float:
    if not a and not b:
        return 1.0
    return 1.0 - edit_distance(a, b) / max(len(a), len(b))  # type: ignore[arg-type]


def _contained_similarity(phrase: Sequence[str], hyp: Sequence[str]) -> float:
    """Best similarity of ``phrase`` to any window of ``hyp`` (the caller may say more than the phrase)."""
    n = len(phrase)
    if n == 0 or len(hyp) <= n:
        return _seq_similarity(phrase, hyp)
    best = 0.0
    for width in (n - 1, n, n + 1):
        if width <= 0:
            continue
        for i in range(0, len(hyp) - width + 1):
            best = max(best, _seq_similarity(phrase, hyp[i : i + width]))
    # saying much more than the phrase is weaker evidence than saying just the phrase
    return best * (0.85 + 0.15 * n / len(hyp))


def phrase_similarity(hyp: str, phrase: str) -> float:
    h, p = normalize_for_scoring(hyp), normalize_for_scoring(phrase)
    if not h or not p:
        return 0.0
    chars = _contained_similarity(tuple(p), tuple(h))
    sounds = _contained_similarity(_syllables(p), _syllables(h))
    return 0.35 * chars + 0.65 * sounds


def match_phrase(hyp: str, phrases: Sequence[str]) -> PhraseMatch | None:
    """The allowed phrase closest to ``hyp`` (None when there are no phrases or the hypothesis is empty)."""
    scored = sorted(((phrase_similarity(hyp, p), p) for p in phrases if p), reverse=True)
    if not scored or scored[0][0] <= 0.0:
        return None
    runner = scored[1][0] if len(scored) > 1 else 0.0
    return PhraseMatch(phrase=scored[0][1], score=scored[0][0], runner_up_score=runner)
