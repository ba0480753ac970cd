"""Offer/answer and request screening as RFC 3261/3264 ask (issue #25 item 1, cases 1-7), without sockets.

The same requests over UDP to a real gateway: tests/e2e/test_sip_conformance.py.
"""

from __future__ import annotations

import pytest
from aiosipua import SipMessage, parse_sdp

from assistant.errors import TelephonyError
from telephony.sdp import answer_for, check_sdp, read_media
from telephony.sip_requests import offer_of, reply, screen

HEAD = "v=0\r\no=peer 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n"
AUDIO = "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
VIDEO = "m=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
G729 = "m=audio 40004 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"


def lines(sdp) -> list[str]:
    return [f"{m.media} {m.port} {m.proto}" for m in sdp.media]


# --- 1. the answer mirrors the offer's m= lines -------------------------------------------------------------
@pytest.mark.parametrize("body,expected", [
    (HEAD + AUDIO + VIDEO, ["audio 20000 RTP/AVP", "video 0 RTP/AVP"]),
    (HEAD + VIDEO + AUDIO, ["video 0 RTP/AVP", "audio 20000 RTP/AVP"]),
    (HEAD + AUDIO + "m=application 9 UDP/BFCP *\r\n", ["audio 20000 RTP/AVP", "application 0 UDP/BFCP"]),
    (HEAD + AUDIO + AUDIO.replace("40000", "40010"), ["audio 20000 RTP/AVP", "audio 0 RTP/AVP"]),
    (HEAD + "m=text 40020 RTP/AVP 98\r\n" + AUDIO + VIDEO, ["text 0 RTP/AVP", "audio 20000 RTP/AVP", "video 0 RTP/AVP"]),
])
def test_the_answer_has_one_m_line_per_offered_line_in_order_refused_with_port_0(body, expected):
    offer = parse_sdp(body)
    plan = read_media(offer)
    answer = answer_for(plan, ip="127.0.0.1", port=20000, offer=offer)
    assert lines(answer) == expected
    ours = answer.media[plan.stream_index]
    assert ours.formats == ["0", "101"] and answer.connection.address == "127.0.0.1"
    assert all(m.formats for m in answer.media)  # a refused line keeps at least one format (RFC 4566)


# --- 2. a later audio stream with PCMU is used when the first has no codec we take -----------------------
def test_a_later_pcmu_stream_is_taken_when_the_first_offers_only_g729():
    offer = parse_sdp(HEAD + G729 + AUDIO)
    plan = read_media(offer)
    assert plan.stream_index == 1 and plan.codec == "PCMU" and plan.remote_addr == ("10.0.0.9", 40000)
    assert lines(answer_for(plan, ip="127.0.0.1", port=20000, offer=offer)) == ["audio 0 RTP/AVP", "audio 20000 RTP/AVP"]
    with pytest.raises(TelephonyError) as exc:
        read_media(parse_sdp(HEAD + G729))
    assert exc.value.code == "sdp_no_codec"


# --- 3. a session-level direction applies to every stream without its own ---------------------------------
def test_a_session_level_sendonly_is_answered_recvonly():
    offer = parse_sdp(HEAD.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n") + AUDIO)
    plan = read_media(offer)
    assert plan.direction == "sendonly" and plan.on_hold
    assert answer_for(plan, ip="127.0.0.1", port=2, offer=offer).media[0].direction == "recvonly"
    own = parse_sdp(HEAD.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n") + AUDIO + "a=sendrecv\r\n")
    assert read_media(own).direction == "sendrecv"  # the stream's own attribute wins


# --- 6. what we cannot send to: network type, address type, transport, SRTP only --------------------------
@pytest.mark.parametrize("body,code", [
    (HEAD.replace("c=IN IP4 10.0.0.9", "c=AF IP4 10.0.0.9") + AUDIO, "sdp_bad_network"),
    (HEAD.replace("c=IN IP4 10.0.0.9", "c=IN IP7 10.0.0.9") + AUDIO, "sdp_bad_address"),
    (HEAD + AUDIO.replace("RTP/AVP", "RTP/XAVP"), "sdp_bad_proto"),
    (HEAD + AUDIO.replace("RTP/AVP", "RTP/SAVP") + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "A" * 40 + "\r\n",
     "sdp_srtp_unsupported"),
    (HEAD + VIDEO, "sdp_no_audio"),
])
def test_an_offer_we_cannot_serve_is_refused_with_its_reason(body, code):
    with pytest.raises(TelephonyError) as exc:
        read_media(parse_sdp(body))
    assert exc.value.code == code


def test_srtp_offered_beside_plain_rtp_takes_the_plain_stream():
    offer = parse_sdp(HEAD + AUDIO.replace("RTP/AVP", "RTP/SAVP") + AUDIO.replace("40000", "40010"))
    plan = read_media(offer)
    assert plan.stream_index == 1 and lines(answer_for(plan, ip="127.0.0.1", port=3, offer=offer)) == [
        "audio 0 RTP/SAVP", "audio 3 RTP/AVP"]


# --- 5. SDP that does not parse -----------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    HEAD.replace("v=0", "v=") + AUDIO,
    HEAD.replace("o=peer 1 1 IN IP4 10.0.0.9\r\n", "") + AUDIO,
    HEAD + AUDIO.replace("m=audio 40000", "m=audio forty"),
    HEAD + "m=audio 40000 RTP/AVP\r\n",
    HEAD.replace("c=IN IP4 10.0.0.9", "c=IN") + AUDIO,
    "hello\r\n",
])
def test_malformed_sdp_is_reported_not_raised_raw(body):
    with pytest.raises(TelephonyError) as exc:
        check_sdp(body)
    assert exc.value.code == "sdp_malformed"


