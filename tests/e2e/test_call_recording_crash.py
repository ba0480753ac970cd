"""A gateway process killed (SIGKILL) in the middle of a call with a real SIP peer (sipp) leaves a playable
recording of the call up to at most ~2 s before the kill: the caller's voice on the left, the bot's
greeting on the right (assistant.audio.recording flushes and fixes the WAV header up every second)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from telephony.pcap import write_rtp_pcap
from telephony.peers import SippRun
from tests.conftest import need_program

pytestmark = [pytest.mark.e2e, pytest.mark.sip]

ROOT = Path(__file__).resolve().parents[2]
CALLER_HZ = 300.0


def caller_pcm8k(seconds: float) -> bytes:
    """What the caller says: 2.5 s of silence (the greeting plays), then a 300 Hz voice in 1 s bursts."""
    t = np.arange(int(seconds * 8000)) / 8000
    x = np.sin(2 * np.pi * CALLER_HZ * t) * 0.3 * 32767
    x[t < 2.5] = 0
    x[(t >= 2.5) & ((t % 1.0) > 0.8)] = 0  # 0.2 s pauses keep it short of a turn end
    return x.astype("<i2").tobytes()


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


async def test_sigkill_mid_call_leaves_a_playable_recording(tmp_path: Path):
    need_program("sipp")
    from telephony.bench import sipp_scenario

    recordings = tmp_path / "calls"
    env = {**os.environ, "ASSISTANT_VAR_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.e2e.recording_gateway", str(recordings), cwd=str(ROOT), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(60):
            port = json.loads(await proc.stdout.readline())["port"]
        seconds = 40.0
        pcap = await asyncio.to_thread(write_rtp_pcap, tmp_path / "caller.pcap", caller_pcm8k(seconds))
        plays = f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n  <pause milliseconds="{int(seconds * 1000)}"/>\n'
        scenario = tmp_path / "call.xml"
        await asyncio.to_thread(scenario.write_text, sipp_scenario(plays))
        async with SippRun(scenario=scenario, target=f"127.0.0.1:{port}", workdir=tmp_path / "sipp", timeout_s=seconds + 10):
            deadline = time.monotonic() + 20
            while not (files := list(recordings.glob("*.wav"))):  # created when the call's pipeline starts
                assert time.monotonic() < deadline, "no recording was started"
                await asyncio.sleep(0.05)
            started = time.monotonic()
            await asyncio.sleep(7.0)
            proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            assert await proc.wait() == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    [path] = files
    data, rate = sf.read(str(path), dtype="int16")  # soundfile reads it: the header matches the data
    assert rate == 16000 and data.ndim == 2 and data.shape[1] == 2
    recorded_s = len(data) / rate
    # everything up to at most 2 s before the kill (the call started at most ~0.3 s before the file)
    assert recorded_s >= (killed - started) - 2.0, (recorded_s, killed - started)
    assert recorded_s <= (killed - started) + 1.0
    left, right = data[:, 0], data[:, 1]
    # the caller's voice is there up to the end of the recording: its last second is the caller's 300 Hz
    last = left[-rate:]
    assert np.abs(last).max() > 3000 and abs(peak_hz(last, rate) - CALLER_HZ) < 15
    # the bot's greeting (a 1 kHz tone, 1.5 s) is on the right, while the caller is still silent on the left
    first = right[: int(2.5 * rate)]
    assert np.abs(first).max() > 3000 and abs(peak_hz(first, rate) - 1000) < 15
    assert np.abs(left[: int(2.0 * rate)]).max() < 500
