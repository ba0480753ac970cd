"""Text normalisation shared by NLU training, NLU inference and the actions (pure Python, no Rasa import).

It mirrors ``assistant.text.normalize.normalize_transcript`` (which the assistant applies to ASR text before
it reaches Rasa) so that text typed into the REST channel directly, training data in either script and the
assistant's transcripts all meet the model in one form:

- traditional → simplified script, one character at a time (table ``t2s_chars.txt``);
- punctuation, symbols and spaces dropped (ASR text has none; typed text often has);
- Chinese numerals before a counting / time unit → digits (``两罐`` → ``2罐``, ``十五公斤`` → ``15公斤``).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

_TABLE_PATH = Path(__file__).with_name("t2s_chars.txt")
_CN_DIGITS = "零〇一二两三四五六七八九十百"
_UNITS = (
    "公里 公斤 分钟 小时 点钟 点半 个月 星期 礼拜 周岁 号楼 "
    "点 时 分 秒 号 月 日 天 年 岁 周 瓶 罐 桶 樽 份 个 位 人 次 块 元 斤 楼 层 栋 座 室 房 碗 盒 箱 袋 包 顿 餐"
).split()
_NUM_RE = re.compile(
    rf"(?<![{_CN_DIGITS}])([{_CN_DIGITS}]+)(?=(?:{'|'.join(sorted(_UNITS, key=len, reverse=True))}))"
)
_VALUES = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


@lru_cache(maxsize=1)
def _table() -> dict[int, str]:
    table: dict[int, str] = {}
    for line in _TABLE_PATH.read_text(encoding="utf-8").splitlines():
        if len(line) == 2 and not line.startswith("#"):
            table[ord(line[0])] = line[1]
    return table


def to_simplified(text: str) -> str:
    return text.translate(_table())


def cn_number(numeral: str) -> int | None:
    """``十五`` → 15, ``二十`` → 20, ``两`` → 2, ``一百`` → 100; None when it is not a plain number."""
    if not numeral:
        return None
    if numeral.isdigit():
        return int(numeral)
    if all(ch in _VALUES for ch in numeral):  # 一五 → 15 (digits read one by one)
        return int("".join(str(_VALUES[ch]) for ch in numeral))
    total, current = 0, 0
    for ch in numeral:
        if ch in _VALUES:
            current = _VALUES[ch]
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        elif ch == "百":
            total += (current or 1) * 100
            current = 0
        else:
            return None
    return total + current


def numerals_to_digits(text: str) -> str:
    def _sub(m: re.Match[str]) -> str:
        numeral = m.group(1)
        if numeral == "两" and text[m.end() : m.end() + 1] == "两":
            return numeral
        value = cn_number(numeral)
        return str(value) if value is not None else numeral

    return _NUM_RE.sub(_sub, text)


def _is_kept(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] not in "PSZC"


def normalize(text: str) -> str:
    """Simplified script, no punctuation or spaces, lower case, digits for counted numerals."""
    text = unicodedata.normalize("NFKC", text or "")
    text = "".join(ch for ch in text if _is_kept(ch)).lower()
    return numerals_to_digits(to_simplified(text))
