"""Late offer on an inbound call (INVITE without SDP), the state machine alone: our offer goes in the 200 OK,
the caller's answer comes in the ACK; a missing/bad answer, a hang-up or a lost ACK end the call cleanly.
(The same with a real sipp caller: tests/e2e/test_telephony_sip.py.)"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from assistant.errors import TelephonyError
from assistant.settings import TelephonySettings
from telephony.dialog import PhoneCall
from telephony.offer_answer import OfferAnswer
from telephony.sip_leg import InboundLeg

ANSWER = (
    "v=0\r\no=pbx 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 8 96\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\n"
)


@dataclass
class FakeStream:
    port: int = 30000
    configured: list = field(default_factory=list)
    started: bool = False
    closed: bool = False
    on_audio: object = None
    on_dtmf: object = None
    sending: bool = False

    async def bind(self):
        return self.port

    def configure(self, plan):
        self.configured.append(plan)

    def start(self):
        self.started = True

    async def close(self):
        self.closed = True


class FakeLeg(InboundLeg):
    """The SIP side of an inbound dialog, recording what the call sends."""

    def __init__(self):
        self.accepted: list = []
        self.byes = 0
        self.rejects: list = []

    source_addr = ("10.0.0.9", 5060)  # the caller's signalling address (= its SDP's c=)

    def accept(self, sdp):
        self.accepted.append(sdp)

    def hangup(self):
        self.byes += 1

    def refuse(self, status, reason="", *, headers=None, terminate=True):
        self.rejects.append(status)


class FakeHost:
    """``telephony.dialog.CallHost`` with the real offer/answer policy and a fake RTP stream."""

    def __init__(self):
        self.media = OfferAnswer(settings=TelephonySettings(), media_host="127.0.0.1")
        self.stream = FakeStream()
        self.gone: list[str] = []

    def new_stream(self, plan):
        return self.stream

    def call_gone(self, call):
        self.gone.append(call.call_id)

    def call_active(self, call):
        pass

    def spawn(self, coro, *, name):
        return asyncio.get_running_loop().create_task(coro, name=name)


def late_call():
    endpoint, inc = FakeHost(), FakeLeg()
    call = PhoneCall(host=endpoint, leg=inc, call_id="late-1", direction="inbound", remote_uri="<sip:1001@10.0.0.9>", plan=None)
    return call, endpoint, inc


async def answer_with(call: PhoneCall, ack_body: str | None):
    task = asyncio.create_task(call.answer())
    for _ in range(100):
        if call.awaiting_ack_answer:
            break
        await asyncio.sleep(0)
    assert call.state == "ringing"  # 200 OK out, waiting for the ACK: no audio yet
    if ack_body is not None:
        call.ack_received(ack_body)
    return task


async def test_answer_in_the_ack_makes_the_call_active():
    call, endpoint, inc = late_call()
    await (await answer_with(call, ANSWER))
    [offer] = inc.accepted
    assert offer.audio.formats == ["0", "8", "101"]  # our offer: both laws and telephone-event
    assert call.state == "active" and call.codec == "PCMA" and call.plan.dtmf_payload_type == 96
    assert call.plan.remote_addr == ("10.0.0.9", 40000) and endpoint.stream.configured[-1] == call.plan
    assert endpoint.stream.started and inc.byes == 0


@pytest.mark.parametrize("body,code", [
    ("", "sdp_missing"),
    (ANSWER.replace("8 96", "18 96").replace("a=rtpmap:8 PCMA/8000\r\n", ""), "sdp_no_codec"),
    (ANSWER.replace("c=IN IP4 10.0.0.9", "c=IN IP4 192.0.2.66"), "sdp_foreign_address"),  # media aimed at a third party
    (ANSWER.replace("c=IN IP4 10.0.0.9", "c=IN IP4 victim.example"), "sdp_bad_address"),  # never resolved
])
async def test_no_usable_answer_in_the_ack_sends_bye(body, code):
    call, endpoint, inc = late_call()
    task = await answer_with(call, body)
    with pytest.raises(TelephonyError) as exc:
        await task
    assert exc.value.code == code
    assert inc.byes == 1 and inc.rejects == [] and call.state == "ended" and endpoint.stream.closed


async def test_caller_gone_or_ack_lost_while_waiting(monkeypatch):
    call, endpoint, inc = late_call()
    task = await answer_with(call, None)
    call.terminated("cancelled", 487)  # CANCEL / BYE from the caller
    with pytest.raises(TelephonyError) as exc:
        await task
    assert exc.value.code == "call_cancelled" and inc.byes == 0 and endpoint.stream.closed

    monkeypatch.setattr("telephony.dialog.LATE_ANSWER_TIMEOUT_S", 0.05)
    call, endpoint, inc = late_call()
    with pytest.raises(TelephonyError) as exc:
        await call.answer()
    assert exc.value.code == "no_ack" and inc.byes == 1 and call.state == "ended" and endpoint.stream.closed
