"""What a request must satisfy before it reaches aiosipua's UAS, and our replies when it does not (RFC 3261).

aiosipua parses messages, keeps transactions and dialogs, and answers OPTIONS; it does not check what a
request asks of us. ``screen`` does, before a call is created, and returns the refusal to send:

- a method aiosipua does not handle → 405 with ``Allow:`` (§8.2.1; aiosipua's own 405 had none);
- CSeq method other than the request's → 400 (§8.1.1.5);
- Request-URI not ``sip:``/``sips:``/``tel:`` → 416 (§8.2.2.1);
- ``Require:`` an option tag we do not implement → 420 with ``Unsupported:`` (§8.2.2.3; not for ACK/CANCEL);
- INVITE with a To tag for a dialog we do not know → 481 (§12.2.2; aiosipua took it for a new call and our
  200 then carried two tags);
- INVITE whose Contact is not a SIP URI, or a new INVITE without one → 400 (§8.1.1.8);
- INVITE whose ``Accept:`` rules out ``application/sdp`` → 406 with a ``Warning`` (our 200 must carry SDP);
- INVITE body: ``application/sdp``, or ``multipart/mixed``/``multipart/alternative`` holding one (RFC 5621) —
  anything else → 415 with ``Accept: application/sdp``; SDP that does not parse → 400 with a ``Warning``.

``offer_of`` gives the SDP of a request (the multipart part included); ``reply`` builds a response to a
request we refuse on our own (one To tag, stable across retransmissions).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from aiosipua import SdpMessage, SipRequest, SipResponse

from assistant.errors import TelephonyError
from telephony.sdp import check_sdp

# option tags we implement when a request Requires them (none: no 100rel, no session timers, no replaces)
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()
URI_SCHEMES = ("sip:", "sips:", "tel:")
# the methods aiosipua's UAS dispatches (a unit test keeps this in step with it); anything else gets 405
ALLOWED_METHODS = ("INVITE", "ACK", "PRACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "REFER", "NOTIFY")
_MULTIPART = ("multipart/mixed", "multipart/alternative", "multipart/related")


@dataclass(frozen=True, kw_only=True)
class Refusal:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    counter: str = "bad_request"  # ``SipEndpoint.refusals`` key


def screen(request: SipRequest, *, known_dialog: bool, host: str) -> Refusal | None:
    """Why ``request`` must be refused before it is handled (None: hand it on). ACKs are never refused."""
    method = request.method.upper()
    if method == "ACK":
        return None
    if method not in ALLOWED_METHODS:
        return Refusal(status=405, reason="Method Not Allowed", headers={"Allow": ", ".join(ALLOWED_METHODS)},
                       counter="bad_method")
    cseq = request.cseq
    if cseq is not None and cseq.method.upper() != method:
        return Refusal(status=400, reason="Bad Request", headers={"Warning": f'399 {host} "CSeq method mismatch"'})
    if not request.uri.strip().lower().startswith(URI_SCHEMES):
        return Refusal(status=416, reason="Unsupported URI Scheme")
    if method != "CANCEL":
        unknown = [t for t in _tokens(request.headers.get("require")) if t not in SUPPORTED_EXTENSIONS]
        if unknown:
            return Refusal(status=420, reason="Bad Extension", headers={"Unsupported": ", ".join(unknown)}, counter="bad_extension")
    if method != "INVITE":
        return None
    if _tag(request.headers.get_first("to") or "") and not known_dialog:
        return Refusal(status=481, reason="Call/Transaction Does Not Exist", counter="no_dialog")
    contacts = request.headers.get("contact")
    if not contacts and not known_dialog:  # we would have no target for the BYE
        return Refusal(status=400, reason="Bad Request", headers={"Warning": f'399 {host} "Missing Contact"'})
    if contacts and not _sip_contact(contacts[0]):
        return Refusal(status=400, reason="Bad Contact", headers={"Warning": f'399 {host} "Contact is not a SIP URI"'})
    accept = _tokens(request.headers.get("accept"))
    if accept and not {a.split(";", 1)[0].strip() for a in accept} & {"application/sdp", "application/*", "*/*"}:
        return Refusal(status=406, reason="Not Acceptable", counter="media_type",
                       headers={"Accept": "application/sdp", "Warning": f'399 {host} "our answer is application/sdp"'})
    try:
        offer_of(request)
    except TelephonyError as exc:
        if exc.code == "unsupported_media_type":
            return Refusal(status=415, reason="Unsupported Media Type", headers={"Accept": "application/sdp"},
                           counter="media_type")
        return Refusal(status=400, reason="Bad Request", headers={"Warning": f'399 {host} "Malformed SDP"'}, counter="bad_sdp")
    return None


def offer_of(request: SipRequest) -> SdpMessage | None:
    """The SDP a request carries (None: no body); ``TelephonyError`` ``unsupported_media_type`` for a body with
    no SDP in it, ``sdp_malformed`` for SDP that does not parse."""
    if not request.body or not request.body.strip():
        return None
    ctype = (request.headers.get_first("content-type") or "").strip()
    kind = ctype.split(";", 1)[0].strip().lower()
    if kind == "application/sdp":
        return check_sdp(request.text)
    if kind in _MULTIPART:
        sdp = _sdp_part(request.body, ctype)
        if sdp is not None:
            return check_sdp(sdp)
    raise TelephonyError(f"no SDP in a {kind or 'untyped'} body", code="unsupported_media_type")


def _sdp_part(body: bytes, ctype: str) -> str | None:
    m = re.search(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', ctype, re.I)
    if m is None:
        return None
    boundary = (m.group(1) or m.group(2)).encode()
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.lstrip(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = part.lstrip(b"\n").partition(b"\n\n")
        headers = head.decode(errors="replace").lower()
        if re.search(r"^content-type:\s*application/sdp\b", headers, re.M):
            return content.removesuffix(b"\r\n").decode(errors="replace")
    return None


def reply(request: SipRequest, status: int, reason: str, *, headers: dict[str, str] | None = None,
          user_agent: str | None = None) -> SipResponse:
    """A response to ``request`` outside any transaction of aiosipua's: Via, From, Call-ID, CSeq copied, To
    copied with one tag (ours, derived from the branch so that a retransmission gets the same one)."""
    resp = SipResponse(status_code=status, reason_phrase=reason)
    for via in request.headers.get("via"):
        resp.headers.append("Via", via)
    for name in ("from", "call-id", "cseq"):
        value = request.headers.get_first(name)
        if value:
            resp.headers.set_single(name.title() if name != "call-id" else "Call-ID", value)
    to = request.headers.get_first("to")
    if to:
        if status > 100 and not _tag(to):
            branch = (request.via[0].branch if request.via else "") or request.call_id or ""
            to = f"{to};tag={hashlib.sha256(branch.encode()).hexdigest()[:10]}"
        resp.headers.set_single("To", to)
    for name, value in (headers or {}).items():
        resp.headers.set_single(name, value)
    if user_agent:
        resp.headers.set_single("User-Agent", user_agent)
    resp.headers.set_single("Content-Length", "0")
    return resp


def _tokens(values: list[str]) -> list[str]:
    return [t.strip().lower() for v in values for t in v.split(",") if t.strip()]


def _tag(name_addr: str) -> str:
    params = name_addr.rsplit(">", 1)[-1] if ">" in name_addr else name_addr
    m = re.search(r";\s*tag\s*=\s*([^;\s]+)", params, re.I)
    return m.group(1) if m else ""


def _sip_contact(value: str) -> bool:
    value = value.strip()
    m = re.search(r"<([^>]*)>", value)
    uri = (m.group(1) if m else value.split(";", 1)[0]).strip().lower()
    return uri.startswith(("sip:", "sips:"))
