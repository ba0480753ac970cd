"""The fraud guard stage: watches every transcript turn of a call and acts when it looks like a scam.

Per turn: the ``ScamDetector`` updates the call's risk (``FraudRiskUpdated``). When the caller claims to
be 平安通 and the platform has no current ledger entry for this call, that is evidence too (a real
platform call is always in the ledger). At the threshold, once per call:

1. the elder is warned calmly in their dialect (a ``TTSSpeakFrame`` pushed downstream, through the PII
   gate to TTS);
2. verification is withdrawn (``session.verification = "unverified"``), so no personal data is spoken;
3. ``on_flag(FraudFlag)`` is awaited — the integrator wires it to the platform store
   (``store_flag_sink``: an alert of kind ``fraud`` with the redacted transcript and evidence; the store
   writes the family's notifications in the same transaction); then each of ``flag_listeners`` (the phone
   gateway adds one that hands the call to an operator, and sets ``warning`` to ``HANDOVER_WARNING``).

Speakers: ``TranscriptionFrame.user_id`` "caller"/"remote" is the other party of a screened call,
"callee"/"elder"/"user" is the elder; anything else is ``default_speaker``. Non-frame callers use
``await guard.observe(speaker, text)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from loguru import logger
from pipecat.frames.frames import Frame, TranscriptionFrame, TTSSpeakFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from assistant.fraud_guard.detector import RiskUpdate, ScamDetector
from assistant.fraud_guard.events import EventSink, FlagSink, FraudFlag, FraudRiskUpdated, FraudWarningSpoken
from assistant.fraud_guard.pii_gate import PersonalData, redact
from assistant.phrases import DEFAULT_DIALECT, DIALECTS, Phrasebook
from assistant.session import CallSession
from assistant.settings import Settings

# what the elder is told at the flag (keys of assistant/phrases.py); the phone gateway puts a person on the line
# after the flag (issue #16): no "hang up" in the warning then
WARNING = "fraud_warning"
HANDOVER_WARNING = "fraud_warning_handover"
PLATFORM_NO_LEDGER_WEIGHT = 2.0
_CALLER_IDS = {"caller", "remote", "other", "agent"}
_CALLEE_IDS = {"callee", "elder", "user"}

LedgerCheck = Callable[[CallSession], Awaitable[bool]]

_DETECTOR: ScamDetector | None = None


def shared_detector(threshold: float, *, use_ngram: bool = True) -> ScamDetector:
    """One detector (cue table + n-gram weights) per process; calls share it (it is read-only)."""
    global _DETECTOR
    if _DETECTOR is None or _DETECTOR.threshold != threshold or _DETECTOR.use_ngram != use_ngram:
        _DETECTOR = ScamDetector.default(threshold=threshold, use_ngram=use_ngram)
    return _DETECTOR


def ledger_check_for(ledger) -> LedgerCheck:
    """``LedgerCheck`` from a ``CallLedger``: is there a current entry for this call's elder or number?"""

    async def check(session: CallSession) -> bool:
        if session.ledger_entry_id is not None:
            entry = await ledger.get(session.ledger_entry_id)
            if entry is not None and entry.is_valid(ledger.now()):
                return True
        if session.elder_id is not None and await ledger.current_for_elder(session.elder_id) is not None:
            return True
        if session.caller_number and await ledger.current_for_number(session.caller_number) is not None:
            return True
        return False

    return check


