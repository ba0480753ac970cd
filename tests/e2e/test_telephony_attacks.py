"""Attacks on the phone gateway (issue #15), on loopback against a real in-process gateway:

- an INVITE flood of 60 silent calls (INVITE + ACK, no audio, no BYE; sipp) does not lock a real caller out:
  while the table is full a caller gets 503 with Retry-After (no call in progress is hung up), and once the
  idle timeout has freed the slots the caller is answered;
- a 200 OK that is never ACKed does not keep its slot;
- RTP injected into a live call from a foreign port or address is neither played into the pipeline (speech,
  keypad digits) nor does it redirect the bot's outbound audio;
- an SDP whose c= names a third party (or a host name) is refused (488 + Warning), or with
  ``media_address_policy="source"`` the media goes to the signalling source instead.

Timeouts are lowered through settings so the whole file runs in well under a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import replace

import numpy as np
import pytest
from aiortp import DtmfEvent, RtpPacket

from assistant.audio import g711
from telephony.bench import sipp_send
from telephony.gateway import Gateway
from telephony.peers import SippRun
from telephony.sip import SipEndpoint
from telephony.testing import bot_pipeline_factory, tone
from tests.conftest import need_program
from tests.e2e.conftest import wait_for
from tests.e2e.raw_sip import Inbox, RawCaller, header, to_tag

pytestmark = [pytest.mark.e2e, pytest.mark.sip]


def level(pcm: bytes) -> float:
    return float(np.abs(np.frombuffer(pcm, "<i2")).mean()) if pcm else 0.0


# --- 1. INVITE flood ---------------------------------------------------------------------------------------
SILENT_CALL = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="silent call: INVITE, ACK, no audio, no BYE">
{sipp_send("INVITE", 1, sdp=True, to_tag=False)}  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="503" optional="true" next="busy"/>
  <recv response="200" rtd="true"/>
{sipp_send("ACK", 1, sdp=False, retrans=False)}  <recv request="BYE" timeout="60000"/>
  <send next="done"><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

  ]]></send>
  <label id="busy"/>
  <send><![CDATA[

ACK sip:assistant@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

  ]]></send>
  <label id="done"/>
</scenario>
"""


async def test_sixty_silent_calls_do_not_lock_out_a_real_caller(tel_settings, tmp_path):
    need_program("sipp")
    s = replace(tel_settings, telephony=replace(tel_settings.telephony, idle_timeout_s=4.0, busy_retry_after_s=5))
    cap = s.telephony.max_concurrent_calls
    assert cap < 60
    gw = Gateway(settings=s, pipeline_factory=bot_pipeline_factory(settings=s, reply_pcm=tone(seconds=1.0)), port=0)
    scenario = tmp_path / "silent.xml"
    scenario.write_text(SILENT_CALL)
    async with gw, SippRun(scenario=scenario, target=f"127.0.0.1:{gw.endpoint.port}", workdir=tmp_path / "sipp",
                           calls=60, rate=200, concurrent=60, timeout_s=30) as sipp:
        await wait_for(lambda: len(gw.endpoint.calls) >= cap, timeout_s=10, what="the flood to fill the table")
        await asyncio.sleep(0.6)  # the rest of the 60 INVITEs (sent within 0.3 s) arrive and are turned away
        in_table = len(gw.endpoint.calls)
        # the table is full: a real caller is told to retry, nobody is hung up to make room
        async with RawCaller(gw.endpoint.port) as caller:
            resp, _ = await caller.invite()
        status, retry_after = resp.split(" ", 2)[1], header(resp, "Retry-After")
        ended_by_then = [r.end_reason for r in gw.reports if r.end_reason]
        # the silent calls send no RTP: the idle timeout frees their slots, and the caller gets through
        await wait_for(lambda: not gw.endpoint.calls, timeout_s=4.0 + 6.0, what="the idle timeout to clear the silent calls")
        async with SipEndpoint(settings=s.telephony, port=0, user="13800000042") as phone:
            call = await phone.dial(f"sip:assistant@127.0.0.1:{gw.endpoint.port}", timeout_s=5)
            heard: list[float] = []
            call.on_audio = lambda pcm: heard.append(level(pcm))
            await asyncio.sleep(5.0)  # longer than the idle timeout: a caller who sends RTP is not cut off
            still_up = call.state == "active"
            await call.hangup()
        rc = await sipp.wait()
    assert in_table == cap, f"{in_table} calls in the table, the cap is {cap}"
    assert gw.endpoint.refusals["busy"] >= 60 - cap
    assert status == "503" and retry_after == "5", f"{in_table} calls, ended {ended_by_then}: {resp}"
    assert ended_by_then == [], f"calls in progress were ended to make room: {ended_by_then}"
    flood = [r for r in gw.reports if r.number != "13800000042"]
    assert len(flood) == cap and {r.end_reason for r in flood} == {"idle_timeout"}
    assert still_up and max(heard, default=0.0) > 1000, "the real caller was not answered / heard no greeting"
    assert rc in (0, 1), (tmp_path / "sipp" / "sipp.out").read_text()[-1500:]  # 1: the 503s count as failed calls


