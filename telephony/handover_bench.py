"""``assistant bench handover``: SOS calls in a row, each handed over to an operator's phone (issue #16).

Real peers on loopback, started here: kamailio (the platform's SIP front, digest REGISTER), two baresip
operator phones (auto-answer, playing a 1.5 kHz tone as the operator's voice) and one baresip family phone.
Each elder call (an in-process SIP UA) waits for the greeting, then says its SOS words (our Mandarin voice
through the phone channel: 救命啊，我摔倒了，起不来), and we measure from the end of those words to

- ``ring``: the gateway's INVITE to an operator phone (it rings through kamailio),
- ``connected``: the elder hears the operator's voice (the 1.5 kHz tone) through the bridge;

then ``family_calls`` more SOS calls with no operator reachable: ``family_call`` = the family phone answered
the alert call; its key 1 must acknowledge the alert. With Debian's kannel installed, the SOS alerts' family
SMS go through a real Kannel and its fake SMSC; ``sms_delivered`` counts delivery reports (else null).
A call is ``lost`` when nobody was put on the line (no operator heard within the deadline, or no
acknowledgement).

``--pipeline real`` (the default): the whole ``assistant serve`` stack (``assistant.runtime.running``: the
platform API, Rasa and its action server, whisper, the turn decision, TTS) and the gateway as
``start_gateway`` wires it; the SOS is what the dialogue decides from the recognised words (the SOS alert
raised by Rasa's action, then the ``emergency`` event). ``--pipeline stand-in``: VAD + a fixed reply, the
end of the caller's speech taken as the SOS decision (no ASR / NLU / Rasa; seconds instead of minutes).
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
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from assistant.audio.vad import WebRtcVadAnalyzer, vad_params
from assistant.bench.scratch import scratch_store
from assistant.bench.stats import stage_percentiles
from assistant.platform import kannel_testing
from assistant.platform.api import create_app
from assistant.platform.migrate import upgrade_heads_async
from assistant.platform.store import NewContact
from assistant.runtime import running, with_free_ports
from assistant.services import SERVICES_KEY
from assistant.settings import load_settings
from assistant.turns import TurnTracker
from telephony.bench import _phone_pcm8k
from telephony.gateway import Gateway
from telephony.gateway_service import start_gateway
from telephony.peers import BaresipPeer, KamailioPbx, program, write_wav8k
from telephony.sip import SipEndpoint
from telephony.testing import ReplyBot, tone

USERS_PASSWORD = "bench-handover"
ELDER_NUMBER = "07506609999"
SOS_WORDS = "救命啊，我摔倒了，起不来。"  # a clear emergency (tests/e2e/test_emergency_calls.py: SOS at once)
FAMILY_NUMBER = "13900009999"
OPERATOR_HZ = 1500.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=20, help="SOS calls in a row answered by operators (default 20)")
    parser.add_argument("--family-calls", type=int, default=5, help="then SOS calls with no operator: family alert calls (default 5)")
    parser.add_argument("--pipeline", choices=("real", "stand-in"), default="real",
                        help="real: ASR + Rasa decide the SOS (needs the Rasa env and whisper); stand-in: end of speech = SOS")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _pct_q(values: list[float], q: float) -> float | None:
    return _pct(values, q * 100)


def _tone8k(hz: float, seconds: float, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    return (np.sin(2 * np.pi * hz * t) * level * 32767).astype("<i2").tobytes()


def _is_operator(pcm: bytes) -> bool:
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    if np.abs(x).mean() < 500:
        return False
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=1600))  # 5 Hz bins
    return abs(int(np.argmax(spec)) * 5 - OPERATOR_HZ) <= 60


async def _sos_words(settings, *, real: bool) -> bytes:
    try:
        pcm, _voice = await _phone_pcm8k(SOS_WORDS, settings=settings)
        return pcm
    except Exception:  # no voice installed: a voiced buzz the VAD takes for speech (the stand-in only)
        if real:
            raise
        t = np.arange(8000) / 8000
        x = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((150, 300, 450, 600, 750), start=1))
        return (x / 3 * 0.5 * 32767).astype("<i2").tobytes()


def _sos_pipeline_factory(*, settings):
    """The stand-in bot; the end of the caller's speech is the SOS decision (an ``emergency`` event)."""
    from pipecat.frames.frames import VADUserStoppedSpeakingFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.processors.audio.vad_processor import VADProcessor
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


    class SosDecision(FrameProcessor):
        """At the end of the caller's speech: the dialogue's SOS reply event, as DialogueProcessor reports
        it to the turn tracker (the gateway's listener starts the hand-over from it)."""

        def __init__(self, tracker: TurnTracker, **kw):
            super().__init__(**kw)
            self.tracker = tracker

        async def process_frame(self, frame, direction: FrameDirection):
            await super().process_frame(frame, direction)
            if isinstance(frame, VADUserStoppedSpeakingFrame):
                await self.tracker.notify("reply", SimpleNamespace(events=[{"event": "emergency", "alert_id": None}]))
            await self.push_frame(frame, direction)

    def factory(*, transport, session):
        vad = VADProcessor(vad_analyzer=WebRtcVadAnalyzer(aggressiveness=settings.audio.vad_aggressiveness,
                                                          params=vad_params(settings.audio)), audio_idle_timeout=0)
        bot = ReplyBot(reply_pcm=tone(seconds=0.6), reply_on_speech=False)
        tracker = TurnTracker()
        pipeline = Pipeline([transport.input(), vad, SosDecision(tracker), bot, transport.output()])
        return SimpleNamespace(pipeline=pipeline, tracker=tracker)

    return factory


