"""Call screening (issue #20 item 4): the assistant answers unknown callers on an elder's own line.

Scam calls ring the elder's own line, not the platform's. Where that line routes through the platform (an
ATA or SIP line: its incoming calls reach the gateway as INVITEs to ``sip:<line>@gateway``; configured by
``screening.lines``, each line a phone of an elder on file plus the URI where the elder's phone really
rings), an incoming call to the line is handled here instead of by the bot:

- a caller whose number is one of the elder's family contacts is put straight through (the elder's phone
  is rung; once it answers, the two are bridged). Caller ID only spares family the announcement: it
  verifies nothing and unlocks no data (it can be spoofed; a spoofed family number reaches the elder
  like an ordinary call would without the platform);
- anyone else is answered by the assistant: 您好，这里是机主的电话助手，请问您是哪位，有什么事？ The answer
  (until ``end_of_answer_silence_s`` of silence, at most ``max_answer_s``) is recognised (the platform's
  ASR) and scored by the scam detector. The caller waits; the elder's phone rings (a B2BUA leg, dialled
  and bridged as the hand-over does: ``SipEndpoint.dial`` + ``telephony.handover.bridge``) and hears
  有电话找您，对方说：…。按1接通，按2挂断 — or, when the detector flags the answer, a warning
  (这个电话很像诈骗…不要告诉对方验证码和银行信息；按1仍然接通，按2挂断，按3联系家人). Key 1 bridges the
  caller, 2 (or no key within ``elder_choice_timeout_s``) tells the caller the elder cannot take the call,
  3 hangs up on the caller and phones the family contacts in priority order, bridging the first who
  answers to the elder. A flagged call raises an urgent ``fraud`` alert (operators, family SMS: the
  existing alert path) whose transcript is masked with the elder's personal data.

The platform's own calls to a screened line (care calls, call-backs: written to the fraud-guard ledger
before dialling, opened with the one-time code the elder's screen shows) never pass through screening:
``route_outbound`` sends them straight to the elder's phone. An inbound INVITE that merely claims to come
from the platform is screened like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from assistant.asr.registry import recognize
from assistant.errors import TelephonyError
from assistant.fraud_guard.guard import shared_detector
from assistant.fraud_guard.pii_gate import personal_data_of, redact
from assistant.phrases import Phrasebook
from assistant.platform.models import normalize_phone
from assistant.settings import ScreeningSettings, Settings
from telephony.handover import Speaker, bridge
from telephony.lines import LineUse
from telephony.sip import PhoneCall, SipEndpoint

logger = logging.getLogger(__name__)

# 8 kHz 16-bit PCM of the caller's answer, dialect hint → (recognised text, dialect)
Recognise = Callable[[bytes, str | None], Awaitable[tuple[str, str]]]
Choice = Literal["connect", "reject", "family"]

# what the caller and the elder hear: keys of assistant/phrases.py
ASK = "screen_ask"
HOLD = "screen_hold"
# said to the caller when the elder declines, does not choose or does not answer: the same words for all three
UNAVAILABLE = "screen_unavailable"
ELDER_DECLINED = "screen_declined"
CALLER_GONE = "screen_caller_gone"
CALLING_FAMILY = "screen_calling_family"
FAMILY_INTRO = "screen_family_intro"
FAMILY_NOBODY = "screen_family_nobody"
DEFAULT_PHRASES = Phrasebook()  # a deployment's own: Phrasebook(platform_name=settings.platform.name)

KEYS: dict[str, Choice] = {"1": "connect", "2": "reject", "3": "family"}


def _digits(number: str | None) -> str:
    return normalize_phone(number or "")


@dataclass(frozen=True, kw_only=True)
class ScreenedLine:
    """One elder's line that routes through the platform: ``number`` (a phone of the elder on file) and
    ``ring_uri`` (where the elder's phone really rings)."""

    number: str
    ring_uri: str


def parse_lines(entries: tuple[str, ...] | list[str]) -> dict[str, ScreenedLine]:
    """``("07506601234=sip:ata@10.0.0.7", ...)`` → lines by their digits; a malformed entry is a
    ``TelephonyError`` (``screening_config``) at start, not a silent gap in the elder's protection."""
    lines: dict[str, ScreenedLine] = {}
    for entry in entries:
        number, sep, uri = entry.partition("=")
        digits = _digits(number)
        if not sep or not digits or not uri.strip().startswith("sip:"):
            raise TelephonyError(f"screening.lines entry {entry!r}: expected <number>=sip:<uri>", code="screening_config")
        lines[digits] = ScreenedLine(number=digits, ring_uri=uri.strip())
    return lines


def elder_choice(digit: str, *, flagged: bool, has_family: bool) -> Choice | None:
    """What a key pressed by the elder after the announcement means (None: not a choice, keep waiting).
    Key 3 (call family) is offered with the warning; it also works after a plain announcement."""
    choice = KEYS.get(digit)
    if choice == "family" and not has_family:
        return None
    return choice


def announcement_parts(said: str, *, flagged: bool, has_family: bool, dialect: str | None, max_chars: int,
                       phrases: Phrasebook = DEFAULT_PHRASES) -> tuple[str, str, str]:
    """What the elder hears, as (fixed head, the caller's words, fixed tail): the caller's words (as
    recognised, at most ``max_chars`` characters), then the choices; a flagged call is announced as a warning.
    An announcement is spoken in three parts: the fixed head and tail (in the prompt cache after their first
    use) and the caller's words (synthesised per call, never written to the disk cache)."""
    words = " ".join((said or "").split())
    if len(words) > max_chars:
        words = words[:max_chars] + "……"
    words = (words.rstrip("。.!！?？,，") or phrases.piece("screen_said_nothing", dialect)) + "。"
    if flagged:
        family = phrases.say("screen_warn_family", dialect) if has_family else ""
        return phrases.say("screen_warn_head", dialect), words, phrases.say("screen_warn_tail", dialect) + family
    return phrases.say("screen_announce_head", dialect), words, phrases.say("screen_announce_tail", dialect)


def announcement(said: str, *, flagged: bool, has_family: bool, dialect: str | None, max_chars: int) -> str:
    return "".join(announcement_parts(said, flagged=flagged, has_family=has_family, dialect=dialect, max_chars=max_chars))


class AnswerCollector:
    """The caller's answer from 20 ms frames: speech (webrtcvad) followed by ``end_silence_s`` of silence,
    or ``max_answer_s`` of audio once speech began. ``done`` is set when the answer is over."""

    FRAME = 320  # 20 ms of 8 kHz 16-bit PCM

    def __init__(self, *, end_silence_s: float, max_answer_s: float, aggressiveness: int = 2,
                 min_speech_s: float = 0.2) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(aggressiveness)
        self._end_frames = max(1, round(end_silence_s / 0.02))
        self._max_frames = max(1, round(max_answer_s / 0.02))
        self._min_speech_frames = max(1, round(min_speech_s / 0.02))
        self._buf = bytearray()
        self._frames: list[bytes] = []
        self._voiced_run = 0
        self._silent_run = 0
        self._started_at: int | None = None  # frame index where speech began
        self.done = asyncio.Event()

    @property
    def heard_speech(self) -> bool:
        return self._started_at is not None

    @property
    def pcm(self) -> bytes:
        """The answer's audio (from shortly before speech began); empty when the caller said nothing."""
        if self._started_at is None:
            return b""
        start = max(0, self._started_at - 15)  # 0.3 s before the VAD was sure
        return b"".join(self._frames[start:])

    def feed(self, pcm: bytes) -> None:
        if self.done.is_set():
            return
        self._buf.extend(pcm)
        while len(self._buf) >= self.FRAME and not self.done.is_set():
            frame = bytes(self._buf[: self.FRAME])
            del self._buf[: self.FRAME]
            self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        self._frames.append(frame)
        voiced = self._vad.is_speech(frame, 8000)
        self._voiced_run = self._voiced_run + 1 if voiced else 0
        self._silent_run = 0 if voiced else self._silent_run + 1
        if self._started_at is None:
            if self._voiced_run >= self._min_speech_frames:
                self._started_at = len(self._frames) - self._voiced_run
            elif len(self._frames) > 15 * 50:  # keep at most 15 s of silence before any speech
                del self._frames[:50]
            return
        if self._silent_run >= self._end_frames or len(self._frames) - self._started_at >= self._max_frames:
            self.done.set()


@dataclass(kw_only=True)
class ScreeningState:
    """One screened call as tests and the console see it. Times are ``time.monotonic()``."""

    call_id: str
    line: str
    elder_id: int | None
    caller_number: str
    # asking → listening → recognising → ringing_elder → announcing → connected | rejected | no_choice |
    # calling_family → connected_family | family_no_answer; elder_no_answer; caller_gone; passthrough_family →
    # connected; ended after a bridge
    state: str = "new"
    screened: bool = True  # False: a family contact put straight through
    transcript: str = ""
    dialect: str | None = None
    risk: float | None = None
    flagged: bool = False
    scam_type: str | None = None
    reasons: tuple[str, ...] = ()
    announcement: str | None = None  # what the elder's phone was told
    choice: str | None = None
    alert_id: int | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    announced_at: float | None = None
    recognise_ms: float | None = None  # how long the caller's answer took to recognise
    keys: list[str] = field(default_factory=list)  # what the elder pressed after the announcement
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def to_json(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "line": self.line, "elder_id": self.elder_id, "state": self.state,
                "screened": self.screened, "risk": self.risk, "flagged": self.flagged, "scam_type": self.scam_type,
                "reasons": list(self.reasons), "announcement": self.announcement, "choice": self.choice,
                "alert_id": self.alert_id, "attempts": list(self.attempts), "recognise_ms": self.recognise_ms, "keys": list(self.keys),
                "announced_ms": None if self.announced_at is None else round((self.announced_at - self.started_at) * 1000, 1)}


def asr_recogniser(settings: Settings) -> Recognise:
    """The platform's recogniser (``assistant.asr.registry.recognize``), dialect chosen per utterance."""

    async def recognise(pcm8k: bytes, dialect: str | None) -> tuple[str, str]:
        result = await recognize(pcm8k, sample_rate_hz=8000, dialect=None, options=None, settings=settings)
        return result.text, result.dialect

    return recognise


class CallScreener:
    """Screens incoming calls to the configured lines (see the module docstring)."""

    def __init__(self, *, settings: Settings, endpoint: SipEndpoint, speak: Speaker, store: Any,
                 recognise: Recognise | None = None, detector: Any = None, speak_words: Speaker | None = None) -> None:
        """``speak``: fixed prompts (cacheable); ``speak_words``: the caller's words (default ``speak``)."""
        self.settings = settings
        self.cfg: ScreeningSettings = settings.screening
        self.phrases = Phrasebook(platform_name=settings.platform.name)
        self.endpoint = endpoint
        self.speak = speak
        self.speak_words = speak_words or speak
        self.store = store
        self.recognise = recognise or asr_recogniser(settings)
        self._detector = detector
        self.lines = parse_lines(self.cfg.lines)

    async def warm(self) -> None:
        """Load the scam detector and the recogniser before the first call (the gateway's start): a caller
        must not wait for model loading while the elder's phone could already be ringing."""
        await self._get_detector()
        await self.recognise(bytes(8000), None)  # 0.5 s of silence: loads the models, the text is dropped

    # --- routing -------------------------------------------------------------------------------
    def line_for(self, call: PhoneCall) -> ScreenedLine | None:
        """The screened line an inbound call was placed to (its request URI's user part), if any."""
        return self.lines.get(_digits(getattr(call, "called_number", "")))

    def route_outbound(self, number: str) -> str:
        """Where the platform's own call to ``number`` goes: a screened line's elder phone directly (the
        platform's calls carry their own proof and are never screened), any other number unchanged."""
        line = self.lines.get(_digits(number)) if not number.startswith("sip:") else None
        return line.ring_uri if line is not None else number

    # --- one call ------------------------------------------------------------------------------
    async def screen(self, call: PhoneCall, line: ScreenedLine, *, state: ScreeningState | None = None) -> ScreeningState:
        state = state or ScreeningState(call_id=call.call_id, line=line.number, elder_id=None, caller_number=call.remote_number)
        try:
            elder = await self._elder(line)
            state.elder_id = getattr(elder, "elder_id", None) if elder is not None else None
            dialect = (getattr(elder, "dialect", None) if elder is not None else None) or "cmn"
            contacts = await self._contacts(state.elder_id)
            caller = _digits(call.remote_number)
            if caller and any(_digits(c.phone) == caller for c in contacts):
                await self._put_through(call, line, state)
            else:
                await self._screen_unknown(call, line, state, elder=elder, dialect=dialect, contacts=contacts)
        finally:
            if call.state != "ended":
                await call.hangup()
            state.done.set()
        return state

    async def _put_through(self, call: PhoneCall, line: ScreenedLine, state: ScreeningState) -> None:
        """Family: the elder's phone rings while the caller hears ringing; bridged once it answers."""
        state.screened = False
        state.state = "passthrough_family"
        leg = await self._dial_elder(line, call, state, caller_id=call.remote_number or None)
        if leg is None:
            return
        try:
            await call.answer()
        except TelephonyError as exc:
            state.attempts.append({"who": "caller", "result": exc.code})
            await leg.hangup()
            return
        state.state = "connected"
        await bridge(call, leg)
        state.state = "ended"

    async def _screen_unknown(self, call: PhoneCall, line: ScreenedLine, state: ScreeningState, *, elder: Any,
                              dialect: str, contacts: list[Any]) -> None:
        name = self.cfg.answering_for
        collector = AnswerCollector(end_silence_s=self.cfg.end_of_answer_silence_s, max_answer_s=self.cfg.max_answer_s,
                                    aggressiveness=self.settings.audio.vad_aggressiveness)
        call.on_audio = collector.feed  # an answer that starts over the question counts too
        call.on_dtmf = None
        await call.answer()
        state.state = "asking"
        await self._tell(call, ASK, dialect, name=name)
        await call.wait_played(timeout_s=20.0)
        state.state = "listening"
        await self._listen(call, collector)
        call.on_audio = None
        if call.state != "active":
            state.state = "caller_gone"
            return
        state.state = "recognising"
        await self._tell(call, HOLD, dialect, name=name)
        if collector.heard_speech:
            t0 = time.monotonic()
            state.transcript, state.dialect = await self.recognise(collector.pcm, dialect)
            state.recognise_ms = round((time.monotonic() - t0) * 1000, 1)
        await self._score(state, elder=elder)
        if call.state != "active":
            state.state = "caller_gone"
            return
        parts = announcement_parts(state.transcript, flagged=state.flagged, has_family=bool(contacts), dialect=dialect,
                                   max_chars=self.cfg.max_announcement_chars, phrases=self.phrases)
        state.announcement = "".join(parts)
        # synthesised while the elder's phone rings: the elder hears it as soon as they pick up
        voiced = asyncio.create_task(self._voice_parts(parts, dialect), name=f"screening-voice-{call.call_id[:12]}")
        try:
            leg = await self._dial_elder(line, call, state)
            pcm = await voiced if leg is not None else None
        finally:
            if not voiced.done():
                voiced.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await voiced
        if leg is None:
            if call.state == "active":
                await self._tell(call, UNAVAILABLE, dialect, name=name)
                await call.wait_played(timeout_s=15.0)
            return
        try:
            choice = await self._ask_elder(leg, call, state, announcement_pcm=pcm, has_family=bool(contacts))
            state.choice = choice
            if call.state != "active" and choice != "family":
                state.state = "caller_gone"
                await self._tell(leg, CALLER_GONE, dialect)
                await leg.wait_played(timeout_s=10.0)
                return
            if choice == "connect":
                state.state = "connected"
                await bridge(call, leg)
                state.state = "ended"
                return
            await self._tell(call, UNAVAILABLE, dialect, name=name)  # the caller is not told the elder declined
            if choice == "family":
                await call.wait_played(timeout_s=15.0)
                await call.hangup()
                state.state = "calling_family"
                await self._tell(leg, CALLING_FAMILY, dialect)
                await self._family(leg, state, elder=elder, contacts=contacts, dialect=dialect)
                return
            state.state = "rejected" if choice == "reject" else "no_choice"
            await self._tell(leg, ELDER_DECLINED, dialect)
            await asyncio.gather(call.wait_played(timeout_s=15.0), leg.wait_played(timeout_s=10.0))
        finally:
            if leg.state != "ended":
                await leg.hangup()

    async def _listen(self, call: PhoneCall, collector: AnswerCollector) -> None:
        """Until the answer is over, the caller hangs up, or ``answer_timeout_s`` passes without speech."""
        ended = asyncio.ensure_future(call.wait_ended())
        answered = asyncio.ensure_future(collector.done.wait())
        try:
            deadline = time.monotonic() + self.cfg.answer_timeout_s
            while not (ended.done() or answered.done()):
                left = (deadline if not collector.heard_speech else deadline + self.cfg.max_answer_s) - time.monotonic()
                if left <= 0:
                    break
                await asyncio.wait({ended, answered}, timeout=min(left, 0.5), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (ended, answered):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _score(self, state: ScreeningState, *, elder: Any) -> None:
        """The scam detector on the caller's answer; a flag raises the operators' fraud alert."""
        if not state.transcript:
            return
        detector = await self._get_detector()
        watch = detector.watch()
        update = watch.add_turn("caller", state.transcript)
        state.risk, state.flagged, state.scam_type, state.reasons = update.risk, update.flagged, update.scam_type, update.reasons
        logger.info("screened call %s: risk %.2f%s", state.call_id, update.risk, " (flagged)" if update.flagged else "")
        if update.flagged:
            await self._fraud_alert(state, elder=elder, evidence=watch.evidence_phrases())

    async def _get_detector(self):
        if self._detector is None:
            fraud = self.settings.fraud
            self._detector = await asyncio.to_thread(shared_detector, fraud.flag_threshold, use_ngram=fraud.use_ngram)
        return self._detector

    async def _fraud_alert(self, state: ScreeningState, *, elder: Any, evidence: list[str]) -> None:
        if self.store is None or not hasattr(self.store, "raise_alert"):
            return
        personal = personal_data_of(elder) if elder is not None else None
        detail = {"source": "call_screening", "line": redact(state.line, personal=personal), "risk": state.risk,
                  "scam_type": state.scam_type, "evidence": [redact(e, personal=personal) for e in evidence],
                  "reasons": list(state.reasons),
                  "transcript": [{"speaker": "caller", "text": redact(state.transcript, personal=personal)}]}
        try:
            info = await self.store.raise_alert(elder_id=state.elder_id, call_id=state.call_id, kind="fraud",
                                                 severity="urgent", detail=detail)
            state.alert_id = info.alert_id
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the elder must still be warned when the store is down
            logger.error("screened call %s: fraud alert not stored: %s", state.call_id, exc)

    async def _ask_elder(self, leg: PhoneCall, caller: PhoneCall, state: ScreeningState, *, announcement_pcm: bytes | None,
                         has_family: bool) -> Choice | None:
        """The announcement (said twice) and the elder's key; None when no choice was made in time."""
        chosen: asyncio.Future[Choice] = asyncio.get_running_loop().create_future()

        def on_dtmf(digit: str) -> None:
            state.keys.append(digit)
            choice = elder_choice(digit, flagged=state.flagged, has_family=has_family)
            if choice is not None and not chosen.done():
                chosen.set_result(choice)

        leg.on_dtmf = on_dtmf
        leg.on_audio = None
        state.state = "announcing"
        elder_gone = asyncio.ensure_future(leg.wait_ended())
        try:
            for _ in range(2):
                if announcement_pcm and leg.state == "active":
                    leg.play(announcement_pcm)
                if state.announced_at is None:
                    state.announced_at = time.monotonic()
                await asyncio.wait({chosen, elder_gone}, timeout=self.cfg.elder_choice_timeout_s / 2,
                                   return_when=asyncio.FIRST_COMPLETED)
                if chosen.done() or elder_gone.done():
                    break
        finally:
            elder_gone.cancel()
            leg.on_dtmf = None
        leg.clear_playback()
        if not chosen.done():
            chosen.cancel()
            return None
        return chosen.result()

    async def _family(self, elder_leg: PhoneCall, state: ScreeningState, *, elder: Any, contacts: list[Any], dialect: str) -> None:
        elder_name = getattr(elder, "name", None) or self.phrases.piece("family_elder_unnamed", dialect)
        for contact in contacts:
            if elder_leg.state != "active":
                return
            try:
                fam = await self.endpoint.dial(contact.phone, timeout_s=self.cfg.family_ring_timeout_s, line=LineUse.ROUTINE,
                                               line_wait_s=self.cfg.family_ring_timeout_s)
            except TelephonyError as exc:
                state.attempts.append({"who": "family", "uri": contact.phone, "result": exc.code})
                continue
            state.attempts.append({"who": "family", "uri": contact.phone, "result": "answered"})
            await self._tell(fam, FAMILY_INTRO, dialect, elder=elder_name)
            await fam.wait_played(timeout_s=15.0)
            if elder_leg.state != "active":
                await fam.hangup()
                return
            state.state = "connected_family"
            await bridge(elder_leg, fam)
            return
        state.state = "family_no_answer"
        await self._tell(elder_leg, FAMILY_NOBODY, dialect)
        await elder_leg.wait_played(timeout_s=20.0)

    # --- helpers -------------------------------------------------------------------------------
    async def _dial_elder(self, line: ScreenedLine, caller: PhoneCall, state: ScreeningState, *,
                          caller_id: str | None = None) -> PhoneCall | None:
        """Ring the elder's phone while the caller is still there; None when it is not answered (or the
        caller hung up meanwhile)."""
        state.state = "ringing_elder" if state.screened else state.state
        # a routine line (telephony.lines: a screened caller never takes the inbound reserve), waited for within
        # the ring time while the caller holds
        dial = asyncio.ensure_future(self.endpoint.dial(line.ring_uri, timeout_s=self.cfg.elder_ring_timeout_s, caller_id=caller_id,
                                                        line=LineUse.ROUTINE, line_wait_s=self.cfg.elder_ring_timeout_s))
        gone = asyncio.ensure_future(caller.wait_ended())
        try:
            await asyncio.wait({dial, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not dial.done():
                dial.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await dial
        if dial.cancelled():
            state.state = "caller_gone"
            return None
        exc = dial.exception()
        if exc is not None:
            state.attempts.append({"who": "elder", "uri": line.ring_uri, "result": getattr(exc, "code", type(exc).__name__)})
            state.state = "elder_no_answer"
            return None
        leg = dial.result()
        state.attempts.append({"who": "elder", "uri": line.ring_uri, "result": "answered"})
        if caller.state == "ended":
            await leg.hangup()
            state.state = "caller_gone"
            return None
        return leg

    async def _elder(self, line: ScreenedLine) -> Any:
        if self.store is None:
            return None
        try:
            return await self.store.elder_by_phone(line.number)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("screened line %s: elder not read: %s", line.number[-4:], exc)
            return None

    async def _contacts(self, elder_id: int | None) -> list[Any]:
        if self.store is None or elder_id is None:
            return []
        try:
            contacts = await self.store.contacts_for(elder_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("elder %s: family contacts not read: %s", elder_id, exc)
            return []
        return [c for c in sorted(contacts, key=lambda c: (c.priority, c.contact_id)) if c.phone]

    async def _tell(self, call: PhoneCall, phrase: str, dialect: str | None, **fmt: Any) -> None:
        await self._say_text(call, self.phrases.say(phrase, dialect, **fmt), dialect or "cmn")

    async def _say_text(self, call: PhoneCall, text: str, dialect: str) -> None:
        if call.state != "active":
            return
        pcm = await self._voice(text, dialect)
        if pcm and call.state == "active":
            call.play(pcm)

    async def _voice_parts(self, parts: tuple[str, str, str], dialect: str) -> bytes | None:
        head, words, tail = parts
        pcm = [await self._voice(head, dialect), await self._voice(words, dialect, speak=self.speak_words),
               await self._voice(tail, dialect)]
        return b"".join(p for p in pcm if p) or None

    async def _voice(self, text: str, dialect: str, *, speak: Speaker | None = None) -> bytes | None:
        try:
            return await (speak or self.speak)(text, dialect)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a voice that fails must not leave the caller or the elder hanging
            logger.warning("screening prompt not synthesised: %s", exc)
            return None
