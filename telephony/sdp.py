"""SDP offer/answer for G.711 calls (RFC 3264): PCMU/PCMA 8 kHz, RFC 4733 telephone-event, hold directions.

aiosipua parses and serialises SDP; the negotiation is ours because aiosipua's answer always names
telephone-event 101 even when the offer used another payload type (the answer must reuse the offer's).
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from aiosipua import SdpMessage, parse_sdp

from assistant.errors import TelephonyError

_STATIC = {0: "PCMU", 8: "PCMA"}
_ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


@dataclass(frozen=True, kw_only=True)
class MediaPlan:
    """What both sides agreed: where to send, which codec, which telephone-event type, and the direction."""

    remote_addr: tuple[str, int]
    codec: str  # "PCMU" | "PCMA"
    payload_type: int
    dtmf_payload_type: int | None
    direction: str  # the remote side's direction (sendrecv / sendonly = it holds us / inactive)

    @property
    def on_hold(self) -> bool:
        return self.direction in ("sendonly", "inactive") or self.remote_addr[0] == "0.0.0.0"


def build_sdp_text(*, ip: str, port: int, codecs: tuple[str, ...], dtmf_payload_type: int | None = 101, direction: str = "sendrecv", session_id: int | None = None) -> str:
    sid = session_id if session_id is not None else int(time.time())
    pts = [{"PCMU": 0, "PCMA": 8}[c] for c in codecs]
    fmts = [str(p) for p in pts] + ([str(dtmf_payload_type)] if dtmf_payload_type is not None else [])
    lines = [
        "v=0",
        f"o=elder-assistant {sid} {sid} IN IP4 {ip}",
        "s=-",
        f"c=IN IP4 {ip}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(fmts)}",
    ]
    lines += [f"a=rtpmap:{p} {_STATIC[p]}/8000" for p in pts]
    if dtmf_payload_type is not None:
        lines += [f"a=rtpmap:{dtmf_payload_type} telephone-event/8000", f"a=fmtp:{dtmf_payload_type} 0-16"]
    lines += ["a=ptime:20", f"a={direction}"]
    return "\r\n".join(lines) + "\r\n"


def build_offer(*, ip: str, port: int, codecs: tuple[str, ...] = ("PCMU", "PCMA"), direction: str = "sendrecv",
                dtmf_payload_type: int | None = 101) -> SdpMessage:
    return parse_sdp(build_sdp_text(ip=ip, port=port, codecs=codecs, dtmf_payload_type=dtmf_payload_type,
                                    direction=direction))


def read_media(sdp: SdpMessage | None, *, codecs: tuple[str, ...] = ("PCMU", "PCMA")) -> MediaPlan:
    """The remote side's audio: the first offered codec we support, its telephone-event type, its address."""
    if sdp is None:
        raise TelephonyError("the message carries no SDP", code="sdp_missing")
    audio = sdp.audio
    addr = sdp.rtp_address
    if audio is None or addr is None or audio.port == 0:
        raise TelephonyError("the SDP has no usable audio stream", code="sdp_no_audio")
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
    host = str(addr[0]).strip()
    try:  # a host name would be resolved by a blocking sendto on the event loop: only IPv4 literals (our media socket)
        ipaddress.IPv4Address(host)
    except ValueError:
        raise TelephonyError(f"the SDP's c= address {host[:64]!r} is not an IPv4 address", code="sdp_bad_address") from None
    if not 0 < int(addr[1]) < 65536:
        raise TelephonyError(f"the SDP's media port {addr[1]} is out of range", code="sdp_no_audio")
    if chosen is None:
        raise TelephonyError(f"no common codec (offered {audio.formats}, we take {list(codecs)})", code="sdp_no_codec")
    return MediaPlan(remote_addr=(host, int(addr[1])), codec=_STATIC[chosen], payload_type=chosen, dtmf_payload_type=dtmf, direction=audio.direction)


def answer_for(plan: MediaPlan, *, ip: str, port: int, hold_us: bool = False) -> SdpMessage:
    """Our answer to ``plan`` (RFC 3264 §6.1: mirror the direction; reuse the offer's telephone-event type)."""
    direction = _ANSWER_DIRECTION.get(plan.direction, "sendrecv")
    if hold_us and direction == "sendrecv":
        direction = "sendonly"
    text = build_sdp_text(ip=ip, port=port, codecs=(plan.codec,), dtmf_payload_type=plan.dtmf_payload_type, direction=direction)
    return parse_sdp(text)
