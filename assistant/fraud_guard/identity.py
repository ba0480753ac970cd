"""Proving the platform's identity to the elder, and the call's verification state.

The proof (at the start of a platform call and whenever the elder asks "你系边个 / 你怎么证明"):
1. speak the elder's **safe phrase** (set with the family; the bot never asks the elder for it),
2. speak the ledger entry's **one-time code**, which the smart screen shows at the same time (and the
   family received through the outbox),
3. offer to hang up so the elder can ring the official number on their own service card.

Kept short on purpose (≤ 15 s of speech at 130 wpm; ``proof_speech_seconds`` estimates it, the e2e test
measures it with espeak-ng).

Verification (``CallSession.verification``) is about who the *elder* is, so personal data may be
discussed: a call becomes ``verified`` when it is linked to a valid ledger entry for one of the elder's
registered numbers (we dialled them, or they rang back inside the window), or it is the elder's own
smart screen. An unsolicited inbound call stays ``unverified``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from loguru import logger

from assistant.fraud_guard.ledger import CallLedger, LedgerEntryInfo
from assistant.platform.models import normalize_phone
from assistant.session import CallSession
from assistant.settings import Settings

_CN_DIGIT_WORDS = "零一二三四五六七八九"
# Cantonese reads 2 as 二 too; 1 is often 一 / 幺 on phones — keep 一 for clarity

SafePhraseLookup = Callable[[int], Awaitable[str | None]]
NumbersLookup = Callable[[int], Awaitable[list[str]]]


def spell_code(code: str) -> str:
    """``"4821"`` → ``"四八二一"`` (digit by digit, never as a number)."""
    return "".join(_CN_DIGIT_WORDS[int(c)] for c in code if c.isdigit())


def proof_utterances(*, safe_phrase: str | None, code: str | None, dialect: str | None) -> list[str]:
    """One short sentence: who we are, the safe phrase, the code, the call-back offer.

    Measured with espeak-ng at 130 wpm (a 4-character phrase): Mandarin 14.6 s, Cantonese ≈ 11 s."""
    yue = dialect == "yue"
    parts = ["平安通打嚟" if yue else "平安通来电"]
    if safe_phrase:
        parts.append(f"暗语{safe_phrase}")
    if code:
        parts.append(f"确认码{spell_code(code)}")
    parts.append("唔放心可以收线打返嚟" if yue else "不放心可挂断回拨")
    return ["，".join(parts) + "。"]


# characters per minute per "wpm" of the configured rate, measured with espeak-ng 1.52 (-s 130):
# Mandarin 2.05 chars/s, Cantonese 3.1 chars/s
_CHARS_PER_WORD = {"cmn": 0.95, "yue": 1.4}


def proof_speech_seconds(texts: list[str], *, rate_wpm: int, dialect: str | None = "cmn") -> float:
    """Estimated seconds to speak ``texts`` at ``rate_wpm`` by character count (calibrated on espeak-ng),
    plus 0.25 s per pause mark."""
    import re

    chars = sum(len(re.findall(r"[\u4e00-\u9fff0-9A-Za-z]", t)) for t in texts)
    pauses = sum(len(re.findall(r"[，。、：；！？,.]", t)) for t in texts)
    cpm = rate_wpm * _CHARS_PER_WORD.get(dialect or "cmn", 0.95)
    return chars / (cpm / 60.0) + 0.25 * pauses


@dataclass(kw_only=True)
class IdentityService:
    ledger: CallLedger
    safe_phrase_of: SafePhraseLookup | None = None
    numbers_of: NumbersLookup | None = None

    async def entry_for(self, session: CallSession) -> LedgerEntryInfo | None:
        if session.ledger_entry_id is not None:
            entry = await self.ledger.get(session.ledger_entry_id)
            if entry is not None and entry.is_valid(self.ledger.now()):
                return entry
        if session.direction == "outbound" and session.caller_number:
            return await self.ledger.current_for_number(session.caller_number)
        return None

    async def prove(self, session: CallSession) -> list[str]:
        """What the bot says to prove it is the platform (``IdentityProof`` for the dialogue stage)."""
        entry = await self.entry_for(session)
        if entry is None and session.elder_id is not None and session.caller_number:
            # the elder rang us (or this is the screen): issue a fresh code the screen can show now
            entry = await self.ledger.record_outbound_call(
                elder_id=session.elder_id, number=session.caller_number, purpose="identity_check"
            )
        if entry is not None:
            session.ledger_entry_id = entry.entry_id
        phrase = None
        if self.safe_phrase_of is not None and session.elder_id is not None:
            try:
                phrase = await self.safe_phrase_of(session.elder_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the proof still has the code and the call-back offer
                logger.warning(f"call {session.call_id}: safe phrase lookup failed: {exc}")
        return proof_utterances(safe_phrase=phrase, code=entry.code if entry else None, dialect=session.dialect)

    async def verify_session(self, session: CallSession) -> bool:
        """Set ``session.verification`` from the ledger link; returns whether it is verified."""
        if session.channel == "screen" and session.elder_id is not None:
            session.verification = "verified"
            return True
        entry = await self.entry_for(session)
        if entry is None or session.elder_id is None or entry.elder_id != session.elder_id:
            return session.verified
        numbers = [normalize_phone(n) for n in (await self.numbers_of(session.elder_id) if self.numbers_of else [])]
        caller = normalize_phone(session.caller_number or "")
        if caller and caller == entry.number and (not numbers or caller in numbers):
            session.verification = "verified"
        return session.verified


def identity_proof_for_app(app, *, settings: Settings):
    """The ``IdentityProof`` callable for ``PipelineServices``: resolves the ledger and the store when
    called (both appear during the app's start-up), so it can be built before the app runs."""

    async def proof(session: CallSession) -> list[str]:
        from assistant.fraud_guard.api import LEDGER_KEY

        ledger = app.get(LEDGER_KEY)
        if ledger is None:
            from assistant.fraud_guard.ledger import default_ledger

            ledger = default_ledger(settings)
        store = None
        try:
            from assistant.platform.api import STORE_KEY

            store = app.get(STORE_KEY)
        except ImportError:
            store = None
        service = IdentityService(
            ledger=ledger,
            safe_phrase_of=store.safe_phrase if store is not None else None,
            numbers_of=numbers_from_store(store) if store is not None else None,
        )
        texts = await service.prove(session)
        await service.verify_session(session)
        return texts

    return proof


def numbers_from_store(store) -> NumbersLookup:
    async def numbers(elder_id: int) -> list[str]:
        elder = await store.get_elder(elder_id)
        phones = getattr(elder, "phones", None) or []
        return [getattr(p, "number", p) for p in phones]

    return numbers
