"""`assistant serve` as an operator runs it: Ctrl-C while Rasa is still loading stops everything at once."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from tests.e2e.conftest import need_rasa, need_whisper, serve_env, start_serve

pytestmark = pytest.mark.e2e


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_during_rasa_start_up_stops_at_once_and_leaves_no_child(tmp_path):
    need_rasa()
    need_whisper()
    env = serve_env(tmp_path)
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = start_serve(env, log)
        pids: list[int] = []
        try:
            deadline = time.monotonic() + 120
            while len(pids) < 2:  # both Rasa servers spawned, neither healthy yet (loading takes ~30 s)
                assert proc.poll() is None, log_path.read_text(errors="replace")[-2000:]
                assert time.monotonic() < deadline, "the Rasa servers were not started within 120 s"
                text = log_path.read_text(errors="replace")
                pids = [int(p) for p in re.findall(r"started \S+ \(pid (\d+)\)", text)]
                time.sleep(0.2)
            assert "is ready at" not in log_path.read_text(errors="replace")
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=30)
            took_s = time.monotonic() - sent
        except BaseException:
            _kill(proc, pids)
            raise
    try:
        text = log_path.read_text(errors="replace")
        assert code == 0, text[-2000:]
        assert took_s < 15, f"took {took_s:.1f} s to stop"
        assert "stopped during start-up" in text
        assert "Traceback" not in text
        for pid in pids:
            for _ in range(50):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            assert not _alive(pid), f"child {pid} still running after serve exited"
    finally:
        _kill(proc, pids)


def _kill(proc, pids: list[int]) -> None:
    """A failed run must not leave serve or its Rasa servers (their own process groups) behind."""
    if proc.poll() is None:
        proc.kill()
    for pid in pids:
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
