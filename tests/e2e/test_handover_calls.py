"""A person answers, on real calls through the real pipeline (issue #16): the ``assistant serve`` stack
(whisper → the fraud guard → the turn decision → Rasa → TTS, the platform store) with the gateway as
``start_gateway`` wires it, operator phones registered with kamailio (baresip, auto-answer).

1. a scam on the line: the pipeline hears the other party of a relayed call (``session.heard_speaker =
   "caller"``, as ``simulate --speaker caller``) asking for a transfer to a 安全账户 and the SMS code; the fraud
   guard flags it, its ``fraud`` alert is stored, and the gateway hands the call to an operator (reason
   ``fraud``): the operator's phone rings, answers and hears the line; the elder was told to stay on it.
2. an SOS in the elder's own words (救命啊，我摔倒了，起不来): Rasa's SOS → the operator's phone rings and is
   bridged (until now measured with a stand-in bot only).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from telephony.peers import BaresipPeer, KamailioPbx
from tests.conftest import need_program
from tests.e2e.conftest import need_rasa, need_whisper

pytestmark = [pytest.mark.e2e, pytest.mark.sip, pytest.mark.rasa, pytest.mark.timeout(900)]

PASSWORD = "ops-s3cret"
MANDARIN_ELDER = "0750-6603003"  # seed_demo: 陈 (cmn)
SCAM_CALLER = "02088886666"  # not on file


def _seen(gw, built) -> str:
    """What happened so far, short enough to survive pytest's truncation."""
    states = [(h.reason, h.state, h.operator, [a["result"] for a in h.attempts]) for h in gw.handovers]
    turns = [(t.transcript, [e.get("event") for e in t.events]) for c in built for t in c.tracker.turns]
    print("hand-overs:", states, "turns:", turns)
    return f"hand-overs {states}; turns {turns[-6:]}"


async def test_real_calls_are_handed_to_an_operator_on_a_scam_and_on_an_sos(settings, tmp_path):
    for name in ("baresip", "kamailio", "sox"):
        need_program(name)
    need_whisper()
    need_rasa()
    from assistant.fraud_guard.guard import HANDOVER_WARNING
    from assistant.platform.db_cli import seed_demo
    from assistant.runtime import running, with_free_ports
    from assistant.settings import load_settings
    from telephony.gateway import default_pipeline_factory
    from telephony.gateway_service import start_gateway
    from tests.e2e.test_console_browser import scam_call_wav
    from tests.e2e.test_emergency_calls import _to_line, spoken_wav
    from tests.e2e.test_handover import dominant_hz

    scam_wav = _to_line(tmp_path, [await scam_call_wav(tmp_path / "scam.wav")], lead_s=8.0, tail_s=30.0)
    scam_line = scam_wav.rename(tmp_path / "scam_8k.wav")
    # a known elder's greeting is long (the keypad menu): speak after it, not into it (slower on a loaded machine)
    sos_line = await spoken_wav(tmp_path, "救命啊，我摔倒了，起不来。", settings, lead_s=20.0)
    async with KamailioPbx(workdir=tmp_path / "kam", users=("op1",), password=PASSWORD) as kam, \
            BaresipPeer(workdir=tmp_path / "op1", user="op1", registrar=f"127.0.0.1:{kam.port}", password=PASSWORD) as op1:
        await op1.wait_registered()
        settings = with_free_ports(replace(
            settings,
            paths=replace(settings.paths, models_dir=load_settings().paths.models_dir),
            telephony=replace(settings.telephony, sip_port=0, rtp_port_min=24000, rtp_port_max=24999,
                              outbound_proxy=f"127.0.0.1:{kam.port}"),
            handover=replace(settings.handover, operator_uris=(kam.aor("op1"),), operator_ring_each_s=20.0,
                             operator_ring_timeout_s=25.0, call_family=False),
        ))
        built: list = []
        async with running(settings, rasa_required=True) as runtime:
            store = runtime.store
            await seed_demo(store)
            base = default_pipeline_factory(runtime.services)  # the pipeline's own hand-overs (fraud flag, SOS)

            def factory(*, transport, session):
                if session.caller_number == SCAM_CALLER:  # a relayed call: we hear the other party
                    session.heard_speaker = "caller"
                call = base(transport=transport, session=session)
                built.append(call)
                return call

            service = await start_gateway(runtime, pipeline_factory=factory, port=0)
            gw = service.gateway
            try:
                # 1. the scam
                async with BaresipPeer(workdir=tmp_path / "scam", wav=scam_line, user=SCAM_CALLER) as line:
                    await line.command("dial", f"sip:assistant@127.0.0.1:{gw.endpoint.port}")
                    deadline = time.monotonic() + 240
                    while not (gw.handovers and gw.handovers[0].connected_at is not None):
                        assert time.monotonic() < deadline, _seen(gw, built)
                        await asyncio.sleep(0.3)
                    fraud_state = gw.handovers[0]
                    await asyncio.sleep(4.0)  # the operator hears the line
                    await line.command("hangup")
                    async with asyncio.timeout(15):
                        await fraud_state.done.wait()
                guard = built[0].guard
                fraud_alerts = [a for a in await store.list_alerts(kind="fraud") if a.call_id == fraud_state.call_id]
                heard_by_op = [dominant_hz(p) for p in op1.recordings()]

                # 2. the SOS
                async with BaresipPeer(workdir=tmp_path / "elder", wav=sos_line, user=MANDARIN_ELDER.replace("-", "")) as elder:
                    await elder.command("dial", f"sip:assistant@127.0.0.1:{gw.endpoint.port}")
                    deadline = time.monotonic() + 180
                    while not (len(gw.handovers) > 1 and gw.handovers[1].connected_at is not None):
                        assert time.monotonic() < deadline, _seen(gw, built)
                        await asyncio.sleep(0.3)
                    sos_state = gw.handovers[1]
                    await asyncio.sleep(1.0)
                    await elder.command("hangup")
                    async with asyncio.timeout(15):
                        await sos_state.done.wait()
                sos_alerts = [a for a in await store.list_alerts(kind="sos") if a.call_id == sos_state.call_id]
            finally:
                await service.stop()
    print("fraud hand-over:", fraud_state.to_json(), "flag:", guard.flag and (guard.flag.risk, guard.flag.evidence))
    print("SOS hand-over:", sos_state.to_json())
    assert fraud_state.reason == "fraud" and fraud_state.operator == kam.aor("op1")
    assert guard.flag is not None and guard.warning == HANDOVER_WARNING  # told to stay on the line
    # the guard's own alert (risk, evidence, redacted transcript) carries the hand-over: not a second alert
    assert len(fraud_alerts) == 1 and fraud_alerts[0].alert_id == fraud_state.alert_id
    assert fraud_alerts[0].detail["evidence"] and fraud_alerts[0].detail["handover"]["operator"] == kam.aor("op1")
    assert heard_by_op and max(level for _, level in heard_by_op) > 200, heard_by_op  # the operator heard the line
    assert sos_state.reason == "emergency" and sos_state.operator == kam.aor("op1")
    assert len(sos_alerts) == 1 and sos_alerts[0].alert_id == sos_state.alert_id
    assert sos_alerts[0].detail["handover"]["state"] in ("connected_operator", "ended_operator")
