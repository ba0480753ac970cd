"""`assistant phone ...` and `assistant bench calls` as a user runs them (subprocesses, real sipp)."""

from __future__ import annotations

import json

import pytest

from telephony.peers import free_udp_port
from tests.conftest import need_program
from tests.e2e.conftest import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.sip]


def test_bench_calls_prints_the_agreed_json():
    need_program("sipp")
    proc = run_cli("bench", "calls", "--concurrent", "2", "--seconds", "9", "--json", timeout_s=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"calls", "completed", "dropped", "turn_latency_p50_ms", "turn_latency_p95_ms", "cpu_pct", "rss_mb"} <= set(result)
    assert result["calls"] == 2 and result["completed"] == 2 and result["dropped"] == 0
    assert result["turn_latency_p50_ms"] is not None and 0 < result["turn_latency_p50_ms"] < 4200
    assert result["turn_latency_incl_eot_p50_ms"] > result["turn_latency_p50_ms"]
    assert 0 < result["rss_mb"] < 2000


PHRASE = "桂花飘香"  # the test elder's safe phrase


@pytest.fixture
def elder_db(tmp_path):
    """A fresh platform database under tmp var/ with one elder (no family contacts): (env, settings, elder id)."""
    import asyncio
    import os

    from assistant.platform.db import create_engine_for
    from assistant.platform.migrate import upgrade_heads
    from assistant.platform.store import PlatformStore
    from assistant.settings import load_settings

    env = {"ASSISTANT_VAR_DIR": str(tmp_path / "var")}
    (tmp_path / "var").mkdir()
    settings = load_settings({**os.environ, **env})
    upgrade_heads(settings.store.database_url)

    async def create() -> int:
        engine = create_engine_for(settings)
        try:
            elder = await PlatformStore(engine=engine).create_elder(name="李伯", district="台山", dialect="yue", phones=["0750-550 2002"], safe_phrase=PHRASE)
            return elder.elder_id
        finally:
            await engine.dispose()

    return env, settings, asyncio.run(create())


async def _stored(settings):
    """(ledger entries, alerts) in the database the CLI used."""
    from sqlalchemy import select

    from assistant.platform.db import create_engine_for
    from assistant.platform.models_fraud import LedgerEntry
    from assistant.platform.store import PlatformStore

    engine = create_engine_for(settings)
    try:
        store = PlatformStore(engine=engine)
        async with store.session("read") as s:
            entries = (await s.scalars(select(LedgerEntry))).all()
        return entries, await store.list_alerts()
    finally:
        await engine.dispose()


def test_phone_call_to_nobody_escalates_and_logs_the_ledger_first(elder_db):
    import asyncio

    env, settings, elder_id = elder_db
    dead = free_udp_port()  # nothing listens there
    proc = run_cli(
        "phone", "call", f"sip:07505502002@127.0.0.1:{dead}", "--bot", "--no-retry", "--timeout", "0.5", "--listen", "127.0.0.1:0",
        env=env, timeout_s=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert "ledger" in lines[0] and lines[0]["ledger"]["number"] == "07505502002"  # written before the dial
    result = lines[-1]
    assert result["elder_id"] == elder_id  # found by the URI's number
    assert result["status"] == "escalated_operator" and result["alerts"] == ["no_answer"]
    assert [a["result"] for a in result["attempts"]] == ["no_answer"]
    entries, alerts = asyncio.run(_stored(settings))
    assert [(e.elder_id, e.number, e.status) for e in entries] == [(elder_id, "07505502002", "pending")]  # the call-back window stays open
    assert [(a.kind, a.elder_id) for a in alerts] == [("no_answer", elder_id)]
    assert entries[0].code not in proc.stdout + proc.stderr and PHRASE not in proc.stdout + proc.stderr


async def test_hand_dialled_care_call_to_baresip_is_recorded_and_answered(elder_db, tmp_path):
    """`assistant phone call` to a real phone (baresip answers, presses 1): the scheduler's wiring — ledger
    entry in the database before the dial, marked answered after (the spoken proof: unit tests)."""
    import asyncio
    import os
    import sys

    from telephony.peers import BaresipPeer
    from tests.e2e.conftest import ROOT

    need_program("baresip")
    env, settings, elder_id = elder_db
    async with BaresipPeer(workdir=tmp_path / "elder", user="07505502002") as peer:
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "assistant.cli", "phone", "call", peer.uri, "--elder", str(elder_id), "--bot", "--no-retry", "--listen", "127.0.0.1:0",
            cwd=ROOT, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            for _ in range(150):  # baresip records once the call's audio flows
                if peer.recordings():
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the care call never reached baresip")
            await asyncio.sleep(1.0)
            await peer.command("sndcode", "1")
            async with asyncio.timeout(30):
                out, err = await cli.communicate()
        finally:
            if cli.returncode is None:
                cli.kill()
                await cli.wait()
    assert cli.returncode == 0, err.decode()[-2000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["status"] == "completed" and result["outcome"] == "well" and result["alerts"] == []
    entries, alerts = await _stored(settings)
    assert [(e.elder_id, e.number, e.purpose, e.status) for e in entries] == [(elder_id, "07505502002", "care_call", "answered")]
    assert alerts == []


def test_phone_call_without_a_route_is_one_clear_line(elder_db):
    env, _, _ = elder_db
    proc = run_cli("phone", "call", "0750-550 2002", "--bot", "--listen", "127.0.0.1:0", env=env, timeout_s=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error[no_route]:")


def test_phone_call_to_a_number_of_no_elder_is_refused(elder_db):
    env, settings, _ = elder_db
    proc = run_cli("phone", "call", "13800000000", "--bot", "--listen", "127.0.0.1:0", env=env, timeout_s=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error[unknown_elder]:")
