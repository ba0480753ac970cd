"""Scale-out on loopback: two gateway workers behind kamailio (dispatcher: round robin, OPTIONS probing,
failover on 408/5xx). Calls come in at kamailio's address; each worker runs its own pipelines."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from telephony.gateway import Gateway
from telephony.peers import KamailioDispatcher
from telephony.sip import SipEndpoint
from telephony.testing import bot_pipeline_factory, tone
from tests.conftest import need_program

pytestmark = [pytest.mark.e2e, pytest.mark.sip]
pytest_plugins = ["tests.fixtures_pg"]


async def place_call(phone: SipEndpoint, uri: str, *, listen_s: float = 1.2) -> float:
    """One call through the dispatcher; returns the loudest 20 ms frame heard (the worker's greeting)."""
    call = await phone.dial(uri, timeout_s=6)
    levels: list[float] = []
    call.on_audio = lambda pcm: levels.append(float(np.abs(np.frombuffer(pcm, "<i2")).mean()))
    await asyncio.sleep(listen_s)
    await call.hangup()
    return max(levels, default=0.0)


async def wait_until(pred, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while True:
        if pred() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


async def test_two_workers_behind_kamailio_share_calls_and_fail_over(settings, tmp_path):
    need_program("kamailio")
    from dataclasses import replace

    s = replace(settings, telephony=replace(settings.telephony, sip_port=0))
    factory = bot_pipeline_factory(settings=s, reply_pcm=tone(seconds=2.0))
    worker_a = Gateway(settings=replace(s, telephony=replace(s.telephony, rtp_port_min=23000, rtp_port_max=23499)), pipeline_factory=factory, port=0)
    worker_b = Gateway(settings=replace(s, telephony=replace(s.telephony, rtp_port_min=23500, rtp_port_max=23999)), pipeline_factory=factory, port=0)
    await worker_a.start()
    try:
        async with worker_b:
            gws = [f"127.0.0.1:{worker_a.endpoint.port}", f"127.0.0.1:{worker_b.endpoint.port}"]
            async with KamailioDispatcher(workdir=tmp_path / "kamailio", gateways=gws) as kam, SipEndpoint(
                settings=s.telephony, port=0, user="13800000005"
            ) as phone:
                uri = f"sip:assistant@127.0.0.1:{kam.port}"
                heard = [await place_call(phone, uri) for _ in range(4)]
                await wait_until(lambda: len(worker_a.reports) + len(worker_b.reports) == 4 and all(r.end_reason for r in worker_a.reports + worker_b.reports), 5)
                shares = (len(worker_a.reports), len(worker_b.reports))
                ends = {r.end_reason for r in worker_a.reports + worker_b.reports}

                await worker_a.stop()  # worker A dies; kamailio's probe / failure route moves calls to B
                before_b = len(worker_b.reports)
                t0 = time.monotonic()
                after = [await place_call(phone, uri, listen_s=0.8) for _ in range(2)]
                failover_s = time.monotonic() - t0
                await wait_until(lambda: len(worker_b.reports) - before_b == 2, 5)
                moved = len(worker_b.reports) - before_b
    finally:
        await worker_a.stop()
    assert shares == (2, 2), f"round robin gave {shares}; kamailio log:\n{kam.log()[-1500:]}"
    assert ends == {"remote_hangup"}  # BYE travelled back through kamailio's record-route
    assert min(heard) > 1000 and min(after) > 1000  # every caller heard its worker's greeting
    assert moved == 2 and failover_s < 12


async def test_register_with_digest_auth_then_calls_reach_the_gateway(settings, tmp_path):
    need_program("kamailio")
    from dataclasses import replace

    from assistant.errors import TelephonyError
    from telephony.peers import KamailioRegistrar

    s = replace(settings, telephony=replace(settings.telephony, sip_port=0))
    gw = Gateway(settings=s, pipeline_factory=bot_pipeline_factory(settings=s, reply_pcm=tone(seconds=2.0)), port=0)
    async with gw, KamailioRegistrar(workdir=tmp_path / "registrar", user="gw1", password="s3cret") as reg, SipEndpoint(
        settings=s.telephony, port=0, user="13800000006"
    ) as phone:
        aor = f"sip:gw1@127.0.0.1:{reg.port}"
        wrong = SipEndpoint(settings=s.telephony, port=0)
        async with wrong:
            with pytest.raises(TelephonyError) as refused:
                await wrong.register(aor, user="gw1", password="wrong", registrar=f"127.0.0.1:{reg.port}")
        await gw.endpoint.register(aor, user="gw1", password="s3cret", registrar=f"127.0.0.1:{reg.port}")
        # a call to the registered address-of-record is routed by the registrar to this gateway
        loudest = await place_call(phone, aor)
        await wait_until(lambda: gw.reports and gw.reports[0].end_reason, 5)
        # and the gateway dials a bare number through the registrar (outbound proxy learnt from REGISTER)
        _, via = gw.endpoint.resolve("13800000006")
    assert refused.value.code == "register_failed"
    assert loudest > 1000 and gw.reports[0].end_reason == "remote_hangup"
    assert via == ("127.0.0.1", reg.port)


@pytest.mark.postgres
async def test_workers_share_one_postgres_store_a_call_back_is_known_but_not_verified(settings, tmp_path, pg_fresh_url):
    """Worker A writes the care call's ledger entry; the elder calls back through kamailio, once to each
    worker: both find the elder in the shared PostgreSQL store, and neither links the call to A's entry
    (issue #15: a call "back" from the dialled number proves nothing, caller ID can be spoofed)."""
    need_program("kamailio")
    from dataclasses import replace

    from assistant.fraud_guard.ledger import CallLedger
    from assistant.platform.db import create_engine_for
    from assistant.platform.migrate import upgrade_heads_async
    from assistant.platform.store import PlatformStore
    from telephony.gateway_service import ledger_recorder
    from telephony.scheduler import LedgerIntent

    s = replace(settings, telephony=replace(settings.telephony, sip_port=0), store=replace(settings.store, database_url=pg_fresh_url))
    await upgrade_heads_async(pg_fresh_url)
    engines = [create_engine_for(s), create_engine_for(s)]  # one pool per worker, as in two processes
    sessions: list[tuple[str, object]] = []

    def factory_for(name: str):
        base = bot_pipeline_factory(settings=s, reply_pcm=tone(seconds=1.0))

        def factory(*, transport, session):
            sessions.append((name, session))
            return base(transport=transport, session=session)

        return factory

    try:
        stores = [PlatformStore(engine=e) for e in engines]
        ledgers = [CallLedger.for_engine(e, settings=s) for e in engines]
        elder = await stores[0].create_elder(name="黄妹", district="江海", phones=["0750-888 1234"], dialect="yue")
        worker_a = Gateway(settings=replace(s, telephony=replace(s.telephony, rtp_port_min=24000, rtp_port_max=24499)), pipeline_factory=factory_for("A"), directory=stores[0], port=0)
        worker_b = Gateway(settings=replace(s, telephony=replace(s.telephony, rtp_port_min=24500, rtp_port_max=24999)), pipeline_factory=factory_for("B"), directory=stores[1], port=0)
        async with worker_a, worker_b:
            # worker A is about to place the care call: the ledger entry is written first
            entry = await ledger_recorder(ledgers[0])(LedgerIntent(elder_id=elder.elder_id, number="0750-888 1234", purpose="care_call", attempt=1, call_ref="pg-1"))
            gws = [f"127.0.0.1:{worker_a.endpoint.port}", f"127.0.0.1:{worker_b.endpoint.port}"]
            async with KamailioDispatcher(workdir=tmp_path / "kamailio", gateways=gws) as kam, SipEndpoint(settings=s.telephony, port=0, user="07508881234") as phone:
                uri = f"sip:assistant@127.0.0.1:{kam.port}"
                await place_call(phone, uri, listen_s=0.6)  # round robin: the first call goes to A …
                await place_call(phone, uri, listen_s=0.6)  # … the second to B
                await wait_until(lambda: len(sessions) == 2, 5)
        stored = await ledgers[1].get(entry.entry_id)
    finally:
        for e in engines:
            await e.dispose()
    by_worker = dict(sessions)
    assert set(by_worker) == {"A", "B"}
    first, second = sessions[0][1], sessions[1][1]
    for session in (first, second):  # the profile from the shared store, no link to A's entry, not verified
        assert session.elder_id == elder.elder_id and session.dialect == "yue"
        assert session.ledger_entry_id is None and not session.verified
    assert stored.status == "pending"  # not consumed by either call
