"""``assistant bench calls --concurrent N --seconds S --json``: N simultaneous calls on loopback.

One sipp process places N calls into an in-process gateway; each call lasts S seconds, then hangs up. What
the caller says (``--speech``):

- ``debian`` (default): Debian's recorded G.711 A-law English speech (``/usr/share/sip-tester/g711a.pcap``,
  7 s with pauses) played in a loop with 2 s after each play. sipp sends a replayed pcap's RTP sequence
  numbers unchanged, so the gateway's jitter buffer drops every replay after the first as late packets:
  each call has one spoken turn, whatever S is.
- ``mandarin``: what our elders say: short Mandarin requests and answers spoken by the project's TTS
  (``assistant.tts.registry.synthesize``, once at bench start) through the 8 kHz phone path (band-pass,
  A-law), after the greeting, each followed by silence long enough for the bot's spoken reply
  (``--reply-pause``, 7 s), the conversation repeated to fill the call — written as one continuous RTP pcap
  (``telephony.pcap``) per run, so no RTP is ever replayed.

The gateway runs the stand-in pipeline (webrtcvad VAD → fixed spoken reply) unless ``--pipeline real``
(needs models and Rasa; ASR dominates). ``--stagger``: calls start spread over one conversation cycle.

Turn latency = end of the caller's speech on the wire → first reply audio on the wire, measured at the
gateway, without the silence after which an open answer's turn ends (``end_of_turn_silence_ms``: with Smart
Turn judging open prompts the 0.25 s pause that asks it — its judgement and any longer wait for an unfinished
turn stay in; otherwise, and always for the stand-in bot, the fixed 0.8 s end-of-turn silence): the system's
own share. ``turn_latency_incl_eot_*`` add that
silence back: what the elder waits. ``turns_spoken`` counts the
caller's utterances that ended at least ``TURN_MIN_ANSWER_S`` before hang-up: turns without a measured
latency got no reply in time (or overlapped the bot). cpu_pct / rss_mb (peak, VmHWM) are the gateway process's
(cpu_pct: 100 = one core busy); machine_cpu_pct is every process's (Rasa, the TTS worker, sipp and other
jobs too; at most 100 × cores); load_1m is the machine's 1-minute load average at start and end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from assistant.audio.convert import PcmAudio
from assistant.audio.end_of_turn import open_answer_silence_s, smart_turn_judges
from assistant.audio.phone_channel import phone_channel
from assistant.bench.proc_memory import peak_rss_mb
from assistant.bench.scratch import scratch_store
from assistant.bench.stats import share, stage_percentiles
from assistant.errors import SetupError
from assistant.phrases import Phrasebook
from assistant.runtime import running, with_free_ports
from assistant.settings import load_settings
from assistant.tts.registry import simulated_caller_voice, synthesize
from telephony.edge import EdgeTrunk, make_demo_cert
from telephony.gateway import Gateway, default_pipeline_factory, greeting_text
from telephony.pcap import write_rtp_pcap
from telephony.peers import KamailioCarrier, KamailioDispatcher, Rtpengine, SippRun, free_tcp_port, program
from telephony.testing import bot_pipeline_factory, tone

PCAP = Path("/usr/share/sip-tester/g711a.pcap")
PCAP_S = 7.1

# what an elder says when ordering gas (the gas form: request → the bot asks / reads back → answer → confirm)
MANDARIN_CONVERSATION = ("我想订一罐煤气。", "十五公斤的，今天下午送。", "对，没问题。")
REPLY_PAUSE_S = 7.0  # silence after each utterance: the bot's spoken reply (several seconds)
GREETING_MARGIN_S = 1.0  # the caller waits for the greeting to end, then this long
TURN_MIN_ANSWER_S = 3.0  # an utterance ending closer than this to hang-up is not counted as a turn
# our TTS leaves ~0.75 s of silence at a comma (0.4 s in 对，没问题), nearly the VAD's 0.8 s end of turn: a
# caller pausing that long mid-sentence gets the reply to half a sentence. People pause ~0.2–0.3 s there.
MAX_INNER_PAUSE_S = 0.3

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


def sipp_send(method: str, cseq: int, *, sdp: bool, to_tag: bool = True, contact: bool = True,
              retrans: bool = True, route_set: bool = False) -> str:
    """One request of the sipp caller (a scenario's ``<send>``): ``sdp`` adds the caller's SDP (PCMA +
    telephone-event 101); ``to_tag`` puts the gateway's tag in To (every in-dialog request); ``route_set``:
    an in-dialog request goes to the far end's Contact with the 200's Record-Route set (through proxies)."""
    headers = _DIALOG_HEADERS.format(cseq=f"{cseq} {method}", to_tag="[peer_tag_param]" if to_tag else "")
    contact_line = "Contact: <sip:bench@[local_ip]:[local_port]>\n" if contact else ""
    target, routes = ("[next_url]", "[routes]\n") if route_set and to_tag else ("sip:assistant@[remote_ip]:[remote_port]", "")
    return f"""  <send{' retrans="500"' if retrans else ''}><![CDATA[

{method} {target} SIP/2.0
{headers}{routes}{contact_line}Max-Forwards: 70
{_SDP if sdp else _NO_BODY}
  ]]></send>
"""


def sipp_recv_ok(*, offer_formats: str | None = None, route_set: bool = False) -> str:
    """sipp waits for the 200 OK; ``offer_formats`` (e.g. "0 8 101"): its SDP must offer these payload types;
    ``route_set``: its Record-Route set is kept for the in-dialog requests."""
    if offer_formats is None:
        rrs = ' rrs="true"' if route_set else ""
        return f'  <recv response="200" rtd="true"{rrs}/>\n'
    return (
        '  <recv response="200" rtd="true">\n    <action>\n'
        f'      <ereg regexp="m=audio [0-9]+ RTP/AVP {offer_formats}" search_in="body" check_it="true" assign_to="offer"/>\n'
        '    </action>\n  </recv>\n  <Reference variables="offer"/>\n'
    )


def sipp_scenario(plays: str, *, late_offer: bool = False, answer_in_ack: bool = True, bye_cseq: int = 2,
                  route_set: bool = False) -> str:
    """A sipp caller: INVITE → 200 → ACK → ``plays`` (sipp actions) → BYE. The caller offers PCMA +
    telephone-event 101 in the INVITE; ``late_offer``: the INVITE has no SDP, the 200 OK must offer
    PCMU/PCMA/telephone-event (sipp fails otherwise) and the ACK carries the answer — or, with
    ``answer_in_ack=False``, no answer, and sipp then expects the gateway's BYE instead of playing.
    ``bye_cseq``: the BYE's CSeq (``plays`` holding in-dialog requests of its own takes 2 and up).
    ``route_set``: ACK and BYE follow the 200's Record-Route (a call through proxies, e.g. the encrypted edge)."""
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="elder speaks for a while">
{sipp_send("INVITE", 1, sdp=not late_offer, to_tag=False)}  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
{sipp_recv_ok(offer_formats="0 8 101" if late_offer else None, route_set=route_set)}{
sipp_send("ACK", 1, sdp=late_offer and answer_in_ack, retrans=False, route_set=route_set)}"""
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
{sipp_send("BYE", bye_cseq, sdp=False, contact=False, route_set=route_set)}  <recv response="200" crlf="true"/>
</scenario>
"""


SCENARIO = sipp_scenario("{plays}")  # "{plays}" is replaced by what the caller does between ACK and BYE

PLAY = """  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause milliseconds="{ms}"/>
"""


@dataclass
class CallerSpeech:
    """What each bench call plays: one pcap file and the pause after it (``ms``), the cycle used by
    ``--stagger``, and the ends of the caller's utterances within the call (seconds from the answer)."""

    plays: list[tuple[Path, int]]
    cycle_s: float
    speech_ends_s: list[float] = field(default_factory=list)
    kind: str = "debian"
    voice: str | None = None  # the TTS voice that spoke (mandarin)
    utterances_s: list[float] = field(default_factory=list)  # length of each utterance


def debian_speech(seconds: float) -> CallerSpeech:
    plays, ends, t = [], [], 0.0
    left_ms = max(int(seconds * 1000), 1000)
    while left_ms > 0:
        ms = min(int((PCAP_S + 2.0) * 1000), left_ms)  # the recording, then 2 s for the reply
        plays.append((PCAP, ms))
        if t + PCAP_S <= seconds - TURN_MIN_ANSWER_S:
            ends.append(t + PCAP_S)
        t += ms / 1000
        left_ms -= ms
    return CallerSpeech(plays=plays, cycle_s=PCAP_S + 2.0, speech_ends_s=ends, kind="debian")


def cap_inner_pauses(pcm8k: bytes, *, max_pause_s: float = MAX_INNER_PAUSE_S, level: float = 50.0) -> bytes:
    """Shorten every silence inside an utterance (20 ms frames with mean |x| < ``level``, between voiced
    frames) to ``max_pause_s``; leading and trailing silence are left as they are."""
    import numpy as np

    n = 160
    x = np.frombuffer(pcm8k, dtype="<i2")
    frames = [x[i : i + n] for i in range(0, len(x), n)]
    quiet = [float(np.abs(f.astype(np.int32)).mean()) < level for f in frames]
    voiced = [i for i, q in enumerate(quiet) if not q]
    if not voiced:
        return pcm8k
    keep, run, limit = [], [], int(round(max_pause_s * 1000 / 20))
    for i, f in enumerate(frames):
        if voiced[0] < i < voiced[-1] and quiet[i]:
            run.append(f)
            continue
        keep.extend(run[:limit])
        run = []
        keep.append(f)
    return np.concatenate(keep).astype("<i2").tobytes()


async def _phone_pcm8k(text: str, *, settings) -> tuple[bytes, str]:
    """``text`` spoken by the default Mandarin voice, as an elder's landline delivers it: 8 kHz A-law."""

    speech = await synthesize(text, dialect="cmn", rate_wpm=settings.tts.rate_wpm, volume=1.0, settings=settings,
                              voice=simulated_caller_voice("cmn"))
    audio = PcmAudio(pcm=speech.pcm, sample_rate_hz=speech.sample_rate_hz)
    line = await asyncio.to_thread(phone_channel, audio, law="alaw", out_rate_hz=8000)
    return await asyncio.to_thread(cap_inner_pauses, line.pcm), speech.voice


async def seed_callers(store, n: int) -> None:
    """Enrol sipp's callers (``From: 1390000[call_number]``, numbered from 1) as Mandarin-speaking elders."""
    for i in range(1, n + 1):
        await store.create_elder(name=f"测试{i}", district="蓬江", dialect="cmn", phones=[caller_number(i)])


def caller_number(call_number: int) -> str:
    return f"1390000{call_number}"


async def mandarin_speech(
    seconds: float, *, settings, workdir: Path, greeting_s: float | None = None, reply_pause_s: float = REPLY_PAUSE_S,
    utterances: tuple[str, ...] = MANDARIN_CONVERSATION, greeting_kind: str = "unknown",
) -> CallerSpeech:
    """One continuous pcap of ``seconds``: silence while the greeting plays (``greeting_s``; default: the
    unknown-caller greeting spoken by our TTS), then ``utterances`` each followed by ``reply_pause_s`` of
    silence, repeated. Synthesized once; the file is written in a thread."""
    rate = 8000
    said = [await _phone_pcm8k(text, settings=settings) for text in utterances]
    spoken = [pcm for pcm, _voice in said]
    if greeting_s is None:
        greeting, _voice = await _phone_pcm8k(greeting_text(phrases=Phrasebook(platform_name=settings.platform.name), dialect="cmn", kind=greeting_kind), settings=settings)
        greeting_s = len(greeting) / 2 / rate
    lead_s = greeting_s + GREETING_MARGIN_S
    pause = b"\x00\x00" * int(reply_pause_s * rate)
    total = int(seconds * rate) * 2
    pcm = bytearray(b"\x00\x00" * int(lead_s * rate))
    ends = []
    while len(pcm) < total:
        for words in spoken:
            pcm += words
            end_s = len(pcm) / 2 / rate
            if end_s <= seconds - TURN_MIN_ANSWER_S:
                ends.append(round(end_s, 2))
            pcm += pause
    pcm = bytes(pcm[:total])
    path = await asyncio.to_thread(write_rtp_pcap, workdir / "mandarin.pcap", pcm)
    cycle_s = sum(len(s) / 2 / rate + reply_pause_s for s in spoken)
    return CallerSpeech(plays=[(path, int(seconds * 1000))], cycle_s=cycle_s, speech_ends_s=ends, kind="mandarin",
                        voice=said[0][1], utterances_s=[round(len(s) / 2 / rate, 2) for s in spoken])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrent", type=int, default=4, help="simultaneous calls (default 4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each call (default 20)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (default: readable)")
    parser.add_argument("--pipeline", choices=["bot", "real"], default="bot", help="stand-in pipeline (default) or the real one")
    parser.add_argument("--stagger", action="store_true",
                        help="start the calls spread over one play cycle instead of all at once (callers then speak "
                             "at different moments, as on a real line; the calls still all overlap)")
    parser.add_argument("--speech", choices=["debian", "mandarin"], default="debian",
                        help="what the callers say: Debian's English g711a.pcap in a loop (default), or short "
                             "Mandarin requests and answers spoken by our TTS, each followed by a pause for the reply")
    parser.add_argument("--known", action="store_true",
                        help="--pipeline real: every caller is an enrolled Mandarin-speaking elder (a throwaway SQLite "
                             "store seeded with the callers' numbers), as most of a care platform's callers are: "
                             "known greeting, dialect from the profile, one decode per utterance")
    parser.add_argument("--edge", choices=["none", "tls-srtp"], default="none",
                        help="tls-srtp: the same calls through the plain path and then through the encrypted edge "
                             "(a carrier's SBC → kamailio TLS trunk, SRTP mandatory → rtpengine → plain RTP to the "
                             "gateway), one run; prints both and the p95 ratio")
    parser.add_argument("--reply-pause", type=float, default=REPLY_PAUSE_S,
                        help=f"--speech mandarin: silence after each utterance for the bot's reply (default {REPLY_PAUSE_S})")


def scenario_text(seconds: float, speech: CallerSpeech | None = None, *, route_set: bool = False) -> str:
    speech = speech or debian_speech(seconds)
    return sipp_scenario("{plays}", route_set=route_set).replace("{plays}", "".join(PLAY.format(pcap=p, ms=ms) for p, ms in speech.plays))


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(round(q * (len(s) - 1))))], 1)


