"""One call's SIP dialog as a state machine: ringing → active → ended, with its offer/answer and media.

``PhoneCall`` is what the gateway holds: ``answer``, ``play``, ``hold``, ``hangup``, ``on_audio``/``on_dtmf``.
It covers INVITE/180/200/ACK both ways, BYE, CANCEL, the late offer (an INVITE without SDP: our offer in the
200 OK, the caller's answer in the ACK, RFC 3264 §2), re-INVITEs with and without an offer (hold/unhold both
ways) and outbound INVITEs (busy / no answer / refused).

Access runs one way. The endpoint (``telephony.sip.SipEndpoint``: socket, transactions, registration,
limits) builds each call and tells it what arrived through its public methods (``ack_received``,
``reinvite_received``, ``terminated``); the call answers on the wire through its ``sip_leg`` and reports
to the endpoint only through the small ``CallHost`` interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aiosipua import SdpMessage, parse_sdp, parse_uri

from assistant.errors import TelephonyError
from telephony.offer_answer import OfferAnswer
from telephony.rtp import RtpStream
from telephony.sdp import WARN_CODES, MediaPlan
from telephony.sip_leg import InboundLeg, OutboundLeg

logger = logging.getLogger(__name__)

# late offer: how long the 200 OK with our offer waits for the ACK with the caller's answer (RFC 3261 64*T1)
LATE_ANSWER_TIMEOUT_S = 32.0
# the RTP port is bound before the caller's answer says where to send: configured once the ACK arrives
UNKNOWN_MEDIA = MediaPlan(remote_addr=("0.0.0.0", 0), codec="PCMU", payload_type=0, dtmf_payload_type=101, direction="sendrecv")
EndReason = Literal["local_hangup", "remote_hangup", "cancelled", "rejected", "no_ack", "shutdown", "error",
                    "idle_timeout", "max_duration"]


@dataclass(frozen=True, kw_only=True)
class CallEnded:
    call_id: str
    reason: str
    sip_status: int | None = None


@dataclass(frozen=True, kw_only=True)
class HoldChanged:
    call_id: str
    on_hold: bool


class CallHost(Protocol):
    """What a call needs from its endpoint (``SipEndpoint`` implements it)."""

    media: OfferAnswer

    def new_stream(self, plan: MediaPlan) -> RtpStream: ...

    def call_active(self, call: PhoneCall) -> None:
        """The call's media runs (the endpoint starts its idle / duration limits)."""

    def call_gone(self, call: PhoneCall) -> None:
        """The dialog is over on our side: the endpoint forgets it."""

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task: ...


def uri_user(uri: str) -> str:
    """The user part of a SIP URI or name-addr (the caller ID), '' when absent."""
    m = re.search(r"<([^>]*)>", uri)
    if m:
        uri = m.group(1)
    try:
        return parse_uri(uri.strip()).user or ""
    except Exception:  # a malformed From: treat as anonymous
        return ""


def sdp_of(body: str) -> SdpMessage | None:
    """A message body as SDP (``None`` when empty or malformed)."""
    try:
        return parse_sdp(body) if body.strip() else None
    except Exception:  # aiosipua raises assorted types for a malformed body
        return None


