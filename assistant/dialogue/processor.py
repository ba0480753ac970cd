"""The dialogue stage: transcripts and keypad presses in, things to say out (``TTSSpeakFrame``).

- Each transcript goes to Rasa's REST channel with the call id as sender and the call's metadata.
- An empty or failed transcript is a failed turn: "please say that again"; after
  ``max_failed_turns`` in a row the keypad menu / operator is offered.
- Rasa down, slow or malformed → an apology, a handover alert, the keypad menu. Never silence.
- Custom events from Rasa (``docs/contracts.md``) change the call: slower speech, handover, hang-up.
- Barge-in: when the elder starts speaking while the bot speaks, an interruption stops playback.
- One calibrated decision per spoken turn (``decision.py``, issue #27): the NLU parse is asked first, and
  only a turn heard and understood clearly enough reaches Rasa's actions; an uncertain emergency asks one
  short question, and yes, silence or anything unclear raises an "unconfirmed emergency" operator alert.
  A question like it follows ``decision_question_after_failed_turns`` turns in a row not understood, once
  per call (an elder whose speech cannot be recognised at all still reaches a person at the next turn):
  there only an answer that is itself a clear emergency raises the SOS; yes, key 1 or silence a person
  ("unconfirmed emergency"); a request understood this time is acted on; still not understood → the keypad
  menu and its "misunderstanding" hand-over, as two failed turns always led to.
- A consequence nothing reads back (an "unwell" alert and call-back, a nurse call-back, "I'm fine" closing a
  care call) understood on weak evidence (``decision_confirm_below_*``) is read back first ("您是说身体不舒服，
  要我们安排人给您回电吗？"): a yes (key 1, 对, 是) or the same request said again acts; no or silence does nothing
  and offers to say it again (a failed turn: two of them lead to the keypad menu); anything else is a new turn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndWorkerFrame,
    Frame,
    InputDTMFFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from assistant.call_alert import AlertSink, CallAlert
from assistant.dialogue.decision import (
    Decision,
    QuestionRoute,
    Thresholds,
    classify_answer,
    classify_confirm_answer,
    classify_failure_answer,
    decide,
    not_understood,
    spoken_menu_choice,
)
from assistant.dialogue.rasa_client import NluParse, RasaClient, RasaReply
from assistant.errors import DialogueError
from assistant.phrases import Phrasebook
from assistant.session import CallSession
from assistant.settings import Settings
from assistant.turns import TurnRecord, TurnTracker

# a reply ending in one of these asks the elder to confirm: the next utterance is a closed yes/no prompt
CONFIRM_QUESTIONS = ("对吗", "对不对", "好吗", "好不好", "是不是", "可以吗", "啱唔啱", "係唔係", "好唔好", "得唔得")

# keypad: 1 = fine, 2 = need help, 0 = operator (works even when speech fails). The dialogue alone gives a
# key its meaning: Rasa's action raises the alert (one raise per press); with Rasa down the alert below is
# raised here instead
KEYPAD_INTENTS = {"1": "/checkin_well", "2": "/checkin_unwell", "0": "/request_human"}
KEYPAD_DOWN_ALERTS = {"2": "unwell"}
# what is read back before a consequence understood on weak evidence (decision.CONFIRM_INTENTS) is acted on
READ_BACKS = {"checkin_unwell": "read_back_unwell", "health_consult": "read_back_nurse_callback",
              "checkin_well": "read_back_well"}


IdentityProof = Callable[[CallSession], Awaitable[list[str]]]
# (session, PIN keyed) → ``assistant.fraud_guard.pin.PinCheck`` (``IdentityService.check_pin``)
KeypadPin = Callable[[CallSession, str], Awaitable[Any]]

PIN_START, PIN_END, CALLBACK_KEY = "*", "#", "9"
PIN_MAX_KEYS = 12  # longer than any PIN: stop collecting (the check then fails)


class DialogueProcessor(FrameProcessor):
    def __init__(
        self,
        *,
        session: CallSession,
        settings: Settings,
        rasa: RasaClient,
        tracker: TurnTracker,
        on_alert: AlertSink | None = None,
        identity_proof: IdentityProof | None = None,
        keypad_pin: KeypadPin | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._session = session
        self._settings = settings
        self._phrases = Phrasebook(platform_name=settings.platform.name)
        self._rasa = rasa
        self._tracker = tracker
        self._on_alert = on_alert
        self._identity_proof = identity_proof
        self._keypad_pin = keypad_pin
        self._pin_keys: str | None = None  # the PIN being keyed (never logged or recorded)
        self._bot_speaking = False
        self._thresholds = Thresholds.from_settings(settings.dialogue)
        self._answer_timer: asyncio.Task | None = None

    async def cleanup(self):
        await self._stop_answer_timer()
        await super().cleanup()

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        elif isinstance(frame, VADUserStartedSpeakingFrame) and self._bot_speaking:
            logger.debug(f"call {self._session.call_id}: barge-in, stopping playback")
            await self.push_frame(frame, direction)
            await self.broadcast_interruption()
            return
        if isinstance(frame, TranscriptionFrame) and direction == FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
            await self._handle_transcript(frame)
            return
        if isinstance(frame, InputDTMFFrame):
            await self.push_frame(frame, direction)
            await self._handle_keypad(str(frame.button.value))
            return
        await self.push_frame(frame, direction)

    # -- turns -------------------------------------------------------------------------------------

    async def _handle_transcript(self, frame: TranscriptionFrame) -> None:
        record = self._tracker.for_frame(frame.id)
        if record is None:  # text from elsewhere (screen buttons, tests), not from our STT
            record = self._tracker.begin(source="system")
            record.transcript = frame.text
            record.frame_id = frame.id
        text = frame.text.strip()
        if self._pin_keys is not None and text:  # spoke instead of finishing the PIN: entry abandoned
            self._end_pin_entry()
        asr_confidence = record.asr_confidence if record.source == "speech" else None
        if self._session.pending_emergency is not None:
            await self._emergency_answer(record, text, asr_confidence=asr_confidence)
            return
        if self._session.pending_confirm is not None:
            await self._confirm_answer(record, text, asr_confidence=asr_confidence)
            return
        if not text:
            await self._failed_turn(record, reason=record.error or "empty_transcript")
            return
        if self._session.expect == "menu":
            # a keypad menu choice said aloud counts only when the whole answer is the choice
            key = spoken_menu_choice(text)
            if key is not None and (asr_confidence is None or asr_confidence >= self._thresholds.answer_min_asr):
                await self._keypad_choice(record, key)
                return
        await self._decide(record, text, asr_confidence=asr_confidence)

    async def _handle_keypad(self, key: str) -> None:
        if self._pin_keys is not None and not self._session.keypad_secret:
            self._end_pin_entry()  # started and left: this key (2 = help!) counts as usual
        if self._pin_keys is not None:
            await self._pin_key(key)
            return
        if self._pin_factor_offered() and key in (PIN_START, CALLBACK_KEY):
            await self._identity_key(key)
            return
        record = self._tracker.begin(source="dtmf")
        record.transcript = f"[按键 {key}]"
        if self._session.pending_emergency is not None:  # key 1 (or 2) answers "do you need help?" with yes
            await self._stop_answer_timer()
            if self._session.pending_emergency.get("route") == "not_understood":
                if key not in ("1", "2"):  # not the question's key: the keypad as usual (0 = operator)
                    self._session.pending_emergency = None
                    await self._keypad_choice(record, key)
                    return
                answer = "person"
            else:
                answer = "yes" if key in ("1", "2") else "unclear"
            record.events.append({"event": "emergency_answer", "answer": answer, "key": key})
            await self._resolve_emergency(record, answer, text=record.transcript)
            return
        if self._session.pending_confirm is not None:  # key 1 answers the read-back with yes; 2, 0 … as usual
            await self._stop_answer_timer()
            pending, self._session.pending_confirm = self._session.pending_confirm, None
            record.events.append({"event": "confirm_answer", "answer": "yes" if key == "1" else "key", "key": key})
            if key == "1":
                await self._confirmed(record, pending)
                return
        await self._keypad_choice(record, key)

    async def _keypad_choice(self, record: TurnRecord, key: str) -> None:
        intent = KEYPAD_INTENTS.get(key)
        if intent is None:
            await self._say(record, [self._phrases.say("keypad_menu", self._session.dialect)])
            return
        self._session.failed_turns = 0
        await self._ask_rasa(record, intent, keypad_key=key)

    # -- the caller's identity factors on an inbound phone call (issue #15) -----------------------------

    def _pin_factor_offered(self) -> bool:
        s = self._session
        return self._keypad_pin is not None and s.channel == "phone" and s.direction == "inbound" and not s.verified

    async def _identity_key(self, key: str) -> None:
        record = self._tracker.begin(source="dtmf")
        record.transcript = f"[按键 {key}]"
        dialect = self._session.dialect
        if self._session.elder_id is None:  # not a registered number: neither factor applies
            await self._say(record, [self._phrases.say("pin_unavailable" if key == PIN_START else "pin_callback_unavailable", dialect)])
            return
        if key == PIN_START:
            self._pin_keys = ""
            self._session.pin_entry_until = time.monotonic() + self._settings.fraud.pin_entry_timeout_s
            await self._say(record, [self._phrases.say("pin_enter", dialect)])
            return
        self._session.callback_requested = True
        record.events.append({"event": "identity_callback"})
        await self._say(record, [self._phrases.say("pin_callback", dialect)])
        await self.push_frame(EndWorkerFrame(), FrameDirection.UPSTREAM)

    def _end_pin_entry(self) -> None:
        self._pin_keys = None
        self._session.pin_entry_until = None

    async def _pin_key(self, key: str) -> None:
        assert self._pin_keys is not None
        if key == PIN_START:  # start again
            self._pin_keys = ""
            return
        if key != PIN_END:
            if key.isdigit() and len(self._pin_keys) < PIN_MAX_KEYS:
                self._pin_keys += key
            return
        pin = self._pin_keys
        self._end_pin_entry()
        await self._check_pin(pin)

    async def _check_pin(self, pin: str) -> None:
        record = self._tracker.begin(source="dtmf")
        record.transcript = "[按键 口令]"  # never the digits
        dialect = self._session.dialect
        try:
            result = await self._keypad_pin(self._session, pin)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store is down: no verification, and say how to go on
            logger.error(f"call {self._session.call_id}: PIN check failed: {exc}")
            await self._say(record, [self._phrases.say("pin_unavailable", dialect)])
            return
        status = getattr(result, "status", "not_set")
        record.events.append({"event": "identity_pin", "status": status})
        if status == "ok":
            self._session.failed_turns = 0
            await self._say(record, [self._phrases.say("pin_ok", dialect)])
        elif status == "wrong":
            await self._say(record, [self._phrases.say("pin_wrong", dialect)])
        elif status == "locked":
            if getattr(result, "just_locked", False):
                await self._alert("fraud", {"reason": "pin_lockout", "number": self._session.caller_number,
                                            "locked_until": str(getattr(result, "locked_until", ""))})
            await self._say(record, [self._phrases.say("pin_locked", dialect)])
        else:
            await self._say(record, [self._phrases.say("pin_unavailable", dialect)])

    async def _failed_turn(self, record: TurnRecord, *, reason: str) -> None:
        self._session.failed_turns += 1
        if self._question_due():
            await self._ask_emergency(record, record.transcript or "", route="not_understood",
                                      decision=Decision(action="ask_emergency", reason=f"not_understood:{reason}"))
            return
        if self._session.failed_turns >= self._settings.dialogue.max_failed_turns:
            await self._keypad_menu(record, reason=reason)
        else:
            await self._say(record, [self._phrases.say("not_heard", self._session.dialect)])

    async def _keypad_menu(self, record: TurnRecord, *, reason: str) -> None:
        """Not understood again: the keypad menu, and a "misunderstanding" alert (the gateway hands over)."""
        self._session.failed_turns = max(self._session.failed_turns, self._settings.dialogue.max_failed_turns)
        record.events.append({"event": "keypad_menu", "reason": reason})
        await self._alert("misunderstanding", {"failed_turns": self._session.failed_turns, "reason": reason})
        await self._say(record, [self._phrases.say("keypad_menu", self._session.dialect)])

    async def _ask_rasa(
        self, record: TurnRecord, text: str, *, keypad_key: str | None = None, parse: NluParse | None = None,
        extra_metadata: dict[str, Any] | None = None,
    ) -> None:
        metadata = {
            "call_id": self._session.call_id,
            "elder_id": self._session.elder_id,
            "dialect": self._session.dialect or "cmn",
            "channel": self._session.channel,
            "verified": self._session.verified,
            "caller_number": self._session.caller_number,
            **(extra_metadata or {}),
        }
        if record.nlu_start_t is None:
            record.nlu_start_t = time.perf_counter()
        try:
            reply = await self._rasa.send(sender=self._session.call_id, text=text, metadata=metadata, with_parse=parse is None)
            if parse is not None:
                reply = RasaReply(messages=reply.messages, parse=parse, latency_ms=reply.latency_ms)
            if not reply.messages:
                # Rasa answers `[]` when its actions fail (the action server is down): nothing was done
                raise DialogueError("Rasa sent no reply (its action server may be down)", code="rasa_empty_reply")
        except DialogueError as exc:
            if keypad_key in KEYPAD_DOWN_ALERTS:  # the action that raises it did not run
                await self._alert(KEYPAD_DOWN_ALERTS[keypad_key], {"source": "keypad", "key": keypad_key, "reason": exc.code})
            await self._dialogue_down(record, exc)
            return
        record.nlu_end_t = time.perf_counter()
        if reply.parse is not None:
            record.intent = reply.parse.intent
            record.intent_confidence = round(reply.parse.confidence, 3)
        elif keypad_key is not None:
            record.intent = text.lstrip("/")
            record.intent_confidence = 1.0
        # Rasa counts its own misunderstandings (inside forms a plain slot answer parses as nlu_fallback,
        # so fallbacks are not failures here) and sends keypad_menu itself; we count unheard turns.
        if any(e.get("event") == "keypad_menu" for e in reply.events):
            self._session.failed_turns = 0
            await self._alert("misunderstanding", {"reason": "rasa_fallbacks", "transcript": record.transcript})
        elif record.intent != "nlu_fallback" and reply.messages:
            self._session.failed_turns = 0
        self._session.asking_slot = next((e.get("slot") for e in reply.events if e.get("event") == "asking"), None)
        dropped = await self._apply_events(record, reply)
        texts = [t for t in reply.texts if t not in dropped]
        if not texts and not record.reply_texts:
            texts = [self._phrases.say("not_heard", self._session.dialect)]
        await self._say(record, texts)

    async def _dialogue_down(self, record: TurnRecord, exc: DialogueError) -> None:
        record.nlu_end_t = time.perf_counter()
        record.error = exc.code
        logger.warning(f"call {self._session.call_id}: dialogue unavailable: error[{exc.code}] {exc.message}")
        record.events.append({"event": "handover", "reason": exc.code})
        await self._alert("human", {"reason": exc.code, "transcript": record.transcript})
        await self._say(record, [self._phrases.say("dialogue_down", self._session.dialect), self._phrases.say("keypad_offer", self._session.dialect)])

    async def _apply_events(self, record: TurnRecord, reply: RasaReply) -> set[str]:
        """Apply Rasa's custom events; returns Rasa's texts that our own reply replaces."""
        dropped: set[str] = set()
        for event in reply.events:
            record.events.append(event)
            name = event.get("event")
            if name == "slower":
                self._session.tts_rate_wpm = max(
                    self._settings.tts.min_rate_wpm, self._session.tts_rate_wpm - self._settings.tts.slower_step_wpm
                )
            elif name == "handover":
                await self._alert("human", {"reason": event.get("reason", "requested"), "transcript": record.transcript})
            elif name == "fraud_check" and self._identity_proof is not None:
                proof = await self._identity_proof(self._session)
                record.reply_texts.extend(proof)
                record.secret_texts.update(proof)
                if proof and event.get("fallback_text"):  # the action's generic line: ours replaces it
                    dropped.add(event["fallback_text"])
            elif name == "hangup":
                await self.push_frame(EndWorkerFrame(), FrameDirection.UPSTREAM)
        return dropped

    # -- one decision per turn, emergencies (issue #27) -----------------------------------------------

    async def _decide(self, record: TurnRecord, text: str, *, asr_confidence: float | None,
                      parse: NluParse | None = None, read_back_intent: str | None = None) -> None:
        """Parse first, then one decision: act (Rasa), read back and ask, emergency now, ask about one, or "say
        that again". ``read_back_intent``: what the read-back before this turn asked about (the same request said
        again answers it: acted on)."""
        record.nlu_start_t = time.perf_counter()
        if parse is None:
            try:
                parse = await self._rasa.parse(text)
            except DialogueError as exc:
                await self._dialogue_down(record, exc)
                return
        decision = decide(
            text=text, asr_confidence=asr_confidence, intent=parse.intent, nlu_confidence=parse.confidence,
            thresholds=self._thresholds, in_form=self._session.asking_slot is not None,
        )
        if decision.action == "confirm" and parse.intent == read_back_intent:
            decision = Decision(action="act", reason="said_again", spotting=decision.spotting)
        record.intent = parse.intent
        record.intent_confidence = round(parse.confidence, 3)
        record.events.append({"event": "decision", **decision.detail()})
        in_form = self._session.asking_slot is not None
        if decision.action == "act" and not_understood(decision, intent=parse.intent, spoken=asr_confidence is not None,
                                                       in_form=in_form):
            # understood as nothing: Rasa says "say that again" (and keeps its own count); ours counts too
            self._session.failed_turns += 1
            if self._question_due():
                record.nlu_end_t = time.perf_counter()
                await self._ask_emergency(record, text, route="not_understood",
                                          decision=Decision(action="ask_emergency", reason="not_understood:nlu_fallback",
                                                            spotting=decision.spotting))
                return
        if decision.action == "act":
            await self._ask_rasa(record, text, parse=parse)
        elif decision.action == "confirm":
            record.nlu_end_t = time.perf_counter()
            await self._read_back(record, text, parse=parse, decision=decision)
        elif decision.action == "emergency":
            await self._emergency_now(record, text, parse=parse, decision=decision)
        elif decision.action == "ask_emergency":
            record.nlu_end_t = time.perf_counter()
            await self._ask_emergency(record, text, decision=decision, route="evidence")
        else:
            record.nlu_end_t = time.perf_counter()
            await self._failed_turn(record, reason=decision.reason)

    async def _emergency_now(
        self, record: TurnRecord, text: str, *, parse: NluParse | None, decision: Decision | None
    ) -> None:
        """SOS through Rasa's emergency rule: the alert (family told), reassurance, any form ended."""
        self._session.pending_emergency = None
        if parse is not None and parse.intent == "emergency":
            await self._ask_rasa(record, text, parse=parse)
            return
        detail = decision.detail() if decision is not None else {"decision": "confirmed_by_elder"}
        await self._ask_rasa(record, "/emergency", keypad_key="emergency",
                             extra_metadata={"transcript": text, "decision": detail})

    def _question_due(self) -> bool:
        """Turns in a row not understood: time for the question (once per call; then the keypad menu)."""
        n = self._thresholds.question_after_failed_turns
        s = self._session
        return n > 0 and s.failed_turns >= n and not s.failure_question_asked

    async def _ask_emergency(self, record: TurnRecord, text: str, *, decision: Decision,
                             route: QuestionRoute) -> None:
        self._session.pending_emergency = {
            "transcript": text, "asr_confidence": record.asr_confidence, "intent": record.intent,
            "nlu_confidence": record.intent_confidence, "route": route, **decision.detail(),
        }
        key = "emergency_question" if route == "evidence" else "not_understood_question"
        if route == "not_understood":
            self._session.failure_question_asked = True
        await self._say(record, [self._phrases.say(key, self._session.dialect)])
        self._session.expect = "yes_no"  # the question names key 1 too, but the answer is a yes or a no
        await self._start_answer_timer(self._settings.dialogue.emergency_answer_timeout_s)

    async def _emergency_answer(self, record: TurnRecord, text: str, *, asr_confidence: float | None) -> None:
        await self._stop_answer_timer()
        intent, confidence = None, 0.0
        if text:
            try:
                parse = await self._rasa.parse(text)
                intent, confidence = parse.intent, parse.confidence
            except DialogueError as exc:  # no NLU: the answer is unclear, which means a person
                logger.warning(f"call {self._session.call_id}: NLU unavailable for the emergency answer: {exc.code}")
        kw = {"text": text, "asr_confidence": asr_confidence, "intent": intent, "nlu_confidence": confidence,
              "thresholds": self._thresholds}
        if (self._session.pending_emergency or {}).get("route") == "not_understood":
            answer: str = classify_failure_answer(**kw) if text else "unclear"  # silence is the timer's
        else:
            answer = classify_answer(**kw)
        record.intent, record.intent_confidence = intent, round(confidence, 3)
        record.events.append({"event": "emergency_answer", "answer": answer})
        await self._resolve_emergency(record, answer, text=text, asr_confidence=asr_confidence)

    async def _resolve_emergency(self, record: TurnRecord, answer: str, *, text: str,
                                 asr_confidence: float | None = None) -> None:
        """yes (to the question on evidence) or sos (an answer that is itself a clear emergency) → the SOS,
        family told; a clear no → carry on; act → the request said again, acted on; unclear after turns not
        understood → the keypad menu (misunderstanding hand-over); anything else (unclear on evidence,
        person, silence) → a person, "unconfirmed emergency", no family."""
        pending = self._session.pending_emergency or {}
        if answer == "yes":
            await self._emergency_now(record, str(pending.get("transcript") or text), parse=None, decision=None)
            return
        if answer == "sos":
            await self._emergency_now(record, text, parse=None,
                                      decision=Decision(action="emergency", reason="answer_after_not_understood"))
            return
        self._session.pending_emergency = None
        self._session.failed_turns = 0
        if answer == "no":
            await self._say(record, [self._phrases.say("emergency_cancelled", self._session.dialect)])
            return
        if answer == "act":
            await self._decide(record, text, asr_confidence=asr_confidence)
            return
        if answer == "unclear" and pending.get("route") == "not_understood":
            await self._keypad_menu(record, reason="not_understood_after_question")
            return
        record.events.append({"event": "handover", "reason": "unconfirmed_emergency"})
        await self._alert("unconfirmed_emergency", {
            "label": "unconfirmed emergency", "answer": answer, "answer_transcript": text, **pending,
        })
        await self._say(record, [self._phrases.say("emergency_person", self._session.dialect)])

    # -- a consequence understood on weak evidence: read back, act only on a yes --------------------------------

    async def _read_back(self, record: TurnRecord, text: str, *, parse: NluParse, decision: Decision) -> None:
        self._session.pending_confirm = {
            "transcript": text, "intent": parse.intent, "nlu_confidence": round(parse.confidence, 3),
            "asr_confidence": record.asr_confidence, **decision.detail(),
            # in the middle of an order: its question, asked again if the read-back is declined
            "form_question": self._session.last_bot_text if self._session.asking_slot is not None else None,
        }
        await self._say(record, [self._phrases.say(READ_BACKS[str(parse.intent)], self._session.dialect)])
        self._session.expect = "yes_no"  # it names key 1 too, but the answer is a yes or a no
        await self._start_answer_timer(self._settings.dialogue.confirm_answer_timeout_s)

    async def _confirm_answer(self, record: TurnRecord, text: str, *, asr_confidence: float | None) -> None:
        """yes → act on what was read back; no, or nothing heard → nothing done; anything else → a new turn
        (an emergency, another request, or the same request said again, which acts)."""
        await self._stop_answer_timer()
        pending, self._session.pending_confirm = self._session.pending_confirm or {}, None
        if not text:
            record.events.append({"event": "confirm_answer", "answer": "not_heard"})
            await self._not_confirmed(record, pending, reason=record.error or "empty_transcript")
            return
        record.nlu_start_t = time.perf_counter()
        try:
            parse = await self._rasa.parse(text)
        except DialogueError as exc:
            await self._dialogue_down(record, exc)
            return
        answer = classify_confirm_answer(text=text, asr_confidence=asr_confidence, intent=parse.intent,
                                         nlu_confidence=parse.confidence, thresholds=self._thresholds)
        record.events.append({"event": "confirm_answer", "answer": answer})
        if answer == "yes":
            record.intent, record.intent_confidence = parse.intent, round(parse.confidence, 3)
            await self._confirmed(record, pending)
        elif answer == "no":
            record.intent, record.intent_confidence = parse.intent, round(parse.confidence, 3)
            record.nlu_end_t = time.perf_counter()
            await self._not_confirmed(record, pending, reason="no")
        else:
            await self._decide(record, text, asr_confidence=asr_confidence, parse=parse,
                               read_back_intent=pending.get("intent"))

    async def _confirmed(self, record: TurnRecord, pending: dict[str, Any]) -> None:
        """The elder said yes to the read-back: act on it through Rasa (the intent, with what was heard)."""
        self._session.failed_turns = 0
        await self._ask_rasa(record, f"/{pending.get('intent')}", extra_metadata={
            "transcript": pending.get("transcript"), "decision": {**pending, "confirmed_by": "elder"}})

    async def _not_confirmed(self, record: TurnRecord, pending: dict[str, Any], *, reason: str) -> None:
        """No, or no answer, to the read-back: nothing is done; "say it again" (inside an order: its question
        again), and a failed turn (two in a row lead to the keypad menu and its hand-over, as always)."""
        self._session.failed_turns += 1
        if self._session.failed_turns >= self._settings.dialogue.max_failed_turns:
            await self._keypad_menu(record, reason=f"not_confirmed:{reason}")
            return
        dialect = self._session.dialect
        question = pending.get("form_question")
        if question:
            await self._say(record, [self._phrases.say("read_back_declined_in_form", dialect), question])
            return
        await self._say(record, [self._phrases.say("read_back_declined", dialect)])

    async def _start_answer_timer(self, timeout_s: float) -> None:
        await self._stop_answer_timer()
        self._answer_timer = self.create_task(self._answer_timeout(timeout_s), name="answer_timeout")

    async def _stop_answer_timer(self) -> None:
        timer, self._answer_timer = self._answer_timer, None
        if timer is not None and timer is not asyncio.current_task() and not timer.done():
            await self.cancel_task(timer)

    async def _answer_timeout(self, timeout_s: float) -> None:
        """No answer within ``timeout_s``: to "do you need help?" a person; to a read-back, nothing done."""
        await asyncio.sleep(timeout_s)
        self._answer_timer = None
        if self._session.pending_emergency is None and self._session.pending_confirm is None:
            return
        record = self._tracker.begin(source="system")
        record.transcript = "[无回应]"
        if self._session.pending_emergency is not None:
            record.events.append({"event": "emergency_answer", "answer": "silence"})
            await self._resolve_emergency(record, "silence", text="")
            return
        pending, self._session.pending_confirm = self._session.pending_confirm, None
        record.events.append({"event": "confirm_answer", "answer": "silence"})
        await self._not_confirmed(record, pending, reason="silence")

    async def _say(self, record: TurnRecord, texts: list[str]) -> None:
        spoken = [t for t in [*record.reply_texts, *texts] if t]
        record.reply_texts = spoken
        self._session.expect = expectation(spoken)
        await self._tracker.notify("reply", record)
        for text in spoken:
            self._session.last_bot_text = text
            self._tracker.queue_reply(record, text)
            await self.push_frame(TTSSpeakFrame(text=text, append_to_context=False))

    async def _alert(self, kind: str, detail: dict[str, Any]) -> None:
        if self._on_alert is None:
            return
        alert = CallAlert(call_id=self._session.call_id, elder_id=self._session.elder_id, kind=kind, detail=detail)
        try:
            await self._on_alert(alert)
        except Exception as exc:  # an alert that cannot be stored must not end the call
            logger.error(f"call {self._session.call_id}: alert {kind} not stored: {exc}")


def expectation(texts: list[str]) -> str | None:
    """What kind of answer the last thing said invites (drives closed-prompt recognition)."""
    last = texts[-1].rstrip("？?。！!. ") if texts else ""
    if "按一" in last or "㩒一" in last:
        return "menu"
    if last.endswith(CONFIRM_QUESTIONS):
        return "yes_no"
    return None
