"""The personal-data gate: every utterance the bot is about to speak passes here, right before TTS.

Rules (``check_utterance``):

- In ANY state the bot never asks for, or reads out, bank card numbers, passwords/PINs, SMS/verification
  codes, ID-card numbers, and never asks for a money transfer. Warnings that *name* these ("平安通不会问您
  验证码", "请不要转账") are allowed: the request words are negated in their clause.
- Until the call is ``verified`` the bot may not speak or ask for personal data: address, ID number, health
  details, family names, account/phone numbers.
- Matching is done on a normalised view (NFKC → full-width digits become ASCII; traditional → simplified;
  whitespace and invisible characters removed; Chinese numerals 六二二二 / 幺 / 两 read as digits), so
  spacing, script and spelling tricks do not get data out.

``PiiGate`` is the pipecat processor (one place, before TTS); ``redact`` masks transcripts for operators.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from loguru import logger
from pipecat.frames import frames as _frames
from pipecat.frames.frames import (
    Frame,
    InterimTranscriptionFrame,
    TextFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from assistant.fraud_guard.cues import NEGATOR
from assistant.fraud_guard.text import CN_DIGITS, _zh_simplify, split_clauses
from assistant.phrases import Phrasebook
from assistant.session import CallSession


@dataclass(frozen=True, kw_only=True)
class PersonalData:
    """What the platform knows about the elder on this call (values the bot must not leak unverified)."""

    name: str = ""
    address: str = ""
    id_number: str = ""
    phones: tuple[str, ...] = ()
    account_numbers: tuple[str, ...] = ()
    family_names: tuple[str, ...] = ()
    health_terms: tuple[str, ...] = ()  # diagnoses / medicines on file
    safe_phrase: str = ""  # the elder's safe phrase (masked in transcripts)
    family_phones: tuple[str, ...] = ()  # the family contacts' numbers


def personal_data_of(elder: object, *, safe_phrase: str | None = None) -> PersonalData:
    """``PersonalData`` from a platform elder (``ElderInfo`` or the ``Elder`` row, relations loaded): name,
    address, phones, family names and numbers, and the safe phrase (``ElderInfo`` does not carry it: pass it)."""
    contacts = list(getattr(elder, "contacts", ()) or ())
    return PersonalData(
        name=str(getattr(elder, "name", "") or ""),
        address=str(getattr(elder, "address", "") or ""),
        phones=tuple(str(p.number) for p in getattr(elder, "phones", ()) or () if getattr(p, "number", "")),
        family_names=tuple(str(c.name) for c in contacts if getattr(c, "name", "")),
        family_phones=tuple(str(c.phone) for c in contacts if getattr(c, "phone", "")),
        safe_phrase=str(safe_phrase if safe_phrase is not None else getattr(elder, "safe_phrase", "") or ""),
    )


@dataclass(frozen=True, kw_only=True)
class GateDecision:
    allowed: bool
    reasons: tuple[str, ...] = ()
    text: str = ""  # what may be spoken: the original, or the safe replacement


@dataclass(frozen=True, kw_only=True)
class PiiPolicy:
    personal: PersonalData | None = None
    # says safe_forbidden / safe_unverified (assistant/phrases.py) instead of a blocked utterance
    phrases: Phrasebook = Phrasebook()


# --- normalisation --------------------------------------------------------------------------------

_FULLWIDTH = {chr(0xFF10 + i): str(i) for i in range(10)}
_DIGIT_MAP = {**CN_DIGITS, **_FULLWIDTH}
_DIGIT_CHARS = set("0123456789") | set(_DIGIT_MAP)
_SEPARATORS = set(" \t\u3000-–—_.,，、·/()（）:：")


def _visible(text: str) -> str:
    t = unicodedata.normalize("NFKC", text or "")
    # zero-width and other format characters (U+200B, U+FEFF, soft hyphen, ...) are invisible tricks
    return "".join(ch for ch in t if unicodedata.category(ch) not in ("Cf", "Cc") or ch in "\n\t")


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", _zh_simplify(_visible(text)).lower())


@dataclass(frozen=True)
class _Run:
    start: int
    end: int
    digits: str


def _digit_runs(text: str, *, min_digits: int) -> list[_Run]:
    """Runs of digits (ASCII, full-width, Chinese numerals) with separators inside, in ``text``'s indices."""
    runs: list[_Run] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in _DIGIT_CHARS:
            j, digits, last = i, [], i
            while j < n and (text[j] in _DIGIT_CHARS or text[j] in _SEPARATORS):
                if text[j] in _DIGIT_CHARS:
                    digits.append(_DIGIT_MAP.get(text[j], text[j]))
                    last = j
                j += 1
            end = last + 1
            if end < n and text[end] in "xXｘＸ":  # ID numbers end in X
                digits.append("x")
                end += 1
            if len(digits) >= min_digits:
                runs.append(_Run(i, end, "".join(digits)))
            i = end
        else:
            i += 1
    return runs