class PhoneCall:
    """One call, inbound or outbound. Audio in/out is 8 kHz 16-bit PCM in 20 ms frames."""

    def __init__(
        self,
        *,
        host: CallHost,
        leg: InboundLeg | OutboundLeg,
        call_id: str,
        direction: Literal["inbound", "outbound"],
        remote_uri: str,
        plan: MediaPlan | None = None,
        offer: SdpMessage | None = None,
    ) -> None:
        self.host = host
        self.call_id = call_id
        self.direction = direction
        self.remote_uri = remote_uri
        self.remote_number = uri_user(remote_uri)
        # inbound: the number the caller dialled (our line, or an elder's screened line: telephony.screening)
        self.called_number = uri_user(leg.callee) if isinstance(leg, InboundLeg) else ""
        self.plan = plan
        self._offer = offer  # the INVITE's SDP: our answer mirrors its m= lines
        self.state: Literal["ringing", "active", "ended"] = "ringing"
        self.on_hold = False
        self.ended: CallEnded | None = None
        self.on_hold_changed: Callable[[HoldChanged], None] | None = None
        self._leg = leg
        self._stream: RtpStream | None = None
        self._on_audio: Callable[[bytes], None] | None = None
        self._on_dtmf: Callable[[str], None] | None = None
        self._ended_event = asyncio.Event()
        self._settled = asyncio.Event()  # answered or ended
        self._end_callbacks: list[Callable[[CallEnded], None]] = []
        self._sip_accepted = False  # our 200 OK is out (late offer: the call is still "ringing" until the ACK)
        # signalling source (inbound): an offer's c= must match it (``OfferAnswer.vet``)
        self.source_ip = leg.source_addr[0] if isinstance(leg, InboundLeg) else None
        self.answered_at: float | None = None  # monotonic, when the media started
        # awaited before the BYE of a call that reached ``max_call_duration_s`` (the gateway speaks a goodbye)
        self.on_time_limit: Callable[[], Awaitable[None]] | None = None
        self._late_answer: asyncio.Future[str | None] | None = None  # the ACK's body, None if the call ended

    # --- callbacks ---------------------------------------------------------------------------
    @property
    def on_audio(self) -> Callable[[bytes], None] | None:
        return self._on_audio

    @on_audio.setter
    def on_audio(self, cb: Callable[[bytes], None] | None) -> None:
        self._on_audio = cb
        if self._stream is not None:
            self._stream.on_audio = cb

    @property
    def on_dtmf(self) -> Callable[[str], None] | None:
        return self._on_dtmf

    @on_dtmf.setter
    def on_dtmf(self, cb: Callable[[str], None] | None) -> None:
        self._on_dtmf = cb
        if self._stream is not None:
            self._stream.on_dtmf = cb

    def add_end_callback(self, cb: Callable[[CallEnded], None]) -> None:
        if self.ended is not None:
            cb(self.ended)
        else:
            self._end_callbacks.append(cb)

    @property
    def stream(self) -> RtpStream | None:
        return self._stream

    @property
    def codec(self) -> str | None:
        return self.plan.codec if self.plan else None

    # --- control -----------------------------------------------------------------------------
    def ring(self) -> None:
        """180 Ringing for a new inbound call (the endpoint calls it once the call is registered)."""
        assert isinstance(self._leg, InboundLeg)
        self._leg.ringing()

    async def answer(self) -> None:
        """200 OK with our SDP answer; RTP runs from here on (set ``on_audio`` first).

        Late offer (the INVITE had no SDP, ``plan`` is None): the 200 OK carries our offer and the call turns
        active when the ACK brings the caller's answer (RFC 3264 §2); no usable answer → BYE and
        ``TelephonyError`` (``sdp_missing`` / ``sdp_no_codec`` / ``sdp_no_audio``, or ``no_ack``)."""
        if self.direction != "inbound" or not isinstance(self._leg, InboundLeg):
            raise TelephonyError("only an inbound call can be answered", code="not_inbound")
        if self.state != "ringing" or self._sip_accepted:
            raise TelephonyError(f"call {self.call_id} is {self.state}, cannot answer", code="call_not_ringing")
        stream = self.host.new_stream(self.plan or UNKNOWN_MEDIA)
        await stream.bind()
        if self.state != "ringing":  # cancelled while we bound the port
            await stream.close()
            raise TelephonyError("the caller hung up before the answer", code="call_cancelled")
        if self.plan is None:
            try:
                self.plan = await self._late_offer(stream)
            except BaseException:
                await stream.close()
                raise
        else:
            self._leg.accept(self.host.media.answer(self.plan, port=stream.port, offer=self._offer))
            self._sip_accepted = True
        self._start_media(stream)

    async def _late_offer(self, stream: RtpStream) -> MediaPlan:
        """Offer in the 200 OK, answer from the ACK (the endpoint hands us the ACK's body)."""
        answer = self._expect_ack_body()
        self._leg.accept(self.host.media.offer(port=stream.port))
        self._sip_accepted = True
        body = await self._ack_body(answer)
        if body is None:
            if self.ended is not None and self.ended.reason in ("cancelled", "remote_hangup"):
                raise TelephonyError("the caller hung up before the answer", code="call_cancelled")
            if self.state != "ended":
                await self.hangup()
            raise TelephonyError("the caller never acknowledged our answer (late offer)", code="no_ack")
        try:
            return self.host.media.read_offer(sdp_of(body), source_ip=self.source_ip)
        except TelephonyError as exc:
            logger.info("call %s: no usable SDP answer in the ACK (%s): hanging up", self.call_id, exc.message)
            await self.hangup()  # RFC 3261 §13.3.1.4: the answer in the ACK is unacceptable → BYE
            raise TelephonyError(f"late offer: {exc.message}", code=exc.code) from exc

    async def wait_answered(self, stream: RtpStream, *, target: str, timeout_s: float) -> None:
        """An outbound call until its 200 OK; raises ``TelephonyError`` with code ``busy``, ``no_answer``
        (rang out / timed out, CANCEL sent), ``rejected``, or the SDP answer's code. ``stream`` (bound for
        our offer) carries the media once answered and is closed on every failure."""
        assert isinstance(self._leg, OutboundLeg)
        leg = self._leg
        heard = asyncio.Event()
        leg.on_ringing = heard.set
        try:
            await leg.wait_answered(timeout_s=timeout_s)
        except TimeoutError as exc:
            with contextlib.suppress(Exception):
                leg.cancel()  # CANCEL; the 487 that follows is ACKed by the endpoint
            await self._fail("cancelled", stream)
            rang = "rang out" if heard.is_set() else "no ringing heard"
            raise TelephonyError(f"{target} did not answer within {timeout_s:.0f} s ({rang})", code="no_answer") from exc
        except RuntimeError as exc:
            status, reason = leg.refusal
            await self._fail("rejected", stream, status)
            code = "busy" if status in (486, 600, 603) else ("no_answer" if status in (408, 480, 487) else "rejected")
            raise TelephonyError(f"{target} refused the call: {status} {reason}", code=code) from exc
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                leg.cancel()
            await self._fail("cancelled", stream)
            raise
        try:
            self.plan = self.host.media.read_answer(leg.sdp_answer)
        except TelephonyError:
            with contextlib.suppress(Exception):
                leg.hangup()
            await self._fail("error", stream)
            raise
        self._start_media(stream)

    async def _fail(self, reason: str, stream: RtpStream, status: int | None = None) -> None:
        self.host.call_gone(self)
        self.terminated(reason, status)
        await stream.close()

    def _start_media(self, stream: RtpStream) -> None:
        assert self.plan is not None
        stream.configure(self.plan)
        self._stream = stream
        stream.on_audio = self._on_audio
        stream.on_dtmf = self._on_dtmf
        stream.sending = not self.plan.on_hold
        self.state = "active"
        self._settled.set()
        stream.start()
        self.answered_at = time.monotonic()
        self.host.call_active(self)

    def reject(self, status: int = 486) -> None:
        if isinstance(self._leg, InboundLeg) and self.state == "ringing":
            self._leg.refuse(status)
            self.host.call_gone(self)
            self.terminated("rejected", status)

    def play(self, pcm8k: bytes) -> None:
        if self._stream is not None and self.state == "active":
            self._stream.play(pcm8k)

    def clear_playback(self) -> None:
        if self._stream is not None:
            self._stream.clear_playback()

    @property
    def pending_ms(self) -> float:
        return self._stream.pending_ms if self._stream is not None else 0.0

    async def wait_played(self, *, timeout_s: float = 30.0) -> None:
        if self._stream is not None and self.state == "active":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._stream.wait_drained()

    def send_dtmf(self, digit: str) -> None:
        if self._stream is None or self.state != "active":
            raise TelephonyError("no active media to send DTMF on", code="call_not_active")
        self._stream.send_dtmf(digit)

    async def hold(self, on: bool = True) -> None:
        """Put the far end on hold (re-INVITE a=sendonly) or take it off hold (a=sendrecv)."""
        if self.state != "active" or self._stream is None or self.plan is None:
            raise TelephonyError("only an active call can be held", code="call_not_active")
        direction = "sendonly" if on else "sendrecv"
        self._leg.reinvite(self.host.media.offer(port=self._stream.port, codecs=(self.plan.codec,), direction=direction))
        self._stream.sending = direction != "inactive"

    async def hangup(self, *, reason: str = "local_hangup") -> None:
        if self.state == "ended":
            return
        with contextlib.suppress(Exception):  # the dialog may already be gone on the wire
            if isinstance(self._leg, InboundLeg):
                if self.state == "ringing" and not self._sip_accepted:
                    self._leg.refuse(480, "Temporarily Unavailable")
                else:
                    self._leg.hangup()
            elif self.state == "ringing":
                self._leg.cancel()
            else:
                self._leg.hangup()
        self.host.call_gone(self)
        self.terminated(reason)

    async def wait_settled(self) -> None:
        """Until the call is answered or has ended."""
        await self._settled.wait()

    async def wait_ended(self) -> CallEnded:
        await self._ended_event.wait()
        assert self.ended is not None
        return self.ended

    async def close_media(self) -> None:
        if self._stream is not None:
            await self._stream.close()

    # --- what the endpoint reports -----------------------------------------------------------
    def ack_received(self, body: str) -> None:
        """An ACK on this dialog; its body is the answer when our 200 OK carried an offer."""
        if self._late_answer is not None and not self._late_answer.done():
            self._late_answer.set_result(body)

    def reinvite_received(self, leg: InboundLeg, offer: SdpMessage | None) -> None:
        """A re-INVITE on this dialog (``offer`` None: it carried no SDP)."""
        if self._stream is None or self.plan is None:
            leg.refuse(481, "Call/Transaction Does Not Exist")
            return
        if offer is None:
            # RFC 3261 §14.2: a re-INVITE without an offer (a session refresh, or a PBX's third-party call
            # control) gets our offer, the session as it is, in the 200 OK; the answer rides the ACK
            plan = self.plan
            answer = self._expect_ack_body()
            leg.accept(self.host.media.offer(port=self._stream.port, codecs=(plan.codec,),
                                             dtmf_payload_type=plan.dtmf_payload_type or 101))
            self.host.spawn(self._reoffer_answered(answer), name=f"sip-reoffer-{self.call_id[:12]}")
            return
        try:
            plan = self.host.media.read_offer(offer, source_ip=self.source_ip, codecs=(self.plan.codec,))
        except TelephonyError as exc:
            warning = f'{WARN_CODES.get(exc.code, 399)} {self.host.media.media_host} "{exc.code}"'
            leg.refuse(488, "Not Acceptable Here", headers={"Warning": warning}, terminate=False)
            return
        leg.accept(self.host.media.answer(plan, port=self._stream.port, offer=offer))
        self._apply_plan(plan)

    def terminated(self, reason: str, status: int | None = None) -> None:
        """The call is over (BYE or CANCEL from the far end, no ACK, or our own hang-up)."""
        if self.ended is not None:
            return
        self.state = "ended"
        self.ended = CallEnded(call_id=self.call_id, reason=reason, sip_status=status)
        if self._late_answer is not None and not self._late_answer.done():
            self._late_answer.set_result(None)
        if self._stream is not None:
            self._stream.sending = False
            self.host.spawn(self._stream.close(), name=f"rtp-close-{self.call_id}")
        self._ended_event.set()
        self._settled.set()
        for cb in self._end_callbacks:
            try:
                cb(self.ended)
            except Exception:
                logger.exception("call end callback failed")

    # --- offer/answer inside the dialog ------------------------------------------------------
    def _expect_ack_body(self) -> asyncio.Future[str | None]:
        """Call before sending a 200 OK that carries our offer: the ACK will carry the answer
        (``ack_received``), and it may arrive before the sender of the 200 waits for it."""
        self._late_answer = asyncio.get_running_loop().create_future()
        return self._late_answer

    async def _ack_body(self, answer: asyncio.Future[str | None]) -> str | None:
        """The body of the ACK to our offer; ``None`` when none came in time or the call ended."""
        try:
            async with asyncio.timeout(LATE_ANSWER_TIMEOUT_S):
                return await answer
        except TimeoutError:
            return None
        finally:
            if self._late_answer is answer:
                self._late_answer = None

    @property
    def awaiting_ack_answer(self) -> bool:
        return self._late_answer is not None

    async def _reoffer_answered(self, answer: asyncio.Future[str | None]) -> None:
        """The far end's answer (in its ACK) to the offer we made for its re-INVITE without SDP."""
        body = await self._ack_body(answer)
        if self._stream is None or self.plan is None or self.state == "ended":
            return
        try:
            plan = self.host.media.read_offer(sdp_of(body or ""), source_ip=self.source_ip, codecs=(self.plan.codec,))
        except TelephonyError as exc:
            logger.info("call %s: no usable answer to our re-offer (%s): media unchanged", self.call_id, exc.message)
            return
        self._apply_plan(plan)

    def _apply_plan(self, plan: MediaPlan) -> None:
        """A renegotiated session: new media parameters, and the far end's hold state."""
        assert self._stream is not None
        self.plan = plan
        self._stream.configure(plan)
        if self.on_hold != plan.on_hold:
            self.on_hold = plan.on_hold
            logger.info("call %s %s by the far end", self.call_id, "held" if plan.on_hold else "resumed")
            if self.on_hold_changed is not None:
                self.on_hold_changed(HoldChanged(call_id=self.call_id, on_hold=plan.on_hold))