class FraudGuard(FrameProcessor):
    def __init__(
        self,
        *,
        session: CallSession,
        settings: Settings,
        detector: ScamDetector | None = None,
        on_flag: FlagSink | None = None,
        on_event: EventSink | None = None,
        ledger_check: LedgerCheck | None = None,
        personal: PersonalData | None = None,
        default_speaker: str = "callee",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._session = session
        self._phrases = Phrasebook(platform_name=settings.platform.name)
        self._detector = detector or shared_detector(settings.fraud.flag_threshold, use_ngram=settings.fraud.use_ngram)
        self._watch = self._detector.watch()
        self._on_flag = on_flag
        self._on_event = on_event
        self._ledger_check = ledger_check
        self._personal = personal
        self._default_speaker = default_speaker
        self._transcript: list[tuple[str, str]] = []
        self._platform_checked = False
        self._platform_no_ledger = False
        self.flag: FraudFlag | None = None
        self.updates: list[RiskUpdate] = []
        # awaited after on_flag (the alert is stored by then): e.g. the phone gateway's hand-over to a person
        self.flag_listeners: list[FlagSink] = []
        self.warning = WARNING  # the phrase the elder is told at the flag

    @property
    def risk(self) -> float:
        return self._watch.last.risk if self._watch.last else 0.0

    def set_personal(self, personal: PersonalData | None) -> None:
        """What the platform knows about the elder (known once the call has opened), for redaction."""
        self._personal = personal

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame) and direction == FrameDirection.DOWNSTREAM and frame.text.strip():
            warning = await self.observe(self._speaker_of(frame), frame.text)
            if warning is not None:
                await self.push_frame(TTSSpeakFrame(text=warning))

    def _speaker_of(self, frame: TranscriptionFrame) -> str:
        uid = (frame.user_id or "").lower()
        if uid in _CALLER_IDS:
            return "caller"
        if uid in _CALLEE_IDS:
            return "callee"
        return self._default_speaker

    async def observe(self, speaker: str, text: str) -> str | None:
        """Score one turn; returns the warning to speak when the call has just been flagged."""
        speaker = "caller" if speaker == "caller" else "callee"
        self._transcript.append((speaker, text))
        update = self._watch.add_turn(speaker, text)
        just_flagged = update.just_flagged
        if (
            not self._platform_checked
            and speaker == "caller"
            and any(e.cue == "platform_claim" for e in update.new_evidence)
        ):
            self._platform_checked = True
            if self._ledger_check is not None and not await self._safe_ledger_check():
                self._platform_no_ledger = True
                update = self._watch.add_context(
                    cue="platform_claim_no_ledger", weight=PLATFORM_NO_LEDGER_WEIGHT,
                    label="自称平安通但平台没有这通电话的记录", phrase="平安通(无台账记录)",
                )
                # the turn itself may already have crossed the threshold: the re-score must not hide that
                just_flagged = just_flagged or update.just_flagged
        self.updates.append(update)
        logger.debug(f"call {self._session.call_id}: fraud risk {update.risk:.2f} after a {speaker} turn")
        await self._emit(FraudRiskUpdated(
            call_id=self._session.call_id, turn=update.turn, speaker=speaker, risk=update.risk,
            scam_type=update.scam_type, new_evidence=tuple(e.phrase for e in update.new_evidence if not e.warning),
            flagged=update.flagged,
        ))
        if not just_flagged:
            return None
        return await self._act(update)

    async def _safe_ledger_check(self) -> bool:
        try:
            return await self._ledger_check(self._session)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # ledger down: do not invent evidence either way
            logger.warning(f"call {self._session.call_id}: ledger check failed: {exc}")
            return True

    async def _act(self, update: RiskUpdate) -> str:
        dialect = self._session.dialect if self._session.dialect in DIALECTS else DEFAULT_DIALECT
        self._session.verification = "unverified"
        self.flag = FraudFlag(
            call_id=self._session.call_id,
            elder_id=self._session.elder_id,
            risk=update.risk,
            scam_type=update.scam_type,
            evidence=tuple(self._watch.evidence_phrases()),
            evidence_labels=tuple(dict.fromkeys(e.label for e in update.evidence)),
            turn=update.turn,
            dialect=self._session.dialect,
            transcript_redacted=tuple(
                {"speaker": s, "text": redact(t, personal=self._personal)} for s, t in self._transcript
            ),
            platform_claim_without_ledger=self._platform_no_ledger,
        )
        logger.warning(
            f"call {self._session.call_id}: fraud risk {update.risk:.2f} ({update.scam_type}) at turn {update.turn}: "
            f"{', '.join(self.flag.evidence)}"
        )
        await self._emit(self.flag)
        if self._on_flag is not None:
            try:
                await self._on_flag(self.flag)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the warning to the elder must go out even if the store is down
                logger.error(f"call {self._session.call_id}: fraud flag not stored: {exc}")
        for listener in self.flag_listeners:
            try:
                await listener(self.flag)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.error(f"call {self._session.call_id}: fraud flag listener failed: {exc}")
        text = self._phrases.say(self.warning, dialect)
        await self._emit(FraudWarningSpoken(call_id=self._session.call_id, text=text, dialect=dialect))
        return text

    async def _emit(self, event) -> None:
        if self._on_event is None:
            return
        try:
            await self._on_event(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.error(f"call {self._session.call_id}: fraud event listener failed: {exc}")


def store_flag_sink(store) -> FlagSink:
    """``on_flag`` for the platform store: an urgent ``fraud`` alert (family notified by the store)."""

    async def sink(flag: FraudFlag) -> None:
        await store.raise_alert(
            elder_id=flag.elder_id, call_id=flag.call_id, kind="fraud", severity="urgent", detail=flag.alert_detail()
        )

    return sink


def guard_factory(*, settings: Settings, store=None, ledger=None) -> Callable[[CallSession], FraudGuard]:
    """``PipelineServices.fraud_guard_factory``: each call's ``FraudGuard`` with its flags going to the
    platform store (an urgent ``fraud`` alert, family notified) and the "claims to be 平安通" check on the
    call ledger; without them the guard only warns."""

    def new_guard(session: CallSession) -> FraudGuard:
        return FraudGuard(
            session=session,
            settings=settings,
            on_flag=store_flag_sink(store) if store is not None else None,
            ledger_check=ledger_check_for(ledger) if ledger is not None else None,
            default_speaker=session.heard_speaker,
        )

    return new_guard
