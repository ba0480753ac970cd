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
from assistant.platform.models import normalize_phone
from assistant.session import CallSession

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


# Asked "who are you" on a call the caller placed. No secret in it: who we are, what we never ask for, the
# two ways a real elder can go on (keypad PIN, call-back to the registered number). The PII gate lets it
# through (the credential words are negated; the PIN is a "数字口令" keyed in, never spoken).
INBOUND_IDENTITY = {
    "cmn": "这是您打进来的平安通热线。平安通不会问您要密码或验证码，也不会要钱。",
    "yue": "呢度係你打入嚟嘅平安通熱線。平安通唔會問你攞密碼或者驗證碼，亦唔會問你攞錢。",
}
INBOUND_OFFER = {
    "cmn": "要核对身份，请按星号键，再按您的数字口令，按井号键结束；或者按九，我们挂断后打到您登记的电话。",
    "yue": "要核對身份，請撳星號鍵，再撳你嘅數字口令，撳井號鍵結束；或者撳九，我哋收線再打去你登記嘅電話。",
}
INBOUND_VERIFIED = {
    "cmn": "您的身份已经核对好了。",
    "yue": "你嘅身份已經核對好。",
}
PIN_PROMPTS = {
    "enter": {"cmn": "请按您的数字口令，按井号键结束。", "yue": "請撳你嘅數字口令，撳井號鍵結束。"},
    "ok": {"cmn": "核对好了，谢谢您。有什么可以帮您？", "yue": "核對好喇，多謝你。有咩可以幫到你？"},
    "wrong": {"cmn": "口令不对，请按星号键再试一次。", "yue": "口令唔啱，請撳星號鍵再試一次。"},
    "locked": {"cmn": "口令试错太多次，已经暂停使用，工作人员会跟进。您也可以按九，我们打到您登记的电话。",
               "yue": "口令試錯太多次，已經暫停使用，職員會跟進。你都可以撳九，我哋打去你登記嘅電話。"},
    "unavailable": {"cmn": "这个电话不能用口令核对。您可以按九，我们打到您登记的电话。",
                    "yue": "呢個電話唔可以用口令核對。你可以撳九，我哋打去你登記嘅電話。"},
    "callback": {"cmn": "好的，我们现在挂断，马上打到您登记的电话。", "yue": "好，我哋而家收線，即刻打去你登記嘅電話。"},
    "callback_operator": {"cmn": "好的，我们现在挂断，工作人员会打到您登记的电话。",
                          "yue": "好，我哋而家收線，職員會打去你登記嘅電話。"},
    "callback_unavailable": {"cmn": "这个电话没有登记，不能回拨。请用您登记的电话打来。",
                             "yue": "呢個電話冇登記，唔可以回撥。請用你登記嘅電話打嚟。"},
}


def pin_prompt(kind: str, dialect: str | None) -> str:
    return PIN_PROMPTS[kind]["yue" if dialect == "yue" else "cmn"]


def inbound_identity_utterances(*, dialect: str | None, known_number: bool, verified: bool) -> list[str]:
    """The answer to "你是谁" on a call the caller placed: no safe phrase, no code (see the module doc)."""
    d = "yue" if dialect == "yue" else "cmn"
    if verified:
        return [INBOUND_IDENTITY[d] + INBOUND_VERIFIED[d]]
    if known_number:
        return [INBOUND_IDENTITY[d] + INBOUND_OFFER[d]]
    return [INBOUND_IDENTITY[d]]


def is_placed_by_platform(session: CallSession) -> bool:
    """Only calls the platform dialled (or the elder's own screen) may carry the spoken proof."""
    return session.direction == "outbound" or session.channel == "screen"


@dataclass(kw_only=True)
class IdentityService:
    ledger: CallLedger
    safe_phrase_of: SafePhraseLookup | None = None
    numbers_of: NumbersLookup | None = None
    pins: PinStore | None = None

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
                                               verified=session.verified)
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
        return proof_utterances(safe_phrase=phrase, code=entry.code if entry else None, dialect=session.dialect)

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
