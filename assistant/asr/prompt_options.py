"""Recognizer options for what the assistant just asked: a closed question gets a grammar, an open one hotwords.

    options = closed_prompt("cmn", "yes_no")      # 是 / 不是 ... (dialect_models/vocab/cmn.txt [yes_no])
    result = await recognize(pcm, ..., options=options, ...)
    answer = canonical_answer("cmn", "yes_no", result.text)   # "是" | "不是" | "" (ask again)
"""

from __future__ import annotations

from assistant.asr.base import RecognizerOptions
from dialect_models.vocab import load_vocabulary

CLOSED_SECTIONS = ("yes_no", "menu", "service")


def closed_prompt(dialect: str, section: str) -> RecognizerOptions:

    return RecognizerOptions(grammar=tuple(load_vocabulary(dialect).grammar(section)))


def open_prompt(dialect: str) -> RecognizerOptions:

    return RecognizerOptions(phrases=tuple(load_vocabulary(dialect).hotwords()))


def canonical_answer(dialect: str, section: str, text: str) -> str:
    """The canonical member of the synonym group ``text`` belongs to (empty stays empty)."""

    return load_vocabulary(dialect).canonical(section, text) if text else ""
