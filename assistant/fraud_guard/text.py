"""Text normalisation shared by the detector and the PII gate.

- ``normalize``: NFKC (full-width → ASCII), traditional → simplified (zhconv), lower case, no whitespace.
  Cantonese written forms (唔, 俾, 嘅, 咗) survive, so one pattern table covers Mandarin, Cantonese and
  traditional script.
- ``digits_view``: the same text with Chinese numerals (一二三…, 幺, 两, 壹贰叁…, 〇/零/洞) mapped to ASCII
  digits and separators between digits removed, so ``六二二二 8８ 8-8`` reads as ``62228888``.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_WS = re.compile(r"\s+")
_PUNCT = re.compile(r"[\s,.!?;:、，。！？；：…“”‘’\"'()（）\[\]【】《》<>~～·\-—_/|*#]+")

CN_DIGITS = {
    "零": "0", "〇": "0", "○": "0", "洞": "0",
    "一": "1", "壹": "1", "幺": "1", "么": "1", "弌": "1",
    "二": "2", "贰": "2", "貳": "2", "两": "2", "兩": "2", "俩": "2",
    "三": "3", "叁": "3", "參": "3", "弎": "3",
    "四": "4", "肆": "4",
    "五": "5", "伍": "5",
    "六": "6", "陆": "6", "陸": "6",
    "七": "7", "柒": "7", "拐": "7",
    "八": "8", "捌": "8",
    "九": "9", "玖": "9", "勾": "9",
}
# characters that may sit between digits of one number when spoken or typed
_DIGIT_SEP = set(" \t-–—_.,，、·/()（）:：")


@lru_cache(maxsize=1)
def _traditional_chars() -> frozenset[str]:
    try:
        import zhconv

        zhconv.convert("乾", "zh-cn")  # loads the tables
        table = zhconv.zhconv.zhcdicts["zh2Hans"]
    except (ModuleNotFoundError, AttributeError, KeyError):  # pragma: no cover
        return frozenset()
    return frozenset(k[0] for k in table if k)


@lru_cache(maxsize=4096)
def _zh_simplify(text: str) -> str:
    """Traditional → simplified; skipped (≈ 2 ms saved per long turn) when no character could change."""
    trad = _traditional_chars()
    if trad and not any(ch in trad for ch in text):
        return text
    try:
        import zhconv
    except ModuleNotFoundError:  # pragma: no cover - zhconv is a core dependency
        return text
    return zhconv.convert(text, "zh-cn")


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "")


def normalize(text: str) -> str:
    """Simplified, half-width, lower-case, whitespace removed (punctuation kept: it bounds clauses)."""
    t = _zh_simplify(nfkc(text)).lower()
    return _WS.sub("", t)


def strip_punct(text: str) -> str:
    return _PUNCT.sub("", text)


def digits_view(text: str) -> str:
    """Map spoken/written digits to ASCII and drop separators between two digits.

    Chinese numerals are mapped one character at a time (``六二二二`` → ``6222``); a ``十`` between two
    numerals is dropped (people rarely say 十 inside card numbers). Other text is kept, so the result can
    still be searched for words around the digits.
    """
    t = nfkc(text)
    out: list[str] = []
    for ch in t:
        d = CN_DIGITS.get(ch)
        out.append(d if d is not None else ch)
    s = "".join(out)
    # drop separators between digits: "6222 8888-1" → "622288881"
    res: list[str] = []
    i = 0
    n = len(s)
    while i < n:
        ch = s[i]
        if ch in _DIGIT_SEP and res and res[-1].isdigit():
            j = i
            while j < n and s[j] in _DIGIT_SEP:
                j += 1
            if j < n and s[j].isdigit() and (j - i) <= 3:
                i = j
                continue
        res.append(ch)
        i += 1
    return "".join(res)


def split_clauses(text: str) -> list[str]:
    """Clauses of a normalised turn (split on sentence and clause punctuation)."""
    return [c for c in re.split(r"[,.!?;，。！？；…]+", text) if c]


def split_sentences(text: str) -> list[str]:
    return [c for c in re.split(r"[.!?;。！？；…]+", text) if c]
