"""Call recordings streamed to disk while the call goes on: one stereo 16-bit PCM WAV per call, left =
the caller (what the pipeline heard), right = the bot (what went out on the line), aligned by time.

- Nothing grows with the call's length: the event loop keeps at most ``flush_s`` of audio per leg, then
  hands an interleaved block to the call's writer thread through a bounded queue (``put_nowait``; a full
  queue — the disk stalled for ``max_queued_s`` — drops the block and logs it, it never blocks the loop).
- The writer thread appends each block with ``os.write`` and then rewrites the RIFF and data sizes in the
  header (``os.pwrite``): after every flush (~1 s) the file is a valid WAV of everything written so far, so
  a killed process (SIGKILL, OOM) leaves a playable recording up to its last second or two.
- Alignment: the caller's leg is a continuous stream (the transport conceals lost packets) and is the
  clock; a bot chunk is placed at the caller's position when it is written (or right after the previous
  bot chunk if the bot is still talking). A bot that talks while no caller audio arrives pads the caller's
  leg with silence once it is ``max_bot_ahead_s`` ahead, so neither leg buffers without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import queue
import re
import struct
import threading
from pathlib import Path

import numpy as np

from assistant.audio.stream_resample import StreamResampler

logger = logging.getLogger(__name__)

HEADER_BYTES = 44
CHANNELS = 2
SAMPLE_BYTES = 2


def recording_path(calls_dir: Path, call_id: str) -> Path:
    """``calls_dir/<call_id>.wav``. A SIP Call-ID may hold "/" or ".." (RFC 3261 allows them): anything
    but ``[A-Za-z0-9_-]`` and inner dots becomes "_" and the name gets a hash of the real id, so a caller's
    Call-ID can never name a file outside ``calls_dir`` and two ids never share a file."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", call_id).strip(".")[:80]
    if safe != call_id or not safe:
        safe = f"{safe}-{hashlib.sha256(call_id.encode()).hexdigest()[:10]}"
    return Path(calls_dir) / f"{safe}.wav"


def wav_header(*, sample_rate_hz: int, data_bytes: int, channels: int = CHANNELS) -> bytes:
    block = channels * SAMPLE_BYTES
    return (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate_hz, sample_rate_hz * block, block, 16)
        + b"data" + struct.pack("<I", data_bytes)
    )


class StreamingWavFile:
    """A 16-bit PCM WAV written in appends; the header always matches what is on disk. Blocking: call it
    from a worker thread, never from the event loop."""

    def __init__(self, path: Path, *, sample_rate_hz: int, channels: int = CHANNELS, mode: int = 0o600) -> None:
        self.path = Path(path)
        self.sample_rate_hz = sample_rate_hz
        self.channels = channels
        self.data_bytes = 0
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        self._write_all(wav_header(sample_rate_hz=sample_rate_hz, data_bytes=0, channels=channels))

    def _write_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def append(self, data: bytes) -> None:
        """Append whole sample frames, then fix the header up (data first: a header never claims more)."""
        if self._fd is None or not data:
            return
        self._write_all(data)
        self.data_bytes += len(data)
        os.pwrite(self._fd, struct.pack("<I", 36 + self.data_bytes), 4)
        os.pwrite(self._fd, struct.pack("<I", self.data_bytes), 40)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    @property
    def seconds(self) -> float:
        return self.data_bytes / (self.channels * SAMPLE_BYTES * self.sample_rate_hz)


class _Leg:
    """One leg's pending samples (int16) from the recorder's write position on, resampled to its rate."""

    def __init__(self, rate_hz: int) -> None:
        self.rate_hz = rate_hz
        self.buf = bytearray()
        self._resamplers: dict[int, StreamResampler] = {}

    def convert(self, pcm: bytes, rate_hz: int) -> bytes:
        if rate_hz == self.rate_hz or not pcm:
            return pcm
        rs = self._resamplers.get(rate_hz)
        if rs is None:
            rs = self._resamplers[rate_hz] = StreamResampler(from_hz=rate_hz, to_hz=self.rate_hz, context_in=0)
        return rs.feed(pcm)

    @property
    def samples(self) -> int:
        return len(self.buf) // SAMPLE_BYTES

    def take(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype="<i2")
        have = min(n, self.samples)
        if have:
            out[:have] = np.frombuffer(self.buf, dtype="<i2", count=have)
            del self.buf[: have * SAMPLE_BYTES]
        return out


