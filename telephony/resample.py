"""A stateful streaming resampler for 20 ms frames (8 kHz ↔ 16 kHz on the phone line).

``assistant.audio.convert.resample_pcm16`` treats every call as a whole signal, so resampling 20 ms frames
one by one leaves a filter edge (a click) every 20 ms; pipecat's soxr stream resampler buffers ~95 ms and
releases it in bursts. This one keeps the FIR state across frames: each input frame yields exactly its
share of output samples, delayed by half the filter (1.5 ms at 16 kHz).
"""

from __future__ import annotations

from math import gcd

import numpy as np
from scipy.signal import firwin, lfilter


class StreamResampler:
    def __init__(self, *, from_hz: int, to_hz: int, taps_per_phase: int = 24) -> None:
        g = gcd(from_hz, to_hz)
        self.up = to_hz // g
        self.down = from_hz // g
        self.passthrough = self.up == self.down
        if not self.passthrough:
            numtaps = taps_per_phase * max(self.up, self.down) | 1
            self._h = firwin(numtaps, 1.0 / max(self.up, self.down), window=("kaiser", 6.0)) * self.up
            self._zi = np.zeros(len(self._h) - 1)
        self._phase = 0

    def process(self, pcm16: bytes) -> bytes:
        if self.passthrough or not pcm16:
            return pcm16
        x = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
        up = np.zeros(len(x) * self.up)
        up[:: self.up] = x
        y, self._zi = lfilter(self._h, 1.0, up, zi=self._zi)
        out = y[self._phase :: self.down]
        self._phase = (self._phase - len(up)) % self.down
        return np.clip(np.round(out), -32768, 32767).astype("<i2").tobytes()
