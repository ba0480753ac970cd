"""``assistant bench calls --concurrent N --seconds S --json``: N simultaneous calls on loopback.

One sipp process places N calls at once into an in-process gateway; each call plays Debian's recorded
G.711 A-law speech (``/usr/share/sip-tester/g711a.pcap``, 7 s with pauses) in a loop for S seconds, then
hangs up. The gateway runs the stand-in pipeline (webrtcvad VAD → fixed spoken reply) unless
``--pipeline real`` (needs models and Rasa; ASR dominates).

Turn latency = end of the caller's speech on the wire → first reply audio on the wire, measured at the
gateway; it includes the VAD's end-of-turn silence (``audio.vad_end_of_turn_silence_s``, 0.8 s), i.e.
what the elder waits. cpu_pct / rss_mb are the gateway process's (cpu_pct: 100 = one core busy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

PCAP = Path("/usr/share/sip-tester/g711a.pcap")
PCAP_S = 7.1

_DIALOG_HEADERS = """Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:1390000[call_number]@[local_ip]>;tag=[call_number]
To: <sip:assistant@[remote_ip]:[remote_port]>{to_tag}
Call-ID: [call_id]
CSeq: {cseq}
"""
_SDP = """Content-Type: application/sdp
Content-Length: [len]

v=0
o=bench 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
"""
_NO_BODY = """Content-Length: 0
"""


def sipp_scenario(plays: str, *, late_offer: bool = False, answer_in_ack: bool = True) -> str:
    """A sipp caller: INVITE → 200 → ACK → ``plays`` (sipp actions) → BYE. The caller offers PCMA +
    telephone-event 101 in the INVITE; ``late_offer``: the INVITE has no SDP, the 200 OK must offer
    PCMU/PCMA/telephone-event (sipp fails otherwise) and the ACK carries the answer — or, with
    ``answer_in_ack=False``, no answer, and sipp then expects the gateway's BYE instead of playing."""

    def dialog(cseq: str, *, to_tag: bool) -> str:
        return _DIALOG_HEADERS.format(cseq=cseq, to_tag="[peer_tag_param]" if to_tag else "")

    ok = '  <recv response="200" rtd="true"/>\n'
    if late_offer:  # our offer: both G.711 laws and telephone-event
        ok = (
            '  <recv response="200" rtd="true">\n    <action>\n'
            '      <ereg regexp="m=audio [0-9]+ RTP/AVP 0 8 101" search_in="body" check_it="true" assign_to="offer"/>\n'
            '    </action>\n  </recv>\n  <Reference variables="offer"/>\n'
        )
    ack_body = _SDP if late_offer and answer_in_ack else _NO_BODY
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="elder speaks for a while">
  <send retrans="500"><![CDATA[

INVITE sip:assistant@[remote_ip]:[remote_port] SIP/2.0
{dialog("1 INVITE", to_tag=False)}Contact: <sip:bench@[local_ip]:[local_port]>
Max-Forwards: 70
{_NO_BODY if late_offer else _SDP}
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
{ok}  <send><![CDATA[

ACK sip:assistant@[remote_ip]:[remote_port] SIP/2.0
{dialog("1 ACK", to_tag=True)}Contact: <sip:bench@[local_ip]:[local_port]>
Max-Forwards: 70
{ack_body}
  ]]></send>
"""
    if late_offer and not answer_in_ack:
        return text + """  <recv request="BYE"/>
  <send><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

  ]]></send>
</scenario>
"""
    return text + f"""{plays}
  <send retrans="500"><![CDATA[

BYE sip:assistant@[remote_ip]:[remote_port] SIP/2.0
{dialog("2 BYE", to_tag=True)}Max-Forwards: 70
{_NO_BODY}
  ]]></send>
  <recv response="200" crlf="true"/>
