"""Scheduled outbound care calls.

A ``CareSchedule`` per elder says on which weekdays and in which local-time windows the platform calls,
never inside quiet hours. ``CareCallRunner.run_care_call`` places one check-in:

1. every dial is written to the fraud-guard ledger BEFORE dialling (injected ``ledger_record``); the
   opening line proves the call is genuine (``assistant.fraud_guard.identity.proof_utterances``): the
   elder's own safe phrase (injected ``safe_phrase_of``; spoken by us, never asked from the elder), the
   entry's one-time code, and the offer to hang up and call back the official number. A family contact
   hears the code only (the safe phrase is the elder's secret); a failed lookup falls back to the code.
   After an answered call the entry is marked ``answered`` (injected ``ledger_mark``), which keeps it
   valid for the elder's call-back inside the window;
2. the check-in records an outcome: well / unwell / needs_something / wants_person. The keypad works for
   every question even when speech fails: 1 = fine, 2 = need help, 0 = operator. The dialogue reports
   spoken answers with ``record_outcome(call_id, outcome)``;
3. no answer or busy → retry after ``settings.telephony.retry_delays_s`` (default +15 min, +15 min) →
   family contacts in order → operator alert. Unwell / needs something / wants a person → alert.

The call engine (``telephony.engine``) plans each day's care call, its retries and escalations as
``call_jobs`` rows and places each with ``CareCallRunner.place``; ``run_care_call`` is the whole chain in
one go for a call placed by hand (``assistant phone call``). Time comes from an injectable ``Clock``
(``FastClock`` runs minutes in milliseconds for tests).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time as _time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Literal, Protocol

from assistant.call_alert import CallAlert
from assistant.errors import TelephonyError
from assistant.fraud_guard.identity import proof_utterances
from assistant.phrases import Phrasebook
from assistant.session import CallSession
from telephony.lines import LineTicket, LineUse

logger = logging.getLogger(__name__)

Outcome = Literal["well", "unwell", "needs_something", "wants_person"]
KEYPAD_OUTCOMES: dict[str, Outcome] = {"1": "well", "2": "unwell", "0": "wants_person"}
OUTCOME_ALERTS: dict[str, str] = {"unwell": "unwell", "needs_something": "help", "wants_person": "human"}
OUTCOME_SEVERITY: dict[str, int] = {"well": 0, "needs_something": 1, "wants_person": 2, "unwell": 3}
# what the dialogue's intents (contracts.md) say about a check-in
INTENT_OUTCOMES: dict[str, Outcome] = {
    "checkin_well": "well",
    "checkin_unwell": "unwell",
    "emergency": "unwell",
    "health_consult": "unwell",
    "request_human": "wants_person",
    "order_gas": "needs_something",
    "order_meal": "needs_something",
    "request_repair": "needs_something",
    "book_appointment": "needs_something",
}
# no_free_line: every line the call may take was busy (telephony.lines), like a busy callee it passes
RETRYABLE = {"busy", "no_answer", "unreachable", "rejected", "no_free_line"}


# --- time ------------------------------------------------------------------------------------------
class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now().astimezone()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FastClock:
    """Wall time that runs ``speed`` times faster than real time from ``start`` (tests, demos)."""

    def __init__(self, *, start: datetime, speed: float = 600.0) -> None:
        self.start = start
        self.speed = speed
        self._t0 = _time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(_time.monotonic() - self._t0) * self.speed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0) / self.speed)


@dataclass(frozen=True, kw_only=True)
class TimeWindow:
    """``start``–``end`` local time; wraps past midnight when ``end <= start`` (e.g. quiet hours 21:00-08:00)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> TimeWindow:
        try:
            a, b = text.split("-")
            return cls(start=time.fromisoformat(a.strip()), end=time.fromisoformat(b.strip()))
        except ValueError as exc:
            raise TelephonyError(f"bad time window {text!r} (want HH:MM-HH:MM)", code="bad_schedule") from exc

    def contains(self, t: time) -> bool:
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True, kw_only=True)
class FamilyContact:
    name: str
    number: str


