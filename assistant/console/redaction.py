"""What the console shows of a transcript turn.

Default: the PII gate's version. ``call_turns.text_redacted`` (written by the pipeline) wins; when it is
missing, the fraud guard's ``assistant.fraud_guard.pii_gate.redact`` is applied to the raw text; if the
fraud guard is not installed either, a conservative fallback masks every run of three or more digits
(ASCII, full-width or Chinese numerals: phone, ID, bank card, verification code). The raw text is only
returned when ``reveal`` is true, which the views allow for supervisors and log in the audit log.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from functools import lru_cache

MASK = "＊＊＊"
_CN_DIGIT = "零〇○洞一二两三四五六七八九幺壹贰叁肆伍陆柒捌玖"
_DIGIT_RUN = re.compile(rf"[0-9０-９{_CN_DIGIT}](?:[\s\-－—_.·、,，]?[0-9０-９xX{_CN_DIGIT}]){{2,}}")


def fallback_redact(text: str) -> str:
    return _DIGIT_RUN.sub(MASK, text)


@lru_cache(maxsize=1)
def _pii_redactor() -> Callable[[str], str]:
    try:
        module = importlib.import_module("assistant.fraud_guard.pii_gate")
    except ModuleNotFoundError as exc:
        if exc.name is None or not "assistant.fraud_guard.pii_gate".startswith(exc.name):
            raise
        return fallback_redact
    redact = getattr(module, "redact", None)
    if redact is None:
        return fallback_redact

    def call(text: str) -> str:
        result = redact(text)
        # the gate may return a richer object; take its text
        return result if isinstance(result, str) else str(getattr(result, "text", result))

    return call


def redacted_text(*, text: str, text_redacted: str | None) -> str:
    if text_redacted is not None:
        return text_redacted
    return _pii_redactor()(text or "")


def display_text(*, text: str, text_redacted: str | None, reveal: bool) -> str:
    return (text or "") if reveal else redacted_text(text=text, text_redacted=text_redacted)
