"""An elder calling in always finds a free line, whatever the platform is dialling (``telephony.lines``),
with a real ``Gateway`` on loopback and real SIP peers: 3 lines, 1 kept for inbound calls.

1. the call engine (real ``CallEngine`` on SQLite, care calls to auto-answering baresip "elders") dials
   until only the reserve is left: 2 calls, the third due job waits in the queue;
2. the console's operator call-back (``OperatorCallbacks``) does not take the reserved line: it waits,
   visibly (``waiting_for_line``), and sends no INVITE;
3. an elder calls in (baresip): answered (200) on the reserved line;
4. a second elder calls in (a raw SIP INVITE, to read the exact status): every line is busy → 503 with
   Retry-After, and an operator alert ``missed_call`` for that elder so someone calls back;
5. the elder hangs up: one line is free, which is the reserve again — the call-back still waits; a care
   call ends: the waiting call-back gets that line, before the engine's queued job.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from assistant.fraud_guard.ledger import CallLedger
from assistant.platform.db import create_engine_for
from assistant.platform.migrate import upgrade_heads_async
from assistant.platform.store import PlatformStore
from telephony.call_jobs import NewJob
from telephony.gateway import Gateway
from telephony.gateway_service import call_engine, care_call_runner
from telephony.handover import OperatorCallbacks
from telephony.lines import LineUse
from telephony.peers import BaresipPeer
from telephony.scheduler import CareSchedule
from telephony.testing import bot_pipeline_factory, tone
from tests.conftest import need_program
from tests.e2e.conftest import wait_for
from tests.e2e.raw_sip import RawCaller, header

pytestmark = [pytest.mark.e2e, pytest.mark.sip]

CALLER_A = "07506601111"  # the elder who calls in and must be answered
CALLER_B = "13800009999"  # RawCaller's From: the elder who calls when every line is busy


async def until(pred, *, timeout_s: float, what: str, context=lambda: "") -> None:
    """``wait_for``, and on a time-out what ``context()`` says then (peer logs, states)."""
    try:
        await wait_for(pred, timeout_s=timeout_s, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {context()}") from None


async def tone_speaker(text: str, dialect: str) -> bytes:  # the hand-over's prompts: a short tone, no TTS
    t = np.arange(4000) / 8000
    return (np.sin(2 * np.pi * 700 * t) * 0.2 * 32767).astype("<i2").tobytes()


def calls_to(gw: Gateway, uri: str) -> list:
    return [c for c in gw.endpoint.calls.values() if c.direction == "outbound" and c.remote_uri == uri]


async def test_an_elder_calling_in_finds_the_reserved_line_while_the_engine_and_a_call_back_want_it(tel_settings, tmp_path):
    need_program("baresip")
    s = replace(tel_settings, telephony=replace(
        tel_settings.telephony, max_concurrent_calls=3, engine_inbound_reserve_calls=1, engine_max_calls=8,
        engine_measured_calls=0, engine_tick_s=0.3, engine_lease_s=30.0, engine_dials_per_s=0.0, engine_spread_s=0.0,
        answer_timeout_s=8.0, rtp_port_min=27000, rtp_port_max=27499))
    url = f"sqlite+aiosqlite:///{tmp_path / 'lines.db'}"
    await upgrade_heads_async(url)
    db = create_engine_for(replace(s, store=replace(s.store, database_url=url)))
    store = PlatformStore(engine=db)
    ledger = CallLedger.for_engine(db, settings=s, clock=lambda: datetime.now(UTC))
    cared = [(await store.create_elder(name=f"关怀{i}", district="蓬江", phones=[f"0750-100 000{i}"])).elder_id for i in range(3)]
    called_back = (await store.create_elder(name="回电", district="蓬江", phones=["0750-200 0001"])).elder_id
    elder_a = (await store.create_elder(name="来电甲", district="江海", phones=[CALLER_A])).elder_id
    elder_b = (await store.create_elder(name="来电乙", district="江海", phones=[CALLER_B])).elder_id

    gw = Gateway(settings=s, pipeline_factory=bot_pipeline_factory(settings=s, reply_pcm=tone(seconds=0.5)), directory=store,
                 on_alert=store.raise_call_alert, speak=tone_speaker, port=0)
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []

    async def end_tasks() -> None:  # before the peers and the gateway stop (a crash for the engine: calls held)
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(gw)
            peers = [await stack.enter_async_context(BaresipPeer(workdir=tmp_path / f"care{i}", user=f"care{i}"))
                     for i in range(3)]
            x = await stack.enter_async_context(BaresipPeer(workdir=tmp_path / "callback", user="callback"))
            a = await stack.enter_async_context(BaresipPeer(workdir=tmp_path / "caller-a", user=CALLER_A))
            stack.push_async_callback(end_tasks)
            schedules = [CareSchedule(elder_id=e, number=p.uri, days=frozenset(), quiet_hours=None)  # nothing planned by day
                         for e, p in zip(cared, peers, strict=True)]

            async def source():
                return schedules

            runner = care_call_runner(gateway=gw, store=store, ledger=ledger, on_alert=store.raise_call_alert)
            engine = call_engine(settings=s, store=store, runner=runner, schedules=source, line_gate=gw.lines)
            now = engine.now()
            await engine.jobs.plan([NewJob(job_key=f"care:{e}:t:a1", chain=f"care:{e}:t", kind="care_call", elder_id=e,
                                           number=p.uri, not_before=now) for e, p in zip(cared, peers, strict=True)])
            tasks.append(asyncio.create_task(engine.run(stop=stop), name="engine"))
            callbacks = OperatorCallbacks(gateway=gw)
            tasks.append(asyncio.create_task(callbacks.run(), name="callbacks"))

            # 1. the engine fills every line but the reserve; its third job waits
            def answered_care_calls() -> int:
                return sum(1 for p in peers for c in calls_to(gw, p.uri) if c.state == "active")

            await until(lambda: answered_care_calls() == 2, timeout_s=15, what="two care calls answered",
                        context=lambda: (gw.endpoint.calls, peers[0].log()[-600:]))
            await asyncio.sleep(1.5)  # five engine ticks
            states = {e: (await engine.jobs.jobs(elder_id=e))[-1].state for e in cared}
            assert answered_care_calls() == 2 and len(gw.endpoint.calls) == 2, gw.endpoint.calls
            assert sorted(states.values()) == ["answered", "answered", "planned"], states
            assert gw.lines.free(LineUse.ROUTINE) == 0 and gw.lines.admits_inbound()

            # 2. a routine call-back does not take the reserved line: it waits, visibly, no INVITE
            assert callbacks.request(alert_id=None, elder_id=called_back, number=x.uri, code="4827", dialect="cmn")
            await until(lambda: callbacks.results and callbacks.results[0].state == "waiting_for_line", timeout_s=5,
                        what="the call-back waiting for a line", context=lambda: list(callbacks.results))
            await asyncio.sleep(1.0)
            assert not calls_to(gw, x.uri) and len(gw.endpoint.calls) == 2 and gw.lines.waiting == 1

            # 3. an elder calls in: answered on the reserved line
            await a.command("dial", f"sip:assistant@127.0.0.1:{gw.endpoint.port}")
            await until(lambda: any(c.direction == "inbound" and c.remote_number == CALLER_A and c.state == "active"
                                    for c in gw.endpoint.calls.values()), timeout_s=10, what="the elder's call answered",
                        context=lambda: (gw.endpoint.refusals, a.log()[-800:]))
            assert gw.endpoint.refusals["busy"] == 0 and len(gw.endpoint.calls) == 3

            # 4. every line busy: the next elder gets 503 + Retry-After, and an operator is asked to call back
            async with RawCaller(gw.endpoint.port) as caller_b:
                resp, _ = await caller_b.invite()
            assert resp.startswith("SIP/2.0 503") and header(resp, "Retry-After") == str(s.telephony.busy_retry_after_s), resp
            assert gw.lines.refused_inbound == 1  # /metrics: assistant_gateway_refused_busy_total
            missed: list = []

            async def missed_alert() -> bool:
                missed[:] = await store.list_alerts(elder_id=elder_b, kind="missed_call")
                return bool(missed)

            deadline = time.monotonic() + 5
            while not await missed_alert():
                assert time.monotonic() < deadline, "no missed-call alert"
                await asyncio.sleep(0.1)
            assert missed[0].severity == "urgent" and missed[0].detail["reason"] == "all_lines_busy"
            assert callbacks.results[0].state == "waiting_for_line" and not calls_to(gw, x.uri)

            # 5. the elder hangs up: that line is the reserve again (one line kept free), the call-back still waits
            await a.command("hangup")
            await until(lambda: len(gw.endpoint.calls) == 2, timeout_s=10, what="the elder's call to end",
                        context=lambda: gw.endpoint.calls)
            await asyncio.sleep(1.0)
            assert callbacks.results[0].state == "waiting_for_line" and not calls_to(gw, x.uri)
            # a care call ends: the waiting call-back takes that line, before the engine's queued job
            await peers[0].command("hangup")
            await until(lambda: calls_to(gw, x.uri), timeout_s=10, what="the call-back dialled",
                        context=lambda: (callbacks.results[0].to_json(), gw.endpoint.calls, gw.lines.busy, peers[0].log()[-600:]))
            third = next(e for e, st in states.items() if st == "planned")
            assert (await engine.jobs.jobs(elder_id=third))[-1].state == "planned"
            assert len(gw.endpoint.calls) == 2 and gw.lines.admits_inbound()  # the reserve is free again
            alerts_a = await store.list_alerts(elder_id=elder_a, kind="missed_call")
    finally:
        await end_tasks()
        await db.dispose()
    assert alerts_a == []  # the elder who got through has no missed call
