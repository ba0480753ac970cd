"""Telling Cantonese from Mandarin by what was written: colloquial Cantonese characters and particles.

Used after decoding when a model serves both dialects (whisper writes Cantonese speech as Chinese text;
written Cantonese has characters standard Mandarin text almost never uses).
"""

from __future__ import annotations

# characters that mark written Cantonese (simplified forms, as our normaliser produces them)
YUE_MARKERS = frozenset("嘅咗唔佢喺冇哋嚟咁啲俾睇嘢乜咩係噉嗰啱嘞喇囉噃㗎嘛咪揾搵冚攞畀仲晒啫喎吖嚿𠮶哂啩嚡咋")
# words that are Mandarin-only colloquial (never in written Cantonese)
CMN_MARKERS = ("的话", "什么", "怎么", "这个", "那个", "他们", "我们", "没有", "不是", "是不是", "在哪", "了吗", "吧")


def cantonese_score(text: str) -> float:
    """Evidence for Cantonese in ``text``: > 0 means Cantonese, < 0 Mandarin, 0 no evidence."""
    if not text:
        return 0.0
    yue = sum(1 for ch in text if ch in YUE_MARKERS)
    cmn = sum(text.count(w) for w in CMN_MARKERS)
    return (yue - cmn) / max(1.0, len(text) ** 0.5)


def guess_dialect(text: str, *, default: str = "cmn") -> str:
    score = cantonese_score(text)
    if score > 0:
        return "yue"
    if score < 0:
        return "cmn"
    return default
