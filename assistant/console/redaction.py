"""What operators see of a transcript turn or an alert's text.

Default: the PII gate's version with the elder's own data (``personal_of``: name, address, phones, safe
phrase, family names and numbers). The stored ``call_turns.text_redacted`` (written by the pipeline, also
with the elder's data) is the starting point when present and is masked once more with the elder's data, so
rows stored by an older version or by an API client that masked less are still safe; without it the raw text
is masked. ``fallback_redact`` is a conservative masking without the gate (the demo seed uses it): every
run of three or more digits (ASCII, full-width or Chinese numerals: phone, ID, bank card, verification code)
and the elder's values. The raw text is only returned when ``reveal`` is true, which the views allow for
supervisors and log in the audit log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from assistant.fraud_guard.pii_gate import PersonalData, redact

MASK = "＊＊＊"
_CN_DIGIT = "零〇○洞一二两三四五六七八九幺壹贰叁肆伍陆柒捌玖"
_DIGIT_RUN = re.compile(rf"[0-9０-９{_CN_DIGIT}](?:[\s\-－—_.·、,，]?[0-9０-９xX{_CN_DIGIT}]){{2,}}")


@dataclass(frozen=True, kw_only=True)
class Personal:
    """The elder's values to mask (mirrors ``fraud_guard.pii_gate.PersonalData``'s fields we fill)."""

    name: str = ""
    address: str = ""
    phones: tuple[str, ...] = ()
    safe_phrase: str = ""
    family_names: tuple[str, ...] = ()
    family_phones: tuple[str, ...] = ()


def personal_of(elder: Any, *, safe_phrase: str | None = None) -> Personal | None:
    """``Personal`` from an elder row (``platform.models.Elder``, relations loaded) or an ``ElderInfo`` (pass
    ``safe_phrase``: it does not carry it). None for no elder."""
    if elder is None:
        return None
    phones = tuple(str(getattr(p, "number", "") or "") for p in getattr(elder, "phones", ()) or ())
    contacts = list(getattr(elder, "contacts", ()) or ())
    return Personal(
        name=str(getattr(elder, "name", "") or ""),
        address=str(getattr(elder, "address", "") or ""),
        phones=tuple(p for p in phones if p),
        safe_phrase=str(safe_phrase if safe_phrase is not None else getattr(elder, "safe_phrase", "") or ""),
        family_names=tuple(str(c.name) for c in contacts if getattr(c, "name", "")),
        family_phones=tuple(str(c.phone) for c in contacts if getattr(c, "phone", "")),
    )


def fallback_redact(text: str, personal: Personal | None = None) -> str:
    t = text
    if personal is not None:
        for value, label in _values(personal):
            t = t.replace(value, label)
    return _DIGIT_RUN.sub(MASK, t)


def _values(personal: Personal) -> Iterable[tuple[str, str]]:
    pairs = [(personal.safe_phrase, "[暗语]"), (personal.address, "[地址]"), (personal.name, "[姓名]"),
             *[(f, "[家人]") for f in personal.family_names]]
    if len(personal.name.strip()) >= 3:
        pairs.append((personal.name.strip()[1:], "[姓名]"))
    return [(v.strip(), label) for v, label in pairs if v and len(v.strip()) >= 2]


def redact_text(text: str, personal: Personal | None = None) -> str:
    """The PII gate's masking of ``text`` with the elder's own values (``personal``)."""
    data = None
    if personal is not None:
        data = PersonalData(name=personal.name, address=personal.address, phones=personal.phones,
                            family_names=personal.family_names, safe_phrase=personal.safe_phrase,
                            family_phones=personal.family_phones)
    return redact(text or "", personal=data)


def redacted_text(*, text: str, text_redacted: str | None, personal: Personal | None = None) -> str:
    base = text_redacted if text_redacted is not None else (text or "")
    return redact_text(base, personal)


def display_text(*, text: str, text_redacted: str | None, reveal: bool, personal: Personal | None = None) -> str:
    return (text or "") if reveal else redacted_text(text=text, text_redacted=text_redacted, personal=personal)


def redact_detail(value: Any, personal: Personal | None = None, *, _depth: int = 0) -> Any:
    """An alert's ``detail`` with every string in it masked (nested lists/dicts; keys kept)."""
    if _depth > 6:
        return None
    if isinstance(value, str):
        return redact_text(value, personal)
    if isinstance(value, dict):
        return {k: redact_detail(v, personal, _depth=_depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_detail(v, personal, _depth=_depth + 1) for v in value]
    return value