async def test_a_200_ok_never_acked_frees_its_slot(tel_settings, monkeypatch):
    monkeypatch.setattr("aiosipua.transaction.TIMER_H", 1.0)  # RFC 3261's 64*T1 = 32 s, shortened
    s = replace(tel_settings, telephony=replace(tel_settings.telephony, idle_timeout_s=60.0))
    gw = Gateway(settings=s, pipeline_factory=bot_pipeline_factory(settings=s, reply_pcm=tone(seconds=0.5)), port=0)
    async with gw, RawCaller(gw.endpoint.port) as caller:
        resp, call_id = await caller.invite()  # ... and never ACK
        assert resp.startswith("SIP/2.0 200"), resp
        assert call_id in gw.endpoint.calls
        await wait_for(lambda: call_id not in gw.endpoint.calls, timeout_s=5, what="the un-ACKed call to be released")
        await wait_for(lambda: gw.reports and gw.reports[0].end_reason, timeout_s=5, what="the call's pipeline to end")
    assert gw.reports[0].end_reason == "no_ack"


# --- 2. RTP injection ----------------------------------------------------------------------------------------
async def test_rtp_from_a_foreign_port_or_address_is_not_played_and_does_not_steal_the_media(tel_settings):
    alerts, bots = [], []

    async def on_alert(a):
        alerts.append(a)

    gw = Gateway(settings=tel_settings, pipeline_factory=bot_pipeline_factory(settings=tel_settings, bots=bots, reply_pcm=tone(seconds=0.6)),
                 on_alert=on_alert, port=0)
    loop = asyncio.get_running_loop()
    attackers = []
    async with gw, SipEndpoint(settings=tel_settings.telephony, port=0, user="13800000043") as phone:
        call = await phone.dial(f"sip:assistant@127.0.0.1:{gw.endpoint.port}", timeout_s=5)
        await wait_for(lambda: gw.endpoint.calls, timeout_s=3, what="the gateway's call")
        gw_call = next(iter(gw.endpoint.calls.values()))
        await wait_for(lambda: gw_call.stream is not None and gw_call.stream.stats.packets_in > 10, timeout_s=3, what="the caller's RTP")
        await wait_for(lambda: bots and not bots[0].bot_speaking, timeout_s=5, what="the greeting to end")
        victim_port = gw_call.stream.port
        peer_addr = gw_call.stream.remote_addr
        # two attackers: the caller's IP on another port, and another address altogether
        for host in ("127.0.0.1", "127.0.0.2"):
            inbox = Inbox()
            t, _ = await loop.create_datagram_endpoint(lambda inbox=inbox: inbox, local_addr=(host, 0))
            attackers.append((t, inbox))
        try:
            loud = g711.ulaw_encode(tone(seconds=0.02, hz=500, rate=8000, level=0.6))
            ssrc, seq, ts = 0x0BADBEEF, 100, 1000
            for i in range(75):  # 1.5 s of loud "speech", then the keypad digit 2 (help alert) and 0 (operator)
                for t, _ in attackers:
                    t.sendto(RtpPacket(payload_type=0, marker=int(i == 0), sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=loud).serialize(),
                             ("127.0.0.1", victim_port))
                seq, ts = seq + 1, ts + 160
                await asyncio.sleep(0.02)
            for digit in (2, 0):
                for n in range(4):
                    ev = DtmfEvent(event=digit, end=n == 3, volume=10, duration=160 * (n + 1))
                    for t, _ in attackers:
                        t.sendto(RtpPacket(payload_type=101, marker=int(n == 0), sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=ev.serialize()).serialize(),
                                 ("127.0.0.1", victim_port))
                    seq += 1
                    await asyncio.sleep(0.02)
                ts += 800
            before = call.stream.stats.packets_in
            await asyncio.sleep(1.5)  # the VAD's end of turn, the reply, the alert would all have happened
            heard_by_attackers = [inbox.queue.qsize() for _, inbox in attackers]
            after = call.stream.stats.packets_in
            stats = gw_call.stream.stats
            remote_after = gw_call.stream.remote_addr
            await call.hangup()
        finally:
            for t, _ in attackers:
                t.close()
    assert heard_by_attackers == [0, 0], "the gateway's audio was redirected to the attacker"
    assert remote_after == peer_addr and after - before > 50, "the real caller stopped receiving the gateway's audio"
    assert bots[0].speech_ends == [] and bots[0].interruptions == 0, "the injected speech reached the pipeline"
    assert bots[0].keys == [] and alerts == [], "injected keypad digits reached the pipeline"
    assert stats.foreign_packets >= 2 * 75


