"""Normalising Mandarin / Cantonese text, and the one character error rate every evaluation uses.

- ``to_simplified``: traditional → simplified script (zhconv, ``zh-hans``: script only, no word swaps).
- ``strip_punctuation``: drops punctuation, symbols and whitespace between CJK characters.
- ``numerals_to_digits``: Chinese numerals → digits where they count something or tell a time
  (``三点半`` → ``3点半``, ``两瓶`` → ``2瓶``); words like ``一下`` or ``统一`` are left alone.
- ``digits_to_numerals``: the inverse, used for scoring against references written in characters.
- ``normalize_transcript``: what ``AsrResult.text`` holds (simplified, no punctuation, digits).
- ``normalize_for_scoring`` / ``cer``: both sides simplified, no punctuation or spaces, digits spelled
  out as characters, lower case — then Levenshtein distance over characters divided by the reference length.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_CN_DIGITS = "零〇一二两三四五六七八九十百千万亿"
# units after which a numeral is a quantity or a time (checked longest first)
_UNITS = (
    "公里 公斤 分钟 小时 点钟 点半 个月 星期 礼拜 周岁 号楼 "
    "点 时 分 秒 号 月 日 天 年 岁 周 瓶 罐 桶 份 个 位 人 次 块 元 角 毛 斤 两 楼 层 栋 座 室 房 路 巷 碗 盒 箱 袋 包 顿 床 科 床号"
).split()
_NUM_RE = re.compile(
    rf"(?<![{_CN_DIGITS}])([{_CN_DIGITS}]+)(?=(?:{'|'.join(sorted(_UNITS, key=len, reverse=True))}))"
)
_PHONE_RE = re.compile(r"[零〇幺一二三四五六七八九]{5,}")  # digit strings read out (phone numbers, ids)
_DIGITS_RE = re.compile(r"\d+(?:\.\d+)?")


def to_simplified(text: str) -> str:
    import zhconv

    return zhconv.convert(text, "zh-hans")


def _is_kept(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return not (cat.startswith("P") or cat.startswith("S") or cat.startswith("Z") or cat.startswith("C"))


def strip_punctuation(text: str, *, keep_spaces_between_latin: bool = False) -> str:
    """Remove punctuation, symbols, control characters and spaces (optionally keep one between Latin words)."""
    text = unicodedata.normalize("NFKC", text)
    if not keep_spaces_between_latin:
        return "".join(ch for ch in text if _is_kept(ch))
    words = ["".join(ch for ch in w if _is_kept(ch)) for w in text.split()]
    out = ""
    for w in filter(None, words):
        if out and out[-1].isascii() and out[-1].isalnum() and w[0].isascii() and w[0].isalnum():
            out += " "
        out += w
    return out


def _cn_to_int(numeral: str) -> int | None:
    import cn2an

    try:
        value = cn2an.cn2an(numeral.replace("两", "二").replace("〇", "零"), "smart")
    except (ValueError, KeyError, TypeError):
        return None
    return int(value) if float(value).is_integer() else None


def numerals_to_digits(text: str) -> str:
    """Chinese numerals → digits before quantity / time units, and spelled-out digit strings."""

    def _digit_string(m: re.Match[str]) -> str:
        table = str.maketrans("零〇幺一二三四五六七八九", "001123456789")
        return m.group(0).translate(table)

    text = _PHONE_RE.sub(_digit_string, text)

    def _numeral(m: re.Match[str]) -> str:
        numeral = m.group(1)
        if numeral == "两" and text[m.end() : m.end() + 1] == "两":
            return numeral
        value = _cn_to_int(numeral)
        return m.group(0) if value is None else str(value)

    return _NUM_RE.sub(_numeral, text)


def digits_to_numerals(text: str) -> str:
    """Digits → Chinese numerals (``356`` → ``三百五十六``; long digit strings are read digit by digit)."""
    import cn2an

    def _one(m: re.Match[str]) -> str:
        s = m.group(0)
        if len(s) >= 5 and "." not in s:
            return s.translate(str.maketrans("0123456789", "零一二三四五六七八九"))
        try:
            return cn2an.an2cn(s, "low")
        except (ValueError, KeyError, TypeError):
            return s

    return _DIGITS_RE.sub(_one, text)


def normalize_transcript(text: str) -> str:
    """What downstream stages get: simplified script, no punctuation, digits for times and quantities."""
    return strip_punctuation(numerals_to_digits(to_simplified(text)), keep_spaces_between_latin=True)


def normalize_for_scoring(text: str) -> str:
    """Both sides of a CER: simplified, no punctuation/spaces, digits spelled out, lower case."""
    text = unicodedata.normalize("NFKC", text)
    return strip_punctuation(digits_to_numerals(to_simplified(text))).lower()


def edit_distance(ref: str, hyp: str) -> int:
    """Levenshtein distance over characters (substitutions, insertions, deletions all cost 1)."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


@lru_cache(maxsize=4096)
def _scored(text: str) -> str:
    return normalize_for_scoring(text)


def cer(ref: str, hyp: str, *, normalize: bool = True) -> float:
    """Character error rate of ``hyp`` against ``ref`` (after ``normalize_for_scoring`` unless told not to).

    An empty reference gives 0.0 for an empty hypothesis and 1.0 otherwise.
    """
    if normalize:
        ref, hyp = _scored(ref), _scored(hyp)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def corpus_cer(pairs: list[tuple[str, str]]) -> float:
    """Total edits over total reference characters (the usual corpus-level CER)."""
    edits = total = 0
    for ref, hyp in pairs:
        r, h = _scored(ref), _scored(hyp)
        edits += edit_distance(r, h)
        total += len(r)
    return edits / total if total else 0.0
