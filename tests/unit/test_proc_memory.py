"""Bench memory figures are the bench's own, not those of the process that started it."""

from __future__ import annotations

import json
import subprocess
import sys

from assistant.bench.proc_memory import peak_rss_mb, rss_mb, status_mb

CHILD = (
    "import json, resource; from assistant.bench.proc_memory import peak_rss_mb;"
    "print(json.dumps({'peak': peak_rss_mb(), 'ru_maxrss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
)


def test_a_child_of_a_large_parent_reports_its_own_peak():
    ballast = bytearray(400 * 1024 * 1024)
    for i in range(0, len(ballast), 4096):  # touch every page: resident, not just reserved
        ballast[i] = 1
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=60)
    got = json.loads(out.stdout)
    assert got["ru_maxrss"] > 400  # Linux carries the parent's peak across exec: the old reading was wrong
    assert 0 < got["peak"] < 200  # VmHWM is the child's own address space
    del ballast


def test_status_fields_of_this_process_and_of_a_gone_one():
    now, peak = rss_mb(), peak_rss_mb()
    assert now is not None and peak is not None and 0 < now <= peak
    assert status_mb("NoSuchField") is None
    assert rss_mb(pid=2**22 + 1) is None  # beyond pid_max: no such process
