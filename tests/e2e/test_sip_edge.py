"""Encrypted trunks at the edge (issue #25 item 2), with real peers on loopback: pjsip (pjsua2, null sound
device) calls kamailio over TLS offering SDES-SRTP; kamailio dispatches to an in-process gateway worker
(stand-in bot: a tone for a greeting, every call recorded) and rtpengine anchors the media, SRTP with the
caller, plain RTP to the worker. Each call asserts audio both ways: the greeting's energy at the caller and
the caller's tone in the worker's recording (plus the RTP counters of the caller's stream).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import wave
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from telephony.edge import EdgeTrunk, TlsFiles, make_demo_cert
from telephony.gateway import Gateway
from telephony.peers import (
    BaresipPeer,
    KamailioDispatcher,
    Rtpengine,
    free_tcp_port,
    free_udp_port,
    write_wav8k,
)
from telephony.testing import ReplyBot, bot_pipeline_factory, tone
from tests.conftest import need_program
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.sip]

CALLER = Path(__file__).with_name("pjsua2_caller.py")
KAMAILIO_TLS = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so")


@dataclass(kw_only=True)
class Edge:
    gateway: Gateway
    kamailio: KamailioDispatcher
    rtpengine: Rtpengine
    tls: TlsFiles
    bots: list[ReplyBot]
    recordings: Path

    def uri(self, trunk: str) -> str:
        t = next(t for t in self.kamailio.trunks if t.name == trunk)
        return f"sip:assistant@{self.kamailio.public_host}:{t.port}" + (";transport=tls" if t.transport == "tls" else "")


@pytest.fixture
def edge_programs() -> None:
    pytest.importorskip("pjsua2", reason="pjsua2-python (dev extra) not installed")
    need_program("kamailio")
    need_program("rtpengine")
    if not KAMAILIO_TLS.exists():
        pytest.skip("kamailio's tls module is not installed (Debian package kamailio-tls-modules)")


@pytest.fixture
async def edge(edge_programs, tel_settings, tmp_path, request):
    param = getattr(request, "param", {})
    strict = param.get("strict", True)  # edge.strict_media_source
    public_host = param.get("public_host", "127.0.0.1")  # edge.public_host: the trunks' sockets and rtpengine's public side
    tls = await make_demo_cert(tmp_path / "certs", public_host=public_host)
    if param.get("mtls"):  # a peer's own self-signed pair; its certificate is the CA the edge trusts
        peer_cert = await make_demo_cert(tmp_path / "peer-cert")
        tls = TlsFiles(cert_file=tls.cert_file, key_file=tls.key_file, client_ca_file=peer_cert.cert_file)
    bots: list[ReplyBot] = []
    recordings = tmp_path / "calls"
    factory = bot_pipeline_factory(settings=tel_settings, reply_pcm=tone(seconds=param.get("greeting_s", 2.0)), bots=bots, recordings_dir=recordings)
    trunks = (EdgeTrunk(name="operator", transport="tls", port=free_tcp_port(), srtp="mandatory", client_cert=True),) \
        if public_host != "127.0.0.1" else (
        EdgeTrunk(name="carrier", transport="tls", port=free_tcp_port(), srtp="mandatory"),
        EdgeTrunk(name="homeworker", transport="tls", port=free_tcp_port(), srtp="optional"),
        EdgeTrunk(name="pbx", transport="udp", port=free_udp_port(), srtp="off"),
        *([EdgeTrunk(name="operator", transport="tls", port=free_tcp_port(), srtp="mandatory", client_cert=True)]
          if param.get("mtls") else []),
    )
    who = param.get("who", {})  # trunk name -> EdgeTrunk fields: peer_cns, peer_dns, source_networks
    trunks = tuple(replace(t, **who.get(t.name, {})) for t in trunks)
    async with Gateway(settings=tel_settings, pipeline_factory=factory, port=0) as gw, \
            Rtpengine(workdir=tmp_path / "rtpengine", public_media_ip=public_host) as rtp, \
            KamailioDispatcher(workdir=tmp_path / "kamailio", gateways=[f"127.0.0.1:{gw.endpoint.port}"], trunks=trunks,
                               tls=tls, rtpengine_ng_port=rtp.ng_port, strict_media_source=strict,
                               public_host=public_host) as kam:
        await asyncio.sleep(1.2)  # the dispatcher's first OPTIONS ping marks the worker up
        yield Edge(gateway=gw, kamailio=kam, rtpengine=rtp, tls=tls, bots=bots, recordings=recordings)


async def pjsua2_call(edge: Edge, tmp_path: Path, trunk: str, *, srtp: str, dtmf: str = "", seconds: float = 4.0,
                      on_confirmed=None, hold: str = "", late_offer: bool = False, uri: str = "",
                      client_cert: TlsFiles | None = None) -> dict:
    """One pjsua2 call into ``trunk`` playing a 1 kHz tone (the caller's voice); the result JSON with
    ``heard_rms`` (what the caller recorded) added; ``uri``: call that instead of the trunk. ``on_confirmed(answer_m_lines)`` is awaited while the call
    lasts."""
    heard = tmp_path / f"heard-{trunk}-{srtp}.wav"
    voice = write_wav8k(tmp_path / "voice.wav", tone(seconds=seconds + 2, hz=1000, rate=8000, level=0.3))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CALLER), uri or edge.uri(trunk), "--srtp", srtp, "--ca", str(edge.tls.cert_file), "--play", str(voice),
        "--seconds", str(seconds), "--wav", str(heard), *(["--dtmf", dtmf] if dtmf else []),
        *(["--hold", hold] if hold else []), *(["--late-offer"] if late_offer else []),
        *(["--cert", str(client_cert.cert_file), "--key", str(client_cert.key_file)] if client_cert else []), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    if on_confirmed is not None:
        async with asyncio.timeout(30):
            while (line := await proc.stdout.readline()) and '"event": "confirmed"' not in line.decode():
                pass
        if line:
            await on_confirmed(json.loads(line)["answer_m_lines"])
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    lines = out.decode().strip().splitlines()
    assert lines, err.decode()[-2000:]
    result = json.loads(lines[-1])
    result["heard_rms"] = 0.0
    if heard.exists():
        with wave.open(str(heard)) as w:
            x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
        result["heard_rms"] = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    return result


def caller_rms_at_worker(edge: Edge) -> float:
    """RMS of the caller's channel (left) in the worker's recording of its only call."""
    files = sorted(edge.recordings.rglob("*.wav"))
    assert len(files) == 1, files
    with wave.open(str(files[0])) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float).reshape(-1, 2)[:, 0]
    return float(np.sqrt(np.mean(x**2))) if x.size else 0.0


async def worker_done(edge: Edge) -> None:
    for _ in range(100):
        if edge.gateway.reports and all(r.end_reason for r in edge.gateway.reports):
            return
        await asyncio.sleep(0.05)


def assert_both_ways(result: dict, edge: Edge) -> None:
    assert result["confirmed"], result
    assert result["heard_rms"] > 300, f"the caller heard only silence: {result}"
    assert result["rtp"]["rx"] > 50 and result["rtp"]["tx"] > 50, result
    assert caller_rms_at_worker(edge) > 300, "the worker's recording holds no caller audio"


def assert_keys_not_logged(result: dict, edge: Edge) -> None:
    keys = result["offered_keys"]
    assert keys, "the caller offered no SDES key"
    logs = edge.kamailio.log() + edge.rtpengine.log()
    assert not [k for k in keys if k in logs], "an SDES key is in the edge's logs"


async def test_tls_call_with_srtp_mandatory_hears_the_greeting_and_its_dtmf_reaches_the_dialogue(edge, tmp_path):
    result = await pjsua2_call(edge, tmp_path, "carrier", srtp="mandatory", dtmf="12")
    await worker_done(edge)
    assert_both_ways(result, edge)
    assert result["answer_m_lines"][0].split()[2] == "RTP/SAVP" and result["answer_crypto"], result
    assert edge.bots[0].keys == ["1", "2"], edge.bots[0].keys  # InputDTMFFrame in the call's pipeline
    assert edge.gateway.reports[0].keys == ["1", "2"]
    assert "trunk carrier srtp=mandatory" in edge.kamailio.log()
    assert_keys_not_logged(result, edge)


async def test_srtp_optional_caller_gets_srtp_on_an_optional_trunk(edge, tmp_path):
    result = await pjsua2_call(edge, tmp_path, "homeworker", srtp="optional", seconds=3.0)
    await worker_done(edge)
    assert_both_ways(result, edge)
    # RFC 8643 (OSRTP): RTP/AVP with a=crypto offered, answered the same way: the media is SRTP
    assert result["answer_m_lines"][0].split()[2] == "RTP/AVP" and result["answer_crypto"], result
    assert_keys_not_logged(result, edge)


async def test_plain_caller_is_refused_on_a_srtp_mandatory_trunk(edge, tmp_path):
    result = await pjsua2_call(edge, tmp_path, "carrier", srtp="off", seconds=1.0)
    assert not result["confirmed"] and result["status"] == 488, result
    assert not edge.gateway.reports  # never reached a worker


async def test_plain_udp_trunk_still_works_with_media_anchored(edge, tmp_path):
    result = await pjsua2_call(edge, tmp_path, "pbx", srtp="off", seconds=3.0)
    await worker_done(edge)
    assert_both_ways(result, edge)
    assert result["answer_m_lines"][0].split()[2] == "RTP/AVP" and not result["answer_crypto"], result
    assert "trunk pbx srtp=off" in edge.kamailio.log()


async def test_srtp_only_offer_is_refused_on_a_plain_trunk(edge, tmp_path):
    result = await pjsua2_call(edge, tmp_path, "pbx", srtp="mandatory", seconds=1.0)
    assert not result["confirmed"] and result["status"] == 488, result
    assert not edge.gateway.reports


async def test_phone_edge_command_runs_the_configured_trunks_until_interrupted(edge_programs, tmp_path):
    """``assistant phone edge``: kamailio + rtpengine from ``edge.*`` settings (the demo pair made when none is
    configured; ``ASSISTANT_EDGE_TRUNK_SOURCE_NETWORKS`` applied: a source outside gets 403); Ctrl-C stops both. A
    source network naming no trunk is a coded error at start, before kamailio runs."""
    import os
    import signal

    tls_port, pbx_port = free_tcp_port(), free_udp_port()
    env = {**os.environ, "ASSISTANT_VAR_DIR": str(tmp_path), "ASSISTANT_EDGE_SIP_PORT": str(free_udp_port()),
           "ASSISTANT_EDGE_TRUNKS": f"carrier:tls:{tls_port}:mandatory,pbx:udp:{pbx_port}:off",
           "ASSISTANT_EDGE_RTPENGINE_NG_PORT": str(free_udp_port())}
    bad = await asyncio.create_subprocess_exec(sys.executable, "-m", "assistant.cli", "phone", "edge",
                                               env={**env, "ASSISTANT_EDGE_TRUNK_SOURCE_NETWORKS": "pbx:10.0.0.0/8,nobody:10.0.0.0/8"},
                                               stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _out, err = await asyncio.wait_for(bad.communicate(), 60)
    assert bad.returncode != 0 and "error[edge_config]" in err.decode() and "'nobody'" in err.decode(), err.decode()
    assert not (tmp_path / "edge" / "run" / "kamailio").exists()  # refused before kamailio was configured
    env["ASSISTANT_EDGE_TRUNK_SOURCE_NETWORKS"] = "pbx:127.0.0.1/32"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "assistant.cli", "phone", "edge", "--gateway", "127.0.0.1:5999",
                                                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    lines: list[str] = []
    async with asyncio.timeout(30):
        while not lines or "dispatching" not in lines[-1]:
            line = (await proc.stderr.readline()).decode()
            assert line, "".join(lines)
            lines.append(line)
    assert any("trunk carrier: tls:" in ln and "srtp=mandatory" in ln for ln in lines), lines
    assert any("trunk pbx: udp:" in ln and "sources=127.0.0.1/32" in ln for ln in lines), lines
    assert (await udp_request(pbx_port, "OPTIONS", source="127.0.0.2")).startswith("SIP/2.0 403")
    # the TLS trunk answers a handshake with the demo certificate (verified against it, for 127.0.0.1)
    import ssl

    ctx = ssl.create_default_context(cafile=str(tmp_path / "edge" / "edge.crt"))
    _r, w = await asyncio.open_connection("127.0.0.1", tls_port, ssl=ctx, server_hostname="127.0.0.1")
    assert w.get_extra_info("peercert")["subject"] == ((("commonName", "assistant-edge"),),)
    w.close()
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), timeout=15) == 0


async def test_srtp_optional_caller_falls_back_to_plain_rtp_on_a_plain_trunk(edge, tmp_path):
    result = await pjsua2_call(edge, tmp_path, "pbx", srtp="optional", seconds=3.0)
    await worker_done(edge)
    assert_both_ways(result, edge)
    assert result["answer_m_lines"][0].split()[2] == "RTP/AVP" and not result["answer_crypto"], result


@pytest.mark.parametrize("edge", [{"strict": True}, {"strict": False}], ids=["strict", "not_strict"], indirect=True)
async def test_media_from_another_address_than_the_latched_caller_is_dropped_at_the_edge(edge, tmp_path, request):
    """#15's strict media latching on the public side: once rtpengine latched on the caller's media, a rogue
    sender's RTP to the same port never reaches the worker (its RTP stream counts packets of a foreign SSRC
    from the edge's address); without ``strict_media_source`` they do arrive (the control case: the test can
    fail)."""
    import secrets
    import socket
    import struct

    strict = "not_strict" not in request.node.callspec.id
    foreign: list[int] = []

    async def inject(m_lines: list[str]) -> None:
        port = int(m_lines[0].split()[1])
        await asyncio.sleep(0.5)  # the caller's own media has latched by now
        ssrc, payload = secrets.randbits(32), bytes([0x55]) * 160
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            for seq in range(50):  # 1 s
                sock.sendto(struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + payload, ("127.0.0.1", port))
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        (call,) = edge.gateway.endpoint.calls.values()
        foreign.append(call.stream.stats.foreign_ssrc)

    result = await pjsua2_call(edge, tmp_path, "pbx", srtp="off", seconds=3.0, on_confirmed=inject)
    await worker_done(edge)
    assert_both_ways(result, edge)
    if strict:
        assert foreign == [0], f"the rogue's packets reached the worker: {foreign}"
    else:
        assert foreign and foreign[0] > 20, f"control: without strict latching the rogue's packets arrive ({foreign})"


async def baresip_call(edge: Edge, tmp_path: Path, trunk: str, *, mediaenc: str, seconds: float = 4.0,
                       video: bool = False, uri: str = "") -> BaresipPeer:
    """One baresip call into ``trunk`` (SIP over TLS when the trunk's is, the edge's demo certificate as CA),
    offering ``mediaenc`` (and video with ``video``) and playing a 1 kHz tone (the caller's voice); hangs up after
    ``seconds`` of call; ``uri``: call that instead of the trunk. Returns the (stopped) peer: its log (with the SIP
    trace) and its recordings of what it heard."""
    voice = write_wav8k(tmp_path / "voice.wav", tone(seconds=seconds + 20, hz=1000, rate=8000, level=0.3))
    async with BaresipPeer(workdir=tmp_path / f"baresip-{trunk}", wav=voice, user="13800000009", mediaenc=mediaenc,
                           cafile=edge.tls.cert_file, sip_trace=True, video=video) as peer:
        await peer.command("dial", uri or edge.uri(trunk))
        await wait_for(lambda: "Call established" in peer.log(), timeout_s=15, what="baresip's call to be established")
        await asyncio.sleep(seconds)
        await peer.command("hangup")
        await worker_done(edge)
    return peer


def heard_rms(peer: BaresipPeer) -> float:
    recordings = peer.recordings()
    assert recordings, f"baresip recorded nothing: {peer.log()[-1500:]}"
    rms = 0.0
    for path in recordings:
        with wave.open(str(path)) as w:
            x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
        rms = max(rms, float(np.sqrt(np.mean(x**2))) if x.size else 0.0)
    return rms


@pytest.mark.parametrize(("trunk", "mediaenc", "profile"), [("carrier", "srtp-mand", "RTP/SAVP"), ("homeworker", "srtp", "RTP/AVP")],
                         ids=["tls_srtp_mandatory", "tls_srtp_optional"])
async def test_baresip_calls_over_tls_with_srtp_and_audio_flows_both_ways(edge, tmp_path, trunk, mediaenc, profile):
    """A second SIP stack (baresip + libre/librem, its ``srtp`` module) over TLS through the edge: the answer
    keeps the caller's profile with SDES crypto, baresip's SRTP is on, the greeting is heard at the caller and the
    caller's tone reaches the worker."""
    need_program("baresip")
    peer = await baresip_call(edge, tmp_path, trunk, mediaenc=mediaenc)
    log = peer.log()
    assert "Call established" in log, log[-2000:]
    assert "SRTP is Enabled" in log, f"baresip's media is not SRTP: {log[-2000:]}"
    assert heard_rms(peer) > 300, "the caller heard only silence"
    assert caller_rms_at_worker(edge) > 300, "the worker's recording holds no caller audio"
    assert f"trunk {trunk} srtp=" in edge.kamailio.log()
    answer = log[log.index("SIP/2.0 200 OK"):]
    assert re.search(rf"^m=audio \d+ {profile} ", answer, re.M) and "a=crypto:" in answer, answer[:1500]
    offered = re.findall(r"inline:([A-Za-z0-9+/=]+)", log[:log.index("SIP/2.0 200 OK")])
    assert offered, "baresip offered no SDES key"
    logs = edge.kamailio.log() + edge.rtpengine.log()
    assert not [k for k in offered if k in logs], "an SDES key is in the edge's logs"




def sdp_m_lines(log: str, first_line: str) -> list[str]:
    """The m= lines of the SDP in the first SIP message of baresip's trace that starts with ``first_line``."""
    msg = log[log.index(first_line):]
    body = msg[msg.index("v=0"):]
    m_lines = []
    for line in body.splitlines():
        line = line.strip()
        if not line or not line[1:2] == "=":
            break  # the end of the SDP (baresip's next log line)
        if line.startswith("m="):
            m_lines.append(line)
    return m_lines


@pytest.mark.parametrize(("trunk", "mediaenc"), [("direct", ""), ("pbx", ""), ("carrier", "srtp-mand")],
                         ids=["straight_to_a_worker", "plain_trunk", "tls_srtp_mandatory"])
async def test_baresip_audio_and_video_offer_gets_a_two_line_answer_and_audio_both_ways(edge, tmp_path, trunk, mediaenc):
    """A softphone's default offer, audio + video (baresip with VP8 from its fakevideo source): the 200's answer
    mirrors the offer (RFC 3264 §6): two m= lines in the offer's order, audio accepted with a codec the offer
    listed, video refused with port 0; the call goes on with audio both ways. Straight to a worker and through
    the edge (plain UDP trunk; TLS + SRTP mandatory)."""
    need_program("baresip")
    uri = f"sip:assistant@127.0.0.1:{edge.gateway.endpoint.port}" if trunk == "direct" else ""
    peer = await baresip_call(edge, tmp_path, trunk, mediaenc=mediaenc, video=True, uri=uri)
    log = peer.log()
    assert "Call established" in log, log[-2000:]
    offer, answer = sdp_m_lines(log, "INVITE sip:"), sdp_m_lines(log, "SIP/2.0 200 OK")
    assert [m.split()[0] for m in offer] == ["m=audio", "m=video"], f"baresip offered no video: {offer}"
    assert [m.split()[0] for m in answer] == ["m=audio", "m=video"], answer
    audio, video = answer[0].split(), answer[1].split()
    assert audio[1] != "0" and audio[3] in offer[0].split()[3:], (offer, answer)
    assert video[1] == "0", f"video is not refused with port 0: {answer}"
    assert heard_rms(peer) > 300, "the caller heard only silence"
    assert caller_rms_at_worker(edge) > 300, "the worker's recording holds no caller audio"

@pytest.mark.parametrize("edge", [{"greeting_s": 12.0}], indirect=True)
@pytest.mark.parametrize("holder", ["caller", "worker"])
async def test_hold_and_unhold_reinvites_through_a_srtp_trunk_keep_the_media_flowing(edge, tmp_path, holder):
    """A re-INVITE on an SRTP-mandatory TLS trunk, both ways: the caller (pjsua2 ``setHold`` / ``reinvite``
    with UNHOLD) or the worker (``PhoneCall.hold``: the gateway's own re-INVITE, sent as plain RTP/AVP to
    rtpengine) puts the call on hold and takes it off. Each re-INVITE goes through rtpengine (``media=anchored``):
    the trunk side stays RTP/SAVP with SDES keys, the worker's side plain. The caller's media stops on hold and
    flows again both ways after unhold: the worker receives the caller's packets, the caller hears the worker (a tone the test plays into the worker's stream after unhold: the greeting was
    cut short by the caller's own tone, barge-in)."""
    packets: dict[str, int] = {}

    async def hold_and_watch(_m_lines: list[str]) -> None:
        (call,) = edge.gateway.endpoint.calls.values()
        await asyncio.sleep(1.0)
        if holder == "worker":
            await call.hold(True)
        await asyncio.sleep(0.5)
        packets["at_hold"] = call.stream.stats.packets_in
        await asyncio.sleep(0.4)
        packets["held"] = call.stream.stats.packets_in - packets["at_hold"]
        await asyncio.sleep(0.1)
        if holder == "worker":
            await call.hold(False)
        await asyncio.sleep(0.5)
        # the greeting was cut by the caller's tone (barge-in): the worker speaks again, straight into its stream
        call.stream.play(tone(seconds=3.0, hz=700, rate=8000, level=0.3))
        packets["at_unhold"] = call.stream.stats.packets_in
        await asyncio.sleep(1.5)
        packets["after"] = call.stream.stats.packets_in - packets["at_unhold"]

    result = await pjsua2_call(edge, tmp_path, "carrier", srtp="mandatory", seconds=4.5, on_confirmed=hold_and_watch,
                               hold="1.0,2.0" if holder == "caller" else "")
    await worker_done(edge)
    assert result["confirmed"], result
    # the call's 200 and the two re-INVITEs' (received by the caller, or sent by it when the worker held)
    assert len(result["answers"]) == 3 and all(a[0].endswith("RTP/SAVP") and a[-1] == "crypto" for a in result["answers"]), result["answers"]
    if holder == "worker":  # the caller answered recvonly: it stops sending (a holding caller goes on sending)
        assert packets["held"] < 5, f"the caller's media did not stop on hold: {packets}"
    assert packets["after"] > 50, f"the caller's media does not reach the worker after unhold: {packets}"
    with wave.open(str(tmp_path / "heard-carrier-mandatory.wav")) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
    tail = x[-int(w.getframerate() * 1.5):]  # the caller's recorder runs on its clock: the last 1.5 s are after unhold
    assert float(np.sqrt(np.mean(tail**2))) > 300, "after unhold the caller hears only silence"
    assert_keys_not_logged(result, edge)


@pytest.mark.parametrize(("trunk", "srtp", "profile", "crypto"), [
    ("carrier", "mandatory", "RTP/SAVP", True), ("homeworker", "optional", "RTP/AVP", True), ("pbx", "off", "RTP/AVP", False),
], ids=["tls_srtp_mandatory", "tls_srtp_optional", "udp_plain"])
async def test_late_offer_invite_through_a_trunk_gets_the_offer_in_the_200_and_audio_both_ways(edge, tmp_path, trunk, srtp, profile, crypto):
    """An INVITE without SDP (RFC 3261 §13.2.1, RFC 3264 late offer): the worker offers plain RTP/AVP in its 200 OK,
    the edge has rtpengine turn that into the trunk's offer (RTP/SAVP + SDES keys on an SRTP-mandatory trunk,
    RTP/AVP + a=crypto (OSRTP) on an optional one, plain on an off one), and the caller's answer in the ACK goes
    through rtpengine back to plain RTP for the worker. Before: 488 on every trunk."""
    result = await pjsua2_call(edge, tmp_path, trunk, srtp=srtp, seconds=3.0, late_offer=True)
    await worker_done(edge)
    assert result["status"] != 488, f"late offer refused on trunk {trunk}: {result}"
    assert_both_ways(result, edge)
    # the 200 OK's SDP is the edge's offer to the caller
    assert result["answer_m_lines"][0].split()[2] == profile and result["answer_crypto"] == crypto, result
    assert f"trunk {trunk} srtp={srtp}" in edge.kamailio.log()
    assert not result["offered_keys"] or not [k for k in result["offered_keys"] if k in edge.kamailio.log() + edge.rtpengine.log()]


async def test_late_offer_invite_straight_to_a_worker_gets_audio_both_ways(edge, tmp_path):
    """The same late offer without the edge (a worker's own port, e.g. the plain dispatcher's network): the
    gateway offers in its 200 OK and takes pjsua2's answer from the ACK."""
    result = await pjsua2_call(edge, tmp_path, "direct", srtp="off", seconds=3.0, late_offer=True,
                               uri=f"sip:assistant@127.0.0.1:{edge.gateway.endpoint.port}")
    await worker_done(edge)
    assert_both_ways(result, edge)
    assert result["answer_m_lines"][0].split()[2] == "RTP/AVP", result


@pytest.mark.parametrize("edge", [{"mtls": True}], indirect=True)
async def test_a_mutual_tls_trunk_takes_a_peer_with_its_certificate_and_refuses_one_without(edge, tmp_path):
    """``edge.tls_client_cert_trunks``: on the ``operator`` trunk the peer must present a certificate the edge's
    client CA signs. pjsua2 with its pair calls through (SRTP, audio both ways); pjsua2 without a certificate, and a
    TLS client without one or with a stranger's, fail the handshake and never reach a worker. The other TLS trunks
    still take peers without certificates (the control)."""
    peer = TlsFiles(cert_file=tmp_path / "peer-cert" / "edge.crt", key_file=tmp_path / "peer-cert" / "edge.key")
    port = next(t.port for t in edge.kamailio.trunks if t.name == "operator")
    open_port = next(t.port for t in edge.kamailio.trunks if t.name == "carrier")
    stranger = await make_demo_cert(tmp_path / "stranger")

    assert not await tls_options(port), "a peer without a client certificate was let in"
    assert not await tls_options(port, stranger), "a peer with a certificate the edge does not trust was let in"
    assert (await tls_options(port, peer)).startswith("SIP/2.0 200")
    assert (await tls_options(open_port)).startswith("SIP/2.0 200")  # the control: a trunk without mutual TLS

    refused = await pjsua2_call(edge, tmp_path, "operator", srtp="mandatory", seconds=1.0)
    assert not refused["confirmed"] and not edge.gateway.reports, refused
    result = await pjsua2_call(edge, tmp_path, "operator", srtp="mandatory", seconds=3.0, client_cert=peer)
    await worker_done(edge)
    assert_both_ways(result, edge)
    assert "trunk operator srtp=mandatory" in edge.kamailio.log()


@pytest.mark.parametrize("edge", [{"mtls": True, "public_host": "127.0.0.2"}], indirect=True)
async def test_a_public_edge_listens_on_its_public_address_and_anchors_media_between_two_interfaces(edge, tmp_path):
    """``edge.public_host`` (issue #25, the public side) with 127.0.0.2 standing in for the public address (Linux
    routes all of 127/8 to lo): the mutual-TLS trunk listens there only, the caller's answer names 127.0.0.2 for
    media (rtpengine's ``public`` interface) while the worker's offer names 127.0.0.1 (``internal``), audio flows
    both ways, and the dispatcher stays on loopback."""
    import socket

    peer = TlsFiles(cert_file=tmp_path / "peer-cert" / "edge.crt", key_file=tmp_path / "peer-cert" / "edge.key")
    (trunk,) = edge.kamailio.trunks
    for host, listening in (("127.0.0.2", True), ("127.0.0.1", False)):  # the trunk: on the public address only
        with socket.socket() as s:
            assert (s.connect_ex((host, trunk.port)) == 0) is listening, host
    worker_saw: dict[str, str] = {}

    async def on_confirmed(_m_lines):
        (call,) = edge.gateway.endpoint.calls.values()
        worker_saw["sdp"] = call.plan.remote_addr[0]  # the c= of the offer the worker got from the edge
        worker_saw["latched"] = call.stream.remote_addr[0]

    result = await pjsua2_call(edge, tmp_path, "operator", srtp="mandatory", seconds=3.0, client_cert=peer, on_confirmed=on_confirmed)
    await worker_done(edge)
    assert_both_ways(result, edge)
    assert result["answer_c"] and set(result["answer_c"]) == {"127.0.0.2"}, result
    assert worker_saw == {"sdp": "127.0.0.1", "latched": "127.0.0.1"}, worker_saw
    assert "listen=udp:127.0.0.1:" in (edge.kamailio.workdir / "kamailio.cfg").read_text()


class RawTlsCaller:
    """A hand-written SIP UAC over TLS (what a misbehaving carrier could send): requests are written as given,
    responses and the far end's requests read off the same connection."""

    def __init__(self, edge: Edge, trunk: str, *, source: str = "127.0.0.1") -> None:
        self.port = next(t.port for t in edge.kamailio.trunks if t.name == trunk)
        self.source = source  # the local address (any on lo)
        self.cafile = str(edge.tls.cert_file)
        self.call_id = f"raw-{trunk}-{id(self)}"
        self.route: list[str] = []
        self.remote_target = ""
        self.to_tag = ""
        self.cseq = 1

    async def __aenter__(self) -> RawTlsCaller:
        import ssl

        ctx = ssl.create_default_context(cafile=self.cafile)
        self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port, ssl=ctx, server_hostname="127.0.0.1",
                                                       local_addr=(self.source, 0))
        self.local = self.w.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.w.close()

    def send(self, method: str, *, sdp: str = "", in_dialog: bool = True, cseq: int | None = None) -> None:
        uri = self.remote_target if in_dialog and self.remote_target else f"sip:assistant@127.0.0.1:{self.port};transport=tls"
        to = f"<sip:assistant@127.0.0.1:{self.port}>" + (f";tag={self.to_tag}" if in_dialog and self.to_tag else "")
        lines = [f"{method} {uri} SIP/2.0", f"Via: SIP/2.0/TLS {self.source}:{self.local};branch=z9hG4bK{secrets_hex()};rport",
                 "Max-Forwards: 70", "From: <sip:13800000007@127.0.0.1>;tag=rawcaller", f"To: {to}", f"Call-ID: {self.call_id}",
                 f"CSeq: {cseq or self.cseq} {method}", f"Contact: <sip:13800000007@127.0.0.1:{self.local};transport=tls>",
                 *(f"Route: {r}" for r in (self.route if in_dialog else []))]
        if sdp:
            lines += ["Content-Type: application/sdp"]
        body = sdp.replace("\n", "\r\n")
        self.w.write(("\r\n".join([*lines, f"Content-Length: {len(body)}", "", ""]) + body).encode())

    async def read(self) -> tuple[str, dict[str, list[str]], str]:
        """(start line, headers by lower-case name, body) of the next message on the connection."""
        head = (await self.r.readuntil(b"\r\n\r\n")).decode()
        start, *rest = head.strip().split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in rest:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        length = int(headers.get("content-length", ["0"])[0])
        return start, headers, (await self.r.readexactly(length)).decode() if length else ""

    async def final(self) -> tuple[str, dict[str, list[str]], str]:
        while True:
            start, headers, body = await asyncio.wait_for(self.read(), 10)
            if start.startswith("SIP/2.0 ") and not start.startswith("SIP/2.0 1"):
                return start, headers, body

    def learn_dialog(self, headers: dict[str, list[str]]) -> None:
        self.to_tag = headers["to"][0].split("tag=")[1].split(";")[0]
        self.route = [r for rr in headers.get("record-route", []) for r in rr.split(",")][::-1]
        self.remote_target = headers["contact"][0].strip("<>").split(">")[0]