# --- 3. SDP c= aimed at a third party ------------------------------------------------------------------------
@pytest.mark.parametrize("c_ip,code", [("192.0.2.66", "sdp_foreign_address"), ("victim.example.com", "sdp_bad_address")])
async def test_an_sdp_aimed_at_a_third_party_is_refused(tel_settings, c_ip, code):
    gw = Gateway(settings=tel_settings, pipeline_factory=bot_pipeline_factory(settings=tel_settings, reply_pcm=tone(seconds=0.5)), port=0)
    async with gw, RawCaller(gw.endpoint.port) as caller:
        resp, call_id = await caller.invite(c_ip=c_ip)
        await asyncio.sleep(0.2)
        calls = gw.endpoint.calls
    assert resp.startswith("SIP/2.0 488"), resp
    assert code in (header(resp, "Warning") or ""), resp
    assert calls == {} and len(gw.reports) == 0 and gw.endpoint.refusals["media"] == 1


async def test_source_policy_sends_the_media_to_the_signalling_source_not_the_c_address(tel_settings):
    s = replace(tel_settings, telephony=replace(tel_settings.telephony, media_address_policy="source"))
    gw = Gateway(settings=s, pipeline_factory=bot_pipeline_factory(settings=s, reply_pcm=tone(seconds=1.0)), port=0)
    loop = asyncio.get_running_loop()
    inbox = Inbox()
    media, _ = await loop.create_datagram_endpoint(lambda: inbox, local_addr=("127.0.0.1", 0))
    media_port = media.get_extra_info("sockname")[1]
    try:
        async with gw, RawCaller(gw.endpoint.port) as caller:
            resp, call_id = await caller.invite(c_ip="192.0.2.66", media_port=media_port)
            assert resp.startswith("SIP/2.0 200"), resp
            caller.send(caller.request("ACK", call_id=call_id, cseq=1, to_tag=to_tag(resp)))
            await wait_for(lambda: inbox.queue.qsize() > 10, timeout_s=3, what="the gateway's RTP at the signalling source")
            plan = gw.endpoint.calls[call_id].plan
            caller.send(caller.request("BYE", call_id=call_id, cseq=2, to_tag=to_tag(resp)))
            await wait_for(lambda: not gw.endpoint.calls, timeout_s=3, what="the BYE")
    finally:
        with contextlib.suppress(Exception):
            media.close()
    assert plan.remote_addr == ("127.0.0.1", media_port)