def _machine_busy_s() -> float | None:
    """CPU seconds all cores spent busy since boot (/proc/stat), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


EDGE_PATHS = ("plain", "tls-srtp")


@contextlib.asynccontextmanager
async def encrypted_edge(*, gateway_port: int, workdir: Path, settings):
    """The encrypted path to ``gateway_port``, yielding the port sipp calls: a carrier's SBC (kamailio +
    rtpengine: plain SIP/RTP in, SIP over TLS + SDES-SRTP out) → the edge (``telephony.edge``: kamailio TLS
    trunk with SRTP mandatory + rtpengine, plain RTP to the worker) → the gateway. Also yields the edge's
    kamailio (its log counts the calls whose media it anchored with SRTP)."""
    tls = await make_demo_cert(workdir / "certs")
    trunk = EdgeTrunk(name="carrier", transport="tls", port=free_tcp_port(), srtp="mandatory")
    async with contextlib.AsyncExitStack() as stack:
        edge_media = await stack.enter_async_context(Rtpengine(workdir=workdir / "edge-rtpengine"))
        edge = await stack.enter_async_context(KamailioDispatcher(
            workdir=workdir / "edge-kamailio", gateways=[f"127.0.0.1:{gateway_port}"], trunks=(trunk,), tls=tls,
            rtpengine_ng_port=edge_media.ng_port, strict_media_source=settings.edge.strict_media_source))
        carrier_media = await stack.enter_async_context(Rtpengine(workdir=workdir / "carrier-rtpengine"))
        carrier = await stack.enter_async_context(KamailioCarrier(
            workdir=workdir / "carrier-kamailio", edge_port=trunk.port, tls=tls, rtpengine_ng_port=carrier_media.ng_port))
        await asyncio.sleep(1.2)  # the dispatcher's first OPTIONS ping marks the worker up
        yield carrier.port, edge


async def bench(
    *, concurrent: int, seconds: float, pipeline: str = "bot", stagger: bool = False, speech: str = "debian",
    reply_pause_s: float = REPLY_PAUSE_S, known: bool = False, path: str = "plain",
) -> dict:
    from dataclasses import replace


    settings = load_settings()
    settings = replace(settings, telephony=replace(settings.telephony, sip_port=0, max_concurrent_calls=max(concurrent * 2, 8)))
    # the stand-in bot's VAD ends a turn after the fixed silence; the real pipeline's turn-taking may ask Smart Turn
    smart_turn = pipeline == "real" and settings.audio.turn_decision_silence_s > 0
    eot_ms = (open_answer_silence_s(settings.audio) if pipeline == "real" else settings.audio.vad_end_of_turn_silence_s) * 1000
    load_start = os.getloadavg()[0]
    runtime_cm = None
    if known and pipeline != "real":

        raise SetupError("--known needs --pipeline real (the stand-in bot has no elder profiles)")
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
        settings = scratch_store(settings, Path(tmp))  # never the operators' store (seeded below with --known)
        if speech == "mandarin":
            # the stand-in bot greets with a 1.5 s tone; the real pipeline speaks the unknown (or known) greeting
            caller = await mandarin_speech(seconds, settings=settings, workdir=Path(tmp), reply_pause_s=reply_pause_s,
                                           greeting_s=1.5 if pipeline == "bot" else None,
                                           greeting_kind="known" if known else "unknown")
        else:
            caller = debian_speech(seconds)
        if pipeline == "real":
            settings = with_free_ports(settings)
            runtime_cm = running(settings)
            runtime = await runtime_cm.__aenter__()
            factory = default_pipeline_factory(runtime.services)
            if known:
                await seed_callers(runtime.services.store, concurrent)
        else:
            factory = bot_pipeline_factory(settings=settings, reply_pcm=tone(seconds=1.5))
        try:
            gateway = Gateway(settings=settings, pipeline_factory=factory,
                              directory=runtime.services.store if known else None)
            scenario = Path(tmp) / "bench.xml"
            scenario.write_text(scenario_text(seconds, caller, route_set=path != "plain"))
            # sipp starts `rate` calls per `-rp` period: all within 1 s, or spread over one conversation cycle
            cycle_s = caller.cycle_s if stagger else 1.0
            async with gateway, contextlib.AsyncExitStack() as stack:
                target_port, edge = gateway.endpoint.port, None
                if path == "tls-srtp":
                    target_port, edge = await stack.enter_async_context(
                        encrypted_edge(gateway_port=gateway.endpoint.port, workdir=Path(tmp) / "edge", settings=settings))
                cpu0 = time.process_time()
                busy0 = await asyncio.to_thread(_machine_busy_s)
                t0 = time.monotonic()
                async with SippRun(
                    scenario=scenario, target=f"127.0.0.1:{target_port}", workdir=Path(tmp) / "sipp",
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
                busy1 = await asyncio.to_thread(_machine_busy_s)
                edge_log = await asyncio.to_thread(edge.log) if edge else None
                srtp_calls = None if edge_log is None else sum(
                    "srtp=mandatory" in line and "media anchored" in line for line in edge_log.splitlines())
        finally:
            if runtime_cm is not None:
                await runtime_cm.__aexit__(None, None, None)
    ok = [r for r in gateway.reports if r.end_reason == "remote_hangup"]
    latencies = [lat for r in gateway.reports for lat in r.turn_latencies_ms]
    own = [lat - eot_ms for lat in latencies]
    stages = [s for r in gateway.reports for s in r.turn_stages_ms]
    result = {
        "calls": concurrent,
        "completed": len(ok),
        "dropped": concurrent - len(ok),
        "turns": len(latencies),
        "turns_spoken": concurrent * len(caller.speech_ends_s),
        "turn_latency_p50_ms": _pct(own, 0.5),
        "turn_latency_p95_ms": _pct(own, 0.95),
        "turn_latency_incl_eot_p50_ms": _pct(latencies, 0.5),
        "turn_latency_incl_eot_p95_ms": _pct(latencies, 0.95),
        "end_of_turn_silence_ms": round(eot_ms),
        "end_of_turn": "smart_turn" if smart_turn else "fixed_silence",
        "smart_turn_judges": smart_turn_judges(settings.audio) if pipeline == "real" else "none",
        **({"pipeline_turns": len(stages),
            "pipeline_stages": stage_percentiles(stages, ("asr", "nlu", "tts_first_audio", "total"), _pct),
            "pipeline_asr_early_share": share(stages, "asr_early")}
           if stages else {}),
        "cpu_pct": round(100 * cpu / wall, 1),
        "machine_cpu_pct": round(100 * (busy1 - busy0) / wall, 1) if busy0 is not None and busy1 is not None else None,
        "cores": os.cpu_count(),
        "rss_mb": peak_rss_mb(),
        "load_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "seconds": seconds,
        "speech": caller.kind,
        **({"voice": caller.voice, "utterances_s": caller.utterances_s, "reply_pause_s": reply_pause_s}
           if caller.kind == "mandarin" else {}),
        "pipeline": pipeline,
        "staggered": stagger,
        "callers": "known" if known else "unknown",
        "callers_identified": sum(r.elder_id is not None for r in gateway.reports),
        "path": path,
        **({"edge_srtp_calls": srtp_calls} if srtp_calls is not None else {}),
        "sipp_exit": rc,
    }
    if rc != 0:
        result["sipp_tail"] = out[-600:]
    return result


def check_tools() -> None:

    program("sipp")
    if not PCAP.exists():
        raise SetupError(f"{PCAP} is missing (Debian package sip-tester)")


def compare_paths(results: dict[str, dict]) -> dict:
    """Both paths' results and how the encrypted one compares: p95 turn latency ratio, dropped calls."""
    plain, enc = results["plain"]["turn_latency_p95_ms"], results["tls-srtp"]["turn_latency_p95_ms"]
    return {**results,
            "p95_ratio_tls_srtp_to_plain": round(enc / plain, 3) if plain and enc is not None else None,
            "dropped": results["plain"]["dropped"] + results["tls-srtp"]["dropped"]}