def secrets_hex() -> str:
    import secrets

    return secrets.token_hex(6)


async def tls_options(port: int, cert: TlsFiles | None = None, *, source: str = "127.0.0.1") -> str:
    """An OPTIONS to the edge itself over TLS from ``source`` (``cert``: the client certificate presented): the
    response's status line, "" when the handshake failed or the connection closed without one. The edge's server
    certificate is not checked here (the tests of who may connect are about the edge checking the peer)."""
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert_file), str(cert.key_file))
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx, local_addr=(source, 0)), 5)
        try:
            # the response comes back on this connection whatever the Via says (it may be closed already: no sockname)
            w.write((f"OPTIONS sip:127.0.0.1:{port};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS {source}:5999;branch=z9hG4bK{secrets_hex()}\r\n"
                     f"Max-Forwards: 70\r\nFrom: <sip:probe@{source}>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
                     f"Call-ID: probe-{secrets_hex()}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode())
            await w.drain()
            # TLS 1.3: a refused client certificate shows as an alert on the first read, after the handshake
            return (await asyncio.wait_for(r.readline(), 5)).decode().strip()
        finally:
            w.close()
    except (ssl.SSLError, ConnectionError):
        return ""


async def udp_request(port: int, method: str, *, source: str, sdp: str = "") -> str:
    """One request over UDP from ``source`` (an address on lo) to the edge's ``port``: the final response's status
    line, "" when none came within 3 s."""
    import socket

    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.setblocking(False)
        local = sock.getsockname()[1]
        body = sdp.replace("\n", "\r\n")
        head = [f"{method} sip:assistant@127.0.0.1:{port} SIP/2.0", f"Via: SIP/2.0/UDP {source}:{local};branch=z9hG4bK{secrets_hex()};rport",
                "Max-Forwards: 70", f"From: <sip:13800000007@{source}>;tag=udp", f"To: <sip:assistant@127.0.0.1:{port}>",
                f"Call-ID: udp-{secrets_hex()}", f"CSeq: 1 {method}", f"Contact: <sip:13800000007@{source}:{local}>",
                *(["Content-Type: application/sdp"] if sdp else []), f"Content-Length: {len(body)}"]
        await loop.sock_sendto(sock, ("\r\n".join([*head, "", ""]) + body).encode(), ("127.0.0.1", port))
        try:
            async with asyncio.timeout(3):
                while not (line := (await loop.sock_recv(sock, 65535)).decode().split("\r\n")[0]).startswith(("SIP/2.0 2", "SIP/2.0 3", "SIP/2.0 4", "SIP/2.0 5", "SIP/2.0 6")):
                    pass
                return line
        except TimeoutError:
            return ""


async def sign_peer_cert(ca: TlsFiles, directory: Path, name: str, *, cn: str, dns: str) -> TlsFiles:
    """A carrier's client certificate (EC P-256) with subject CN ``cn`` and subjectAltName DNS ``dns``, signed by
    ``ca`` (the CA the edge trusts, ``edge.tls_client_ca_file``): what a shared CA gives every carrier. Files
    ``directory/name.crt|key``."""
    pair = TlsFiles(cert_file=directory / f"{name}.crt", key_file=directory / f"{name}.key")
    csr = directory / f"{name}.csr"
    for argv in (["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={cn}",
                  "-addext", f"subjectAltName=DNS:{dns}", "-keyout", str(pair.key_file), "-out", str(csr)],
                 ["x509", "-req", "-in", str(csr), "-CA", str(ca.cert_file), "-CAkey", str(ca.key_file), "-CAcreateserial",
                  "-days", "2", "-copy_extensions", "copy", "-out", str(pair.cert_file)]):
        proc = await asyncio.create_subprocess_exec("openssl", *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
    return pair


PLAIN_SDP = "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 40010 RTP/AVP 0\na=sendrecv\n"
SRTP_SDP = PLAIN_SDP.replace("RTP/AVP 0\n", "RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"
                                            "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\n")


async def test_a_caller_cannot_downgrade_a_srtp_mandatory_trunk_to_plain_rtp(edge, tmp_path):
    """SRTP mandatory stays mandatory inside the dialog: a re-INVITE offering plain RTP/AVP gets 488 + Warning 302
    (the call goes on encrypted), and a plain answer in the ACK to a late offer is not passed on: the worker finds
    no answer and hangs up (BYE), so no plain media flows on the trunk. Before: the plain re-INVITE was answered
    200 through rtpengine (the trunk side switched to plain RTP)."""
    async with RawTlsCaller(edge, "carrier") as caller:
        caller.send("INVITE", sdp=SRTP_SDP, in_dialog=False)
        start, headers, body = await caller.final()
        assert start.startswith("SIP/2.0 200") and "RTP/SAVP" in body, (start, body)
        caller.learn_dialog(headers)
        caller.send("ACK")
        caller.cseq = 2
        caller.send("INVITE", sdp=PLAIN_SDP)
        start, headers, _ = await caller.final()
        assert start.startswith("SIP/2.0 488") and headers["warning"][0].startswith("302 "), (start, headers)
        caller.send("ACK", cseq=2)
        (call,) = edge.gateway.endpoint.calls.values()
        assert call.state == "active"
        caller.cseq = 3
        caller.send("BYE")
        assert (await caller.final())[0].startswith("SIP/2.0 200")
    await worker_done(edge)

    async with RawTlsCaller(edge, "carrier") as caller:  # late offer, answered in clear
        caller.call_id += "-late"
        caller.send("INVITE", in_dialog=False)
        start, headers, body = await caller.final()
        assert start.startswith("SIP/2.0 200") and "RTP/SAVP" in body and "a=crypto" in body, (start, body)
        caller.learn_dialog(headers)
        caller.send("ACK", sdp=PLAIN_SDP)
        start, _headers, _ = await asyncio.wait_for(caller.read(), 10)
        assert start.startswith("BYE "), f"the worker did not hang up on a plain answer: {start}"
    await worker_done(edge)
    assert "a plain RTP answer on an SRTP-mandatory trunk" in edge.kamailio.log()


# the CA the edge trusts on the mutual-TLS trunk (the edge fixture's "peer-cert" pair) signs both carriers' certificates
CARRIER_A, CARRIER_B = "sbc.carrier-a.example", "sbc.carrier-b.example"


@pytest.mark.parametrize("edge", [{"mtls": True, "who": {"operator": {"peer_cns": (CARRIER_A,)}}}], indirect=True)
async def test_a_mutual_tls_trunk_takes_only_the_carrier_its_certificate_names_not_anyone_its_ca_signed(edge, tmp_path):
    """``edge.tls_peer_names`` (cn=): carrier B holds a certificate from the same CA as carrier A; on A's trunk it
    is refused with 403 and logged, its INVITE never reaches a worker, while A calls through (SRTP, audio both
    ways). Before: the CA chain was all the edge checked, and B's call was taken as A's."""
    ca = TlsFiles(cert_file=tmp_path / "peer-cert" / "edge.crt", key_file=tmp_path / "peer-cert" / "edge.key")
    a = await sign_peer_cert(ca, tmp_path, "carrier-a", cn=CARRIER_A, dns=CARRIER_A)
    b = await sign_peer_cert(ca, tmp_path, "carrier-b", cn=CARRIER_B, dns=CARRIER_B)
    port = next(t.port for t in edge.kamailio.trunks if t.name == "operator")

    assert (await tls_options(port, b)).startswith("SIP/2.0 403"), "carrier B's certificate was taken on carrier A's trunk"
    refused = await pjsua2_call(edge, tmp_path, "operator", srtp="mandatory", seconds=1.0, client_cert=b)
    assert not refused["confirmed"] and refused["status"] == 403, refused
    assert not edge.gateway.reports and "dispatch INVITE" not in edge.kamailio.log()  # the gateway never saw it
    assert "trunk operator refused INVITE" in edge.kamailio.log() and f"cn={CARRIER_B}" in edge.kamailio.log()

    assert (await tls_options(port, a)).startswith("SIP/2.0 200")
    result = await pjsua2_call(edge, tmp_path, "operator", srtp="mandatory", seconds=3.0, client_cert=a)
    await worker_done(edge)
    assert_both_ways(result, edge)
    assert "trunk operator srtp=mandatory" in edge.kamailio.log()


@pytest.mark.parametrize("edge", [{"mtls": True, "who": {"operator": {"peer_dns": (CARRIER_A,)}}}], indirect=True)
async def test_a_trunk_that_names_its_peers_dns_name_is_not_fooled_by_a_matching_cn(edge, tmp_path):
    """``edge.tls_peer_names`` (dns=): the subjectAltName DNS name must be carrier A's; a certificate of the same CA
    whose CN claims A but whose DNS name is B's gets 403."""
    ca = TlsFiles(cert_file=tmp_path / "peer-cert" / "edge.crt", key_file=tmp_path / "peer-cert" / "edge.key")
    a = await sign_peer_cert(ca, tmp_path, "carrier-a", cn="carrier a", dns=CARRIER_A)
    b = await sign_peer_cert(ca, tmp_path, "carrier-b", cn=CARRIER_A, dns=CARRIER_B)
    port = next(t.port for t in edge.kamailio.trunks if t.name == "operator")
    assert (await tls_options(port, b)).startswith("SIP/2.0 403")
    assert (await tls_options(port, a)).startswith("SIP/2.0 200")
    assert f"dns={CARRIER_B} is not the trunk's peer" in edge.kamailio.log()


@pytest.mark.parametrize("edge", [{"who": {"pbx": {"source_networks": ("127.0.0.1/32",)},
                                           "carrier": {"source_networks": ("127.0.0.1/32",)}}}], indirect=True)
async def test_a_trunk_with_source_networks_refuses_requests_from_any_other_address(edge, tmp_path):
    """``edge.trunk_source_networks``: on the UDP trunk and on a TLS trunk allowed from 127.0.0.1 only, requests
    from 127.0.0.2 (another address on lo) get 403 and never reach a worker; from 127.0.0.1 a call goes through with
    audio both ways. A trunk without source networks takes 127.0.0.2 (the control). Before: every source was taken."""
    port = {t.name: t.port for t in edge.kamailio.trunks}
    assert (await udp_request(port["pbx"], "INVITE", source="127.0.0.2", sdp=PLAIN_SDP)).startswith("SIP/2.0 403")
    assert (await udp_request(port["pbx"], "OPTIONS", source="127.0.0.2")).startswith("SIP/2.0 403")
    assert (await tls_options(port["carrier"], source="127.0.0.2")).startswith("SIP/2.0 403")
    assert not edge.gateway.reports and "dispatch INVITE" not in edge.kamailio.log()
    assert "trunk pbx refused INVITE" in edge.kamailio.log() and "from 127.0.0.2: not in its source networks" in edge.kamailio.log()
    assert (await tls_options(port["homeworker"], source="127.0.0.2")).startswith("SIP/2.0 200")  # the control
    assert (await tls_options(port["carrier"], source="127.0.0.1")).startswith("SIP/2.0 200")

    result = await pjsua2_call(edge, tmp_path, "pbx", srtp="off", seconds=3.0)
    await worker_done(edge)
    assert_both_ways(result, edge)

    # in-dialog requests are checked too: a BYE carrying a live call's dialog (Call-ID, tags, route set) from
    # 127.0.0.2 gets 403 and the call goes on; the caller's own BYE ends it
    async with RawTlsCaller(edge, "carrier") as caller:
        caller.send("INVITE", sdp=SRTP_SDP, in_dialog=False)
        start, headers, _ = await caller.final()
        assert start.startswith("SIP/2.0 200"), start
        caller.learn_dialog(headers)
        caller.send("ACK")
        async with RawTlsCaller(edge, "carrier", source="127.0.0.2") as intruder:
            intruder.call_id, intruder.to_tag, intruder.route, intruder.remote_target = (
                caller.call_id, caller.to_tag, caller.route, caller.remote_target)
            intruder.cseq = 2
            intruder.send("BYE")
            assert (await intruder.final())[0].startswith("SIP/2.0 403")
        await asyncio.sleep(0.3)
        assert [c.state for c in edge.gateway.endpoint.calls.values()] == ["active"]
        caller.cseq = 3
        caller.send("BYE")
        assert (await caller.final())[0].startswith("SIP/2.0 200")
    assert "trunk carrier refused BYE" in edge.kamailio.log()
