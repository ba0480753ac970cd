"""The phone gateway against real SIP peers on 127.0.0.1 (baresip, sipp) and against itself.

The pipeline here is the stand-in from ``telephony.testing`` (VAD → ReplyBot); the integrator adds the
transcript check with the real pipeline in ``test_telephony_pipeline.py``.
"""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import time
import wave
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from telephony.gateway import Gateway
from telephony.peers import BaresipPeer, SippRun
from telephony.scheduler import CareCallRunner, CareSchedule, FamilyContact, FastClock
from telephony.sip import SipEndpoint
from telephony.testing import bot_pipeline_factory, tone
from tests.conftest import need_program, shared_path
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.sip]


def rms(path: Path) -> float:
    with wave.open(str(path)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


@pytest.fixture(scope="module")
def speech_wav_8k(tmp_path_factory) -> Path:
    """A real Mandarin utterance as an 8 kHz mono WAV: 0.5 s silence, speech, 20 s silence (baresip hangs up at EOF)."""
    sox = need_program("sox")
    src = shared_path("data", "mandarin_speech", "wav", "wenet_aishell_BAC009S0724W0121.wav")
    out = tmp_path_factory.mktemp("speech") / "utterance_8k.wav"
    subprocess.run([sox, str(src), "-r", "8000", "-c", "1", "-b", "16", str(out), "pad", "0.5", "20"], check=True)
    return out


def skip_without_baresip():
    need_program("baresip")


async def test_inbound_call_speech_in_reply_out_and_dtmf_help(tel_settings, speech_wav_8k, tmp_path):
    skip_without_baresip()
    alerts, bots = [], []

    async def on_alert(a):
        alerts.append(a)

    gw = Gateway(settings=tel_settings, pipeline_factory=bot_pipeline_factory(settings=tel_settings, bots=bots, reply_pcm=tone(seconds=1.0)), on_alert=on_alert, port=0)
    async with gw, BaresipPeer(workdir=tmp_path / "elder", wav=speech_wav_8k, user="13800000001") as peer:
        await peer.command("dial", f"sip:assistant@127.0.0.1:{gw.endpoint.port}")
        await wait_for(lambda: bots and bots[0].speech_ends, timeout_s=10, what="the end of the caller's speech")
        await asyncio.sleep(1.5)  # the reply plays
        await peer.command("sndcode", "2")
        await wait_for(lambda: bots[0].keys, timeout_s=5, what="keypad 2 at the pipeline")
        await peer.command("hangup")
        await wait_for(lambda: gw.reports and gw.reports[0].end_reason, timeout_s=5, what="the call to end")
        recordings = peer.recordings()
    report = gw.reports[0]
    assert report.number == "13800000001" and report.end_reason == "remote_hangup"
    assert report.frames_in > 100  # ~20 ms frames of the caller at 16 kHz
    assert alerts == [] and report.keys == ["2"]  # keypad 2 is the dialogue's (raised once, there), not the gateway's
    assert bots[0].keys == ["2"]
    assert recordings, "baresip recorded nothing"
    assert max(rms(p) for p in recordings) > 300, "the caller heard only silence"


async def test_outbound_care_call_to_auto_answering_baresip(tel_settings, tmp_path):
    skip_without_baresip()
    alerts, ledger = [], []

    async def on_alert(a):
        alerts.append(a)

    async def record(intent):
        ledger.append((intent, time.monotonic()))
        return {"code": "7351"}

    gw = Gateway(settings=tel_settings, pipeline_factory=bot_pipeline_factory(settings=tel_settings, reply_pcm=tone(seconds=0.5)), on_alert=on_alert, port=0)
    async with gw, BaresipPeer(workdir=tmp_path / "elder", user="elder") as peer:
        runner = CareCallRunner(gateway=gw, ledger_record=record, on_alert=on_alert, after_outcome_s=0.5)
        task = asyncio.create_task(runner.run_care_call(CareSchedule(elder_id=3, number=peer.uri)))
        await wait_for(lambda: gw.endpoint.calls, timeout_s=5, what="the outbound call")
        await asyncio.sleep(1.0)
        await peer.command("sndcode", "1")
        result = await asyncio.wait_for(task, 15)
    assert result.status == "completed" and result.outcome == "well"
    assert result.attempts[0].result == "answered" and alerts == []
    assert ledger and ledger[0][0].purpose == "care_call"
    assert gw.reports[0].direction == "outbound" and gw.reports[0].frames_out > 20


async def test_unanswered_care_call_retries_and_escalates_on_fast_clock(tel_settings, tmp_path):
    skip_without_baresip()
    from dataclasses import replace

    settings = replace(tel_settings, telephony=replace(tel_settings.telephony, answer_timeout_s=1.0))
    alerts = []

    async def on_alert(a):
        alerts.append(a)

    async def record(intent):
        return {"code": "1234"}

    gw = Gateway(settings=settings, pipeline_factory=bot_pipeline_factory(settings=settings), on_alert=on_alert, port=0)
    async with gw, BaresipPeer(workdir=tmp_path / "elder", auto_answer=False, user="elder") as elder, BaresipPeer(
        workdir=tmp_path / "son", auto_answer=False, user="son"
    ) as son:
        clock = FastClock(start=datetime(2026, 11, 23, 9, 30), speed=3000)
        runner = CareCallRunner(gateway=gw, ledger_record=record, on_alert=on_alert, clock=clock)
        sched = CareSchedule(elder_id=5, number=elder.uri, family=(FamilyContact(name="儿子", number=son.uri),))
        t0 = time.monotonic()
        result = await asyncio.wait_for(runner.run_care_call(sched), 20)
        elapsed = time.monotonic() - t0
        assert not gw.endpoint.calls  # every ringing call was cancelled
    assert [a.result for a in result.attempts] == ["no_answer"] * 4
    assert [a.purpose for a in result.attempts] == ["care_call"] * 3 + ["family_escalation"]
    assert result.status == "escalated_operator" and [a.kind for a in alerts] == ["no_answer"]
    assert elapsed < 10  # 2 × 15 simulated minutes took well under real minutes


async def test_barge_in_stops_bot_audio_within_300_ms(tel_settings):
    bots = []
    gw = Gateway(settings=tel_settings, pipeline_factory=bot_pipeline_factory(settings=tel_settings, bots=bots, reply_pcm=tone(seconds=6.0)), port=0)
    async with gw, SipEndpoint(settings=tel_settings.telephony, port=0, user="13800000002") as phone:
        heard: list[tuple[float, float]] = []
        call = await phone.dial(f"sip:assistant@127.0.0.1:{gw.endpoint.port}", timeout_s=5)
        call.on_audio = lambda pcm: heard.append((time.monotonic(), float(np.abs(np.frombuffer(pcm, "<i2")).mean())))
        await wait_for(lambda: bots and bots[0].bot_speaking, timeout_s=5, what="the greeting")
        await asyncio.sleep(0.5)
        call.play(tone(seconds=0.8, hz=300, rate=8000, level=0.5))  # the elder talks over the bot
        await wait_for(lambda: bots[0].interruptions, timeout_s=3, what="the interruption")
        t_int = time.monotonic()
        await asyncio.sleep(0.6)
        await call.hangup()
    after = [(t - t_int, level) for t, level in heard if t >= t_int]
    before = [level for t, level in heard if t_int - 0.6 < t < t_int - 0.3]
    assert before and float(np.median(before)) > 1000  # the bot was audible
    silent_from = next(t for t, level in after if level < 50)
    print(f"barge-in: silence {silent_from * 1000:.0f} ms after the interruption")
    assert silent_from < 0.3, f"bot audio continued {silent_from * 1000:.0f} ms after the interruption"
    assert all(level < 50 for t, level in after if t > silent_from + 0.05)


MALFORMED_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="codec mismatch then probe">
  <send><![CDATA[

INVITE sip:assistant@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:bad2@[local_ip]>;tag=[call_number]b
To: <sip:assistant@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 INVITE
Max-Forwards: 70
Contact: <sip:bad2@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio [media_port] RTP/AVP 18
a=rtpmap:18 G729/8000

  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="488"/>
  <send><![CDATA[

ACK sip:assistant@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:bad2@[local_ip]>;tag=[call_number]b
To: <sip:assistant@[remote_ip]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

  ]]></send>
  <send><![CDATA[

OPTIONS sip:assistant@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:probe@[local_ip]>;tag=[call_number]c
To: <sip:assistant@[remote_ip]>
Call-ID: [call_id]
CSeq: 2 OPTIONS
Max-Forwards: 70
Content-Length: 0

  ]]></send>
  <recv response="200"/>
</scenario>
"""


async def test_malformed_sip_and_rtp_loss_leave_other_calls_unaffected(tel_settings, speech_wav_8k, tmp_path):
    skip_without_baresip()
    need_program("sipp")
    bots = []
    gw = Gateway(settings=tel_settings, pipeline_factory=bot_pipeline_factory(settings=tel_settings, bots=bots, reply_pcm=tone(seconds=1.0)), port=0)
    async with gw, BaresipPeer(workdir=tmp_path / "good", wav=speech_wav_8k, user="13800000003") as good, SipEndpoint(
        settings=tel_settings.telephony, port=0, user="13800000004"
    ) as lossy_phone:
        await good.command("dial", f"sip:assistant@127.0.0.1:{gw.endpoint.port}")
        # a second caller whose RTP loses 10 % of packets on the way
        lossy = await lossy_phone.dial(f"sip:assistant@127.0.0.1:{gw.endpoint.port}", timeout_s=5)
        rtp = lossy.stream._rtp
        real_sendto = rtp.sendto
        rng = random.Random(7)
        rtp.sendto = lambda data, addr=None: None if rng.random() < 0.10 else real_sendto(data, addr)
        lossy.play(tone(seconds=1.5, hz=300, rate=8000, level=0.4))
        # garbage straight at the SIP port, then sipp's truncated INVITE / codec mismatch / OPTIONS probe
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            truncated = (
                b"INVITE sip:assistant@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKt\r\n"
                b"From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:assistant@127.0.0.1>\r\nCall-ID: trunc\r\nCSeq: 1 INV"
                b"ITE\r\nContent-Type: application/sdp\r\nContent-Length: 400\r\n\r\nv=0\r\no=tru"
            )
            for junk in (b"\x00\xff" * 300, b"INVITE", b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n", truncated, b"\r\n\r\n", bytes(range(256)) * 5):
                s.sendto(junk, ("127.0.0.1", gw.endpoint.port))
        scenario = tmp_path / "malformed.xml"
        scenario.write_text(MALFORMED_SCENARIO)
        async with SippRun(scenario=scenario, target=f"127.0.0.1:{gw.endpoint.port}", workdir=tmp_path / "sipp", timeout_s=10) as sipp:
            rc = await sipp.wait()
        assert rc == 0, (tmp_path / "sipp" / "sipp.out").read_text()[-1500:] + sipp.errors()[-1500:]
        await wait_for(lambda: len(bots) == 2 and all(b.speech_ends for b in bots), timeout_s=12, what="both callers' speech")
        await asyncio.sleep(1.5)
        gw_calls = gw.endpoint.calls
        lossy_gw = next(c for c in gw_calls.values() if c.remote_number == "13800000004")
        jitter = lossy_gw.stream.stats.jitter
        await lossy.hangup()
        await good.command("hangup")
        await wait_for(lambda: len(gw.reports) == 2 and all(r.end_reason for r in gw.reports), timeout_s=5, what="both calls to end")
        recordings = good.recordings()
    assert gw.endpoint.malformed_messages >= 2
    assert 0.04 < jitter.lost / max(jitter.received + jitter.lost, 1) < 0.2  # the loss was seen and concealed
    assert {r.end_reason for r in gw.reports} == {"remote_hangup"}
    assert max(rms(p) for p in recordings) > 300  # the good caller still heard the bot


async def test_hold_and_resume_by_reinvite(tel_settings):
    gw = Gateway(settings=tel_settings, pipeline_factory=bot_pipeline_factory(settings=tel_settings, reply_pcm=tone(seconds=8.0)), port=0)
    async with gw, SipEndpoint(settings=tel_settings.telephony, port=0, user="13800000007") as phone:
        call = await phone.dial(f"sip:assistant@127.0.0.1:{gw.endpoint.port}", timeout_s=5)
        await wait_for(lambda: gw.endpoint.calls, timeout_s=3, what="the gateway's call")
        gw_call = next(iter(gw.endpoint.calls.values()))
        changes = []
        gw_call.on_hold_changed = changes.append
        await asyncio.sleep(0.5)
        await call.hold(True)  # re-INVITE a=sendonly
        await wait_for(lambda: gw_call.on_hold, timeout_s=3, what="hold")
        sent = gw_call.stream.stats.packets_out
        await asyncio.sleep(0.4)
        held_sent = gw_call.stream.stats.packets_out - sent
        await call.hold(False)  # re-INVITE a=sendrecv
        await wait_for(lambda: not gw_call.on_hold, timeout_s=3, what="resume")
        sent = gw_call.stream.stats.packets_out
        await asyncio.sleep(0.4)
        resumed_sent = gw_call.stream.stats.packets_out - sent
        await call.hangup()
    assert held_sent == 0  # nothing sent towards a caller who put us on hold
    assert resumed_sent >= 15  # ~20 packets in 0.4 s once resumed
    assert [c.on_hold for c in changes] == [True, False]


@pytest.fixture
def dtmf2_pcap() -> str:
    pcap = Path("/usr/share/sip-tester/dtmf_2833_2.pcap")
    if not pcap.exists():
        pytest.skip(f"{pcap} missing (Debian package sip-tester)")
    return str(pcap)


async def test_sipp_rfc2833_pcap_digit_2_raises_help(tel_settings, tmp_path, dtmf2_pcap):
    need_program("sipp")
    from telephony.bench import SCENARIO

    pcap = dtmf2_pcap
    plays = f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n  <pause milliseconds="1500"/>\n'
    scenario = tmp_path / "dtmf.xml"
    scenario.write_text(SCENARIO.replace("{plays}", plays))
    alerts = []

    async def on_alert(a):
        alerts.append(a)

    gw = Gateway(settings=tel_settings, pipeline_factory=bot_pipeline_factory(settings=tel_settings), on_alert=on_alert, port=0)
    async with gw, SippRun(scenario=scenario, target=f"127.0.0.1:{gw.endpoint.port}", workdir=tmp_path / "sipp", timeout_s=15) as sipp:
        rc = await sipp.wait()
        await wait_for(lambda: gw.reports and gw.reports[0].end_reason, timeout_s=5, what="the call to end")
    assert rc == 0, sipp.errors()[-1000:]
    assert alerts == [] and gw.reports[0].keys == ["2"]


async def test_caller_cancels_while_ringing(tel_settings):
    """The caller gives up while the gateway is still looking the number up: CANCEL → 487, no pipeline left."""
    from assistant.errors import TelephonyError

    class SlowDirectory:
        async def elder_by_phone(self, number):
            await asyncio.sleep(1.5)
            return None

    gw = Gateway(settings=tel_settings, pipeline_factory=bot_pipeline_factory(settings=tel_settings), directory=SlowDirectory(), port=0)
    async with gw, SipEndpoint(settings=tel_settings.telephony, port=0, user="13800000008") as phone:
        with pytest.raises(TelephonyError) as exc:
            await phone.dial(f"sip:assistant@127.0.0.1:{gw.endpoint.port}", timeout_s=0.5)
        await wait_for(lambda: gw.reports and gw.reports[0].end_reason, timeout_s=5, what="the cancelled call's report")
        assert not gw.endpoint.calls
    assert exc.value.code == "no_answer"
    assert gw.reports[0].end_reason == "cancelled" and gw.reports[0].frames_out == 0


# --- late offer: an INVITE without SDP (what many PBXs send); sipp as the caller ----------------------------
@pytest.fixture
def g711a_pcap() -> str:
    pcap = Path("/usr/share/sip-tester/g711a.pcap")
    if not pcap.exists():
        pytest.skip(f"{pcap} missing (Debian package sip-tester)")
    return str(pcap)


async def test_late_offer_invite_without_sdp_is_answered_with_our_offer(tel_settings, tmp_path, dtmf2_pcap, g711a_pcap):
    """sipp sends an INVITE without SDP: our 200 OK offers PCMU/PCMA + telephone-event, sipp answers PCMA in
    the ACK, speaks (A-law pcap) and presses 2 — the gateway hears both, then BYE."""
    need_program("sipp")
    from telephony.bench import sipp_scenario

    # the speech pcap lasts 7.05 s and the digit's pcap is another sender (SSRC): one after the other, as a
    # phone would (two senders at once on one call are an injection and dropped)
    plays = "".join(f'  <nop><action><exec play_pcap_audio="{p}"/></action></nop>\n  <pause milliseconds="{ms}"/>\n' for p, ms in ((g711a_pcap, 7500), (dtmf2_pcap, 1500)))
    scenario = tmp_path / "late_offer.xml"
    scenario.write_text(sipp_scenario(plays, late_offer=True))
    alerts, bots = [], []

    async def on_alert(a):
        alerts.append(a)

    gw = Gateway(settings=tel_settings, pipeline_factory=bot_pipeline_factory(settings=tel_settings, bots=bots, reply_pcm=tone(seconds=0.5)), on_alert=on_alert, port=0)
    async with gw, SippRun(scenario=scenario, target=f"127.0.0.1:{gw.endpoint.port}", workdir=tmp_path / "sipp", timeout_s=25) as sipp:
        rc = await sipp.wait()
        await wait_for(lambda: gw.reports and gw.reports[0].end_reason, timeout_s=5, what="the call to end")
    assert rc == 0, sipp.errors()[-1500:]
    report = gw.reports[0]
    assert report.number == "13900001" and report.end_reason == "remote_hangup"
    assert report.frames_in > 100 and report.frames_out > 0  # the pcap's speech in, the greeting out
    assert report.keys == ["2"] and alerts == []  # telephone-event 101 from the answer


async def test_late_offer_without_an_answer_in_the_ack_is_hung_up(tel_settings, tmp_path):
    need_program("sipp")
    from telephony.bench import sipp_scenario

    scenario = tmp_path / "late_offer_no_answer.xml"
    scenario.write_text(sipp_scenario("", late_offer=True, answer_in_ack=False))
    gw = Gateway(settings=tel_settings, pipeline_factory=bot_pipeline_factory(settings=tel_settings), port=0)
    async with gw, SippRun(scenario=scenario, target=f"127.0.0.1:{gw.endpoint.port}", workdir=tmp_path / "sipp", timeout_s=15) as sipp:
        rc = await sipp.wait()  # sipp fails unless it receives our BYE
        await wait_for(lambda: gw.reports and gw.reports[0].end_reason, timeout_s=5, what="the call to end")
    assert rc == 0, sipp.errors()[-1500:]
    assert gw.reports[0].frames_in == 0 and gw.endpoint.calls == {}


async def test_reinvite_without_sdp_gets_our_offer_and_the_call_goes_on(tel_settings, tmp_path, dtmf2_pcap):
    """A PBX that uses late offer (INVITE without SDP, answer in the ACK) refreshes the session mid-call with a
    re-INVITE without SDP: our 200 OK offers the session as it is (PCMA, which the call uses, and
    telephone-event; it used to be rejected with 488), sipp answers in the ACK, then presses 2 — still heard."""
    need_program("sipp")
    from telephony.bench import sipp_recv_ok, sipp_scenario, sipp_send

    plays = (
        '  <pause milliseconds="1000"/>\n'
        + sipp_send("INVITE", 2, sdp=False)  # the refresh: no offer
        + '  <recv response="100" optional="true"/>\n'
        + sipp_recv_ok(offer_formats="8 101")  # our offer: the call's codec (PCMA) and telephone-event
        + sipp_send("ACK", 2, sdp=True, retrans=False)  # the caller's answer
        + '  <pause milliseconds="500"/>\n'
        + f'  <nop><action><exec play_pcap_audio="{dtmf2_pcap}"/></action></nop>\n'
        + '  <pause milliseconds="1500"/>\n'
    )
    scenario = tmp_path / "reinvite_no_sdp.xml"
    scenario.write_text(sipp_scenario(plays, late_offer=True, bye_cseq=3))
    alerts = []

    async def on_alert(a):
        alerts.append(a)

    gw = Gateway(settings=tel_settings, pipeline_factory=bot_pipeline_factory(settings=tel_settings, reply_pcm=tone(seconds=0.5)), on_alert=on_alert, port=0)
    async with gw, SippRun(scenario=scenario, target=f"127.0.0.1:{gw.endpoint.port}", workdir=tmp_path / "sipp", timeout_s=20) as sipp:
        rc = await sipp.wait()
        await wait_for(lambda: gw.reports and gw.reports[0].end_reason, timeout_s=5, what="the call to end")
    assert rc == 0, sipp.errors()[-1500:]  # sipp checked our offer (PCMA + telephone-event) in the 200 OK
    report = gw.reports[0]
    assert report.end_reason == "remote_hangup"
    assert report.keys == ["2"] and alerts == []  # media and DTMF went on after the refresh
