"""The SIP endpoint: one UDP socket for SIP (UAS + UAC, over aiosipua), registration, call limits, and the
routing of each request to the call it belongs to. Each call's dialog state machine is ``telephony.dialog``.

    endpoint = SipEndpoint(settings=settings.telephony, on_incoming=handle)   # handle(call) is a coroutine
    await endpoint.start(); await endpoint.register("sip:gw@example", user=..., password=...)  # optional
    call = await endpoint.dial("1001")                       # raises TelephonyError(code="busy"|"no_answer"|...)
    call.on_audio = lambda pcm8k: ...; call.on_dtmf = lambda digit: ...
    await call.answer()  /  call.play(pcm8k)  /  call.clear_playback()  /  await call.hangup()
    await call.wait_ended()  → CallEnded(reason=...)

Covered here: REGISTER with digest auth, OPTIONS (aiosipua answers 200), ACK for non-2xx finals (aiosipua
omits it), Record-Route copied into 18x/2xx and learnt from 2xx (route sets through kamailio). Every request
is screened (``telephony.sip_requests``: 405/400/416/420/481/406/415, issue #25) before aiosipua's UAS sees
it; a retransmitted INVITE of a ringing call is dropped (aiosipua would start a second call).
Limits (issue #15): at most ``max_concurrent_calls`` calls (more INVITEs get 503 + Retry-After, no call in
progress is touched; ``on_refused`` hears of each), of which outbound calls never take the
``engine_inbound_reserve_calls`` kept for elders calling in (``telephony.lines``: every ``dial`` goes out on a
line ticket), optionally ``max_calls_per_source`` per signalling IP; an active call with no RTP for
``idle_timeout_s`` or older than ``max_call_duration_s`` (after ``PhoneCall.on_time_limit``, e.g. a spoken
goodbye) is hung up; a 200 OK never ACKed ends the call (aiosipua's 64*T1). An inbound offer's c= address
must be the signalling source's IP or a trusted network (``telephony.offer_answer``); an unparseable SDP gets
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
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiosipua import (
    IncomingCall,
    OutgoingCall,
    Registration,
    RegistrationState,
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
from telephony.dialog import CallEnded, HoldChanged, PhoneCall, uri_user
from telephony.lines import LineGate, LineTicket, LineUse
from telephony.offer_answer import OfferAnswer
from telephony.rtp import PortAllocator, RtpStream
from telephony.sdp import WARN_CODES, MediaPlan
from telephony.sip_leg import InboundLeg, OutboundLeg
from telephony.sip_requests import offer_of, reply, screen

__all__ = ["CallEnded", "HoldChanged", "PhoneCall", "QuietUdpSipTransport", "SipEndpoint", "uri_user"]

logger = logging.getLogger(__name__)

USER_AGENT = "elder-assistant-gateway/0.1"
TIME_LIMIT_GOODBYE_MAX_S = 15.0  # how long ``PhoneCall.on_time_limit`` (the goodbye) may take before the BYE


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



IncomingHandler = Callable[[PhoneCall], Awaitable[None]]
# an inbound INVITE refused because every line was busy: (caller's number, its Call-ID)
RefusedHandler = Callable[[str, str], Awaitable[None]]


class SipEndpoint:
    """One UDP socket for SIP (UAS + UAC) plus an RTP port range. Owns every task it starts.

    Implements ``telephony.dialog.CallHost`` for its calls: ``media``, ``new_stream``, ``call_active``,
    ``call_gone``, ``spawn``."""

    def __init__(
        self,
        *,
        settings: TelephonySettings,
        host: str | None = None,
        port: int | None = None,
        user: str | None = None,
        on_incoming: IncomingHandler | None = None,
        on_refused: RefusedHandler | None = None,
    ) -> None:
        self.settings = settings
        self.host = host or settings.sip_host
        self.port = settings.sip_port if port is None else port
        self.user = user or settings.sip_user
        self.on_incoming = on_incoming
        self.on_refused = on_refused
        self.media = OfferAnswer(settings=settings, media_host=self.host)
        self._ports = PortAllocator(port_min=settings.rtp_port_min, port_max=settings.rtp_port_max)
        self._transport = QuietUdpSipTransport(local_addr=(self.host, self.port))
        self._uac = SipUAC(self._transport)
        self._uas = SipUAS(self._transport, uac=self._uac, user_agent=USER_AGENT)
        self._calls: dict[str, PhoneCall] = {}
        # who may take a line (telephony.lines): inbound any, outbound never the inbound reserve
        self.lines = LineGate(lines=settings.max_concurrent_calls, inbound_reserve=settings.engine_inbound_reserve_calls,
                              calls=lambda: len(self._calls))
        self.refusals: Counter[str] = Counter()  # INVITEs turned away: "busy" (503), "media" (488), "bad_sdp" (400)
        self._outgoing: dict[str, OutgoingCall] = {}  # our INVITEs of calls in progress, by Call-ID
        self._recent_outgoing: dict[str, OutgoingCall] = {}  # ... and of ended ones (a late final still needs its ACK)
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
    def started(self) -> bool:
        return self._started

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{self.host}:{self.port}"

    @property
    def media_host(self) -> str:
        return self.media.media_host

    @property
    def codecs(self) -> tuple[str, ...]:
        return self.media.codecs

    @property
    def malformed_messages(self) -> int:
        return self._transport.malformed

    @property
    def calls(self) -> dict[str, PhoneCall]:
        return dict(self._calls)

    # --- CallHost: what the calls ask of their endpoint --------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            logger.error("telephony task %s failed: %s", task.get_name(), exc, exc_info=exc)

    def new_stream(self, plan: MediaPlan) -> RtpStream:
        return RtpStream(
            host=self.media_host,
            remote_addr=plan.remote_addr,
            codec=plan.codec,
            dtmf_payload_type=plan.dtmf_payload_type,
            ports=self._ports,
            max_reorder_frames=self.settings.jitter_max_reorder_frames,
        )

    def call_active(self, call: PhoneCall) -> None:
        """Idle and maximum-duration limits for a call that just turned active."""
        if self.settings.idle_timeout_s > 0 or self.settings.max_call_duration_s > 0:
            self.spawn(self._watch_call(call), name=f"sip-limits-{call.call_id[:12]}")

    def call_gone(self, call: PhoneCall) -> None:
        call_id = call.call_id
        if self._calls.pop(call_id, None) is not None:
            self.lines.changed()
        oc = self._outgoing.pop(call_id, None)
        if oc is not None:  # a 487 / late final may still need its ACK
            self._recent_outgoing[call_id] = oc
            while len(self._recent_outgoing) > 256:
                self._recent_outgoing.pop(next(iter(self._recent_outgoing)))
        self._uas._calls.pop(call_id, None)
        self._uac._calls.pop(call_id, None)

    # --- limits ------------------------------------------------------------------------------
    async def _watch_call(self, call: PhoneCall) -> None:
        idle_s, max_s = self.settings.idle_timeout_s, self.settings.max_call_duration_s
        step = min(1.0, *(t / 4 for t in (idle_s, max_s) if t > 0))
        while call.state == "active":
            await asyncio.sleep(step)
            now = time.monotonic()
            stream = call.stream
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

    def _admit(self, source_ip: str) -> str | None:
        """Why a new inbound call cannot be taken now (None: it can). An inbound call may take any free line,
        the ones kept from outbound calls included (``telephony.lines``)."""
        if not self.lines.admits_inbound():
            self.lines.refused_inbound += 1
            return "call limit reached"
        per_source = self.settings.max_calls_per_source
        if per_source > 0 and sum(1 for c in self._calls.values() if c.source_ip == source_ip) >= per_source:
            return f"call limit for {source_ip} reached"
        return None

    def _end(self, call_id: str, reason: str, status: int | None = None) -> None:
        call = self._calls.pop(call_id, None)
        self._outgoing.pop(call_id, None)
        if call is not None:
            self.lines.changed()
            call.terminated(reason, status)

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

    async def dial(self, target: str, *, timeout_s: float | None = None, caller_id: str | None = None,
                   line: LineTicket | LineUse = LineUse.ROUTINE, line_wait_s: float | None = 0.0) -> PhoneCall:
        """INVITE ``target``; returns the answered call. Raises ``TelephonyError`` with code ``busy``,
        ``no_answer`` (rang out / timed out, CANCEL sent), ``unreachable`` (no response at all), ``rejected``
        or ``no_free_line``.

        ``line``: the ticket the INVITE goes out on (``telephony.lines``; spent here, or released when the
        INVITE is not sent), or the kind of line to take now, waiting up to ``line_wait_s`` (None: until one
        is free) — no free line in that time: ``no_free_line``. The wait counts within ``timeout_s``."""
        if not self._started:
            if isinstance(line, LineTicket):
                line.release()
            raise TelephonyError("the SIP endpoint is not started", code="sip_not_started")
        ring_s = timeout_s or self.settings.answer_timeout_s
        if isinstance(line, LineTicket):
            ticket = line
        else:
            started = time.monotonic()
            ticket = await self.lines.take(line, wait_s=line_wait_s)
            if ticket is None:
                raise TelephonyError(f"no free line to dial {target} ({line} call)", code="no_free_line")
            ring_s = max(ring_s - (time.monotonic() - started), 0.5)
        try:
            uri, addr = self.resolve(target)
            addr = await _resolved(addr)
            stream = RtpStream(host=self.media_host, remote_addr=("0.0.0.0", 0), codec="PCMU", dtmf_payload_type=101, ports=self._ports)
            await stream.bind()
        except BaseException:
            ticket.release()
            raise
        from_uri = f"sip:{caller_id or self.user}@{self._domain or self.host}"
        try:
            oc = self._uac.send_invite(from_uri, uri, addr, self.media.offer(port=stream.port), user_agent=USER_AGENT, auth=self._auth)
        except BaseException:
            ticket.release()
            raise
        call = PhoneCall(host=self, leg=OutboundLeg(outgoing=oc, uac=self._uac), call_id=oc.call_id,
                         direction="outbound", remote_uri=uri)
        self._calls[oc.call_id] = call
        ticket.spend()  # the call counts itself from here (same step: no await between)
        self._outgoing[oc.call_id] = oc
        await call.wait_answered(stream, target=target, timeout_s=ring_s)
        return call

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
                self._reply(msg, 400, "Bad Request", headers={"Warning": f'399 {self.host} "{problem}"'})
            return
        try:
            self._route_checked(msg, addr)
        except Exception:  # a bug of ours or aiosipua's: answer, stay up, and make it visible
            self._transport.malformed += 1
            logger.error("SIP %s from %s:%s could not be handled", _first_line(msg), addr[0], addr[1], exc_info=True)
            if isinstance(msg, SipRequest) and msg.method.upper() != "ACK":
                self._reply(msg, 500, "Server Internal Error", headers={"Warning": f'399 {self.host} "internal error"'})

    def _reply(self, request: SipRequest, status: int, reason: str, *, headers: dict[str, str] | None = None) -> None:
        """A response of our own to a request no call of ours handles (one To tag, ``sip_requests.reply``)."""
        with contextlib.suppress(Exception):
            self._transport.send_reply(reply(request, status, reason, headers=headers, user_agent=USER_AGENT))

    def _route_checked(self, msg: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        if isinstance(msg, SipRequest) and msg.method.upper() != "ACK":
            call_id = msg.call_id or ""
            if msg.method.upper() == "INVITE" and self._retransmitted(msg):
                return  # the INVITE of a call we already have (our 180 was lost); the 200 is retransmitted until ACKed
            refusal = screen(msg, known_dialog=self._uas.get_call(call_id) is not None or self._uac.get_call(call_id) is not None,
                             host=self.host)
            if refusal is not None:
                self.refusals[refusal.counter] += 1
                logger.info("%s from %s:%s refused: %d %s %s", _first_line(msg), addr[0], addr[1], refusal.status,
                            refusal.reason, refusal.headers)
                self._reply(msg, refusal.status, refusal.reason, headers=refusal.headers)
                return
        if isinstance(msg, SipRequest) and msg.method.upper() == "ACK":  # the answer to an offer in a 200 rides the ACK
            call = self._calls.get(msg.call_id or "")
            if call is not None:
                call.ack_received(msg.text or "")
        if isinstance(msg, SipResponse) and msg.cseq is not None and msg.cseq.method.upper() == "INVITE":
            if msg.status_code >= 300:
                self._ack_non_2xx(msg, addr)
            elif msg.status_code >= 200:
                self._learn_route(msg)
        self._uas._on_message(msg, addr)

    def _retransmitted(self, invite: SipRequest) -> bool:
        """An INVITE without To tag for a Call-ID whose INVITE (same CSeq) we hold: aiosipua would take it for
        a new call and replace the one in progress."""
        inc = self._uas.get_call(invite.call_id or "")
        if inc is None or invite.to_addr is None or invite.to_addr.tag:
            return False
        first, again = inc.invite.cseq, invite.cseq
        return first is not None and again is not None and first.seq == again.seq

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
        oc = self._outgoing.get(resp.call_id or "")
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
        call_id = resp.call_id or ""
        oc = self._outgoing.get(call_id) or self._recent_outgoing.get(call_id)
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
        leg = InboundLeg(incoming=inc, uac=self._uac)
        if self.on_incoming is None:
            leg.refuse(480)
            self._uas._calls.pop(inc.call_id, None)
            return
        full = self._admit(inc.source_addr[0])
        if full is not None:  # RFC 3261 §21.5.4: try again later; no call in progress is touched
            self.refusals["busy"] += 1
            if self.refusals["busy"] in (1, 10, 100) or self.refusals["busy"] % 1000 == 0:
                logger.warning("refusing an INVITE from %s:%s: %s (%d calls; %d refused so far)", *inc.source_addr, full,
                               len(self._calls), self.refusals["busy"])
            leg.refuse(503, "Service Unavailable", headers={"Retry-After": str(self.settings.busy_retry_after_s)})
            self._uas._calls.pop(inc.call_id, None)
            if self.on_refused is not None and full == "call limit reached":  # (not a flood from one source)
                self.spawn(self.on_refused(uri_user(inc.caller), inc.call_id), name=f"sip-refused-{inc.call_id[:12]}")
            return
        try:
            # no SDP at all = late offer: we offer in the 200 OK (PhoneCall.answer); a multipart body's SDP
            # part is the offer (aiosipua reads only an application/sdp body)
            offer = offer_of(inc.invite)
            plan = self.media.read_offer(offer, source_ip=inc.source_addr[0]) if offer is not None else None
        except TelephonyError as exc:
            logger.info("rejecting call %s: %s", inc.call_id, exc.message)
            self.refusals["media"] += 1
            leg.refuse(488, "Not Acceptable Here", headers={"Warning": f'{WARN_CODES.get(exc.code, 399)} {self.host} "{exc.code}"'})
            self._uas._calls.pop(inc.call_id, None)
            return
        call = PhoneCall(host=self, leg=leg, call_id=inc.call_id, direction="inbound", remote_uri=inc.caller, plan=plan, offer=offer)
        self._calls[inc.call_id] = call
        call.ring()
        self.spawn(self._run_incoming(call), name=f"sip-call-{inc.call_id[:12]}")

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
        leg = InboundLeg(incoming=inc, uac=self._uac)
        call = self._calls.get(inc.call_id)
        if call is None:
            leg.refuse(481, "Call/Transaction Does Not Exist")
            return
        # (aiosipua keeps the previous offer in ``sdp_offer`` when a re-INVITE carries none: stale here)
        call.reinvite_received(leg, offer_of(inc.invite))

    def _on_bye(self, inc: IncomingCall, request: SipRequest) -> None:
        self._end(inc.call_id, "remote_hangup")

    def _on_cancel(self, request: SipRequest, addr: tuple[str, int]) -> None:
        self._end(request.call_id or "", "cancelled", 487)


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


def _host_port(value: str) -> tuple[str, int]:
    value = value.removeprefix("sip:")
    if "@" in value:
        value = value.split("@", 1)[1]
    value = value.split(";", 1)[0]
    host, _, port = value.partition(":")
    return host, int(port or 5060)