async def _with_kannel(settings, workdir: Path, stack: contextlib.AsyncExitStack):
    """With Debian's kannel installed: a real Kannel + its fake SMSC, and ``settings`` sending SMS through it."""
    if kannel_testing.missing() is not None:
        return settings, None
    kannel = await stack.enter_async_context(kannel_testing.FakeKannel(workdir=workdir / "kannel"))
    return replace(settings, store=replace(settings.store, outbox_interval_s=0.2), sms=replace(
        settings.sms, kannel_sendsms_url=kannel.sendsms_url, kannel_username=kannel.username,
        kannel_password=kannel.password, sender="10690000", dlr_listen_port=0)), kannel


async def _platform(settings, workdir: Path, stack: contextlib.AsyncExitStack):
    """The platform store (and, with kannel installed, its SMS dispatcher through a real Kannel)."""
    from aiohttp import web


    await upgrade_heads_async(settings.store.database_url)
    settings, kannel = await _with_kannel(settings, workdir, stack)
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()  # the platform's background jobs (outbox dispatcher, DLR listener) start here
    stack.push_async_callback(runner.cleanup)
    return app[SERVICES_KEY].store, kannel


async def _serve(settings, workdir: Path, stack: contextlib.AsyncExitStack):
    """The ``assistant serve`` stack (web app with the platform API and its SMS dispatcher, Rasa, models) on
    free ports, with Kannel when installed; returns (runtime, store, kannel)."""
    settings = with_free_ports(scratch_store(settings, workdir / "var"))  # never the operators' store
    settings, kannel = await _with_kannel(settings, workdir, stack)
    runtime = await stack.enter_async_context(running(settings, rasa_required=True))
    return runtime, runtime.store, kannel