def run(args: argparse.Namespace) -> int:
    check_tools()
    edge = getattr(args, "edge", "none")
    if edge != "none":
        program("kamailio")
        program("rtpengine")
    kwargs = dict(concurrent=args.concurrent, seconds=args.seconds, pipeline=args.pipeline, stagger=args.stagger,
                  speech=getattr(args, "speech", "debian"), reply_pause_s=getattr(args, "reply_pause", REPLY_PAUSE_S),
                  known=getattr(args, "known", False))

    async def both() -> dict:
        return compare_paths({p: await bench(**kwargs, path=p) for p in EDGE_PATHS})

    result = asyncio.run(both() if edge != "none" else bench(**kwargs))
    if args.json:
        print(json.dumps(result), flush=True)
    elif edge != "none":
        keys = ("completed", "dropped", "turns", "turns_spoken", "turn_latency_p50_ms", "turn_latency_p95_ms", "cpu_pct", "machine_cpu_pct", "load_1m")
        print(f"{'':>22}  {'plain':>14}  {'tls-srtp':>14}")
        for k in keys:
            print(f"{k:>22}: {result['plain'][k]!s:>14}  {result['tls-srtp'][k]!s:>14}")
        print(f"{'p95 ratio':>22}: {result['p95_ratio_tls_srtp_to_plain']}")
    else:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    return 0 if result["dropped"] == 0 else 1


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace(concurrent=int(os.environ.get("N", 2)), seconds=10.0, json=True, pipeline="bot", stagger=False)))
