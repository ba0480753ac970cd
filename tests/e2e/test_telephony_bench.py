"""Our RTP pcaps (``telephony.pcap``) played by a real sipp into the in-process gateway (stand-in pipeline),
and ``assistant bench calls --speech mandarin`` end to end with the stand-in bot."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from assistant.audio import g711
from telephony.gateway import Gateway
from telephony.pcap import read_rtp_pcap, write_rtp_pcap
from telephony.peers import SippRun
from telephony.testing import bot_pipeline_factory, tone
from tests.conftest import need_program
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.sip]

DEBIAN_PCAP = Path("/usr/share/sip-tester/g711a.pcap")


@pytest.fixture
def debian_speech_8k() -> bytes:
    """3 s of real speech: Debian's recording, decoded to 8 kHz PCM."""
    if not DEBIAN_PCAP.exists():
        pytest.skip(f"{DEBIAN_PCAP} missing (Debian package sip-tester)")
    return g711.alaw_decode(b"".join(r.payload for r in read_rtp_pcap(DEBIAN_PCAP.read_bytes())))[: 8000 * 2 * 3]


async def test_sipp_plays_our_pcap_two_turns_in_one_call(tel_settings, tmp_path, debian_speech_8k):
    """Real speech (Debian's recording, decoded) said twice in one continuous pcap: sipp plays it, the
    gateway hears both utterances (two turns, two replies) — unlike replaying a pcap, whose repeated RTP
    sequence numbers the jitter buffer drops as late."""
    need_program("sipp")
    from telephony.bench import sipp_scenario

    speech = debian_speech_8k
    gap = b"\x00\x00" * 8000 * 3
    pcm = gap[: 8000 * 2] + speech + gap + speech + gap
    pcap = await asyncio.to_thread(write_rtp_pcap, tmp_path / "twice.pcap", pcm)
    seconds = len(pcm) / 2 / 8000
    plays = f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n  <pause milliseconds="{int(seconds * 1000)}"/>\n'
    scenario = tmp_path / "twice.xml"
    await asyncio.to_thread(scenario.write_text, sipp_scenario(plays))
    bots = []
    gw = Gateway(settings=tel_settings, pipeline_factory=bot_pipeline_factory(settings=tel_settings, bots=bots, reply_pcm=tone(seconds=0.5)), port=0)
    async with gw, SippRun(scenario=scenario, target=f"127.0.0.1:{gw.endpoint.port}", workdir=tmp_path / "sipp", timeout_s=seconds + 15) as sipp:
        rc = await sipp.wait()
        await wait_for(lambda: gw.reports and gw.reports[0].end_reason, timeout_s=5, what="the call to end")
    assert rc == 0, sipp.errors()[-1500:]
    report = gw.reports[0]
    assert report.end_reason == "remote_hangup"
    assert report.frames_in >= int(seconds * 50) * 0.9  # ~20 ms frames for the whole call
    assert len(bots[0].speech_ends) >= 2, bots[0].speech_ends
    assert len(report.turn_latencies_ms) >= 2 and all(300 < lat < 3000 for lat in report.turn_latencies_ms), report.turn_latencies_ms


async def test_bench_calls_mandarin_speech_with_the_stand_in_bot():
    need_program("sipp")
    from telephony.bench import MANDARIN_CONVERSATION, bench

    result = await bench(concurrent=2, seconds=24, pipeline="bot", speech="mandarin", reply_pause_s=5.0)
    assert result["sipp_exit"] == 0, result.get("sipp_tail")
    assert result["completed"] == 2 and result["dropped"] == 0
    assert result["speech"] == "mandarin" and result["turns_spoken"] >= 2 * len(MANDARIN_CONVERSATION)
    assert result["turns"] >= result["turns_spoken"]  # every utterance answered (and never a turn counted twice per pause)
    assert result["turns"] <= result["turns_spoken"] + 2  # at most the cut-off last utterance of each call in addition
    eot = result["end_of_turn_silence_ms"]
    assert result["turn_latency_incl_eot_p50_ms"] - result["turn_latency_p50_ms"] == pytest.approx(eot, abs=0.2)
    assert 0 <= result["turn_latency_p50_ms"] < 2000


@pytest.mark.rasa
async def test_bench_calls_with_known_callers_on_the_real_pipeline():
    """--known: the callers' numbers are enrolled in a throwaway store; the real pipeline identifies them."""
    need_program("sipp")
    from tests.e2e.conftest import need_rasa, need_whisper

    need_rasa()
    need_whisper()
    from telephony.bench import bench

    result = await bench(concurrent=1, seconds=24, pipeline="real", speech="mandarin", known=True)
    assert result["sipp_exit"] == 0, result.get("sipp_tail")
    assert result["completed"] == 1 and result["callers"] == "known" and result["callers_identified"] == 1
    assert result["pipeline_turns"] >= 1 and result["pipeline_stages"]["asr"]["p50_ms"] is not None


async def test_bench_calls_known_needs_the_real_pipeline():
    from assistant.errors import SetupError
    from telephony.bench import bench

    with pytest.raises(SetupError, match="--pipeline real"):
        await bench(concurrent=1, seconds=5, pipeline="bot", speech="mandarin", known=True)


async def test_bench_calls_through_the_encrypted_edge_and_the_plain_path_in_one_run():
    """``assistant bench calls --edge tls-srtp``: the same sipp calls straight to the gateway, then through a
    carrier's SBC (TLS + SDES-SRTP out) and the edge (kamailio TLS trunk with SRTP mandatory + rtpengine):
    every call completes on both paths, each encrypted one anchored by the edge with SRTP."""
    for name in ("sipp", "kamailio", "rtpengine"):
        need_program(name)
    from telephony.bench import EDGE_PATHS, bench, compare_paths

    results = compare_paths({p: await bench(concurrent=2, seconds=10.0, path=p) for p in EDGE_PATHS})
    for path in EDGE_PATHS:
        r = results[path]
        assert r["completed"] == 2 and r["dropped"] == 0 and r["sipp_exit"] == 0, r
        assert r["turns"] >= 2 and r["turn_latency_p95_ms"] is not None, r
    assert results["tls-srtp"]["edge_srtp_calls"] == 2
    assert results["dropped"] == 0 and results["p95_ratio_tls_srtp_to_plain"] > 0
