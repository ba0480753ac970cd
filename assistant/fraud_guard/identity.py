"""Proving the platform's identity to the elder, and the call's verification state.

Caller ID can be spoofed, so the platform proves itself only on calls it placed (issue #15):

- **Outbound** (we dialled the number on file; the ledger entry and its one-time code were written BEFORE
  dialling, and the family got the code through the outbox): the bot speaks
  1. the elder's **safe phrase** (set with the family; the bot never asks the elder for it),
  2. the ledger entry's **one-time code**, which the smart screen shows at the same time,
  3. the offer to hang up so the elder can ring the official number on their own service card.
  Such a call is ``verified`` (linked to a valid entry for one of the elder's registered numbers).
- **Inbound** (someone rang us; the From may be anyone's): never ``verified`` by caller ID, never hears
  the safe phrase or a code, writes no ledger entry, sends nothing. Asked "你是谁 / 你怎么证明", the bot
  says this is the platform's line the caller rang, that we never ask for passwords, codes or money, and
  offers two things a spoofer lacks: the elder's keypad PIN (``*`` PIN ``#``, ``assistant.fraud_guard.pin``),
  which verifies the call, or ``9``: we hang up and call back the registered number (an outbound call
  with the full proof above).
- **Screen** (the device token proves the device): verified, and may give the proof as before.

Kept short on purpose (≤ 15 s of speech at 130 wpm; ``proof_speech_seconds`` estimates it, the e2e test
measures it with espeak-ng).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from loguru import logger

from assistant.fraud_guard.ledger import CallLedger, LedgerEntryInfo
from assistant.fraud_guard.pin import PinCheck, PinStore
from assistant.phrases import Phrasebook
from assistant.platform.models import normalize_phone
from assistant.session import CallSession

_CN_DIGIT_WORDS = "零一二三四五六七八九"
# Cantonese reads 2 as 二 too; 1 is often 一 / 幺 on phones — keep 一 for clarity

SafePhraseLookup = Callable[[int], Awaitable[str | None]]
NumbersLookup = Callable[[int], Awaitable[list[str]]]
DEFAULT_PHRASES = Phrasebook()  # a deployment's own: Phrasebook(platform_name=settings.platform.name)


def spell_code(code: str) -> str:
    """``"4821"`` → ``"四八二一"`` (digit by digit, never as a number)."""
    return "".join(_CN_DIGIT_WORDS[int(c)] for c in code if c.isdigit())


def proof_utterances(*, safe_phrase: str | None, code: str | None, dialect: str | None,
                     phrases: Phrasebook = DEFAULT_PHRASES) -> list[str]:
    """One short sentence: who we are, the safe phrase, the code, the call-back offer.

    Measured with espeak-ng at 130 wpm (a 4-character phrase): Mandarin 14.6 s, Cantonese ≈ 11 s."""
    parts = [phrases.piece("proof_caller", dialect)]
    if safe_phrase:
        parts.append(phrases.piece("proof_safe_phrase", dialect, phrase=safe_phrase))
    if code:
        parts.append(phrases.piece("proof_code", dialect, code=spell_code(code)))
    parts.append(phrases.piece("proof_call_back", dialect))
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


def inbound_identity_utterances(*, dialect: str | None, known_number: bool, verified: bool,
                                phrases: Phrasebook = DEFAULT_PHRASES) -> list[str]:
    """The answer to "你是谁" on a call the caller placed. No secret in it: who we are, what we never ask
    for, and the two ways a real elder can go on (keypad PIN, call-back to the registered number). The PII
    gate lets it through (the credential words are negated; the PIN is a "数字口令" keyed in, never spoken)."""
    said = [phrases.say("inbound_identity", dialect)]
    if verified:
        said.append(phrases.say("inbound_verified", dialect))
    elif known_number:
        said.append(phrases.say("inbound_offer", dialect))
    return said


def is_placed_by_platform(session: CallSession) -> bool:
    """Only calls the platform dialled (or the elder's own screen) may carry the spoken proof."""
    return session.direction == "outbound" or session.channel == "screen"


@dataclass(kw_only=True)
class IdentityService:
    ledger: CallLedger
    safe_phrase_of: SafePhraseLookup | None = None
    numbers_of: NumbersLookup | None = None
    pins: PinStore | None = None
    phrases: Phrasebook = DEFAULT_PHRASES

    async def entry_for(self, session: CallSession) -> LedgerEntryInfo | None:
        """The valid ledger entry of a call the platform placed; None for any inbound call (caller ID is
        not proof: an entry is never linked to a call someone else placed)."""
        if session.direction != "outbound":
            return None
        if session.ledger_entry_id is not None:
            entry = await self.ledger.get(session.ledger_entry_id)
            if entry is not None and entry.is_valid(self.ledger.now()):
                return entry
        if session.caller_number:
            return await self.ledger.current_for_number(session.caller_number)
        return None

    async def prove(self, session: CallSession) -> list[str]:
        """What the bot says to prove it is the platform (``IdentityProof`` for the dialogue stage).

        Inbound phone calls get ``inbound_identity_utterances``: nothing secret, no ledger entry."""
        if not is_placed_by_platform(session):
            return inbound_identity_utterances(dialect=session.dialect, known_number=session.elder_id is not None,
                                               verified=session.verified, phrases=self.phrases)
        entry = await self.entry_for(session)
        if entry is None and session.channel == "screen" and session.elder_id is not None and session.caller_number:
            # the elder's own screen (device token): a fresh code the screen shows now
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
        return proof_utterances(safe_phrase=phrase, code=entry.code if entry else None, dialect=session.dialect,
                                phrases=self.phrases)

    async def prove_and_verify(self, session: CallSession) -> list[str]:
        """``IdentityProof`` for the dialogue stage: what to say (``prove``), with the call's verification
        state set from the ledger link (``verify_session``)."""
        texts = await self.prove(session)
        await self.verify_session(session)
        return texts

    async def verify_session(self, session: CallSession) -> bool:
        """Set ``session.verification`` from the ledger link; returns whether it is verified."""
        if session.channel == "screen" and session.elder_id is not None:
            session.verification = "verified"
            return True
        if session.direction != "outbound":
            return session.verified  # inbound: only a factor the caller proves (the PIN) verifies
        entry = await self.entry_for(session)
        if entry is None or session.elder_id is None or entry.elder_id != session.elder_id:
            return session.verified
        numbers = [normalize_phone(n) for n in (await self.numbers_of(session.elder_id) if self.numbers_of else [])]
        caller = normalize_phone(session.caller_number or "")
        if caller and caller == entry.number and (not numbers or caller in numbers):
            session.verification = "verified"
        return session.verified


    async def check_pin(self, session: CallSession, pin: str) -> PinCheck:
        """A PIN keyed on an inbound phone call from one of the elder's registered numbers; ``ok`` marks
        the call ``verified``. Anything else (no elder for the number, no PIN set, a platform call)
        → ``not_set``, and nothing is counted."""
        if self.pins is None or session.elder_id is None or session.channel != "phone" or session.direction != "inbound":
            return PinCheck(status="not_set")
        numbers = [normalize_phone(n) for n in (await self.numbers_of(session.elder_id) if self.numbers_of else [])]
        if normalize_phone(session.caller_number or "") not in numbers:
            return PinCheck(status="not_set")
        result = await self.pins.check(session.elder_id, pin)
        if result.ok:
            session.verification = "verified"
        logger.info(f"call {session.call_id}: keypad PIN for elder {session.elder_id}: {result.status}")
        return result


def numbers_from_store(store) -> NumbersLookup:
    async def numbers(elder_id: int) -> list[str]:
        elder = await store.get_elder(elder_id)
        phones = getattr(elder, "phones", None) or []
        return [getattr(p, "number", p) for p in phones]

    return numbers