@dataclass(frozen=True, kw_only=True)
class CareSchedule:
    elder_id: int
    number: str
    days: frozenset[int] = frozenset(range(7))  # 0 = Monday … 6 = Sunday
    windows: tuple[TimeWindow, ...] = (TimeWindow(start=time(9, 0), end=time(11, 0)),)
    quiet_hours: TimeWindow | None = TimeWindow(start=time(21, 0), end=time(8, 0))
    extra_quiet: tuple[TimeWindow, ...] = ()  # the elder's own quiet times (e.g. the afternoon nap)
    family: tuple[FamilyContact, ...] = ()
    dialect: str | None = None
    timezone: str | None = None  # aware datetimes are converted to it; naive ones are taken as local

    def local(self, at: datetime) -> datetime:
        if self.timezone and at.tzinfo is not None:
            from zoneinfo import ZoneInfo

            return at.astimezone(ZoneInfo(self.timezone)).replace(tzinfo=None)
        return at.replace(tzinfo=None)

    def to_clock(self, local: datetime, *, aware: bool) -> datetime:
        """A wall time of the elder's → the engine clock's kind of time (naive clock: local as it is)."""
        if not aware:
            return local
        if self.timezone:
            from zoneinfo import ZoneInfo

            return local.replace(tzinfo=ZoneInfo(self.timezone))
        return local.astimezone()

    def quiet(self, at: datetime) -> bool:
        t = self.local(at).time()
        return any(q.contains(t) for q in ((self.quiet_hours,) if self.quiet_hours else ()) + self.extra_quiet)

    def allows(self, at: datetime) -> bool:
        local = self.local(at)
        if local.weekday() not in self.days or self.quiet(at):
            return False
        return any(w.contains(local.time()) for w in self.windows)

    def next_call_time(self, after: datetime, *, horizon_days: int = 8) -> datetime | None:
        """The first minute at or after ``after`` when a call is allowed (None if never within the horizon)."""
        start = after.replace(second=0, microsecond=0)
        if start < after:
            start += timedelta(minutes=1)
        candidates: list[datetime] = []
        for d in range(horizon_days + 1):
            day = (start + timedelta(days=d)).date()
            for w in self.windows:
                for base in (datetime.combine(day, w.start), datetime.combine(day, time(0, 0))):
                    t = max(base, start)
                    candidates.append(t)
                    for q in ((self.quiet_hours,) if self.quiet_hours else ()) + self.extra_quiet:
                        candidates.append(max(datetime.combine(day, q.end), start))  # quiet hours ending opens a window
        for t in sorted(set(candidates)):
            if self.allows(t):
                return t
        return None


# --- retries -----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    delays_s: tuple[float, ...] = (900.0, 900.0)

    @property
    def attempts(self) -> int:
        return 1 + len(self.delays_s)

    def delay_after(self, attempt: int) -> float | None:
        """Seconds to wait after failed attempt ``attempt`` (1-based); None = no more retries."""
        return self.delays_s[attempt - 1] if attempt <= len(self.delays_s) else None

    def next_attempt_at(self, attempt: int, failed_at: datetime, schedule: CareSchedule | None = None) -> datetime | None:
        delay = self.delay_after(attempt)
        if delay is None:
            return None
        at = failed_at + timedelta(seconds=delay)
        if schedule is not None and schedule.quiet(at):
            return None  # never ring into quiet hours: escalate instead
        return at


# --- running one care call ----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class LedgerIntent:
    """What the fraud-guard ledger records before a dial."""

    elder_id: int
    number: str
    purpose: str  # care_call / family_escalation / identity_callback / warning / order_followup
    attempt: int
    call_ref: str


@dataclass(kw_only=True)
class Attempt:
    number: str
    purpose: str
    at: datetime
    result: str  # "answered" | TelephonyError code
    ledger_entry: Any = None
    call_id: str | None = None


@dataclass(kw_only=True)
class CareCallResult:
    elder_id: int
    status: Literal["completed", "escalated_family", "escalated_operator"] = "completed"
    outcome: Outcome | None = None
    attempts: list[Attempt] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class PlacedCall:
    """One dial of a call-engine job: ``result`` is "answered" or the ``TelephonyError`` code."""

    result: str
    entry: Any = None
    call_id: str | None = None
    outcome: Outcome | None = None


class Dialer(Protocol):
    """``telephony.gateway.Gateway.dial``: ``line`` is the ticket the call goes out on (``telephony.lines``)
    or the kind of line to take at the dial."""

    async def dial(self, number: str, *, timeout_s: float | None = None, line: LineTicket | LineUse = LineUse.ROUTINE) -> Any: ...


LedgerRecord = Callable[[LedgerIntent], Awaitable[Any]]
LedgerMark = Callable[[int, str], Awaitable[Any]]  # (entry id, call id) after an answered call
SafePhraseOf = Callable[[int], Awaitable[str | None]]  # elder id → the elder's safe phrase (PlatformStore.safe_phrase)
CheckinRunner = Callable[..., Awaitable[None]]
SAFE_PHRASE_TIMEOUT_S = 3.0  # a slow store must not keep the elder waiting in silence: fall back to the code

