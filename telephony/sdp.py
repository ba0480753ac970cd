"""SDP offer/answer for G.711 calls (RFC 3264): PCMU/PCMA 8 kHz, RFC 4733 telephone-event, hold directions.

aiosipua parses and serialises SDP (``parse_sdp`` is lenient: it skips what it does not know and raises
assorted errors on bad numbers); the checks and the negotiation are ours. aiosipua's own answer always
names telephone-event 101 even when the offer used another payload type and holds a single m= line.

- ``check_sdp``: a body that is not SDP (RFC 4566: ``v=0`` first, an ``o=`` of six fields, well-formed
  ``m=``/``c=`` lines) raises ``sdp_malformed`` (the request gets 400).
- ``read_media``: the first audio stream we can use: ``RTP/AVP`` (or ``RTP/AVPF``), ``c=IN IP4`` with an
  IPv4 literal, a port, and PCMU/PCMA; streams before it that we cannot use are skipped, so a later PCMU
  stream is taken when the first offers only codecs we lack. None usable: the first audio stream's reason
  (``sdp_srtp_unsupported`` for ``RTP/SAVP``, ``sdp_bad_proto``, ``sdp_bad_network``, ``sdp_bad_address``,
  ``sdp_no_codec``; ``sdp_no_audio`` when there is no audio stream). The direction is the stream's own
  attribute, else the session-level one (RFC 4566 §6), else ``sendrecv``.
- ``answer_for``: RFC 3264 §6: as many m= lines as the offer, in its order; the chosen stream answered, every
  other one refused with port 0 (its media type, proto and formats mirrored).
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from aiosipua import SdpMessage, parse_sdp
from aiosipua.sdp import MediaDescription

from assistant.errors import TelephonyError

_STATIC = {0: "PCMU", 8: "PCMA"}
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
RTP_PROFILES = ("RTP/AVP", "RTP/AVPF")  # plain RTP; AVPF is AVP plus feedback we may ignore (RFC 4585 §3)
_SRTP_PROFILES = ("RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVPF")
# the SIP Warning code for each reason an offer is refused (RFC 3261 §20.43); anything else: 399
WARN_CODES = {"sdp_bad_network": 300, "sdp_bad_address": 301, "sdp_bad_proto": 302, "sdp_srtp_unsupported": 302,
              "sdp_no_audio": 304, "sdp_no_codec": 305}
_ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


@dataclass(frozen=True, kw_only=True)
class MediaPlan:
    """What both sides agreed: where to send, which codec, which telephone-event type, and the direction."""

    remote_addr: tuple[str, int]
    codec: str  # "PCMU" | "PCMA"
    payload_type: int
    dtmf_payload_type: int | None
    direction: str  # the remote side's direction (sendrecv / sendonly = it holds us / inactive)
    stream_index: int = 0  # which m= line of the offer (the answer mirrors every line, RFC 3264 §6)
    proto: str = "RTP/AVP"

    @property
    def on_hold(self) -> bool:
        return self.direction in ("sendonly", "inactive") or self.remote_addr[0] == "0.0.0.0"


def build_sdp_text(*, ip: str, port: int, codecs: tuple[str, ...], dtmf_payload_type: int | None = 101, direction: str = "sendrecv",
                   session_id: int | None = None, proto: str = "RTP/AVP") -> str:
    return "\r\n".join(_session_lines(ip, session_id) + _audio_lines(
        port=port, codecs=codecs, dtmf_payload_type=dtmf_payload_type, direction=direction, proto=proto)) + "\r\n"


def _session_lines(ip: str, session_id: int | None) -> list[str]:
    sid = session_id if session_id is not None else int(time.time())
    return ["v=0", f"o=elder-assistant {sid} {sid} IN IP4 {ip}", "s=-", f"c=IN IP4 {ip}", "t=0 0"]


def _audio_lines(*, port: int, codecs: tuple[str, ...], dtmf_payload_type: int | None, direction: str, proto: str) -> list[str]:
    pts = [{"PCMU": 0, "PCMA": 8}[c] for c in codecs]
    fmts = [str(p) for p in pts] + ([str(dtmf_payload_type)] if dtmf_payload_type is not None else [])
    lines = [f"m=audio {port} {proto} {' '.join(fmts)}"]
    lines += [f"a=rtpmap:{p} {_STATIC[p]}/8000" for p in pts]
    if dtmf_payload_type is not None:
        lines += [f"a=rtpmap:{dtmf_payload_type} telephone-event/8000", f"a=fmtp:{dtmf_payload_type} 0-16"]
    return [*lines, "a=ptime:20", f"a={direction}"]


def build_offer(*, ip: str, port: int, codecs: tuple[str, ...] = ("PCMU", "PCMA"), direction: str = "sendrecv",
                dtmf_payload_type: int | None = 101) -> SdpMessage:
    return parse_sdp(build_sdp_text(ip=ip, port=port, codecs=codecs, dtmf_payload_type=dtmf_payload_type,
                                    direction=direction))


def check_sdp(text: str) -> SdpMessage:
    """``text`` parsed as SDP, or ``TelephonyError(code="sdp_malformed")`` saying what is wrong (RFC 4566 §5:
    ``v=0`` first, ``o=`` with six fields, ``m=<media> <port> <proto> <fmt>...``, ``c=<net> <addrtype> <addr>``)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != "v=0":
        raise TelephonyError("the SDP does not start with v=0", code="sdp_malformed")
    origins = [ln for ln in lines if ln.startswith("o=")]
    if len(origins) != 1 or len(origins[0][2:].split()) != 6:
        raise TelephonyError("the SDP has no well-formed o= line", code="sdp_malformed")
    for ln in lines:
        if len(ln) < 2 or ln[1] != "=":
            raise TelephonyError(f"not an SDP line: {ln[:40]!r}", code="sdp_malformed")
        if ln.startswith("m="):
            parts = ln[2:].split()
            port = parts[1].split("/", 1)[0] if len(parts) > 1 else ""
            if len(parts) < 4 or not port.isdigit() or int(port) > 65535:
                raise TelephonyError(f"malformed media line {ln[:60]!r}", code="sdp_malformed")
        elif ln.startswith("c=") and len(ln[2:].split()) != 3:
            raise TelephonyError(f"malformed connection line {ln[:60]!r}", code="sdp_malformed")
    try:
        return parse_sdp(text)
    except Exception as exc:  # aiosipua raises assorted types for bad numbers
        raise TelephonyError(f"the SDP does not parse ({type(exc).__name__})", code="sdp_malformed") from None