def _classify_digits(d: str) -> str:
    if len(d) == 18 or (len(d) == 18 and d.endswith("x")) or (len(d) in (15, 18) and d[-1] == "x"):
        return "id_number"
    if d.startswith("1") and len(d) == 11:
        return "phone"
    if 13 <= len(d) <= 19:
        return "card_number"
    if 7 <= len(d) <= 12:
        return "phone"
    return "number"


# --- what the bot must never say or ask -----------------------------------------------------------

_FORBIDDEN_OBJECTS = re.compile(
    r"(银行卡号|卡号|卡的号码|卡嘅号码|密码|pin码|pin|验证码|校验码|动态码|短信码|确认码是多少|身份证号|身份证号码|身份证嘅号码|"
    r"证件号|cvv|安全码|网银|账号|户口号码)"
)
_TRANSFER = re.compile(r"(转账|转帐|汇款|汇钱|转钱|打钱|过数|转数|入数|付款到|转到.{0,6}(账|户|卡)|扫码(付|转)|安全账户|监管账户|先交|预付)")
_PERSONAL_ASK = re.compile(
    r"(地址|住址|住在哪|住喺边|门牌|几号楼|身份证|病历|病情|诊断|血压|血糖|吃什么药|食咩药|用药|药名|"
    r"儿子叫|女儿叫|家人.{0,3}名字|仔叫咩|个女叫咩|紧急联系人|电话号码|手机号|账户|户口)"
)


# the clause asks for (or states) the data: "请说一下地址", "您女儿叫什么名字", "血压多少" — while
# "送到您登记的地址" names it without asking or saying it
_ASK_MARKER = re.compile(
    r"(请|麻烦|说一下|讲一下|讲下|说下|告诉|报一下|报下|提供|确认一下|核对一下|是什么|是哪|在哪|哪里|边度|系咩|乜嘢|咩|"
    r"什么|多少|几多|几号|是不是|系咪|对吗|对不对|怎么样|点样|吗|呢|吧|是|系)"
)


def _negated(clause: str, start: int) -> bool:
    before = clause[max(0, start - 14) : start]
    before = re.sub(r"(不如|不然|不过|不好意思|唔该)", "", before)
    return NEGATOR.search(before) is not None


def _hits(pattern: re.Pattern[str], norm: str) -> list[str]:
    found = []
    for clause in split_clauses(norm):
        for m in pattern.finditer(clause):
            if not _negated(clause, m.start()):
                found.append(m.group(0))
    return found


def _contains_value(norm_text: str, value: str) -> bool:
    v = _norm(value)
    if len(v) < 2:
        return False
    if v in norm_text:
        return True
    # digits: compare the digit sequences (六二二二 8888 == 62228888)
    vd = "".join(CN_DIGITS.get(c, c) for c in v if c in _DIGIT_CHARS)
    if len(vd) >= 6:
        td = "".join(r.digits for r in _digit_runs(norm_text, min_digits=4))
        return vd in td
    return False