async def bench(*, calls: int = 20, family_calls: int = 5, pipeline: str = "real", workdir: Path | None = None) -> dict:

    async with contextlib.AsyncExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-handover-")))
        (workdir / "var").mkdir(parents=True, exist_ok=True)
        real = pipeline == "real"
        load_1m = [round(os.getloadavg()[0], 2)]
        runtime = None
        if real:
            runtime, store, kannel = await _serve(load_settings(), workdir, stack)
            settings = runtime.settings
        else:
            url = f"sqlite+aiosqlite:///{workdir / 'var' / 'handover.db'}"
            settings = load_settings(env={"ASSISTANT_VAR_DIR": str(workdir / "var")}, store={"database_url": url})
            store, kannel = await _platform(settings, workdir, stack)
        elder = await store.create_elder(name="王秀兰", district="江海", dialect="cmn", phones=[ELDER_NUMBER])
        await store.add_contact(elder.elder_id, NewContact(name="王小明", phone=FAMILY_NUMBER, relation="儿子"))

        kam = await stack.enter_async_context(KamailioPbx(workdir=workdir / "kam", users=("op1", "op2", FAMILY_NUMBER), password=USERS_PASSWORD))
        op_wav = write_wav8k(workdir / "operator.wav", _tone8k(OPERATOR_HZ, 60.0))
        ops = [await stack.enter_async_context(BaresipPeer(workdir=workdir / u, user=u, wav=op_wav, registrar=f"127.0.0.1:{kam.port}",
                                                           password=USERS_PASSWORD)) for u in ("op1", "op2")]
        family = await stack.enter_async_context(BaresipPeer(workdir=workdir / "family", user=FAMILY_NUMBER, registrar=f"127.0.0.1:{kam.port}",
                                                             password=USERS_PASSWORD))
        for peer in (*ops, family):
            await peer.wait_registered()
        words = await _sos_words(settings, real=real)

        async def silent(text: str, dialect: str) -> bytes:  # hold prompts: short, so they don't mask the operator
            return _tone8k(600.0, 0.3, level=0.05)

        async def gateway_for(operator_uris: tuple[str, ...], rtp: int) -> Gateway:
            s = replace(settings, telephony=replace(settings.telephony, sip_port=0, outbound_proxy=f"127.0.0.1:{kam.port}",
                                                    rtp_port_min=rtp, rtp_port_max=rtp + 999),
                        handover=replace(settings.handover, operator_uris=operator_uris, operator_ring_each_s=8.0,
                                         operator_ring_timeout_s=12.0, reply_drain_max_s=1.0 if not real else 8.0,
                                         family_ack_timeout_s=10.0))
            if not real:
                gw = Gateway(settings=s, pipeline_factory=_sos_pipeline_factory(settings=s), directory=store, speak=silent, port=0)
                await stack.enter_async_context(gw)
                return gw
            # as `assistant serve` wires it: the real pipeline, the platform's voices for the hold prompts
            service = await start_gateway(replace(runtime, settings=s), port=0)
            stack.push_async_callback(service.stop)
            return service.gateway

        phone = await stack.enter_async_context(SipEndpoint(settings=replace(settings.telephony, rtp_port_min=29000, rtp_port_max=29999),
                                                            port=0, user=ELDER_NUMBER))
        ring_ms: list[float] = []
        connected_ms: list[float] = []
        family_ms: list[float] = []
        lost = 0
        alert_ids: set[int] = set()

        async def one_call(gw: Gateway, *, expect: str) -> None:
            nonlocal lost
            before = len(gw.handovers)
            heard_at: list[float] = []
            bot_at = [0.0]  # the last time the bot's voice reached the elder (the greeting)

            def on_audio(pcm: bytes) -> None:
                if _is_operator(pcm):
                    if not heard_at:
                        heard_at.append(time.monotonic())
                elif np.abs(np.frombuffer(pcm, "<i2")).mean() > 200:
                    bot_at[0] = time.monotonic()

            call = await phone.dial(f"sip:assistant@127.0.0.1:{gw.endpoint.port}", timeout_s=10)
            call.on_audio = on_audio
            await asyncio.sleep(0.6)
            if real:  # the elder speaks once the greeting is over (≥ 1 s quiet), as a person does
                t0 = time.monotonic()
                while time.monotonic() - t0 < 30 and (bot_at[0] == 0.0 or time.monotonic() - bot_at[0] < 1.0):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            for i in range(0, len(words), 320):  # the SOS words, paced as on the line
                call.play(words[i:i + 320])
            await call.wait_played(timeout_s=15)
            said_at = time.monotonic()
            ok = False
            deadline = said_at + (120 if real else 20)  # (lost = nobody on the line; slow is measured, not lost)
            while time.monotonic() < deadline:
                state = gw.handovers[-1] if len(gw.handovers) > before else None
                if expect == "operator" and state is not None and state.connected_at and heard_at:
                    ring_ms.append((state.ringing_at - said_at) * 1000)
                    connected_ms.append((heard_at[0] - said_at) * 1000)
                    ok = True
                    break
                if expect == "family" and state is not None and state.family_call_at:
                    family_ms.append((state.family_call_at - said_at) * 1000)
                    await asyncio.sleep(0.8)
                    await family.command("sndcode", "1")
                    for _ in range(100):
                        if state.acknowledged_by:
                            break
                        await asyncio.sleep(0.1)
                    ok = state.acknowledged_by is not None
                    break
                await asyncio.sleep(0.02)
            await call.hangup()
            if len(gw.handovers) > before:
                state = gw.handovers[-1]
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(15):
                        await state.done.wait()
                if state.alert_id is not None:
                    alert_ids.add(state.alert_id)
            lost += 0 if ok else 1
            await asyncio.sleep(0.3)

        gateways: list[Gateway] = []
        gw = await gateway_for((kam.aor("op1"), kam.aor("op2")), 26000)
        gateways.append(gw)
        for _ in range(calls):
            await one_call(gw, expect="operator")
        if family_calls:
            gw2 = await gateway_for((kam.aor("nobody"),), 27000)  # no operator reachable (404): family at once
            gateways.append(gw2)
            for _ in range(family_calls):
                await one_call(gw2, expect="family")

        sms_delivered = None
        if kannel is not None:
            sms_rows: list = []
            for _ in range(150):
                sms_rows = [o for a in alert_ids for o in await store.list_outbox(alert_id=a) if o.channel == "sms"]
                if sms_rows and all(o.status in ("delivered", "failed") for o in sms_rows):
                    break
                await asyncio.sleep(0.2)
            sms_delivered = sum(1 for o in sms_rows if o.status == "delivered")
        # the pipeline's own view of the SOS turns (real pipeline): where the time went before the decision
        stages = [t for g in gateways for r in g.reports for t in r.turn_stages_ms] if real else []
        acknowledged = sum(1 for a in await store.list_alerts(elder_id=elder.elder_id, limit=1000) if (a.acknowledged_by or "").startswith("family:"))
        return {
            "n": calls,
            "ring_p95_ms": _pct(ring_ms, 95),
            "connected_p95_ms": _pct(connected_ms, 95),
            "family_call_p95_ms": _pct(family_ms, 95),
            "sms_delivered": sms_delivered,
            "lost": lost,
            "ring_p50_ms": _pct(ring_ms, 50),
            "connected_p50_ms": _pct(connected_ms, 50),
            "family_calls": family_calls,
            "family_acknowledged": acknowledged,
            "sms_expected": len(alert_ids) if kannel is not None else None,
            "pipeline": pipeline,
            **({"sos_turn_stages": stage_percentiles(stages, ("asr", "nlu", "total"), _pct_q)} if stages else {}),
            "load_1m": [*load_1m, round(os.getloadavg()[0], 2)],  # at the start and the end (other work on the machine)
            "cores": os.cpu_count(),
        }


def check_tools() -> None:

    program("kamailio")
    program("baresip")


def run(args: argparse.Namespace) -> int:
    check_tools()
    result = asyncio.run(bench(calls=args.calls, family_calls=args.family_calls, pipeline=args.pipeline))
    if args.json:
        print(json.dumps(result, ensure_ascii=False), flush=True)
    else:
        for k, v in result.items():
            print(f"{k:>20}: {v}")
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace(calls=3, family_calls=1, pipeline="stand-in", json=True)))