def read_media(sdp: SdpMessage | None, *, codecs: tuple[str, ...] = ("PCMU", "PCMA")) -> MediaPlan:
    """The remote side's audio: the first audio stream we can use (see the module's docstring)."""
    if sdp is None:
        raise TelephonyError("the message carries no SDP", code="sdp_missing")
    first_problem: TelephonyError | None = None
    for index, media in enumerate(sdp.media):
        if media.media != "audio":
            continue
        try:
            return _audio_plan(sdp, media, index, codecs)
        except TelephonyError as exc:
            first_problem = first_problem or exc
    raise first_problem or TelephonyError("the SDP has no audio stream", code="sdp_no_audio")


def _audio_plan(sdp: SdpMessage, audio: MediaDescription, index: int, codecs: tuple[str, ...]) -> MediaPlan:
    if audio.port == 0:
        raise TelephonyError("the SDP has no usable audio stream", code="sdp_no_audio")
    if audio.proto.upper() in _SRTP_PROFILES:
        raise TelephonyError(f"the audio stream is SRTP only ({audio.proto}); this gateway speaks plain RTP",
                             code="sdp_srtp_unsupported")
    if audio.proto.upper() not in RTP_PROFILES:
        raise TelephonyError(f"unknown transport {audio.proto[:32]!r}", code="sdp_bad_proto")
    conn = audio.connection or sdp.connection
    if conn is None:
        raise TelephonyError("the SDP has no usable audio stream (no c= line)", code="sdp_no_audio")
    if conn.net_type.upper() != "IN":
        raise TelephonyError(f"unknown network type {conn.net_type[:16]!r}", code="sdp_bad_network")
    host = str(conn.address).strip()
    if conn.addr_type.upper() != "IP4":
        raise TelephonyError(f"address type {conn.addr_type[:16]!r} (this gateway's media is IPv4)", code="sdp_bad_address")
    try:  # a host name would be resolved by a blocking sendto on the event loop: only IPv4 literals (our media socket)
        ipaddress.IPv4Address(host)
    except ValueError:
        raise TelephonyError(f"the SDP's c= address {host[:64]!r} is not an IPv4 address", code="sdp_bad_address") from None
    if not 0 < int(audio.port) < 65536:
        raise TelephonyError(f"the SDP's media port {audio.port} is out of range", code="sdp_no_audio")
    wanted = {"PCMU": 0, "PCMA": 8}
    ok = {wanted[c] for c in codecs}
    chosen: int | None = None
    dtmf: int | None = None
    names: dict[int, str] = {}
    for c in audio.codecs:
        names[c.payload_type] = (c.encoding_name or _STATIC.get(c.payload_type, "")).upper()
    for f in audio.formats:
        try:
            pt = int(f)
        except ValueError:
            continue
        name = names.get(pt, _STATIC.get(pt, ""))
        if chosen is None and (pt in ok and name in ("", "PCMU", "PCMA")):
            chosen = pt
        if name == "TELEPHONE-EVENT" and dtmf is None:
            dtmf = pt
    if chosen is None:
        raise TelephonyError(f"no common codec (offered {audio.formats[:16]}, we take {list(codecs)})", code="sdp_no_codec")
    direction = next((d for d in _DIRECTIONS if d in audio.attributes),
                     next((d for d in _DIRECTIONS if d in sdp.attributes), "sendrecv"))
    return MediaPlan(remote_addr=(host, int(audio.port)), codec=_STATIC[chosen], payload_type=chosen, dtmf_payload_type=dtmf,
                     direction=direction, stream_index=index, proto=audio.proto)


def answer_for(plan: MediaPlan, *, ip: str, port: int, offer: SdpMessage | None = None, hold_us: bool = False) -> SdpMessage:
    """Our answer to the offer ``plan`` was read from (RFC 3264 §6): one m= line per offered line, in its order,
    the chosen audio stream with the offer's telephone-event type and the mirrored direction, the others
    refused with port 0. Without ``offer``: the one audio line."""
    direction = _ANSWER_DIRECTION.get(plan.direction, "sendrecv")
    if hold_us and direction == "sendrecv":
        direction = "sendonly"
    ours = _audio_lines(port=port, codecs=(plan.codec,), dtmf_payload_type=plan.dtmf_payload_type, direction=direction,
                        proto=plan.proto)
    lines = _session_lines(ip, None)
    if offer is None:
        lines += ours
    for index, media in enumerate(offer.media if offer is not None else ()):
        if index == plan.stream_index:
            lines += ours
        else:
            lines.append(f"m={media.media or 'unknown'} 0 {media.proto or 'RTP/AVP'} {' '.join(media.formats) or '0'}")
    return parse_sdp("\r\n".join(lines) + "\r\n")
