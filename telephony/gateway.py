"""The phone gateway: a SIP endpoint whose calls each run one pipecat pipeline.

Inbound: caller ID → elder profile (``ElderDirectory``, i.e. ``PlatformStore.elder_by_phone``); an elder
is greeted in their dialect, an unknown number gets a neutral greeting and no personal data. Caller ID can
be spoofed, so an inbound call is never verified by it (issue #15): not even a call-back inside a care
call's code window. The caller can key the elder's PIN (``*`` PIN ``#``, checked by the dialogue stage) or
press 9: the call ends and ``call_back`` dials the registered number with the full proof (an outbound
call through ``telephony.scheduler``). Outbound care calls come from ``telephony.scheduler``.

The pipeline is the integrator's: ``pipeline_factory(transport=..., session=...)`` returns a pipecat
``Pipeline`` (or anything with a ``.pipeline``, e.g. ``assistant.pipeline.CallPipeline``) that starts with
``transport.input()`` and ends with ``transport.output()``. ``default_pipeline_factory`` adapts
``assistant.pipeline.build_call_pipeline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from assistant import native_heap
from assistant.audio.stream_resample import StreamResampler
from assistant.call_alert import AlertSink, CallAlert
from assistant.errors import TelephonyError
from assistant.fraud_guard.guard import HANDOVER_WARNING
from assistant.phrases import Phrasebook
from assistant.pipeline import build_call_pipeline
from assistant.session import CallSession
from assistant.settings import Settings
from telephony.handover import Escalation, HandOverState, Speaker, tts_speaker
from telephony.lines import LineGate, LineTicket, LineUse
from telephony.screening import CallScreener, Recognise, ScreeningState
from telephony.sip import PhoneCall, SipEndpoint
from telephony.transport import SipCallTransport, run_call_pipeline

logger = logging.getLogger(__name__)

# the greeting by caller kind ("known" | "unknown"); caller ID can be spoofed: no name or other personal data
# before the fraud guard verifies the caller
GREETING_KEYS = {"known": "greeting_known", "unknown": "greeting"}


def greeting_text(*, phrases: Phrasebook, dialect: str | None, kind: str) -> str:
    return phrases.say(GREETING_KEYS[kind], dialect)


class ElderProfile(Protocol):
    elder_id: int
    dialect: str | None


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


class ElderDirectory(Protocol):
    """``assistant.platform.store.PlatformStore`` satisfies this (``elder_by_phone`` may be sync or async)."""

    def elder_by_phone(self, number: str) -> Any: ...


PipelineFactory = Callable[..., Any]
# the caller asked to be called back on their registered number (session.callback_requested): place the
# outbound call (ledger entry before dialling, full proof); raises TelephonyError when it cannot
CallBack = Callable[[CallSession], Awaitable[None]]


@dataclass(kw_only=True)
class CallReport:
    call_id: str
    direction: str
    number: str
    elder_id: int | None
    keys: list[str] = field(default_factory=list)
    end_reason: str | None = None
    frames_in: int = 0
    frames_out: int = 0
    turn_latencies_ms: list[float] = field(default_factory=list)
    # the pipeline's own view of each spoken turn (``TurnRecord.latency_ms``: from the VAD's end of turn)
    turn_stages_ms: list[dict[str, Any]] = field(default_factory=list)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# keypad 2 (need help) is the dialogue's: its Rasa action raises the alert (or the dialogue itself, with
# Rasa down); raising it here too made two raises of one alert per press
KEYPAD_ALERTS = {"0": "human"}
HANDOVER_KEY = "0"  # keypad 0 = 转人工: a person, live (telephony.handover)
# the dialogue's custom events that put a person on the line: "handover" (request_human, the unconfirmed
# emergency, a dialogue outage) and "emergency" (SOS, with the alert's id); the fraud guard's flag too
# (``_fraud_listener``, reason "fraud")
HANDOVER_EVENTS = ("handover", "emergency")
MISSED_CALL_LOOKUPS_MAX = 8  # calls refused as busy whose caller is being looked up at once (more: only counted)


@dataclass(kw_only=True)
class _LiveCall:
    call: PhoneCall
    session: CallSession
    transport: SipCallTransport
    recording: Any = None  # the call's CallAudioRecorder (CallPipeline.recording), kept through a hand-over
    handover: HandOverState | None = None
    task: asyncio.Task | None = None


class Gateway:
    def __init__(
        self,
        *,
        settings: Settings,
        pipeline_factory: PipelineFactory,
        directory: ElderDirectory | None = None,
        on_alert: AlertSink | None = None,
        call_back: CallBack | None = None,
        host: str | None = None,
        port: int | None = None,
        max_reports: int = 1000,
        store: Any = None,
        speak: Speaker | None = None,
        recognise: Recognise | None = None,
    ) -> None:
        self.settings = settings
        self.phrases = Phrasebook(platform_name=settings.platform.name)
        self.pipeline_factory = pipeline_factory
        self.directory = directory
        self.on_alert = on_alert
        self.call_back = call_back  # set by gateway_service once the care-call runner exists
        self.endpoint = SipEndpoint(settings=settings.telephony, host=host, port=port, on_incoming=self.handle_inbound,
                                    on_refused=self._missed_call)
        # the latest calls' reports (benchmarks, tests): bounded, a gateway runs for months
        self.reports: deque[CallReport] = deque(maxlen=max_reports)
        # a person answers (issue #16): operators' phones, family alert calls, the duty phone
        if store is None and directory is not None and hasattr(directory, "raise_alert"):
            store = directory
        self.escalation = Escalation(settings=settings, endpoint=self.endpoint, store=store, speak=speak or tts_speaker(settings))
        # an elder's own line routed through the platform (issue #20): unknown callers are screened
        self.screening = CallScreener(settings=settings, endpoint=self.endpoint, speak=self.escalation.speak, store=store,
                                      recognise=recognise, speak_words=None if speak is not None else tts_speaker(settings, persist=False),
                                      ) if settings.screening.lines else None
        self.screenings: deque[ScreeningState] = deque(maxlen=max_reports)
        self._live: dict[str, _LiveCall] = {}
        self.handovers: deque[HandOverState] = deque(maxlen=max_reports)
        self._missed_lookups = 0  # elder lookups for calls refused as busy, in progress

    @property
    def lines(self) -> LineGate:
        """Who may take a line (``telephony.lines``): every outbound call of this gateway asks it."""
        return self.endpoint.lines

    async def start(self) -> None:
        await asyncio.to_thread(_prewarm)
        if self.screening is not None:
            await self.screening.warm()
        await self.endpoint.start()

    async def stop(self) -> None:
        await self.endpoint.stop()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # --- inbound -----------------------------------------------------------------------------
    async def identify(self, number: str, *, call_id: str | None = None) -> tuple[CallSession, str]:
        """The session for a caller and the greeting kind ("known" | "unknown"). The caller ID only picks
        the profile (dialect, whose PIN / which number to call back): the session stays unverified and is
        never linked to a ledger entry."""
        session = CallSession(channel="phone", direction="inbound", caller_number=number or None, tts_rate_wpm=self.settings.tts.rate_wpm)
        kind = "unknown"
        if number and self.directory is not None:
            try:
                elder = await _maybe_await(self.directory.elder_by_phone(number))
            except Exception as exc:
                logger.warning("elder lookup failed for an inbound call: %s", exc)
                elder = None
            if elder is not None:
                session.elder_id = getattr(elder, "elder_id", None) or getattr(elder, "id", None)
                session.dialect = getattr(elder, "dialect", None)
                kind = "known"
        return session, kind

    async def handle_inbound(self, call: PhoneCall) -> None:
        line = self.screening.line_for(call) if self.screening is not None else None
        if line is not None:  # a call to an elder's screened line, not to the assistant
            state = ScreeningState(call_id=call.call_id, line=line.number, elder_id=None, caller_number=call.remote_number)
            self.screenings.append(state)
            await self.screening.screen(call, line, state=state)
            return
        session, kind = await self.identify(call.remote_number, call_id=call.call_id)
        session.call_id = call.call_id
        await self.run_call(call, session=session, greeting=greeting_text(phrases=self.phrases, dialect=session.dialect, kind=kind))
        if session.callback_requested and session.elder_id is not None:
            await self._call_back(session)

    async def _missed_call(self, number: str, call_id: str) -> None:
        """Every line was busy and an inbound call got 503 (the endpoint's ``on_refused``): when the number
        is an elder's, an operator alert so that a person calls them back — an elder in an emergency who
        found the lines full is not left with a busy tone only. One open alert per elder (its key is
        ``missed:<elder>``: redialling while it is open raises nothing new). Unknown numbers are only counted
        (``endpoint.refusals["busy"]``): a flood of made-up caller IDs must not flood the console, nor the
        database (at most ``MISSED_CALL_LOOKUPS_MAX`` lookups at once; more refusals are only counted)."""
        if self.on_alert is None or self.directory is None or not number:
            return
        if self._missed_lookups >= MISSED_CALL_LOOKUPS_MAX:  # a flood of INVITEs: no database work per INVITE
            return
        self._missed_lookups += 1
        try:
            elder = await _maybe_await(self.directory.elder_by_phone(number))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("elder lookup for a call refused as busy failed: %s", exc)
            return
        finally:
            self._missed_lookups -= 1
        elder_id = (getattr(elder, "elder_id", None) or getattr(elder, "id", None)) if elder is not None else None
        if elder_id is None:
            return
        lines = self.settings.telephony.max_concurrent_calls
        logger.warning("elder %s called in while all %d lines were busy (503): an operator is asked to call back",
                       elder_id, lines)
        try:
            await self.on_alert(CallAlert(kind="missed_call", call_id=f"missed:{elder_id}", elder_id=elder_id, number=number,
                                          detail={"source": "lines_busy", "reason": "all_lines_busy", "sip_call_id": call_id,
                                                  "lines": lines,
                                                  "summary": f"长者来电时全部 {lines} 条线路占线，未能接通：请尽快回电"}))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the alert store is down: at least the log line above says it
            logger.error("missed-call alert for elder %s not stored: %s", elder_id, exc)

    async def _call_back(self, session: CallSession) -> None:
        """The call-back the caller asked for; without a dialer (or when it fails) an operator is asked
        to call the registered number instead."""
        reason = "no_dialer"
        if self.call_back is not None:
            try:
                await self.call_back(session)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = getattr(exc, "code", None) or type(exc).__name__
                logger.warning("call-back for call %s not placed: %s", session.call_id, reason)
        if self.on_alert is not None:
            await self.on_alert(CallAlert(kind="human", call_id=session.call_id, elder_id=session.elder_id,
                                               number=session.caller_number,
                                               detail={"source": "identity_callback", "reason": reason}))

    # --- a person answers ---------------------------------------------------------------------
    async def hand_over(self, call: PhoneCall | str, reason: str, *, alert_id: int | None = None) -> HandOverState | None:
        """Put a person on the elder's live call: operators' phones, then family, then the duty phone
        (``telephony.handover.Escalation``). Returns at once with the hand-over's state (``state.done`` is
        set when it is over); a second request for the same call returns the first one's state. None when
        the call is not live here or no person is configured (``handover.*``: the alert stands alone)."""
        call_id = call if isinstance(call, str) else call.call_id
        live = self._live.get(call_id)
        if live is None or live.call.state != "active" or not self.escalation.enabled:
            return None
        if live.handover is not None:
            if alert_id is not None and live.handover.alert_id is None:
                live.handover.alert_id = alert_id
            return live.handover
        state = HandOverState(call_id=call_id, reason=reason, alert_id=alert_id)
        live.handover = state
        self.handovers.append(state)
        logger.info("call %s: hand-over to a person (%s)", call_id, reason)
        # owned by the call: run_call awaits it before the call's handler returns
        live.task = asyncio.create_task(
            self.escalation.run(call=live.call, session=live.session, reason=reason, state=state, muting=live.transport,
                                recording=live.recording),
            name=f"handover-{call_id[:12]}",
        )
        return state

    def _handover_listener(self, call: PhoneCall):
        """A turn tracker listener: the dialogue's handover / emergency events start the hand-over."""

        async def listener(stage: str, record) -> None:
            if stage != "reply":
                return
            for event in getattr(record, "events", None) or ():
                name = event.get("event") if isinstance(event, dict) else None
                if name in HANDOVER_EVENTS:
                    reason = "emergency" if name == "emergency" else str(event.get("reason") or "requested")
                    await self.hand_over(call, reason, alert_id=event.get("alert_id"))

        return listener

    def _fraud_listener(self, call: PhoneCall):
        """The fraud guard flagged the call (its ``fraud`` alert is stored by then): hand it to an operator."""

        async def listener(flag) -> None:
            await self.hand_over(call, "fraud")

        return listener

    # --- any call ----------------------------------------------------------------------------
    async def run_call(self, call: PhoneCall, *, session: CallSession, greeting: str | None = None, on_key: Callable[[str], Awaitable[None]] | None = None) -> CallReport:
        report = CallReport(call_id=call.call_id, direction=call.direction, number=call.remote_number, elder_id=session.elder_id)
        self.reports.append(report)

        async def keypad(digit: str) -> None:
            if session.keypad_secret:  # a PIN being keyed: not recorded, no keypad alerts
                report.keys.append("•")
                return
            report.keys.append(digit)
            kind = KEYPAD_ALERTS.get(digit)
            if kind is not None and self.on_alert is not None:
                await self.on_alert(CallAlert(kind=kind, call_id=call.call_id, elder_id=session.elder_id, number=call.remote_number, detail={"source": "keypad", "key": digit}))
            if digit == HANDOVER_KEY:
                await self.hand_over(call, "keypad_0")
            if on_key is not None:
                await on_key(digit)

        transport = SipCallTransport(
            call=call,
            pipeline_sample_rate_hz=self.settings.audio.pipeline_sample_rate_hz,
            max_pending_ms=self.settings.telephony.barge_in_max_pending_ms,
            on_keypad=keypad,
        )
        built = self.pipeline_factory(transport=transport, session=session)
        pipeline = getattr(built, "pipeline", built)
        live = _LiveCall(call=call, session=session, transport=transport, recording=getattr(built, "recording", None))
        self._live[call.call_id] = live
        tracker = getattr(built, "tracker", None)
        if tracker is not None and hasattr(tracker, "listeners"):
            tracker.listeners.append(self._handover_listener(call))
        guard = getattr(built, "guard", None)
        if guard is not None and self.escalation.enabled:  # a high-risk scam moment: a person takes the call
            guard.flag_listeners.append(self._fraud_listener(call))
            guard.warning = HANDOVER_WARNING

        async def greet(worker) -> None:
            from pipecat.frames.frames import TTSSpeakFrame

            async def goodbye() -> None:  # the call reached its maximum duration: say so, then the BYE
                call.clear_playback()
                await worker.queue_frame(TTSSpeakFrame(self.phrases.say("time_limit_goodbye", session.dialect)))
                async with asyncio.timeout(8.0):  # until the synthesised audio reaches the sender
                    while call.pending_ms <= 0 and call.state == "active":  # noqa: ASYNC110 (no event for "audio queued")
                        await asyncio.sleep(0.05)
                await call.wait_played(timeout_s=10.0)

            call.on_time_limit = goodbye
            if greeting:
                await worker.queue_frame(TTSSpeakFrame(greeting))

        try:
            await run_call_pipeline(
                transport=transport,
                pipeline=pipeline,
                conversation_id=session.call_id,
                pipeline_sample_rate_hz=self.settings.audio.pipeline_sample_rate_hz,
                before_answer=greet,
            )
            if live.task is not None:  # the bridge (or family calls) outlive the bot's pipeline
                try:
                    await live.task
                except Exception:
                    logger.exception("hand-over of call %s failed", call.call_id)
        finally:
            if live.task is not None and not live.task.done():
                live.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await live.task
            self._live.pop(call.call_id, None)
            if call.state != "ended":
                await call.hangup()
        report.end_reason = call.ended.reason if call.ended else None
        report.frames_in = transport.input().frames_in
        report.frames_out = transport.output().frames_out
        report.turn_latencies_ms = list(transport.meter.latencies_ms)
        tracker = getattr(built, "tracker", None)
        if tracker is not None:
            report.turn_stages_ms = [
                {**t.latency_ms(), "asr_early": t.asr_early} for t in tracker.turns if t.source == "speech"
            ]
        await native_heap.trim()  # the call's native buffers (decoder, voices) go back to the system
        return report

    async def dial(self, number: str, *, timeout_s: float | None = None,
                   line: LineTicket | LineUse = LineUse.ROUTINE) -> PhoneCall:
        """The platform's own call (care call, call-back): to a screened line it rings the elder's phone
        directly (it carries its own proof and is never screened). ``line``: the ticket it goes out on
        (``telephony.lines``), or the kind of line to take now (``no_free_line`` when there is none: a
        routine call never takes the lines kept for elders calling in)."""
        if self.screening is not None:
            number = self.screening.route_outbound(number)
        return await self.endpoint.dial(number, timeout_s=timeout_s, line=line)


def _prewarm() -> None:
    """Import what the first call would otherwise import on the event loop (1.5 s of stalled audio for
    every call in progress, measured with 16 calls)."""
    import importlib

    # third-party modules only: ours (assistant.audio.vad, the resampler) come with this module's imports
    for name in ("pipecat.pipeline.worker", "pipecat.workers.runner", "pipecat.processors.audio.vad_processor",
                 "scipy.signal", "webrtcvad",
                 "cn2an", "pypinyin"):  # imported by the first decode: 0.5 s of regexes, 1.3 s and ~50 MB of dictionaries
        try:
            importlib.import_module(name)
        except ImportError:
            pass

    StreamResampler(from_hz=8000, to_hz=16000, context_in=0).feed(bytes(320))


def default_pipeline_factory(services) -> PipelineFactory:
    """``assistant.pipeline.build_call_pipeline`` bound to the process's ``PipelineServices``."""

    def factory(*, transport: SipCallTransport, session: CallSession):
        return build_call_pipeline(session=session, services=services, transport=transport)

    return factory


def require_started(gateway: Gateway) -> None:
    if not gateway.endpoint.started:
        raise TelephonyError("the gateway is not started", code="gateway_not_started")
