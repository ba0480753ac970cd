"""A SIP user agent over UDP with a thin interface of ours, wrapping aiosipua (signalling) and ``rtp.RtpStream``.

    endpoint = SipEndpoint(settings=settings.telephony, on_incoming=handle)   # handle(call) is a coroutine
    await endpoint.start(); await endpoint.register("sip:gw@example", user=..., password=...)  # optional
    call = await endpoint.dial("1001")                       # raises TelephonyError(code="busy"|"no_answer"|...)
    call.on_audio = lambda pcm8k: ...; call.on_dtmf = lambda digit: ...
    await call.answer()  /  call.play(pcm8k)  /  call.clear_playback()  /  await call.hangup()
    await call.wait_ended()  → CallEnded(reason=...)

Covered: REGISTER with digest auth, INVITE/100/180/200/ACK both ways, BYE, CANCEL both ways, OPTIONS
(aiosipua answers 200), re-INVITE hold/unhold both ways, a re-INVITE without SDP (our offer, the session as it
is, in the 200 OK; the answer in the ACK), ACK for non-2xx finals (aiosipua omits it), late offer on inbound
calls (an INVITE without SDP: our offer in the 200 OK, the caller's answer in the ACK).
Limits (issue #15): at most ``max_concurrent_calls`` calls (more INVITEs get 503 + Retry-After, no call in
progress is touched), optionally ``max_calls_per_source`` per signalling IP; an active call with no RTP for
``idle_timeout_s`` or older than ``max_call_duration_s`` (after ``PhoneCall.on_time_limit``, e.g. a spoken
goodbye) is hung up; a 200 OK never ACKed ends the call (aiosipua's 64*T1). An inbound offer's c= address
must be the signalling source's IP or a trusted network (``media_address_policy``); an unparseable SDP gets
400 with a Warning instead of silence.
Work-arounds: aiosipua's UDP protocol asserts a type that 3.11's selector transport fails (a traceback on
every start) and logs a traceback per malformed datagram; ``QuietUdpSipTransport`` replaces both.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal

from aiosipua import (
    IncomingCall,
    OutgoingCall,
    Registration,
    RegistrationState,
    SdpMessage,
    SipDigestAuth,
    SipMessage,
    SipRequest,
    SipResponse,
    SipUAC,
    SipUAS,
    UdpSipTransport,
    parse_sdp,
    parse_uri,
)
from aiosipua.transport import _stamp_via_received

from assistant.errors import TelephonyError
from assistant.settings import TelephonySettings
from telephony.rtp import PortAllocator, RtpStream
from telephony.sdp import MediaPlan, answer_for, build_offer, read_media

logger = logging.getLogger(__name__)

USER_AGENT = "elder-assistant-gateway/0.1"
# late offer: how long the 200 OK with our offer waits for the ACK with the caller's answer (RFC 3261 64*T1)
LATE_ANSWER_TIMEOUT_S = 32.0
# the RTP port is bound before the caller's answer says where to send: configured once the ACK arrives
_UNKNOWN_MEDIA = MediaPlan(remote_addr=("0.0.0.0", 0), codec="PCMU", payload_type=0, dtmf_payload_type=101, direction="sendrecv")
EndReason = Literal["local_hangup", "remote_hangup", "cancelled", "rejected", "no_ack", "shutdown", "error",
                    "idle_timeout", "max_duration"]
TIME_LIMIT_GOODBYE_MAX_S = 15.0  # how long ``PhoneCall.on_time_limit`` (the goodbye) may take before the BYE


@dataclass(frozen=True, kw_only=True)
class CallEnded:
    call_id: str
    reason: str
    sip_status: int | None = None


@dataclass(frozen=True, kw_only=True)
class HoldChanged:
    call_id: str
    on_hold: bool


class _QuietUdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: QuietUdpSipTransport) -> None:
        self._owner = owner

    def connection_made(self, transport) -> None:
        self._owner._udp_transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self._owner._dispatch(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        logger.debug("SIP socket error: %s", exc)


class QuietUdpSipTransport(UdpSipTransport):
    """aiosipua's UDP transport without its 3.11 ``AssertionError`` and with one log line per bad datagram."""

    malformed: int = 0
    unroutable: int = 0  # messages not sent: no usable Via, or an address that is no IP literal + valid port
    before_send = None  # Callable[[SipRequest | SipResponse], None]: last touches (Record-Route on 18x/2xx)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _QuietUdpProtocol(self), local_addr=self.local_addr)
        self._udp_transport = transport
        self.local_addr = tuple(transport.get_extra_info("sockname")[:2])

    def send(self, message, addr) -> None:
        if self._udp_transport is None or self._udp_transport.is_closing():
            return
        if not _routable(addr):
            # a response routed by a hostile Via: a port out of range is a fatal error for asyncio's datagram
            # transport (it closes the SIP socket: every call lost), a host name a blocking DNS lookup
            self.unroutable += 1
            logger.info("not sending SIP %s to %r: not an IP address and port", _first_line(message), addr)
            return
        if self.before_send is not None:
            self.before_send(message)
        self._udp_transport.sendto(bytes(message), (str(addr[0]), int(addr[1])))

    def send_reply(self, response) -> None:
        try:
            super().send_reply(response)
        except ValueError:  # "Cannot route response": no usable Via
            self.unroutable += 1

    def _dispatch(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.strip():  # CRLF keep-alive
            return
        try:
            msg = SipMessage.parse(data)
            if isinstance(msg, SipRequest):
                _stamp_via_received(msg, addr)
        except Exception as exc:  # aiosipua raises assorted types for garbage
            self.malformed += 1
            logger.info("dropped malformed SIP datagram from %s:%s (%s)", addr[0], addr[1], type(exc).__name__)
            return
        if self.on_message is not None:
            try:
                self.on_message(msg, addr)
            except Exception:
                self.malformed += 1
                logger.warning("SIP message from %s:%s could not be handled", addr[0], addr[1], exc_info=True)


def _routable(addr) -> bool:
    try:
        host, port = addr[0], int(addr[1])
        ipaddress.ip_address(str(host))
    except (TypeError, ValueError, IndexError):
        return False
    return 0 < port < 65536


async def _resolved(addr: tuple[str, int]) -> tuple[str, int]:
    """A configured host name (proxy, registrar, dialled URI) → its IPv4 address, off the event loop (the
    transport sends to IP literals only)."""
    host, port = addr
    try:
        ipaddress.ip_address(host)
        return addr
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise TelephonyError(f"cannot resolve {host}: {exc}", code="unreachable") from exc
    if not infos:
        raise TelephonyError(f"cannot resolve {host}", code="unreachable")
    return str(infos[0][4][0]), int(port)


def _first_line(message) -> str:
    try:
        return bytes(message).split(b"\r\n", 1)[0][:80].decode(errors="replace")
    except Exception:
        return type(message).__name__


def uri_user(uri: str) -> str:
    """The user part of a SIP URI or name-addr (the caller ID), '' when absent."""
    m = re.search(r"<([^>]*)>", uri)
    if m:
        uri = m.group(1)
    try:
        return parse_uri(uri.strip()).user or ""
    except Exception:  # a malformed From: treat as anonymous
        return ""


class PhoneCall:
    """One call, inbound or outbound. Audio in/out is 8 kHz 16-bit PCM in 20 ms frames."""

    def __init__(
        self,
        *,
        endpoint: SipEndpoint,
        call_id: str,
        direction: Literal["inbound", "outbound"],
        remote_uri: str,
        incoming: IncomingCall | None = None,
        outgoing: OutgoingCall | None = None,
        plan: MediaPlan | None = None,
        stream: RtpStream | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.call_id = call_id
        self.direction = direction
        self.remote_uri = remote_uri
        self.remote_number = uri_user(remote_uri)
        self.plan = plan
        self.state: Literal["ringing", "active", "ended"] = "ringing"
        self.on_hold = False
        self.ended: CallEnded | None = None
        self.on_hold_changed: Callable[[HoldChanged], None] | None = None
        self._incoming = incoming
        self._outgoing = outgoing
        self._stream = stream
        self._on_audio: Callable[[bytes], None] | None = None
        self._on_dtmf: Callable[[str], None] | None = None
        self._ended_event = asyncio.Event()
        self._settled = asyncio.Event()  # answered or ended
        self._end_callbacks: list[Callable[[CallEnded], None]] = []
        self._sip_accepted = False  # our 200 OK is out (late offer: the call is still "ringing" until the ACK)
        self.source_ip = incoming.source_addr[0] if incoming is not None else None  # signalling source (inbound)
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
    async def answer(self) -> None:
        """200 OK with our SDP answer; RTP runs from here on (set ``on_audio`` first).

        Late offer (the INVITE had no SDP, ``plan`` is None): the 200 OK carries our offer and the call turns
        active when the ACK brings the caller's answer (RFC 3264 §2); no usable answer → BYE and
        ``TelephonyError`` (``sdp_missing`` / ``sdp_no_codec`` / ``sdp_no_audio``, or ``no_ack``)."""
        if self.direction != "inbound" or self._incoming is None:
            raise TelephonyError("only an inbound call can be answered", code="not_inbound")
        if self.state != "ringing" or self._sip_accepted:
            raise TelephonyError(f"call {self.call_id} is {self.state}, cannot answer", code="call_not_ringing")
        stream = self.endpoint._new_stream(self.plan or _UNKNOWN_MEDIA)
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
            self._incoming.accept(answer_for(self.plan, ip=self.endpoint.media_host, port=stream.port))
            self._sip_accepted = True
        stream.configure(self.plan)
        self._attach(stream)
        self.state = "active"
        self._settled.set()
        stream.start()
        self.endpoint._watch(self)

    async def _late_offer(self, stream: RtpStream) -> MediaPlan:
        """Offer in the 200 OK, answer from the ACK (the endpoint hands us the ACK's body)."""
        assert self._incoming is not None
        answer = self._expect_ack_body()
        self._incoming.accept(build_offer(ip=self.endpoint.media_host, port=stream.port, codecs=self.endpoint.codecs))
        self._sip_accepted = True
        body = await self._ack_body(answer)
        if body is None:
            if self.ended is not None and self.ended.reason in ("cancelled", "remote_hangup"):
                raise TelephonyError("the caller hung up before the answer", code="call_cancelled")
            if self.state != "ended":
                await self.hangup()
            raise TelephonyError("the caller never acknowledged our answer (late offer)", code="no_ack")
        try:
            return self.endpoint._vet_media(read_media(_sdp_of(body), codecs=self.endpoint.codecs), self.source_ip)
        except TelephonyError as exc:
            logger.info("call %s: no usable SDP answer in the ACK (%s): hanging up", self.call_id, exc.message)
            await self.hangup()  # RFC 3261 §13.3.1.4: the answer in the ACK is unacceptable → BYE
            raise TelephonyError(f"late offer: {exc.message}", code=exc.code) from exc

    def _expect_ack_body(self) -> asyncio.Future[str | None]:
        """Call before sending a 200 OK that carries our offer: the ACK will carry the answer (``SipEndpoint._route``
        hands its body over), and it may arrive before the sender of the 200 waits for it."""
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

    def _late_answer_arrived(self, body: str) -> None:
        if self._late_answer is not None and not self._late_answer.done():
            self._late_answer.set_result(body)

    def _attach(self, stream: RtpStream) -> None:
        self._stream = stream
        stream.on_audio = self._on_audio
        stream.on_dtmf = self._on_dtmf
        stream.sending = not (self.plan.on_hold if self.plan else False)

    def reject(self, status: int = 486) -> None:
        if self._incoming is not None and self.state == "ringing":
            self._incoming.reject(status)
            self.endpoint._forget(self.call_id)
            self._finish("rejected", status)

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
        if self.state != "active" or self._stream is None:
            raise TelephonyError("only an active call can be held", code="call_not_active")
        self.endpoint._send_reinvite(self, direction="sendonly" if on else "sendrecv")

    async def hangup(self, *, reason: str = "local_hangup") -> None:
        if self.state == "ended":
            return
        with contextlib.suppress(Exception):  # the dialog may already be gone on the wire
            if self._incoming is not None:
                if self.state == "ringing" and not self._sip_accepted:
                    self._incoming.reject(480, "Temporarily Unavailable")
                else:
                    self._incoming.hangup()
            elif self._outgoing is not None:
                if self.state == "ringing":
                    self._outgoing.cancel(self.endpoint._uac)
                else:
                    self._outgoing.hangup(self.endpoint._uac)
        self.endpoint._forget(self.call_id)
        self._finish(reason)

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

    def _finish(self, reason: str, status: int | None = None) -> None:
        if self.ended is not None:
            return
        self.state = "ended"
        self.ended = CallEnded(call_id=self.call_id, reason=reason, sip_status=status)
        if self._late_answer is not None and not self._late_answer.done():
            self._late_answer.set_result(None)
        if self._stream is not None:
            self._stream.sending = False
            self.endpoint._spawn(self._stream.close(), name=f"rtp-close-{self.call_id}")
        self._ended_event.set()
        self._settled.set()
        for cb in self._end_callbacks:
            try:
                cb(self.ended)
            except Exception:
                logger.exception("call end callback failed")


IncomingHandler = Callable[[PhoneCall], Awaitable[None]]


class SipEndpoint:
    """One UDP socket for SIP (UAS + UAC) plus an RTP port range. Owns every task it starts."""

    def __init__(
        self,
        *,
        settings: TelephonySettings,
        host: str | None = None,
        port: int | None = None,
        user: str | None = None,
        on_incoming: IncomingHandler | None = None,
    ) -> None:
        self.settings = settings
        self.host = host or settings.sip_host
        self.port = settings.sip_port if port is None else port
        self.media_host = self.host
        self.user = user or settings.sip_user
        self.on_incoming = on_incoming
        self.codecs = tuple(settings.codecs)
        self._ports = PortAllocator(port_min=settings.rtp_port_min, port_max=settings.rtp_port_max)
        self._transport = QuietUdpSipTransport(local_addr=(self.host, self.port))
        self._uac = SipUAC(self._transport)
        self._uas = SipUAS(self._transport, uac=self._uac, user_agent=USER_AGENT)
        self._calls: dict[str, PhoneCall] = {}
        self.refusals: Counter[str] = Counter()  # INVITEs turned away: "busy" (503), "media" (488), "bad_sdp" (400)
        self._recent_outgoing: dict[str, OutgoingCall] = {}
        self._tasks: set[asyncio.Task] = set()
        self._registration: Registration | None = None
        self._auth: SipDigestAuth | None = None
        self._proxy: tuple[str, int] | None = _host_port(settings.outbound_proxy) if settings.outbound_proxy else None
        self._domain = settings.sip_domain
        self._started = False

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._uas.on_invite = self._on_invite
        self._uas.on_reinvite = self._on_reinvite
        self._uas.on_bye = self._on_bye
        self._uas.on_cancel = self._on_cancel
        self._uas.on_ack_timeout = lambda c: self._end(c.call_id, "no_ack")
        try:
            await self._uas.start()
        except OSError as exc:
            raise TelephonyError(f"cannot listen for SIP on {self.host}:{self.port}: {exc.strerror}", code="sip_bind_failed") from exc
        self._transport.on_message = self._route
        self._transport.before_send = self._copy_record_route
        self.port = self._transport.local_addr[1]
        self._started = True
        logger.info("SIP endpoint listening on udp:%s:%s", self.host, self.port)

    async def stop(self) -> None:
        for call in list(self._calls.values()):
            with contextlib.suppress(Exception):
                await call.hangup()
        if self._registration is not None and self._registration.state == RegistrationState.REGISTERED:
            with contextlib.suppress(Exception):
                self._registration.unregister()
            await asyncio.sleep(0.05)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._uas.stop()
        self._started = False

    async def __aenter__(self) -> SipEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{self.host}:{self.port}"

    @property
    def malformed_messages(self) -> int:
        return self._transport.malformed

    @property
    def calls(self) -> dict[str, PhoneCall]:
        return dict(self._calls)

    def _spawn(self, coro, *, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            logger.error("telephony task %s failed: %s", task.get_name(), exc, exc_info=exc)

    def _new_stream(self, plan: MediaPlan) -> RtpStream:
        return RtpStream(
            host=self.media_host,
            remote_addr=plan.remote_addr,
            codec=plan.codec,
            dtmf_payload_type=plan.dtmf_payload_type,
            ports=self._ports,
            max_reorder_frames=self.settings.jitter_max_reorder_frames,
        )

    # --- limits ------------------------------------------------------------------------------
    def _watch(self, call: PhoneCall) -> None:
        """Idle and maximum-duration limits for a call that just turned active."""
        call.answered_at = time.monotonic()
        if self.settings.idle_timeout_s > 0 or self.settings.max_call_duration_s > 0:
            self._spawn(self._watch_call(call), name=f"sip-limits-{call.call_id[:12]}")

    async def _watch_call(self, call: PhoneCall) -> None:
        idle_s, max_s = self.settings.idle_timeout_s, self.settings.max_call_duration_s
        step = min(1.0, *(t / 4 for t in (idle_s, max_s) if t > 0))
        while call.state == "active":
            await asyncio.sleep(step)
            now = time.monotonic()
            stream = call._stream
            last = stream.last_packet_at if stream is not None else None
            if idle_s > 0 and last is not None and now - last > idle_s and call.state == "active":
                logger.info("call %s: no RTP from the far end for %.0f s: hanging up", call.call_id, now - last)
                await call.hangup(reason="idle_timeout")
                return
            if max_s > 0 and call.answered_at is not None and now - call.answered_at > max_s and call.state == "active":
                logger.info("call %s reached the maximum duration (%.0f s): saying goodbye", call.call_id, max_s)
                if call.on_time_limit is not None:
                    try:
                        async with asyncio.timeout(TIME_LIMIT_GOODBYE_MAX_S):
                            await call.on_time_limit()
                    except TimeoutError:
                        pass
                    except Exception:
                        logger.warning("call %s: the time-limit goodbye failed", call.call_id, exc_info=True)
                await call.hangup(reason="max_duration")
                return

    def _vet_media(self, plan: MediaPlan, source_ip: str | None) -> MediaPlan:
        """An inbound peer's media address against ``media_address_policy``: the signalling source's IP, a
        trusted network, 0.0.0.0 (hold) pass; else ``sdp_foreign_address`` ("refuse") or the source's IP in
        its place ("source"). Media is never aimed at a third party named by an unauthenticated caller."""
        ip = plan.remote_addr[0]
        if source_ip is None or ip in ("0.0.0.0", source_ip) or _in_networks(ip, self.settings.trusted_media_networks):
            return plan
        if self.settings.media_address_policy == "source":
            logger.info("SDP c=%s is not the signalling source %s: sending media to the source", ip, source_ip)
            return replace(plan, remote_addr=(source_ip, plan.remote_addr[1]))
        raise TelephonyError(f"the SDP's c= address {ip} is not the signalling source {source_ip}", code="sdp_foreign_address")

    def _admit(self, inc: IncomingCall) -> str | None:
        """Why a new inbound call cannot be taken now (None: it can)."""
        if len(self._calls) >= self.settings.max_concurrent_calls:
            return "call limit reached"
        per_source = self.settings.max_calls_per_source
        if per_source > 0 and sum(1 for c in self._calls.values() if c.source_ip == inc.source_addr[0]) >= per_source:
            return f"call limit for {inc.source_addr[0]} reached"
        return None

    def _forget(self, call_id: str) -> None:
        call = self._calls.pop(call_id, None)
        if call is not None and call._outgoing is not None:  # a 487 / late final may still need its ACK
            self._recent_outgoing[call_id] = call._outgoing
            while len(self._recent_outgoing) > 256:
                self._recent_outgoing.pop(next(iter(self._recent_outgoing)))
        self._uas._calls.pop(call_id, None)
        self._uac._calls.pop(call_id, None)

    def _end(self, call_id: str, reason: str, status: int | None = None) -> None:
        call = self._calls.pop(call_id, None)
        if call is not None:
            call._finish(reason, status)

    # --- registration ------------------------------------------------------------------------
    async def register(self, aor: str, *, user: str, password: str, registrar: str | None = None, expires_s: int = 300, timeout_s: float = 5.0) -> None:
        """REGISTER ``aor`` (digest auth); refreshed by aiosipua. Raises ``TelephonyError(code="register_failed")``."""
        target = registrar or parse_uri(aor).host
        addr = await _resolved(_host_port(target))
        self._auth = SipDigestAuth(username=user, password=password)
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        reg = Registration(self._uac, aor, addr, expires=expires_s, auth=self._auth, user_agent=USER_AGENT)
        reg.on_registered = lambda r: done.done() or done.set_result(None)
        reg.on_failed = lambda r, status, reason: done.done() or done.set_exception(
            TelephonyError(f"registration of {aor} refused: {status} {reason}", code="register_failed")
        )
        self._registration = reg
        reg.register()
        try:
            async with asyncio.timeout(timeout_s):
                await done
        except TimeoutError as exc:
            raise TelephonyError(f"no answer from registrar {addr[0]}:{addr[1]} within {timeout_s:.0f} s", code="register_failed") from exc
        if self._proxy is None:
            self._proxy = addr
        self._domain = self._domain or parse_uri(aor).host
        logger.info("registered %s at %s:%s", aor, *addr)

    # --- outbound ----------------------------------------------------------------------------
    def resolve(self, target: str) -> tuple[str, tuple[str, int]]:
        """``sip:user@host:port`` → itself; a bare number → ``sip:number@domain`` via the outbound proxy."""
        if target.startswith("sip:"):
            u = parse_uri(target)
            addr = self._proxy or (u.host, u.port or 5060)
            return target, addr
        if self._proxy is None:
            raise TelephonyError(
                f"cannot dial {target!r}: no outbound proxy (set ASSISTANT_TELEPHONY_OUTBOUND_PROXY or register)", code="no_route"
            )
        domain = self._domain or self._proxy[0]
        return f"sip:{target}@{domain}", self._proxy

    async def dial(self, target: str, *, timeout_s: float | None = None, caller_id: str | None = None) -> PhoneCall:
        """INVITE ``target``; returns the answered call. Raises ``TelephonyError`` with code ``busy``,
        ``no_answer`` (rang out / timed out, CANCEL sent), ``unreachable`` (no response at all) or ``rejected``."""
        if not self._started:
            raise TelephonyError("the SIP endpoint is not started", code="sip_not_started")
        uri, addr = self.resolve(target)
        addr = await _resolved(addr)
        timeout_s = timeout_s or self.settings.answer_timeout_s
        ports_stream = RtpStream(host=self.media_host, remote_addr=("0.0.0.0", 0), codec="PCMU", dtmf_payload_type=101, ports=self._ports)
        await ports_stream.bind()
        from_uri = f"sip:{caller_id or self.user}@{self._domain or self.host}"
        oc = self._uac.send_invite(from_uri, uri, addr, build_offer(ip=self.media_host, port=ports_stream.port, codecs=self.codecs), user_agent=USER_AGENT, auth=self._auth)
        call = PhoneCall(endpoint=self, call_id=oc.call_id, direction="outbound", remote_uri=uri, outgoing=oc)
        self._calls[oc.call_id] = call
        heard = asyncio.Event()
        oc.on_ringing = lambda _c: heard.set()
        try:
            await oc.wait_answered(timeout=timeout_s)
        except TimeoutError as exc:
            with contextlib.suppress(Exception):
                oc.cancel(self._uac)  # CANCEL; the 487 that follows is ACKed by _ack_non_2xx
            self._forget(oc.call_id)
            call._finish("cancelled")
            await ports_stream.close()
            rang = "rang out" if heard.is_set() else "no ringing heard"
            raise TelephonyError(f"{target} did not answer within {timeout_s:.0f} s ({rang})", code="no_answer") from exc
        except RuntimeError as exc:
            status = oc._reject_code
            self._forget(oc.call_id)
            call._finish("rejected", status)
            await ports_stream.close()
            code = "busy" if status in (486, 600, 603) else ("no_answer" if status in (408, 480, 487) else "rejected")
            raise TelephonyError(f"{target} refused the call: {status} {oc._reject_reason}", code=code) from exc
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                oc.cancel(self._uac)
            self._forget(oc.call_id)
            call._finish("cancelled")
            await ports_stream.close()
            raise
        try:
            plan = read_media(oc.sdp_answer, codecs=self.codecs)
        except TelephonyError:
            with contextlib.suppress(Exception):
                oc.hangup(self._uac)
            self._forget(oc.call_id)
            call._finish("error")
            await ports_stream.close()
            raise
        call.plan = plan
        ports_stream.configure(plan)
        call._attach(ports_stream)
        call.state = "active"
        call._settled.set()
        ports_stream.start()
        self._watch(call)
        return call

    def _send_reinvite(self, call: PhoneCall, *, direction: str) -> None:
        assert call._stream is not None and call.plan is not None
        offer = build_offer(ip=self.media_host, port=call._stream.port, codecs=(call.plan.codec,), direction=direction)
        if call._outgoing is not None:
            self._uac.send_reinvite(call._outgoing.dialog, offer, call._outgoing.remote_addr)
        elif call._incoming is not None:
            self._uac._calls.setdefault(call.call_id, _reinvite_shim(call._incoming, self))
            self._uac.send_reinvite(call._incoming.dialog, offer, call._incoming.source_addr)
        call._stream.sending = direction != "inactive"

    # --- inbound -----------------------------------------------------------------------------
    def _route(self, msg: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        """Every datagram that parsed as SIP. aiosipua parses headers and SDP lazily, deep inside its UAS, and
        raises there: the sender got no answer at all. Malformed requests get 400 with a Warning here (never
        for an ACK), malformed responses are dropped; nothing raises out of this handler."""
        problem = _malformed(msg)
        if problem is not None:
            self._transport.malformed += 1
            logger.info("%s from %s:%s: %s", _first_line(msg), addr[0], addr[1], problem)
            if isinstance(msg, SipRequest) and problem != "Bad Via" and msg.method.upper() != "ACK":
                self.refusals["bad_sdp" if problem == "Malformed SDP" else "bad_request"] += 1
                with contextlib.suppress(Exception):
                    self._uas._send_error(msg, 400, "Bad Request", extra_headers={"Warning": f'399 {self.host} "{problem}"'})
            return
        try:
            self._route_checked(msg, addr)
        except Exception:  # a bug of ours or aiosipua's: answer, stay up, and make it visible
            self._transport.malformed += 1
            logger.error("SIP %s from %s:%s could not be handled", _first_line(msg), addr[0], addr[1], exc_info=True)
            if isinstance(msg, SipRequest) and msg.method.upper() != "ACK":
                with contextlib.suppress(Exception):
                    self._uas._send_error(msg, 500, "Server Internal Error", extra_headers={"Warning": f'399 {self.host} "internal error"'})

    def _route_checked(self, msg: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        if isinstance(msg, SipRequest) and msg.method.upper() == "ACK":  # late offer: the answer rides the ACK
            call = self._calls.get(msg.call_id or "")
            if call is not None and call._late_answer is not None:
                call._late_answer_arrived(msg.text or "")
        if isinstance(msg, SipResponse) and msg.cseq is not None and msg.cseq.method.upper() == "INVITE":
            if msg.status_code >= 300:
                self._ack_non_2xx(msg, addr)
            elif msg.status_code >= 200:
                self._learn_route(msg)
        self._uas._on_message(msg, addr)

    def _copy_record_route(self, msg: SipRequest | SipResponse) -> None:
        """RFC 3261 §12.1.1: a UAS copies the INVITE's Record-Route into its 18x/2xx (aiosipua does not, so
        the caller's ACK and BYE could not find their way back through a proxy such as kamailio)."""
        if not isinstance(msg, SipResponse) or not (100 < msg.status_code < 300) or msg.headers.get("record-route"):
            return
        if msg.cseq is None or msg.cseq.method.upper() != "INVITE":
            return
        inc = self._uas._calls.get(msg.call_id or "")
        if inc is None:
            return
        for rr in inc.invite.headers.get("record-route"):
            msg.headers.append("Record-Route", rr)

    def _learn_route(self, resp: SipResponse) -> None:
        """RFC 3261 §12.1.2: the UAC's route set is the 2xx's Record-Route reversed and its remote target
        the 2xx's Contact (aiosipua keeps neither, so in-dialog requests through a proxy went astray)."""
        call = self._calls.get(resp.call_id or "")
        oc = call._outgoing if call is not None else None
        if oc is None or oc._answered.is_set():
            return
        routes: list[str] = []
        for value in resp.headers.get("record-route"):
            routes += [r.strip() for r in re.split(r",(?=\s*<)", value) if r.strip()]
        oc.dialog.route_set = list(reversed(routes))
        contact = resp.headers.get_first("contact")
        m = re.search(r"<([^>]+)>", contact or "")
        if m or contact:
            oc.dialog.remote_target = m.group(1) if m else contact.split(";")[0].strip()

    def _ack_non_2xx(self, resp: SipResponse, addr: tuple[str, int]) -> None:
        """RFC 3261 §17.1.1.3: the INVITE client transaction ACKs every non-2xx final (aiosipua does not)."""
        call = self._calls.get(resp.call_id or "")
        oc = call._outgoing if call is not None else self._recent_outgoing.get(resp.call_id or "")
        if oc is None:
            return
        invite = oc.invite
        ack = SipRequest(method="ACK", uri=invite.uri)
        top = invite.headers.get_first("via")
        if top:
            ack.headers.append("Via", top)
        ack.headers.set_single("From", invite.headers.get_first("from") or "")
        ack.headers.set_single("To", resp.headers.get_first("to") or "")
        ack.headers.set_single("Call-ID", resp.call_id or "")
        ack.headers.set_single("CSeq", f"{resp.cseq.seq} ACK")
        ack.headers.set_single("Max-Forwards", "70")
        for route in invite.headers.get("route"):
            ack.headers.append("Route", route)
        self._transport.send(ack, oc.remote_addr)

    def _on_invite(self, inc: IncomingCall) -> None:
        if self.on_incoming is None:
            inc.reject(480)
            self._uas._calls.pop(inc.call_id, None)
            return
        full = self._admit(inc)
        if full is not None:  # RFC 3261 §21.5.4: try again later; no call in progress is touched
            self.refusals["busy"] += 1
            if self.refusals["busy"] in (1, 10, 100) or self.refusals["busy"] % 1000 == 0:
                logger.warning("refusing an INVITE from %s:%s: %s (%d calls; %d refused so far)", *inc.source_addr, full,
                               len(self._calls), self.refusals["busy"])
            inc._send_response(503, "Service Unavailable", extra_headers={"Retry-After": str(self.settings.busy_retry_after_s)})
            inc.dialog.terminate()
            self._uas._calls.pop(inc.call_id, None)
            return
        try:
            # no SDP at all = late offer: we offer in the 200 OK (PhoneCall.answer)
            plan = read_media(inc.sdp_offer, codecs=self.codecs) if inc.sdp_offer is not None else None
            if plan is not None:
                plan = self._vet_media(plan, inc.source_addr[0])
        except TelephonyError as exc:
            logger.info("rejecting call %s: %s", inc.call_id, exc.message)
            self.refusals["media"] += 1
            inc._send_response(488, "Not Acceptable Here", extra_headers={"Warning": f'399 {self.host} "{exc.code}"'})
            inc.dialog.terminate()
            self._uas._calls.pop(inc.call_id, None)
            return
        call = PhoneCall(endpoint=self, call_id=inc.call_id, direction="inbound", remote_uri=inc.caller, incoming=inc, plan=plan)
        self._calls[inc.call_id] = call
        inc.ringing()
        self._spawn(self._run_incoming(call), name=f"sip-call-{inc.call_id[:12]}")

    async def _run_incoming(self, call: PhoneCall) -> None:
        assert self.on_incoming is not None
        try:
            await self.on_incoming(call)
        except asyncio.CancelledError:
            await call.hangup()
            raise
        except Exception:
            logger.exception("call handler failed for %s", call.call_id)
        if call.state != "ended":
            await call.hangup()

    def _on_reinvite(self, inc: IncomingCall) -> None:
        call = self._calls.get(inc.call_id)
        if call is None or call._stream is None or call.plan is None:
            inc.reject(481, "Call/Transaction Does Not Exist")
            return
        if not _carries_sdp(inc.invite):  # (aiosipua keeps the previous offer in ``sdp_offer``: stale here)
            # RFC 3261 §14.2: a re-INVITE without an offer (a session refresh, or a PBX's third-party call
            # control) gets our offer, the session as it is, in the 200 OK; the answer rides the ACK
            plan = call.plan
            answer = call._expect_ack_body()
            inc.accept(build_offer(ip=self.media_host, port=call._stream.port, codecs=(plan.codec,),
                                   dtmf_payload_type=plan.dtmf_payload_type or 101))
            self._spawn(self._reoffer_answered(call, answer), name=f"sip-reoffer-{inc.call_id[:12]}")
            return
        try:
            plan = self._vet_media(read_media(inc.sdp_offer, codecs=(call.plan.codec,)), call.source_ip)
        except TelephonyError as exc:
            inc._send_response(488, "Not Acceptable Here", extra_headers={"Warning": f'399 {self.host} "{exc.code}"'})
            return
        inc.accept(answer_for(plan, ip=self.media_host, port=call._stream.port))
        self._apply_plan(call, plan)

    async def _reoffer_answered(self, call: PhoneCall, answer: asyncio.Future[str | None]) -> None:
        """The far end's answer (in its ACK) to the offer we made for its re-INVITE without SDP."""
        body = await call._ack_body(answer)
        if call._stream is None or call.plan is None or call.state == "ended":
            return
        try:
            plan = self._vet_media(read_media(_sdp_of(body or ""), codecs=(call.plan.codec,)), call.source_ip)
        except TelephonyError as exc:
            logger.info("call %s: no usable answer to our re-offer (%s): media unchanged", call.call_id, exc.message)
            return
        self._apply_plan(call, plan)

    def _apply_plan(self, call: PhoneCall, plan: MediaPlan) -> None:
        """A renegotiated session: new media parameters, and the far end's hold state."""
        assert call._stream is not None
        call.plan = plan
        call._stream.configure(plan)
        if call.on_hold != plan.on_hold:
            call.on_hold = plan.on_hold
            logger.info("call %s %s by the far end", call.call_id, "held" if plan.on_hold else "resumed")
            if call.on_hold_changed is not None:
                call.on_hold_changed(HoldChanged(call_id=call.call_id, on_hold=plan.on_hold))

    def _on_bye(self, inc: IncomingCall, request: SipRequest) -> None:
        self._end(inc.call_id, "remote_hangup")

    def _on_cancel(self, request: SipRequest, addr: tuple[str, int]) -> None:
        self._end(request.call_id or "", "cancelled", 487)


def _in_networks(ip: str, networks: tuple[str, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for net in networks:
        try:
            if addr in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            logger.warning("telephony.trusted_media_networks: %r is not a network", net)
    return False


def _malformed(msg: SipRequest | SipResponse) -> str | None:
    """What is wrong with a message's headers or SDP that aiosipua would choke on (None: nothing)."""
    try:
        vias = msg.via
    except Exception:
        return "Bad Via"
    if isinstance(msg, SipRequest) and not vias:
        return "Bad Via"
    try:
        cseq = msg.cseq
    except Exception:
        return "Bad CSeq"
    if cseq is not None and not 0 <= cseq.seq < 2**31:
        return "Bad CSeq"
    try:
        msg.from_addr, msg.to_addr, msg.contact  # noqa: B018 (parsing is the check)
    except Exception:
        return "Bad From/To/Contact"
    if isinstance(msg, SipRequest) and msg.body and msg.content_type == "application/sdp" and msg.method.upper() != "ACK":
        try:
            parse_sdp(msg.text)
        except Exception:
            return "Malformed SDP"
    return None


def _carries_sdp(request: SipRequest) -> bool:
    return bool(request.body) and (request.content_type or "").lower().startswith("application/sdp")


def _sdp_of(body: str) -> SdpMessage | None:
    """A message body as SDP (``None`` when empty or malformed)."""
    try:
        return parse_sdp(body) if body.strip() else None
    except Exception:  # aiosipua raises assorted types for a malformed body
        return None


def _reinvite_shim(inc: IncomingCall, endpoint: SipEndpoint) -> OutgoingCall:
    """Let aiosipua's UAC ACK the 200 to our re-INVITE on an inbound dialog (it looks calls up by Call-ID)."""
    oc = OutgoingCall(dialog=inc.dialog, invite=inc.invite, transport=endpoint._transport, remote_addr=inc.source_addr)
    oc._answered.set()
    return oc


def _host_port(value: str) -> tuple[str, int]:
    value = value.removeprefix("sip:")
    if "@" in value:
        value = value.split("@", 1)[1]
    value = value.split(";", 1)[0]
    host, _, port = value.partition(":")
    return host, int(port or 5060)
