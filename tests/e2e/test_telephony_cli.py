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
    assert result["turn_latency_p50_ms"] is not None and 300 < result["turn_latency_p50_ms"] < 5000
    assert 0 < result["rss_mb"] < 2000


def test_phone_call_to_nobody_escalates_and_logs_the_ledger_first():
    dead = free_udp_port()  # nothing listens there
    proc = run_cli(
        "phone", "call", f"sip:elder@127.0.0.1:{dead}", "--bot", "--no-retry", "--timeout", "0.5", "--listen", "127.0.0.1:0", timeout_s=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert "ledger" in lines[0]  # written before the dial
    result = lines[-1]
    assert result["status"] == "escalated_operator" and result["alerts"] == ["no_answer"]
    assert [a["result"] for a in result["attempts"]] == ["no_answer"]


def test_phone_call_without_a_route_is_one_clear_line():
    proc = run_cli("phone", "call", "13800000000", "--bot", "--listen", "127.0.0.1:0", timeout_s=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error[no_route]:")