# what the callee hears is in assistant/phrases.py (checkin_question, callback_question, family_missed_checkin);
# CareCallRunner passes its gateway's platform name (settings.platform.name)
DEFAULT_PHRASES = Phrasebook()


def opening_line(*, dialect: str | None, proof: str | None, family: bool = False, safe_phrase: str | None = None,
                 phrases: Phrasebook = DEFAULT_PHRASES) -> str:
    """The first thing the callee hears. Elder: the identity proof (safe phrase, one-time code, call-back
    offer), then the check-in question with the keypad hint. Family contact: the code only — the elder's
    safe phrase is never spoken to anyone else, whatever is passed."""

    if family:
        proved = "".join(proof_utterances(safe_phrase=None, code=proof, dialect=None, phrases=phrases))
        return proved + phrases.say("family_missed_checkin", None)
    proved = "".join(proof_utterances(safe_phrase=safe_phrase, code=proof, dialect=dialect, phrases=phrases))
    return proved + phrases.say("checkin_question", dialect)


class CareCallRunner:
    def __init__(
        self,
        *,
        gateway,  # telephony.gateway.Gateway (dial + run_call) or any object with the same two methods
        ledger_record: LedgerRecord,
        on_alert: Callable[[Any], Awaitable[None]] | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
        answer_timeout_s: float | None = None,
        after_outcome_s: float = 6.0,
        max_call_s: float = 300.0,
        safe_phrase_of: SafePhraseOf | None = None,
        ledger_mark: LedgerMark | None = None,
    ) -> None:
        self.gateway = gateway
        self.ledger_record = ledger_record
        self.safe_phrase_of = safe_phrase_of
        self.ledger_mark = ledger_mark
        self.on_alert = on_alert
        self.clock = clock or SystemClock()
        self.retry = retry or RetryPolicy(delays_s=tuple(gateway.settings.telephony.retry_delays_s))
        self.phrases = Phrasebook(platform_name=gateway.settings.platform.name)
        self.answer_timeout_s = answer_timeout_s
        self.after_outcome_s = after_outcome_s
        self.max_call_s = max_call_s
        self._outcomes: dict[str, Outcome] = {}
        self._outcome_events: dict[str, asyncio.Event] = {}

    def record_outcome(self, call_id: str, outcome: Outcome) -> None:
        """The dialogue's spoken answer (checkin_well → "well", …); the keypad calls this too. Only care
        calls in progress are recorded; the most serious answer of the call wins."""
        ev = self._outcome_events.get(call_id)
        if ev is None:
            return
        current = self._outcomes.get(call_id)
        if current is None or OUTCOME_SEVERITY[outcome] > OUTCOME_SEVERITY[current]:
            self._outcomes[call_id] = outcome
        ev.set()

    async def _alert(self, kind: str, *, elder_id: int, call_id: str | None, number: str, detail: dict) -> None:
        if self.on_alert is None:
            return

        try:
            await self.on_alert(CallAlert(kind=kind, call_id=call_id, elder_id=elder_id, number=number, detail=detail))
        except Exception as exc:  # the alert store being down must not stop the escalation chain
            logger.error("alert %s for elder %s not stored: %s", kind, elder_id, exc)

    async def _safe_phrase(self, elder_id: int) -> str | None:
        """The elder's safe phrase for the opening, or None (not set / lookup failed → code-only proof).
        Never logged."""
        if self.safe_phrase_of is None:
            return None
        try:
            async with asyncio.timeout(SAFE_PHRASE_TIMEOUT_S):
                phrase = await self.safe_phrase_of(elder_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the proof still has the code and the call-back offer
            reason = getattr(exc, "code", None) or type(exc).__name__
            logger.warning("care call to elder %s: safe phrase lookup failed (%s); opening with the code only", elder_id, reason)
            return None
        if not phrase:
            logger.info("care call to elder %s: no safe phrase set; opening with the code only", elder_id)
            return None
        return str(phrase)

    async def _mark_answered(self, entry: Any, call_id: str) -> None:
        entry_id = _entry_id(entry)
        if self.ledger_mark is None or entry_id is None:
            return
        try:
            await self.ledger_mark(entry_id, call_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # bookkeeping only: the call itself is over
            logger.warning("ledger entry %s for call %s not marked answered: %s", entry_id, call_id, getattr(exc, "code", None) or type(exc).__name__)

    async def _dial(self, schedule: CareSchedule, number: str, purpose: str, attempt: int, result: CareCallResult,
                    *, call_ref: str | None = None, before_dial: Callable[[Any], Awaitable[None]] | None = None,
                    line: LineTicket | LineUse = LineUse.ROUTINE):
        intent = LedgerIntent(elder_id=schedule.elder_id, number=number, purpose=purpose, attempt=attempt,
                              call_ref=call_ref or f"{schedule.elder_id}-{self.clock.now():%Y%m%d%H%M}-{attempt}")
        entry = await _maybe_await(self.ledger_record(intent))  # BEFORE dialling
        if before_dial is not None:  # the call engine records 'dialling' here; raising means: do not dial
            await before_dial(entry)
        record = Attempt(number=number, purpose=purpose, at=self.clock.now(), result="dialling", ledger_entry=entry)
        result.attempts.append(record)
        try:
            call = await self.gateway.dial(number, timeout_s=self.answer_timeout_s, line=line)
        except TelephonyError as exc:
            record.result = exc.code
            if exc.code not in RETRYABLE:  # a configuration fault (no route, no ports): retrying cannot help
                raise
            return None, entry, record
        record.result = "answered"
        record.call_id = call.call_id
        return call, entry, record

    async def _converse(self, call, schedule: CareSchedule, *, greeting: str, family: bool, entry: Any = None,
                        hang_up_after_outcome_s: float | None = None) -> Outcome | None:
        """Run the answered call; a check-in hangs up ``after_outcome_s`` after its answer
        (``hang_up_after_outcome_s`` None → that default; a negative value → never, the callee ends it)."""
        after_s = self.after_outcome_s if hang_up_after_outcome_s is None else hang_up_after_outcome_s
        ev = asyncio.Event()
        self._outcome_events[call.call_id] = ev

        async def on_key(digit: str) -> None:
            if digit in KEYPAD_OUTCOMES and not family:
                self.record_outcome(call.call_id, KEYPAD_OUTCOMES[digit])
            elif digit == "1" and family:
                self.record_outcome(call.call_id, "well")  # acknowledged
        session = CallSession(
            channel="phone",
            direction="outbound",
            call_id=call.call_id,
            elder_id=None if family else schedule.elder_id,
            caller_number=call.remote_number,
            dialect=None if family else schedule.dialect,
            ledger_entry_id=_entry_id(entry),  # the fraud guard verifies a call linked to its ledger entry
        )

        async def hang_up_after_outcome() -> None:
            await ev.wait()
            if after_s < 0:
                return
            await asyncio.sleep(after_s)
            await call.hangup()

        watcher = asyncio.create_task(hang_up_after_outcome())
        try:
            async with asyncio.timeout(self.max_call_s):
                await self.gateway.run_call(call, session=session, greeting=greeting, on_key=on_key)
        except TimeoutError:
            await call.hangup()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            self._outcome_events.pop(call.call_id, None)
        return self._outcomes.pop(call.call_id, None)

    async def run_care_call(self, schedule: CareSchedule) -> CareCallResult:
        result = CareCallResult(elder_id=schedule.elder_id)
        for attempt in range(1, self.retry.attempts + 1):
            phrase = await self._safe_phrase(schedule.elder_id)  # before dialling: no dead air after the answer
            call, entry, record = await self._dial(schedule, schedule.number, "care_call", attempt, result)
            if call is not None:
                greeting = opening_line(dialect=schedule.dialect, proof=_proof(entry), safe_phrase=phrase, phrases=self.phrases)
                try:
                    outcome = await self._converse(call, schedule, greeting=greeting, family=False, entry=entry)
                finally:
                    await self._mark_answered(entry, call.call_id)
                result.outcome = outcome
                kind = OUTCOME_ALERTS.get(outcome or "")
                if kind:
                    result.alerts.append(kind)
                    await self._alert(kind, elder_id=schedule.elder_id, call_id=call.call_id, number=schedule.number, detail={"source": "care_call", "outcome": outcome})
                return result
            next_at = self.retry.next_attempt_at(attempt, self.clock.now(), schedule)
            if next_at is None:
                break
            logger.info("care call to elder %s: %s, retry %d at %s", schedule.elder_id, record.result, attempt, next_at)
            await self.clock.sleep((next_at - self.clock.now()).total_seconds())
        for i, contact in enumerate(schedule.family, start=1):
            call, entry, record = await self._dial(schedule, contact.number, "family_escalation", i, result)
            if call is None:
                continue
            try:
                await self._converse(call, schedule, greeting=opening_line(dialect=None, proof=_proof(entry), family=True, phrases=self.phrases), family=True, entry=entry)
            finally:
                await self._mark_answered(entry, call.call_id)
            result.status = "escalated_family"
            result.alerts.append("no_answer_family_told")
            return result
        result.status = "escalated_operator"
        result.alerts.append("no_answer")
        await self._alert("no_answer", elder_id=schedule.elder_id, call_id=None, number=schedule.number, detail={"attempts": [a.result for a in result.attempts]})
        return result


    async def place(self, schedule: CareSchedule, *, number: str, purpose: str, attempt: int, call_ref: str,
                    before_dial: Callable[[Any], Awaitable[None]], on_answered: Callable[[str], Awaitable[None]],
                    message: str | None = None, line: LineTicket | LineUse = LineUse.ROUTINE) -> PlacedCall:
        """One dial of the call engine's job (no retries here: the engine plans them as rows). The ledger
        entry (``call_ref``: one entry per job) is written first, then ``before_dial(entry)``, then the
        INVITE; an answered call runs with the same opening and keypad as ``run_care_call``. ``message``
        (a warning, an order follow-up: ``telephony.broadcasts``) replaces the check-in question after the
        elder's identity proof; the keypad answers the same way (1 / 2 / 0). ``line``: the line ticket the
        engine took for the job when it claimed it (``telephony.lines``).
        ``on_answered(call_id)`` must not raise (the engine logs its own failures)."""
        family = purpose == "family_escalation"
        phrase = None if family else await self._safe_phrase(schedule.elder_id)
        scratch = CareCallResult(elder_id=schedule.elder_id)
        try:
            call, entry, record = await self._dial(schedule, number, purpose, attempt, scratch, call_ref=call_ref,
                                                   before_dial=before_dial, line=line)
        except TelephonyError as exc:  # a configuration fault (no route, no ports)
            return PlacedCall(result=exc.code, entry=scratch.attempts[-1].ledger_entry if scratch.attempts else None)
        if call is None:
            return PlacedCall(result=record.result, entry=entry)
        await on_answered(call.call_id)
        if message is not None:
            greeting = "".join(proof_utterances(safe_phrase=phrase, code=_proof(entry), dialect=schedule.dialect,
                                                phrases=self.phrases)) + message
        else:
            greeting = opening_line(dialect=None if family else schedule.dialect, proof=_proof(entry), family=family,
                                    safe_phrase=phrase, phrases=self.phrases)
        try:
            outcome = await self._converse(call, schedule, greeting=greeting, family=family, entry=entry)
        finally:
            await self._mark_answered(entry, call.call_id)
        return PlacedCall(result="answered", entry=entry, call_id=call.call_id, outcome=outcome)

    async def run_identity_callback(self, schedule: CareSchedule, *,
                                    line: LineTicket | LineUse = LineUse.ROUTINE) -> CareCallResult:
        """The call-back an inbound caller asked for (they pressed 9 instead of keying the PIN): one dial to
        ``schedule.number`` (a number on file), written to the ledger first like every platform call, opened
        with the full proof; the callee ends the call. No answer (or no free line: ``no_free_line``) → an
        operator alert (no retries, no family). ``line``: the ticket it goes out on (``telephony.lines``)."""

        result = CareCallResult(elder_id=schedule.elder_id)
        phrase = await self._safe_phrase(schedule.elder_id)
        call, entry, record = await self._dial(schedule, schedule.number, "identity_callback", 1, result, line=line)
        if call is None:
            result.status = "escalated_operator"
            result.alerts.append("no_answer")
            await self._alert("no_answer", elder_id=schedule.elder_id, call_id=None, number=schedule.number,
                              detail={"source": "identity_callback", "attempts": [record.result]})
            return result
        greeting = ("".join(proof_utterances(safe_phrase=phrase, code=_proof(entry), dialect=schedule.dialect, phrases=self.phrases))
                    + self.phrases.say("callback_question", schedule.dialect))
        try:
            result.outcome = await self._converse(call, schedule, greeting=greeting, family=False, entry=entry,
                                                  hang_up_after_outcome_s=-1.0)
        finally:
            await self._mark_answered(entry, call.call_id)
        return result


def _entry_id(entry: Any) -> int | None:
    for name in ("entry_id", "id"):
        value = entry.get(name) if isinstance(entry, dict) else getattr(entry, name, None)
        if isinstance(value, int):
            return value
    return None


def _proof(entry: Any) -> str | None:
    for name in ("proof", "code", "verification_code"):
        value = getattr(entry, name, None) if not isinstance(entry, dict) else entry.get(name)
        if value:
            return str(value)
    return None


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


SchedulesSource = Callable[[], Awaitable[Sequence[CareSchedule]]]