class CallAudioRecorder:
    """Streams one call's two legs into a stereo WAV at ``path``. ``open()`` and ``close()`` are async
    (file work in threads); ``caller()`` and ``bot()`` are cheap, non-blocking calls for the event loop."""

    def __init__(
        self,
        *,
        path: Path,
        sample_rate_hz: int = 16000,
        flush_s: float = 1.0,
        max_s: float | None = None,
        max_queued_s: float = 30.0,
        max_bot_ahead_s: float = 2.0,
    ) -> None:
        self.path = Path(path)
        self.sample_rate_hz = sample_rate_hz
        self._flush_n = max(1, int(flush_s * sample_rate_hz))
        self._max_n = int(max_s * sample_rate_hz) if max_s else None
        self._ahead_n = max(self._flush_n, int(max_bot_ahead_s * sample_rate_hz))
        self._caller = _Leg(sample_rate_hz)
        self._bot = _Leg(sample_rate_hz)
        self._emitted = 0  # samples per channel handed to the writer
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=max(2, int(max_queued_s / max(flush_s, 0.01))))
        self._file: StreamingWavFile | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.dropped_s = 0.0
        self.error: str | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        self._file = await asyncio.to_thread(StreamingWavFile, self.path, sample_rate_hz=self.sample_rate_hz)
        self._thread = threading.Thread(target=self._run, name=f"recording-{self.path.stem[:12]}", daemon=True)
        self._thread.start()

    @property
    def opened(self) -> bool:
        return self._file is not None

    @property
    def is_open(self) -> bool:
        return self._thread is not None and not self._closed

    async def close(self) -> None:
        """Write what is pending (both legs padded to the same length), fix the header, close the file."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            return
        tail = max(self._caller.samples, self._bot.samples)
        if tail:
            self._emit(tail)
        await asyncio.to_thread(self._finish)

    def _finish(self) -> None:
        self._queue.put(None)  # blocks only this worker thread while the writer drains
        assert self._thread is not None
        self._thread.join()
        if self._file is not None:
            self._file.close()

    # --- the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        assert self._file is not None
        while True:
            block = self._queue.get()
            if block is None:
                return
            if self.error is not None:
                continue
            try:
                self._file.append(block)
            except OSError as exc:  # disk full, file gone: the call goes on unrecorded
                self.error = str(exc)
                logger.error("recording %s stopped: %s", self.path.name, exc)

    # --- the event loop's side -----------------------------------------------------------------
    @property
    def _caller_pos(self) -> int:
        return self._emitted + self._caller.samples

    def caller(self, pcm: bytes, sample_rate_hz: int) -> None:
        if not self.is_open:
            return
        self._caller.buf += self._caller.convert(pcm, sample_rate_hz)
        if self._caller.samples >= self._flush_n:
            self._emit(self._caller.samples)

    def bot(self, pcm: bytes, sample_rate_hz: int) -> None:
        if not self.is_open:
            return
        pcm = self._bot.convert(pcm, sample_rate_hz)
        if not pcm:
            return
        gap = self._caller_pos - (self._emitted + self._bot.samples)
        if gap > 0:  # the bot starts talking again: place it at the caller's "now"
            self._bot.buf += bytes(gap * SAMPLE_BYTES)
        self._bot.buf += pcm
        ahead = self._bot.samples - self._caller.samples
        if ahead > self._ahead_n:  # no caller audio arrives while the bot talks: the caller's leg is silence
            self._caller.buf += bytes((ahead - self._flush_n) * SAMPLE_BYTES)
            self._emit(self._caller.samples)

    def _emit(self, n: int) -> None:
        left, right = self._caller.take(n), self._bot.take(n)
        if self._max_n is not None:
            n = min(n, self._max_n - self._emitted)
            if n <= 0:
                self._emitted += len(left)
                return
        block = np.empty(2 * n, dtype="<i2")
        block[0::2] = left[:n]
        block[1::2] = right[:n]
        self._emitted += len(left)
        try:
            self._queue.put_nowait(block.tobytes())
        except queue.Full:
            self.dropped_s += n / self.sample_rate_hz
            logger.warning("recording %s: the disk is behind, %.1f s of audio dropped", self.path.name, self.dropped_s)


async def close_quietly(recorder: CallAudioRecorder | None) -> None:
    if recorder is None:
        return
    with contextlib.suppress(OSError):
        await recorder.close()