</scenario>
"""


SCENARIO = sipp_scenario("{plays}")  # "{plays}" is replaced by what the caller does between ACK and BYE

PLAY = """  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause milliseconds="{ms}"/>
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrent", type=int, default=4, help="simultaneous calls (default 4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each call (default 20)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (default: readable)")
    parser.add_argument("--pipeline", choices=["bot", "real"], default="bot", help="stand-in pipeline (default) or the real one")
    parser.add_argument("--stagger", action="store_true",
                        help="start the calls spread over one play cycle instead of all at once (callers then speak "
                             "at different moments, as on a real line; the calls still all overlap)")


def scenario_text(seconds: float) -> str:
    plays = []
    left_ms = max(int(seconds * 1000), 1000)
    while left_ms > 0:
        ms = min(int((PCAP_S + 2.0) * 1000), left_ms)  # the recording, then 2 s for the reply
        plays.append(PLAY.format(pcap=PCAP, ms=ms))
        left_ms -= ms
    return SCENARIO.replace("{plays}", "".join(plays))


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(round(q * (len(s) - 1))))], 1)


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


async def bench(*, concurrent: int, seconds: float, pipeline: str = "bot", stagger: bool = False) -> dict:
    from dataclasses import replace

    from assistant.settings import load_settings
    from telephony.gateway import Gateway
    from telephony.peers import SippRun
    from telephony.testing import bot_pipeline_factory

    settings = load_settings()
    settings = replace(settings, telephony=replace(settings.telephony, sip_port=0, max_calls=max(concurrent * 2, 8)))
    runtime_cm = None
    if pipeline == "real":
        from assistant.runtime import running, with_free_ports
        from telephony.gateway import default_pipeline_factory

        settings = with_free_ports(settings)
        runtime_cm = running(settings)
        runtime = await runtime_cm.__aenter__()
        factory = default_pipeline_factory(runtime.services)
    else:
        factory = bot_pipeline_factory(settings=settings)
    try:
        gateway = Gateway(settings=settings, pipeline_factory=factory)
        with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
            scenario = Path(tmp) / "bench.xml"
            scenario.write_text(scenario_text(seconds))
            # sipp starts `rate` calls per `-rp` period: all within 1 s, or spread over one play cycle
            cycle_s = PCAP_S + 2.0 if stagger else 1.0
            async with gateway:
                cpu0 = time.process_time()
                t0 = time.monotonic()
                async with SippRun(
                    scenario=scenario, target=f"127.0.0.1:{gateway.endpoint.port}", workdir=Path(tmp) / "sipp",
                    calls=concurrent, rate=max(concurrent, 1), concurrent=concurrent, timeout_s=seconds + 30 + cycle_s,
                    extra=("-trace_stat", "-stf", str(Path(tmp) / "stat.csv"), "-rp", str(int(cycle_s * 1000))),
                ) as sipp:
                    rc = await sipp.wait()
                    out = (Path(tmp) / "sipp" / "sipp.out").read_text(errors="replace")
                for _ in range(60):  # the gateway finishes its pipelines
                    if len(gateway.reports) >= concurrent and all(r.end_reason for r in gateway.reports):
                        break
                    await asyncio.sleep(0.1)
                wall = time.monotonic() - t0
                cpu = time.process_time() - cpu0
    finally:
        if runtime_cm is not None:
            await runtime_cm.__aexit__(None, None, None)
    ok = [r for r in gateway.reports if r.end_reason == "remote_hangup"]
    latencies = [lat for r in gateway.reports for lat in r.turn_latencies_ms]
    result = {
        "calls": concurrent,
        "completed": len(ok),
        "dropped": concurrent - len(ok),
        "turn_latency_p50_ms": _pct(latencies, 0.5),
        "turn_latency_p95_ms": _pct(latencies, 0.95),
        "cpu_pct": round(100 * cpu / wall, 1),
        "rss_mb": _rss_mb(),
        "turns": len(latencies),
        "seconds": seconds,
        "pipeline": pipeline,
        "staggered": stagger,
        "sipp_exit": rc,
    }
    if rc != 0:
        result["sipp_tail"] = out[-600:]
    return result


def check_tools() -> None:
    from assistant.errors import SetupError
    from telephony.peers import program

    program("sipp")
    if not PCAP.exists():
        raise SetupError(f"{PCAP} is missing (Debian package sip-tester)")


def run(args: argparse.Namespace) -> int:
    check_tools()
    result = asyncio.run(
        bench(concurrent=args.concurrent, seconds=args.seconds, pipeline=args.pipeline, stagger=args.stagger)
    )
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    return 0 if result["dropped"] == 0 else 1


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace(concurrent=int(os.environ.get("N", 2)), seconds=10.0, json=True, pipeline="bot", stagger=False)))