async def test_kamailio_style_trusted_network_accepts_a_c_address_other_than_the_proxy(tel_settings):
    """Behind a proxy whose media bypasses it, c= is not the signalling source: trusted_media_networks allows it."""
    s = replace(tel_settings, telephony=replace(tel_settings.telephony, trusted_media_networks=("127.0.0.0/8",)))
    gw = Gateway(settings=s, pipeline_factory=bot_pipeline_factory(settings=s, reply_pcm=tone(seconds=0.5)), port=0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as m:
        m.bind(("127.0.0.3", 0))
        media_port = m.getsockname()[1]
        async with gw, RawCaller(gw.endpoint.port) as caller:
            resp, call_id = await caller.invite(c_ip="127.0.0.3", media_port=media_port)
            assert resp.startswith("SIP/2.0 200"), resp
            caller.send(caller.request("ACK", call_id=call_id, cseq=1, to_tag=to_tag(resp)))
            plan = gw.endpoint.calls[call_id].plan
            caller.send(caller.request("BYE", call_id=call_id, cseq=2, to_tag=to_tag(resp)))
            await wait_for(lambda: not gw.endpoint.calls, timeout_s=3, what="the BYE")
    assert plan.remote_addr == ("127.0.0.3", media_port)


async def test_a_call_at_its_maximum_duration_hears_a_goodbye_then_bye(tel_settings):
    s = replace(tel_settings, telephony=replace(tel_settings.telephony, max_call_duration_s=2.5))
    gw = Gateway(settings=s, pipeline_factory=bot_pipeline_factory(settings=s, reply_pcm=tone(seconds=0.8)), port=0)
    async with gw, SipEndpoint(settings=tel_settings.telephony, port=0, user="13800000044") as phone:  # no limit of its own
        call = await phone.dial(f"sip:assistant@127.0.0.1:{gw.endpoint.port}", timeout_s=5)
        t0 = asyncio.get_running_loop().time()
        heard: list[tuple[float, float]] = []
        call.on_audio = lambda pcm: heard.append((asyncio.get_running_loop().time() - t0, level(pcm)))
        ended = await asyncio.wait_for(call.wait_ended(), 15)
        t_end = asyncio.get_running_loop().time() - t0
        await wait_for(lambda: gw.reports and gw.reports[0].end_reason, timeout_s=5, what="the gateway's report")
    assert ended.reason == "remote_hangup" and gw.reports[0].end_reason == "max_duration"
    assert 2.5 <= t_end < 2.5 + 8
    goodbye = [t for t, lv in heard if t > 2.5 and lv > 1000]  # the greeting (0.8 s) is long over by then
    assert goodbye, "no goodbye before the BYE"


async def test_calls_per_source_limit_turns_away_a_second_call_from_the_same_ip(tel_settings):
    s = replace(tel_settings, telephony=replace(tel_settings.telephony, max_calls_per_source=1, busy_retry_after_s=7))
    gw = Gateway(settings=s, pipeline_factory=bot_pipeline_factory(settings=s, reply_pcm=tone(seconds=0.5)), port=0)
    async with gw, RawCaller(gw.endpoint.port) as first, RawCaller(gw.endpoint.port) as second:
        resp1, call_id = await first.invite()
        resp2, _ = await second.invite()
        first.send(first.request("BYE", call_id=call_id, cseq=2, to_tag=to_tag(resp1)))
        await wait_for(lambda: not gw.endpoint.calls, timeout_s=3, what="the BYE")
        resp3, call_id3 = await second.invite()
        second.send(second.request("BYE", call_id=call_id3, cseq=2, to_tag=to_tag(resp3)))
    assert resp1.startswith("SIP/2.0 200"), resp1
    assert resp2.startswith("SIP/2.0 503") and header(resp2, "Retry-After") == "7", resp2
    assert resp3.startswith("SIP/2.0 200"), resp3  # the slot is back once the first call ended
