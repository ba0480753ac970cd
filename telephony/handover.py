"""A person answers (issue #16): the elder's live call handed over to an operator's SIP phone, then family.

``Escalation.run`` is one hand-over, started by ``Gateway.hand_over(call, reason)`` (request_human, keypad 0,
an SOS, the dialogue's unconfirmed emergency, a dialogue outage, repeated misunderstanding, the fraud
guard's flag of a high-risk scam moment):

1. the bot stops listening at once; its current reply (e.g. the SOS reassurance) may finish, then it is
   muted and the elder hears 请稍等，正在为您接通人工 (and a short reminder every ``hold_reminder_s``);
2. the operators' phones (``handover.operator_uris``: registered with kamailio, dialled through it) ring —
   one at a time, longest idle first, or all at once (``operator_strategy``) — for at most
   ``operator_ring_timeout_s``; the first to answer is bridged to the elder (B2BUA: each leg's 20 ms RTP
   frames are played on the other; RFC 4733 digits are passed on) until either side hangs up;
3. nobody answered: the elder is told so (值班人员暂时没有接听，我们正在打电话给您的家人) and the family
   contacts are phoned in priority order with a spoken alert (王秀兰刚才按了紧急求助…按1表示您来处理);
   key 1 acknowledges the alert in the store (``acknowledged_by`` = ``family:<name>``) and, while the elder
   is still on the line, bridges the family member to the elder; unanswered → next contact;
4. then the duty phone (``handover.duty_uri``), bridged like an operator;
5. nobody at all: the elder hears that the request is on record and the bot listens again.

Lines (``telephony.lines``): the legs of an urgent hand-over (SOS, an unconfirmed emergency, a scam moment:
``URGENT_KINDS``) and the emergency number's leg may take the lines kept for inbound calls — they serve the
elder in an emergency who is on the line now; every other hand-over's legs take routine lines, waiting
for one (ahead of the call engine) within their ring time. The console's call-back (``OperatorCallbacks``)
waits for a routine line as long as it takes (state ``waiting_for_line`` on the alert), never the reserve.

Every step is written to the alert's detail (``detail.handover``: state, operator, times) so the console
sees ringing / connected / family_acknowledged. Nothing here is fire-and-forget: the gateway awaits the
escalation before its call handler returns (family calls go on after the elder hung up: an SOS stands).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assistant.audio.convert import resample_pcm16
from assistant.errors import AssistantError, TelephonyError
from assistant.phrases import Phrasebook
from assistant.session import CallSession
from assistant.settings import Settings
from assistant.tts.registry import synthesize
from telephony.lines import LineUse
from telephony.sip import PhoneCall, SipEndpoint

logger = logging.getLogger(__name__)

# (text, dialect) → 8 kHz 16-bit mono PCM to play on a call
Speaker = Callable[[str, str], Awaitable[bytes]]

# what each party hears: keys of assistant/phrases.py
HOLD = "handover_hold"
HOLD_AGAIN = "handover_hold_again"
QUEUED = "handover_queued"  # all operators are on other calls: the elder is told their place, honestly
NO_OPERATOR_FAMILY = "no_operator_family"
NO_OPERATOR_DUTY = "no_operator_duty"
FAMILY_CONNECTING = "family_connecting"
FAMILY_NO_ANSWER_DUTY = "family_no_answer_duty"
NOBODY = "nobody_answered"
NOBODY_NO_BOT = "nobody_answered_no_bot"
CALLBACK_OPENING = "operator_callback_opening"
FAMILY_ALERT = "family_alert"
FAMILY_ACK_BRIDGE = "family_ack_bridge"
FAMILY_ACK_GONE = "family_ack_gone"
EMERGENCY_FAILED = "emergency_call_failed"
# the alert kinds family_alert names (the family_what_<kind> pieces); any other kind is told as "human"
FAMILY_WHAT_KINDS = frozenset({"sos", "unconfirmed_emergency", "human", "misunderstanding", "fraud"})

REPLY_START_WAIT_S = 2.0  # the bot's reply to the words that asked for a person: its audio starts within this

# hand-over reason → the alert kind it stands on
REASON_KINDS = {"emergency": "sos", "sos": "sos", "unconfirmed_emergency": "unconfirmed_emergency",
                "misunderstanding": "misunderstanding", "fraud": "fraud"}
# an alert that stands after the elder hung up: family are still phoned (a scam may go on off our line);
# its legs may take the lines kept for inbound calls (telephony.lines)
URGENT_KINDS = frozenset({"sos", "unconfirmed_emergency", "fraud"})


def line_use(reason: str) -> LineUse:
    """The lines a hand-over's legs may take (``telephony.lines``): an urgent one's any line, the inbound
    reserve included (the elder in the emergency the reserve is for is on the line); others routine ones."""
    return LineUse.URGENT if REASON_KINDS.get(reason, "human") in URGENT_KINDS else LineUse.ROUTINE


def tts_speaker(settings: Settings, *, persist: bool = True) -> Speaker:
    """The platform's voices (prompt cache first), resampled to the 8 kHz line. ``persist=False``: what is
    said is call content (a caller's words), kept out of the disk cache."""

    async def speak(text: str, dialect: str) -> bytes:

        audio = await synthesize(text, dialect=dialect, rate_wpm=settings.tts.rate_wpm, volume=1.0, settings=settings,
                                 persist=persist)
        return await asyncio.to_thread(resample_pcm16, audio.pcm, from_hz=audio.sample_rate_hz, to_hz=8000)

    return speak


@dataclass(kw_only=True)
class OperatorPool:
    """The operators' phones: which are free, and since when each has been idle (longest idle first); and
    the queue of hand-overs waiting while every phone is busy (first come, first served)."""

    uris: tuple[str, ...]
    _busy: set[str] = field(default_factory=set)
    _idle_since: dict[str, float] = field(default_factory=dict)
    _queue: list[Any] = field(default_factory=list)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def free(self) -> list[str]:
        order = {u: i for i, u in enumerate(self.uris)}
        return sorted((u for u in self.uris if u not in self._busy), key=lambda u: (self._idle_since.get(u, 0.0), order[u]))

    def take(self, uri: str) -> None:
        self._busy.add(uri)

    def release(self, uri: str) -> None:
        self._busy.discard(uri)
        self._idle_since[uri] = time.monotonic()
        self._released.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def position(self, who: Any) -> int | None:
        """``who``'s place in the queue (1 = next), None when not waiting."""
        return self._queue.index(who) + 1 if who in self._queue else None

    def join(self, who: Any) -> None:
        self._queue.append(who)

    def leave(self, who: Any) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(who)

    async def wait_turn(self, who: Any, *, timeout_s: float, stop: asyncio.Future | None = None) -> bool:
        """``who`` (queued with ``join``) waits until a phone is free for them (everyone queued earlier is
        served first); False when ``timeout_s`` passed or ``stop`` finished first. Returns True with no await
        after its check: the caller takes the phone before anyone else runs."""
        deadline = time.monotonic() + timeout_s
        while True:
            if len(self.free()) > self._queue.index(who):
                return True
            left = deadline - time.monotonic()
            if left <= 0 or (stop is not None and stop.done()):
                return False
            self._released.clear()
            released = asyncio.ensure_future(self._released.wait())
            try:
                await asyncio.wait({released, stop} if stop is not None else {released}, timeout=left,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                released.cancel()


@dataclass(kw_only=True)
class HandOverState:
    """One hand-over as the console and the benchmark see it. Times are ``time.monotonic()``."""

    call_id: str
    reason: str
    alert_id: int | None = None
    state: str = "requested"  # ringing_operators → connected_operator | calling_family → family_acknowledged
    #                          (→ connected_family) | calling_duty → connected_duty | nobody; then ended
    operator: str | None = None
    acknowledged_by: str | None = None
    requested_at: float = field(default_factory=time.monotonic)
    ringing_at: float | None = None  # the first operator INVITE went out
    connected_at: float | None = None  # a person (operator / family / duty) is bridged to the elder
    family_call_at: float | None = None  # the first family call was answered
    queue_position: int | None = None  # waiting for a free operator: 1 = next (None: not queued)
    ringing: list[str] = field(default_factory=list)  # the phones ringing now (the console pops the call there)
    attempts: list[dict[str, Any]] = field(default_factory=list)  # {"who", "uri", "result"}
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def to_json(self) -> dict[str, Any]:
        def ms(t: float | None) -> float | None:
            return None if t is None else round((t - self.requested_at) * 1000, 1)

        return {"state": self.state, "reason": self.reason, "operator": self.operator, "acknowledged_by": self.acknowledged_by,
                "ringing_ms": ms(self.ringing_at), "connected_ms": ms(self.connected_at),
                "family_call_ms": ms(self.family_call_at), "queue_position": self.queue_position,
                "ringing": list(self.ringing), "attempts": list(self.attempts)}


async def bridge(a: PhoneCall, b: PhoneCall, *, max_pending_ms: float = 300.0, recording: Any = None) -> PhoneCall:
    """Relay audio and keypad digits between two active calls until one ends; hang up the other. Returns
    the call that ended first. ``recording`` (``CallAudioRecorder``): ``a`` on the caller's leg, ``b`` on
    the other."""

    def relay(to: PhoneCall, tap):
        def on_audio(pcm: bytes) -> None:
            if to.pending_ms > max_pending_ms:  # the far side's clock runs slow: keep the delay short
                to.clear_playback()
            to.play(pcm)
            if tap is not None:
                tap(pcm, 8000)

        return on_audio

    def digits(to: PhoneCall):
        def on_dtmf(digit: str) -> None:
            with contextlib.suppress(TelephonyError):
                to.send_dtmf(digit)

        return on_dtmf

    a.clear_playback()
    b.clear_playback()
    a.on_audio = relay(b, recording.caller if recording is not None else None)
    b.on_audio = relay(a, recording.bot if recording is not None else None)
    a.on_dtmf, b.on_dtmf = digits(b), digits(a)
    ends = {asyncio.ensure_future(a.wait_ended()): a, asyncio.ensure_future(b.wait_ended()): b}
    try:
        done, _ = await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in ends:
            t.cancel()
    first = ends[next(iter(done))]
    other = b if first is a else a
    await other.hangup()
    return first


class Conference:
    """Several calls hearing each other (the elder, the operator, the emergency number): a 20 ms clock
    mixes, for each leg, the others' latest frames. ``anchor`` is the elder: when they hang up, everyone
    is hung up; the conference also ends when the elder is left alone. ``on_dtmf(leg, digit)`` sees every
    keypad digit first (True = consumed, else it is passed to the other legs)."""

    FRAME = 320  # 20 ms of 8 kHz 16-bit PCM

    def __init__(self, *, anchor: PhoneCall, recording: Any = None, on_dtmf: Callable[[PhoneCall, str], bool] | None = None,
                 max_inbox_frames: int = 3) -> None:
        self.anchor = anchor
        self.recording = recording
        self.on_dtmf = on_dtmf
        self.legs: list[PhoneCall] = []
        self.max_inbox_frames = max_inbox_frames
        self._inbox: dict[str, deque[bytes]] = {}

    def add(self, leg: PhoneCall) -> None:
        self._inbox[leg.call_id] = deque(maxlen=10)
        self.legs.append(leg)
        leg.clear_playback()
        leg.on_audio = lambda pcm, cid=leg.call_id: self._inbox[cid].append(pcm)
        leg.on_dtmf = lambda digit, who=leg: self._dtmf(who, digit)

    def _dtmf(self, leg: PhoneCall, digit: str) -> None:
        if self.on_dtmf is not None and self.on_dtmf(leg, digit):
            return
        for other in self.legs:
            if other is not leg and other.state == "active":
                with contextlib.suppress(TelephonyError):
                    other.send_dtmf(digit)

    def _take(self, leg: PhoneCall) -> np.ndarray | None:
        box = self._inbox[leg.call_id]
        while len(box) > self.max_inbox_frames:  # keep the delay short when the clocks drift
            box.popleft()
        if not box:
            return None
        x = np.frombuffer(box.popleft(), "<i2").astype(np.int32)
        if len(x) < self.FRAME // 2:
            x = np.pad(x, (0, self.FRAME // 2 - len(x)))
        return x[: self.FRAME // 2]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = loop.time()
        silence = np.zeros(self.FRAME // 2, dtype=np.int32)
        while True:
            live = [leg for leg in self.legs if leg.state == "active"]
            if self.anchor.state != "active" or len(live) < 2:
                break
            frames = {leg.call_id: self._take(leg) for leg in live}
            for dest in live:
                parts = [f for cid, f in frames.items() if cid != dest.call_id and f is not None]
                if parts:
                    if dest.pending_ms > 200:
                        dest.clear_playback()
                    dest.play(np.clip(sum(parts), -32768, 32767).astype("<i2").tobytes())
            if self.recording is not None:
                mine = frames.get(self.anchor.call_id)
                others = [f for cid, f in frames.items() if cid != self.anchor.call_id and f is not None]
                self.recording.caller((mine if mine is not None else silence).astype("<i2").tobytes(), 8000)
                if others:
                    self.recording.bot(np.clip(sum(others), -32768, 32767).astype("<i2").tobytes(), 8000)
            tick += 0.02
            await asyncio.sleep(max(0.0, tick - loop.time()))
            if loop.time() - tick > 0.2:  # the loop stalled: don't try to catch up
                tick = loop.time()
        for leg in self.legs:
            if leg.state == "active":
                await leg.hangup()


class Escalation:
    """Operators, then family, then the duty phone, for one elder's call (see the module docstring)."""

    def __init__(self, *, settings: Settings, endpoint: SipEndpoint, speak: Speaker, store: Any = None,
                 pool: OperatorPool | None = None) -> None:
        self.settings = settings
        self.phrases = Phrasebook(platform_name=settings.platform.name)
        self.cfg = settings.handover
        self.endpoint = endpoint
        self.speak = speak
        self.store = store
        self.pool = pool or OperatorPool(uris=tuple(settings.handover.operator_uris))
        self._recordings: dict[str, Any] = {}  # call id → the elder's call recording, while handed over

    @property
    def enabled(self) -> bool:
        """A person to put on the line is configured (operators or a duty phone; family calls follow them).
        Without one nothing changes: the alert alone, the bot keeps the call."""
        return bool(self.cfg.operator_uris or self.cfg.duty_uri)

    # --- the elder's side ----------------------------------------------------------------------
    async def _tell(self, call: PhoneCall, phrase: str, dialect: str | None, **fmt: Any) -> None:
        """Say something to a caller (queued on their line; returns once it is queued)."""
        if call.state != "active":
            return
        try:
            pcm = await self.speak(self.phrases.say(phrase, dialect, **fmt), dialect or "cmn")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a voice that fails must not stop the escalation
            logger.warning("hand-over prompt not synthesised: %s", exc)
            return
        call.play(pcm)
        recording = self._recordings.get(call.call_id)
        if recording is not None:
            recording.bot(pcm, 8000)

    async def _note(self, state: HandOverState) -> None:
        """The hand-over's state on its alert (console: ringing / connected / family acknowledged)."""
        if self.store is None or state.alert_id is None or not hasattr(self.store, "note_alert_handover"):
            return
        try:
            await self.store.note_alert_handover(state.alert_id, state.to_json())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("alert %s: hand-over state not stored: %s", state.alert_id, exc)

    async def _alert_for(self, *, session, reason: str) -> int | None:
        """The alert this hand-over answers: raising it again returns the open one (one per call and kind)."""
        if self.store is None:
            return None
        kind = REASON_KINDS.get(reason, "human")
        try:
            info = await self.store.raise_alert(elder_id=session.elder_id, call_id=session.call_id, kind=kind,
                                                 detail={"source": "handover", "reason": reason})
            return info.alert_id
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("call %s: no alert for the hand-over: %s", session.call_id, exc)
            return None

    # --- one hand-over -------------------------------------------------------------------------
    async def run(self, *, call: PhoneCall, session, reason: str, state: HandOverState, muting=None,
                  recording: Any = None, call_family: bool | None = None) -> HandOverState:
        """``muting`` (``SipCallTransport`` or None): the bot to silence and later give the call back to;
        ``recording`` (the call's ``CallAudioRecorder``): what the elder says and hears keeps being recorded."""
        dialect = session.dialect or "cmn"
        if recording is not None:
            self._recordings[call.call_id] = recording
        try:
            if state.alert_id is None:
                state.alert_id = await self._alert_for(session=session, reason=reason)
            call.on_audio = (lambda pcm: recording.caller(pcm, 8000)) if recording is not None else _drop  # the bot stops listening
            call.on_dtmf = _drop
            if await self._operators(call, state, dialect, muting):
                return state
            await self._mute(call, muting)  # no operator configured / free: still muted before we speak
            kind = REASON_KINDS.get(reason, "human")
            family = await self._contacts(session) if (self.cfg.call_family if call_family is None else call_family) else []
            if family and (call.state == "active" or kind in URGENT_KINDS):
                state.state = "calling_family"
                await self._note(state)
                # the family's phones ring while the elder's words are synthesised (TTS may take seconds)
                telling = asyncio.create_task(self._tell(call, NO_OPERATOR_FAMILY, dialect), name=f"handover-tell-{call.call_id[:12]}")
                try:
                    if await self._family(call, state, session, family, kind, dialect, told=telling):
                        return state
                finally:
                    await _finish(telling)
                if self.cfg.duty_uri:
                    await self._tell(call, FAMILY_NO_ANSWER_DUTY, dialect)
            elif self.cfg.duty_uri:
                await self._tell(call, NO_OPERATOR_DUTY, dialect)
            if self.cfg.duty_uri and call.state == "active":
                state.state = "calling_duty"
                await self._note(state)
                duty = await self._ring([self.cfg.duty_uri], state, who="duty", total_s=self.cfg.duty_ring_timeout_s, elder=call)
                if duty is not None:
                    await self._connected(call, duty, state, who="duty")
                    return state
            state.state = "nobody"
            await self._note(state)
            await self._tell(call, NOBODY if muting is not None else NOBODY_NO_BOT, dialect)
            if call.state == "active":
                await call.wait_played(timeout_s=15.0)
                if muting is not None:
                    muting.take_back()
                else:  # no bot on this call (the console's call-back): say goodbye
                    await call.hangup()
            return state
        finally:
            self._recordings.pop(call.call_id, None)
            state.done.set()

    async def _drain(self, call: PhoneCall, muting, *, since: float) -> None:
        """Let the bot's current reply play out (bounded), so the elder hears e.g. the SOS reassurance or the
        fraud warning. Its text is decided before its audio exists (TTS): wait up to ``REPLY_START_WAIT_S``
        after ``since`` (the request) for the audio to start, then until it has played."""
        deadline = since + self.cfg.reply_drain_max_s
        await asyncio.sleep(0.3)
        while time.monotonic() < deadline and call.state == "active":
            started = muting.meter.last_write > since
            if started and time.monotonic() - muting.meter.last_write > 0.8 and call.pending_ms <= 0:
                return
            if not started and time.monotonic() - since > REPLY_START_WAIT_S:  # no reply on its way (keypad 0)
                return
            await asyncio.sleep(0.1)

    async def _mute(self, call: PhoneCall, muting) -> None:
        if muting is not None and not muting.handed_over:
            muting.hand_over()

    async def _operators(self, call: PhoneCall, state: HandOverState, dialect: str, muting) -> bool:
        """Ring the operators at once; meanwhile the bot's reply plays out, then the hold message and
        reminders. True when an operator took the call (bridged until it ended)."""
        if not self.pool.uris:
            return False

        async def hold() -> None:
            if muting is not None:
                await self._drain(call, muting, since=state.requested_at)
                muting.hand_over()
            place = self.pool.position(state)
            if place is None:
                await self._tell(call, HOLD, dialect)
            else:
                await self._tell(call, QUEUED, dialect, n=place)
            await self._remind(call, dialect, state)

        state.state = "ringing_operators"
        holding = asyncio.create_task(hold(), name=f"handover-hold-{call.call_id[:12]}")
        try:
            op = await self._ring_operators(call, state)
        finally:
            holding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await holding
            await self._mute(call, muting)
        if op is None:
            return False
        uri, op_call = op
        self.pool.take(uri)
        try:
            state.operator = uri
            if self.cfg.emergency_uri:
                await self._operator_conference(call, op_call, state)
            else:
                await self._connected(call, op_call, state, who="operator")
        finally:
            self.pool.release(uri)
        return True

    async def _operator_conference(self, elder: PhoneCall, op: PhoneCall, state: HandOverState) -> None:
        """The elder and the operator in a conference the operator can bring the emergency number into
        (``emergency_conference_keys`` on their phone); the elder stays on the line throughout."""
        keys = self.cfg.emergency_conference_keys
        typed = ""
        joins: list[asyncio.Task] = []
        conf = Conference(anchor=elder, recording=self._recordings.get(elder.call_id))

        def on_dtmf(leg: PhoneCall, digit: str) -> bool:
            nonlocal typed
            if leg is not op or not keys:
                return False
            typed = (typed + digit)[-len(keys):]
            if typed == keys and not joins:
                joins.append(asyncio.ensure_future(self._conference_in(conf, op, state)))
                return True
            return digit in keys  # the operator's command keys are not played to the elder

        conf.on_dtmf = on_dtmf
        conf.add(elder)
        conf.add(op)
        state.state = "connected_operator"
        state.connected_at = time.monotonic()
        await self._note(state)
        logger.info("call %s handed over to operator %s (conference)", elder.call_id, op.remote_uri)
        try:
            await conf.run()
        finally:
            for t in joins:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            for leg in conf.legs:
                if leg.state == "active":
                    await leg.hangup()
        state.state = "ended_operator"
        await self._note(state)

    async def _conference_in(self, conf: Conference, op: PhoneCall, state: HandOverState) -> None:
        uri = self.cfg.emergency_uri
        logger.info("call %s: the operator conferences in the emergency number %s", conf.anchor.call_id, uri)
        try:
            leg = await self.endpoint.dial(uri, timeout_s=self.cfg.emergency_ring_timeout_s, line=LineUse.URGENT,
                                           line_wait_s=self.cfg.emergency_ring_timeout_s)
        except TelephonyError as exc:
            state.attempts.append({"who": "emergency", "uri": uri, "result": exc.code})
            await self._note(state)
            await self._tell(op, EMERGENCY_FAILED, "cmn")
            return
        if conf.anchor.state != "active":
            await leg.hangup()
            return
        conf.add(leg)
        state.attempts.append({"who": "emergency", "uri": uri, "result": "answered"})
        state.state = "conference_emergency"
        await self._note(state)

    async def _remind(self, call: PhoneCall, dialect: str, state: HandOverState) -> None:
        """Every ``hold_reminder_s`` while the operators ring or the elder waits in the queue: their place
        in the queue, or that they are being connected (cancelled when an operator answers or the ring
        time is over, so at most ``operator_ring_timeout_s / hold_reminder_s`` reminders)."""
        while call.state == "active":
            await asyncio.sleep(self.cfg.hold_reminder_s)
            place = state.queue_position = self.pool.position(state)
            if place is None:
                await self._tell(call, HOLD_AGAIN, dialect)
            else:
                await self._tell(call, QUEUED, dialect, n=place)

    async def _queue(self, elder: PhoneCall, state: HandOverState, *, timeout_s: float) -> bool:
        """Every operator busy (or others queued first): wait in the queue for a free phone, at most
        ``timeout_s``. True when one is free for this hand-over (take it before the next await)."""
        if self.pool.free() and not self.pool.queued:
            return True
        self.pool.join(state)
        gone = asyncio.ensure_future(elder.wait_ended())
        try:
            state.queue_position = self.pool.position(state)
            logger.info("call %s: every operator busy, queued at %s", elder.call_id, state.queue_position)
            await self._note(state)
            ok = await self.pool.wait_turn(state, timeout_s=timeout_s, stop=gone)
        finally:
            gone.cancel()
            self.pool.leave(state)
            state.queue_position = None
        return ok and elder.state == "active"

    async def _ring_operators(self, elder: PhoneCall, state: HandOverState) -> tuple[str, PhoneCall] | None:
        deadline = time.monotonic() + self.cfg.operator_ring_timeout_s
        if not await self._queue(elder, state, timeout_s=self.cfg.operator_ring_timeout_s):
            state.attempts.append({"who": "operator", "uri": None, "result": "all_busy"})
            return None
        free = self.pool.free()
        # a phone that rings for one hand-over is reserved: a second SOS at the same moment rings another
        if self.cfg.operator_strategy == "ring_all":
            for uri in free:
                self.pool.take(uri)
            got = None
            try:
                got = await self._ring(free, state, who="operator", total_s=max(0.5, deadline - time.monotonic()), elder=elder,
                                       parallel=True)  # (the time queued counts)
            finally:
                for uri in free:
                    if got is None or uri != state.operator:
                        self.pool.release(uri)
            return (state.operator or "", got) if got is not None else None
        for uri in free:
            left = deadline - time.monotonic()
            if left <= 0.5 or elder.state != "active":
                break
            if uri not in self.pool.free():  # taken by another hand-over meanwhile
                continue
            self.pool.take(uri)
            got = None
            try:
                got = await self._ring([uri], state, who="operator", total_s=min(self.cfg.operator_ring_each_s, left), elder=elder)
            finally:
                if got is None:
                    self.pool.release(uri)
            if got is not None:
                return uri, got
        return None

    async def _ring(self, uris: list[str], state: HandOverState, *, who: str, total_s: float, elder: PhoneCall | None,
                    parallel: bool = False) -> PhoneCall | None:
        """Ring ``uris`` (all at once) for ``total_s``; the first answered call, the others cancelled. Stops
        ringing when the elder hangs up (nobody to connect)."""
        use = line_use(state.reason)
        dials = {asyncio.ensure_future(self.endpoint.dial(u, timeout_s=total_s, line=use, line_wait_s=total_s)): u
                 for u in uris}
        elder_gone = asyncio.ensure_future(elder.wait_ended()) if elder is not None else None
        winner: PhoneCall | None = None
        try:
            if state.ringing_at is None:
                state.ringing_at = time.monotonic()
            state.ringing = list(uris)
            await self._note(state)  # (the INVITEs go out meanwhile) the console pops the call on these phones
            pending = set(dials)
            while pending and winner is None:
                waits = pending | ({elder_gone} if elder_gone is not None else set())
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if elder_gone is not None and elder_gone in done:
                    break
                for t in done:
                    pending.discard(t)
                    uri = dials[t]
                    exc = t.exception()
                    if exc is not None:
                        code = getattr(exc, "code", type(exc).__name__)
                        state.attempts.append({"who": who, "uri": uri, "result": code})
                        continue
                    if winner is None:
                        winner = t.result()
                        state.attempts.append({"who": who, "uri": uri, "result": "answered"})
                        if who == "operator":
                            state.operator = uri
                    else:  # answered at the same moment as the winner
                        await t.result().hangup()
        finally:
            state.ringing = []
            if elder_gone is not None:
                elder_gone.cancel()
            for t in dials:
                if not t.done():
                    t.cancel()
            for t in dials:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    late = await t
                    if late is not winner and isinstance(late, PhoneCall):
                        await late.hangup()
        if winner is not None and (elder is not None and elder.state != "active"):
            await winner.hangup()
            return None
        return winner

    async def _connected(self, elder: PhoneCall, person: PhoneCall, state: HandOverState, *, who: str) -> None:
        state.state = f"connected_{who}"
        state.connected_at = time.monotonic()
        await self._note(state)
        logger.info("call %s handed over to %s %s", elder.call_id, who, person.remote_uri)
        await bridge(elder, person, recording=self._recordings.get(elder.call_id))
        state.state = f"ended_{who}"
        await self._note(state)

    # --- family --------------------------------------------------------------------------------
    async def _contacts(self, session) -> list[Any]:
        if self.store is None or session.elder_id is None:
            return []
        try:
            contacts = await self.store.contacts_for(session.elder_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("elder %s: family contacts not read: %s", session.elder_id, exc)
            return []
        return [c for c in sorted(contacts, key=lambda c: (c.priority, c.contact_id)) if c.phone]

    async def _elder_name(self, session, dialect: str | None) -> str:
        try:
            return (await self.store.get_elder(session.elder_id)).name
        except asyncio.CancelledError:
            raise
        except Exception:
            return self.phrases.piece("family_elder_unnamed", dialect)

    async def _family(self, elder: PhoneCall, state: HandOverState, session, contacts: list[Any], kind: str, dialect: str,
                      *, told: asyncio.Task | None = None) -> bool:
        """``told``: the elder's "we are phoning your family" on its way (finished before they are bridged)."""
        name = await self._elder_name(session, dialect)
        what = self.phrases.piece(f"family_what_{kind if kind in FAMILY_WHAT_KINDS else 'human'}", dialect)
        for contact in contacts:
            try:
                fam = await self.endpoint.dial(contact.phone, timeout_s=self.cfg.family_ring_timeout_s,
                                               line=line_use(state.reason), line_wait_s=self.cfg.family_ring_timeout_s)
            except TelephonyError as exc:
                state.attempts.append({"who": "family", "uri": contact.phone, "result": exc.code})
                continue
            if state.family_call_at is None:
                state.family_call_at = time.monotonic()
            pressed = await self._alert_family(fam, name=name, what=what, dialect=dialect)
            state.attempts.append({"who": "family", "uri": contact.phone, "result": "acknowledged" if pressed else "no_key"})
            if not pressed:
                await fam.hangup()
                continue
            who = f"family:{contact.name}"
            state.acknowledged_by = who
            state.state = "family_acknowledged"
            if self.store is not None and state.alert_id is not None:
                try:
                    await self.store.set_alert_status(state.alert_id, "acknowledged", by=who)
                except AssistantError as exc:
                    logger.warning("alert %s: family acknowledgement not stored: %s", state.alert_id, exc)
            await self._note(state)
            if elder.state == "active":
                await self._tell(fam, FAMILY_ACK_BRIDGE, dialect)
                await fam.wait_played(timeout_s=10.0)
                if told is not None:
                    await _finish(told)
                await self._tell(elder, FAMILY_CONNECTING, dialect)
                await elder.wait_played(timeout_s=10.0)
                await self._connected(elder, fam, state, who="family")
            else:
                await self._tell(fam, FAMILY_ACK_GONE, dialect)
                await fam.wait_played(timeout_s=15.0)
                await fam.hangup()
            return True
        return False

    async def _alert_family(self, fam: PhoneCall, *, name: str, what: str, dialect: str) -> bool:
        """The spoken alert (twice), then key 1 within ``family_ack_timeout_s``: True when pressed."""
        pressed = asyncio.Event()
        fam.on_dtmf = lambda d: pressed.set() if d == "1" else None
        fam.on_audio = _drop
        for _ in range(2):
            await self._tell(fam, FAMILY_ALERT, dialect, name=name, what=what)
            try:
                async with asyncio.timeout(self.cfg.family_ack_timeout_s / 2):
                    await _first(pressed.wait(), fam.wait_ended())
            except TimeoutError:
                pass
            if pressed.is_set() or fam.state != "active":
                break
        fam.clear_playback()
        return pressed.is_set()


def _drop(_value) -> None:
    return None


async def _finish(task: asyncio.Task, *, timeout_s: float = 30.0) -> None:
    """Wait for a prompt task, at most ``timeout_s`` (then, or when we are cancelled, it is cancelled too)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(task, timeout=timeout_s)


async def _first(*aws) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


@dataclass(frozen=True, kw_only=True)
class CallbackRequest:
    """The console's 安排回电: the ledger entry (and its one-time code) is written before this is queued."""

    alert_id: int | None
    elder_id: int
    number: str
    code: str | None
    dialect: str | None = None
    requested_by: str | None = None


class OperatorCallbacks:
    """The console's 安排回电 button dials (issue #16): the gateway calls the elder's number on file, says
    who is calling with the call's one-time code (the same the elder's screen and family SMS show), and puts
    an operator on the line (the hand-over's operator phones; no family calls). Requests are queued and
    placed one at a time by ``run()``, a task the gateway service owns.

    A call-back is routine (``telephony.lines``): nobody is on the line in danger while it waits, so it never
    takes the lines kept for elders calling in. With every other line busy it waits for one — first in line
    before the call engine, for as long as it takes, never dropped — and the alert shows it
    (``detail.handover.state`` = ``waiting_for_line``); the requests behind it stay queued."""

    def __init__(self, *, gateway, max_queued: int = 50) -> None:
        self.gateway = gateway
        self.queue: asyncio.Queue[CallbackRequest] = asyncio.Queue(maxsize=max_queued)
        self.results: deque[HandOverState] = deque(maxlen=200)

    def request(self, *, alert_id: int | None, elder_id: int, number: str, code: str | None, dialect: str | None = None,
                requested_by: str | None = None) -> bool:
        """Queue a call-back; False when the queue is full (the console then says it was only recorded)."""
        req = CallbackRequest(alert_id=alert_id, elder_id=elder_id, number=number, code=code, dialect=dialect,
                              requested_by=requested_by)
        try:
            self.queue.put_nowait(req)
            return True
        except asyncio.QueueFull:
            return False

    async def run(self) -> None:
        while True:
            req = await self.queue.get()
            try:
                await self.place(req)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("console call-back to elder %s failed", req.elder_id)

    async def place(self, req: CallbackRequest) -> HandOverState:

        esc: Escalation = self.gateway.escalation
        state = HandOverState(call_id="", reason="operator_callback", alert_id=req.alert_id)
        self.results.append(state)
        lines = self.gateway.lines
        ticket = lines.try_take(line_use(state.reason))
        if ticket is None:
            state.state = "waiting_for_line"
            logger.info("console call-back to elder %s waits for a free line (%d of %d busy, %d kept for inbound calls)",
                        req.elder_id, lines.busy, lines.lines, lines.inbound_reserve)
            await esc._note(state)
            ticket = await lines.take(line_use(state.reason), wait_s=None)
            state.state = "requested"
        try:
            call = await self.gateway.dial(req.number, timeout_s=esc.cfg.family_ring_timeout_s, line=ticket)
        except TelephonyError as exc:
            state.attempts.append({"who": "elder", "uri": req.number, "result": exc.code})
            state.state = "elder_no_answer"
            await esc._note(state)
            state.done.set()
            return state
        state.call_id = call.call_id
        session = CallSession(channel="phone", direction="outbound", caller_number=req.number, elder_id=req.elder_id,
                              call_id=call.call_id, dialect=req.dialect)
        try:
            call.on_audio = _drop
            if req.code:
                await esc._tell(call, CALLBACK_OPENING, req.dialect, code=" ".join(req.code))
                await call.wait_played(timeout_s=20.0)
            await esc.run(call=call, session=session, reason="operator_callback", state=state, call_family=False)
        finally:
            if call.state != "ended":
                await call.hangup()
        return state
