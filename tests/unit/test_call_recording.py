"""The streamed call recording (assistant.audio.recording): a valid WAV on disk after every flush, the
caller (left) and the bot (right) aligned by time, bounded buffering, safe file names."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from assistant.audio.recording import CallAudioRecorder, StreamingWavFile, recording_path

RATE = 16000
FRAME = RATE // 50  # 20 ms


def tone(n: int, *, rate: int = RATE, hz: float = 440.0, level: float = 0.3) -> bytes:
    t = np.arange(n) / rate
    return (np.sin(2 * np.pi * hz * t) * level * 32767).astype("<i2").tobytes()


def silence(n: int) -> bytes:
    return bytes(2 * n)


async def wait_for_frames(path: Path, frames: int, timeout_s: float = 5.0) -> sf.SoundFile:
    deadline = time.monotonic() + timeout_s
    while True:
        info = sf.info(str(path))
        if info.frames >= frames or time.monotonic() > deadline:
            return info
        await asyncio.sleep(0.02)


def onset(x: np.ndarray, *, level: float = 2000) -> int:
    loud = np.flatnonzero(np.abs(x.astype(np.int32)) > level)
    return int(loud[0]) if len(loud) else -1


def test_wav_header_matches_the_data_after_every_append(tmp_path: Path):
    w = StreamingWavFile(tmp_path / "a.wav", sample_rate_hz=RATE)
    assert sf.info(str(w.path)).frames == 0  # valid (empty) from the start
    for i in range(1, 4):
        w.append(np.full(2 * RATE // 10, i, dtype="<i2").tobytes())  # 0.1 s of stereo
        data, rate = sf.read(str(w.path), dtype="int16")  # a reader sees a complete file at every point
        assert rate == RATE and data.shape == (i * RATE // 10, 2)
        assert (data[-1] == i).all()
    w.close()
    assert w.path.stat().st_mode & 0o077 == 0  # caller audio: owner only


async def test_each_flush_leaves_a_playable_file_and_memory_stays_bounded(tmp_path: Path):
    rec = CallAudioRecorder(path=tmp_path / "c.wav", sample_rate_hz=RATE, flush_s=0.5)
    await rec.open()
    try:
        for second in range(1, 5):
            for _ in range(50):
                rec.caller(tone(FRAME), RATE)
            info = await wait_for_frames(rec.path, second * RATE)
            assert info.frames == second * RATE and info.channels == 2 and info.samplerate == RATE
            assert rec._caller.samples < 0.5 * RATE + FRAME  # the loop keeps less than one flush
        # the file is readable while the call is still going (what a killed process leaves behind)
        data, _ = sf.read(str(rec.path), dtype="int16")
        assert data.shape == (4 * RATE, 2) and np.abs(data[:, 0]).max() > 5000 and not data[:, 1].any()
    finally:
        await rec.close()


async def test_caller_and_bot_are_aligned_by_time(tmp_path: Path):
    """Caller frames are the clock: the bot's reply (8 kHz, as the phone line sends it) lands where the
    caller was when it went out; the caller's own speech keeps its place on the left."""
    rec = CallAudioRecorder(path=tmp_path / "c.wav", sample_rate_hz=RATE, flush_s=1.0)
    await rec.open()
    for i in range(150):  # 3 s of 20 ms frames
        rec.caller(tone(FRAME, hz=300) if 60 <= i < 80 else silence(FRAME), RATE)  # caller speaks at 1.2-1.6 s
        if i == 25:  # bot speaks at 0.5 s: 0.3 s, sent as 20 ms chunks at 8 kHz within one loop turn
            reply = tone(int(0.3 * 8000), rate=8000, hz=500)
            for j in range(0, len(reply), 320):
                rec.bot(reply[j : j + 320], 8000)
        if i == 100:  # and again at 2.0 s
            rec.bot(tone(1600, rate=8000, hz=500), 8000)
    await rec.close()
    data, rate = sf.read(str(rec.path), dtype="int16")
    left, right = data[:, 0], data[:, 1]
    assert len(data) == 3 * RATE
    assert abs(onset(left) - int(1.2 * RATE)) <= 2
    assert abs(onset(right) - int(0.52 * RATE)) <= 40  # the frame's position + the resampler's 1.5 ms
    # the first reply lasts 0.3 s, then silence until the second at 2.02 s
    assert np.abs(right[int(0.56 * RATE) : int(0.8 * RATE)]).max() > 5000
    assert np.abs(right[int(0.85 * RATE) : int(2.0 * RATE)]).max() < 200
    assert np.abs(right[int(2.03 * RATE) : int(2.2 * RATE)]).max() > 5000


async def test_bot_talking_without_caller_audio_does_not_buffer_forever(tmp_path: Path):
    rec = CallAudioRecorder(path=tmp_path / "c.wav", sample_rate_hz=RATE, flush_s=0.5, max_bot_ahead_s=1.0)
    await rec.open()
    for _ in range(250):  # 5 s of bot audio, no caller frames at all
        rec.bot(tone(FRAME), RATE)
        assert rec._bot.samples <= 1.0 * RATE + FRAME
    await rec.close()
    data, _ = sf.read(str(rec.path), dtype="int16")
    assert len(data) == 5 * RATE and not data[:, 0].any() and np.abs(data[:, 1]).max() > 5000


async def test_close_writes_the_tail_and_later_audio_is_ignored(tmp_path: Path):
    rec = CallAudioRecorder(path=tmp_path / "c.wav", sample_rate_hz=RATE, flush_s=1.0)
    await rec.open()
    for _ in range(10):
        rec.caller(tone(FRAME), RATE)
    await rec.close()
    await rec.close()  # idempotent
    rec.caller(tone(FRAME), RATE)
    assert sf.info(str(rec.path)).frames == 10 * FRAME


async def test_max_length_caps_the_file(tmp_path: Path):
    rec = CallAudioRecorder(path=tmp_path / "c.wav", sample_rate_hz=RATE, flush_s=0.2, max_s=1.0)
    await rec.open()
    for _ in range(100):
        rec.caller(tone(FRAME), RATE)
    await rec.close()
    assert sf.info(str(rec.path)).frames == RATE


@pytest.mark.parametrize("call_id", ["../../etc/evil", "a/b", "..", "", "x" * 300])
def test_a_call_id_cannot_name_a_file_outside_the_calls_folder(tmp_path: Path, call_id: str):
    path = recording_path(tmp_path, call_id)
    assert path.parent == tmp_path and path.name.endswith(".wav") and not path.name.startswith(".")
    assert "/" not in path.name and len(path.name) < 120


def test_plain_call_ids_keep_their_file_name(tmp_path: Path):
    assert recording_path(tmp_path, "3f2a9c0e1d") == tmp_path / "3f2a9c0e1d.wav"
    assert recording_path(tmp_path, "1-2345@127.0.0.1").parent == tmp_path
    assert recording_path(tmp_path, "a/b") != recording_path(tmp_path, "a_b")