# --- 4, 7: requests refused before a call is made -----------------------------------------------------------
def invite(*, headers: dict[str, str] | None = None, body: str = HEAD + AUDIO, ctype: str = "application/sdp",
           to_tag: str = "") -> SipMessage:
    h = {
        "Via": "SIP/2.0/UDP 10.0.0.9:5062;branch=z9hG4bKabc;rport",
        "From": "<sip:1001@10.0.0.9>;tag=f1",
        "To": "<sip:assistant@10.0.0.1>" + (f";tag={to_tag}" if to_tag else ""),
        "Call-ID": "c1@10.0.0.9", "CSeq": "1 INVITE", "Contact": "<sip:1001@10.0.0.9:5062>", "Max-Forwards": "70",
        **(headers or {}),
    }
    if body:
        h["Content-Type"] = ctype
    text = "INVITE sip:assistant@10.0.0.1 SIP/2.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items() if v is not None)
    text += f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
    return SipMessage.parse(text.encode())


def test_a_plain_invite_passes():
    assert screen(invite(), known_dialog=False, host="gw") is None


def test_require_of_an_unknown_extension_gets_420_with_unsupported():
    refusal = screen(invite(headers={"Require": "nothere, 100rel"}), known_dialog=False, host="gw")
    assert (refusal.status, refusal.headers["Unsupported"]) == (420, "nothere, 100rel")


def test_multipart_without_sdp_gets_415_and_with_sdp_is_the_offer():
    boundary = "unique-boundary-1"
    without = f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n"
    refusal = screen(invite(body=without, ctype=f"multipart/mixed;boundary={boundary}"), known_dialog=False, host="gw")
    assert (refusal.status, refusal.headers["Accept"]) == (415, "application/sdp")
    with_sdp = (f"--{boundary}\r\nContent-Type: application/sdp\r\n\r\n{HEAD + AUDIO}\r\n--{boundary}\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n\x01\x02\r\n--{boundary}--\r\n")
    req = invite(body=with_sdp, ctype=f'multipart/mixed; boundary="{boundary}"')
    assert screen(req, known_dialog=False, host="gw") is None
    assert read_media(offer_of(req)).remote_addr == ("10.0.0.9", 40000)
    assert screen(invite(body="hello", ctype="text/plain"), known_dialog=False, host="gw").status == 415


def test_an_invite_with_a_to_tag_for_an_unknown_dialog_gets_481():
    assert screen(invite(to_tag="xyz"), known_dialog=False, host="gw").status == 481
    assert screen(invite(to_tag="xyz"), known_dialog=True, host="gw") is None  # a re-INVITE


@pytest.mark.parametrize("contact", ["<mailto:a@b.c>", "<tel:+8613800001111>", "*", "<>", None])
def test_a_contact_that_is_no_sip_uri_gets_400(contact):
    refusal = screen(invite(headers={"Contact": contact}), known_dialog=False, host="gw")
    assert refusal.status == 400 and "Contact" in refusal.headers["Warning"]


def test_malformed_sdp_gets_400_with_a_warning_and_an_unknown_uri_scheme_416():
    refusal = screen(invite(body=HEAD.replace("v=0", "v=") + AUDIO), known_dialog=False, host="gw")
    assert refusal.status == 400 and refusal.headers["Warning"] == '399 gw "Malformed SDP"'
    req = invite()
    req.uri = "nobodyknows:thiss.is.not.a.uri"
    assert screen(req, known_dialog=False, host="gw").status == 416


def test_our_reply_carries_one_to_tag_stable_across_retransmissions():
    first, again = (bytes(reply(invite(), 420, "Bad Extension")).decode() for _ in range(2))
    tagged = bytes(reply(invite(to_tag="xyz"), 481, "Call/Transaction Does Not Exist")).decode()
    to = [ln for ln in first.split("\r\n") if ln.startswith("To:")][0]
    assert to.count("tag=") == 1 and first == again
    assert [ln for ln in tagged.split("\r\n") if ln.startswith("To:")][0].count("tag=") == 1


def test_methods_cseq_and_accept():
    from aiosipua import SipUAS

    from telephony.sip_requests import ALLOWED_METHODS

    assert set(ALLOWED_METHODS) == set(SipUAS(transport=None)._handlers)  # in step with what aiosipua dispatches
    req = invite()
    req.method = "NEWMETHOD"
    req.headers.set_single("CSeq", "1 NEWMETHOD")
    refusal = screen(req, known_dialog=False, host="gw")
    assert refusal.status == 405 and "INVITE" in refusal.headers["Allow"]
    mismatch = screen(invite(headers={"CSeq": "1 OPTIONS"}), known_dialog=False, host="gw")
    assert mismatch.status == 400 and "CSeq" in mismatch.headers["Warning"]
    assert screen(invite(headers={"Accept": "text/nobodyknows"}), known_dialog=False, host="gw").status == 406
    assert screen(invite(headers={"Accept": "application/sdp, text/html"}), known_dialog=False, host="gw") is None