def check_utterance(text: str, *, verified: bool, personal: PersonalData | None = None,
                    dialect: str | None = None, policy: PiiPolicy | None = None) -> GateDecision:
    policy = policy or PiiPolicy(personal=personal)
    personal = personal or policy.personal
    norm = _norm(text)
    reasons: list[str] = []
    forbidden = False
    for w in _hits(_FORBIDDEN_OBJECTS, norm):
        reasons.append(f"asks_or_says_credential:{w}")
        forbidden = True
    for w in _hits(_TRANSFER, norm):
        reasons.append(f"money_transfer:{w}")
        forbidden = True
    for run in _digit_runs(norm, min_digits=7):
        kind = _classify_digits(run.digits)
        if kind in ("id_number", "card_number"):
            reasons.append(f"reads_{kind}")
            forbidden = True
        elif not verified:
            reasons.append(f"reads_{kind}")
    if personal is not None:
        always = [("id_number", personal.id_number), *[("account_number", a) for a in personal.account_numbers]]
        for kind, value in always:
            if value and _contains_value(norm, value):
                reasons.append(f"reads_{kind}")
                forbidden = True
        if not verified:
            values = [("address", personal.address), *[("phone", p) for p in personal.phones],
                      *[("family_name", f) for f in personal.family_names],
                      *[("health", h) for h in personal.health_terms]]
            for kind, value in values:
                if value and _contains_value(norm, value):
                    reasons.append(f"reads_{kind}")
    if not verified:
        for clause in split_clauses(norm):
            m = _PERSONAL_ASK.search(clause)
            if m is not None and _ASK_MARKER.search(clause) is not None:
                reasons.append(f"personal_unverified:{m.group(0)}")
    if not reasons:
        return GateDecision(allowed=True, text=text)
    safe = policy.phrases.say("safe_forbidden" if forbidden else "safe_unverified", dialect)
    return GateDecision(allowed=False, reasons=tuple(dict.fromkeys(reasons)), text=safe)


# --- redaction for operators ----------------------------------------------------------------------

_ADDRESS = re.compile(
    r"[\u4e00-\u9fff]{1,12}(路|街|道|巷|里|村|大道|花园|小区|新村)[\u4e00-\u9fff0-9０-９一二三四五六七八九十零〇幺两\-]{0,12}"
    r"(号楼|栋|座|号|楼|室|房)([0-9０-９一二三四五六七八九十零〇幺两\-]{1,6}(号|室|房|楼)?)*"
)
_LABELS = {"id_number": "[身份证号]", "card_number": "[卡号]", "phone": "[电话]", "number": "[号码]"}
SHORT_CODE_LABEL = "[数字码]"
# 4-6 digits followed by one of these are a quantity, a time, a date, money or an age ("2024年", "500元",
# "1500毫升"), not a one-time code or PIN; they stay readable
_QUANTITY_UNITS = frozenset("年月日号点时分秒岁元块圆毛角斤克个罐瓶份次米天万千百亿度%％")
_QUANTITY_WORDS = ("毫升", "公斤", "公里", "千克", "毫克", "分钟", "小时", "周岁", "人民币", "蚊")
_CLOCK = re.compile(r"^[0-9０-９]{1,2}\s*[:：]\s*[0-9０-９]{2}$")


def _quantity_follows(t: str, end: int) -> bool:
    rest = t[end : end + 4].lstrip(" \u3000")
    return bool(rest) and (rest[0] in _QUANTITY_UNITS or rest.startswith(_QUANTITY_WORDS))


def redact(text: str, *, personal: PersonalData | None = None) -> str:
    """Mask, for operator views and stored transcripts: phone/ID/card numbers (7+ digits, any spelling), short
    codes (4-6 digits: one-time codes, PINs; not quantities, times or dates), addresses, and with
    ``personal`` the elder's name (and given name), address, safe phrase, numbers and family names/numbers.
    "两罐", "下午3点", "15:30", "2024年" stay as they are."""
    t = "".join(ch for ch in (text or "") if unicodedata.category(ch) != "Cf")
    if personal is not None:
        # before the digit masks: a safe phrase may hold digits ("幸福8号")
        for value in (personal.safe_phrase,):
            if value and len(value.strip()) >= 2:
                for variant in sorted(_script_variants(value.strip()), key=len, reverse=True):
                    t = t.replace(variant, "[暗语]")
    out: list[str] = []
    pos = 0
    for run in _digit_runs(t, min_digits=4):
        if len(run.digits) >= 7:
            label = _LABELS[_classify_digits(run.digits)]
        elif _CLOCK.match(t[run.start : run.end]) or _quantity_follows(t, run.end):
            continue
        else:
            label = SHORT_CODE_LABEL
        out.append(t[pos : run.start])
        out.append(label)
        pos = run.end
    out.append(t[pos:])
    t = "".join(out)
    t = _ADDRESS.sub("[地址]", t)
    if personal is not None:
        values = [(personal.address, "[地址]"), (personal.name, "[姓名]"),
                  *[(f, "[家人]") for f in personal.family_names]]
        name = personal.name.strip()
        if len(name) >= 3:  # the given name alone ("桂英" of 陈桂英); surnames alone are too common to mask
            values.append((name[1:], "[姓名]"))
        for value, label in values:
            if value and len(value.strip()) >= 2:
                for variant in sorted(_script_variants(value.strip()), key=len, reverse=True):
                    t = t.replace(variant, label)
    return t


