"""Resampling a stream of 16-bit PCM parts so that the output is the same as resampling them joined.

``resample_pcm16`` on each part would treat the part's edges as silence (the polyphase filter is cut
there): a click wherever a clause was streamed in parts, or every 20 ms on a phone line. ``StreamResampler``
keeps a little context on both sides instead: each ``feed`` returns the samples that no later input can
change, ``flush`` the rest. The look-ahead it holds back is ``context_in`` input samples, at least the
filter's reach (10 × max(up, down) / up + 1: 1.4 ms for the phone line's 8 → 16 kHz); TTS keeps 96 (under 3
ms at its rates). The one stream resampler of the tree: TTS output, the phone line's input
(``telephony.transport``) and the call recorder (``assistant.audio.recording``).
"""

from __future__ import annotations

from math import gcd

import numpy as np

CONTEXT_IN = 96  # input samples kept on each side by default; resample_poly's filter reaches 10 × max(up, down) / up


class StreamResampler:
    def __init__(self, *, from_hz: int, to_hz: int, context_in: int = CONTEXT_IN) -> None:
        self.from_hz, self.to_hz = int(from_hz), int(to_hz)
        g = gcd(self.from_hz, self.to_hz)
        self.up, self.down = self.to_hz // g, self.from_hz // g
        reach = -(-10 * max(self.up, self.down) // self.up) + 1
        # context and emitted boundaries are multiples of ``down``: whole input blocks map to whole outputs
        self.context = -(-max(context_in, reach) // self.down) * self.down
        self.buf = np.zeros(0, dtype=np.float32)
        self.origin = 0  # stream index (input samples) of buf[0]
        self.emitted = 0  # input samples whose output has been returned

    def _resample(self, end: int) -> bytes:
        """Output for input [self.emitted, end) (``end`` a multiple of ``down`` or the stream's end)."""
        from scipy.signal import resample_poly

        y = resample_poly(self.buf, self.up, self.down)
        lo = (self.emitted - self.origin) * self.up // self.down
        hi = -(-(end - self.origin) * self.up // self.down)
        self.emitted = end
        return np.clip(np.round(y[lo:hi]), -32768, 32767).astype("<i2").tobytes()

    def feed(self, pcm: bytes) -> bytes:
        if self.up == self.down:
            return pcm
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        if x.size == 0:
            return b""
        self.buf = np.concatenate([self.buf, x])
        total = self.origin + self.buf.size
        safe = (total - self.context) // self.down * self.down
        if safe <= self.emitted:
            return b""
        out = self._resample(safe)
        keep_from = max(self.origin, (self.emitted - self.context) // self.down * self.down)
        self.buf = self.buf[keep_from - self.origin :]
        self.origin = keep_from
        return out

    def flush(self) -> bytes:
        """The rest of the stream; the resampler starts afresh afterwards."""
        if self.up == self.down or self.buf.size == 0:
            self.buf, self.origin, self.emitted = np.zeros(0, dtype=np.float32), 0, 0
            return b""
        out = self._resample(self.origin + self.buf.size)
        self.buf, self.origin, self.emitted = np.zeros(0, dtype=np.float32), 0, 0
        return out