# --- the pipecat processor ------------------------------------------------------------------------

BlockSink = Callable[[GateDecision, str], Awaitable[None]]


_USER_SIDE: tuple[type, ...] = tuple(
    c for c in (
        TranscriptionFrame, InterimTranscriptionFrame,
        getattr(_frames, "EagerTranscriptionFrame", None), getattr(_frames, "TranslationFrame", None),
        getattr(_frames, "InputTextRawFrame", None), getattr(_frames, "TTSTextFrame", None),
    ) if c is not None
)
_SENTENCE_END = re.compile(r"[。！？!?；;\n]\s*$")


class PiiGate(FrameProcessor):
    """Place right before TTS. Blocked utterances are replaced by a safe sentence and logged.

    Whole utterances (``TTSSpeakFrame``, ``TextFrame``) are checked one by one. Streamed LLM tokens
    (``LLMTextFrame``) are held until a sentence ends (or the response ends) and checked as one sentence,
    so "请把验" + "证码念给我" cannot slip through in pieces; an interruption drops what is held."""

    def __init__(self, *, session: CallSession, policy: PiiPolicy | None = None, on_block: BlockSink | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self._session = session
        self._policy = policy or PiiPolicy()
        self._on_block = on_block
        self._held: list[str] = []
        self.blocked: list[GateDecision] = []

    def set_personal(self, personal: PersonalData | None) -> None:
        self._policy = dataclasses.replace(self._policy, personal=personal)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if direction != FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
            return
        if isinstance(frame, _frames.InterruptionFrame):
            self._held.clear()
            await self.push_frame(frame, direction)
            return
        if isinstance(frame, _frames.LLMTextFrame):
            self._held.append(frame.text)
            if _SENTENCE_END.search(frame.text):
                await self._flush()
            return
        if self._held:  # anything else (end of response, a whole utterance, control frames) ends a sentence
            await self._flush()
        if isinstance(frame, (TTSSpeakFrame, TextFrame)) and not isinstance(frame, _USER_SIDE):
            frame = await self._checked(frame)
        await self.push_frame(frame, direction)

    async def _flush(self) -> None:
        text = "".join(self._held)
        self._held.clear()
        if text:
            await self.push_frame(await self._checked(_frames.LLMTextFrame(text=text)), FrameDirection.DOWNSTREAM)

    async def _checked(self, frame: Frame) -> Frame:
        decision = check_utterance(
            frame.text, verified=self._session.verified, dialect=self._session.dialect, policy=self._policy
        )
        if decision.allowed:
            return frame
        self.blocked.append(decision)
        logger.warning(f"call {self._session.call_id}: PII gate blocked an utterance: {', '.join(decision.reasons)}")
        if self._on_block is not None:
            try:
                await self._on_block(decision, redact(frame.text, personal=self._policy.personal))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a flag that cannot be stored must not let the text out
                logger.error(f"call {self._session.call_id}: PII block not reported: {exc}")
        return _replace_text(frame, decision.text)


def _replace_text(frame: Frame, text: str) -> Frame:
    if isinstance(frame, TTSSpeakFrame):
        return TTSSpeakFrame(text=text)
    try:
        return dataclasses.replace(frame, text=text)
    except (TypeError, ValueError):
        return TTSSpeakFrame(text=text)


def _script_variants(value: str) -> set[str]:
    out = {value, _zh_simplify(value)}
    try:
        import zhconv

        out |= {zhconv.convert(value, "zh-hant"), zhconv.convert(value, "zh-hk")}
    except ModuleNotFoundError:  # pragma: no cover
        pass
    return {v for v in out if v}
