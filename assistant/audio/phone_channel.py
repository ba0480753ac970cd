"""Simulated telephone channel: band-pass 300–3400 Hz, 8 kHz, G.711, optional packet loss.

Used by ``--phone`` in ``simulate`` and the evaluation commands so that clean recordings are heard the way
a landline delivers them. Output comes back at the caller's rate (the pipeline rate), like a gateway would
deliver it after decoding.
"""

from __future__ import annotations

import numpy as np

from assistant.audio import g711
from assistant.audio.convert import PcmAudio, resample_pcm16

PHONE_RATE_HZ = 8000
PACKET_MS = 20


def phone_channel(
    audio: PcmAudio,
    *,
    law: str = "ulaw",
    packet_loss: float = 0.0,
    seed: int = 0,
    out_rate_hz: int | None = None,
) -> PcmAudio:
    """Pass ``audio`` through an 8 kHz G.711 line; lost 20 ms packets become silence (no concealment)."""
    from scipy.signal import butter, sosfilt

    narrow = resample_pcm16(audio.pcm, from_hz=audio.sample_rate_hz, to_hz=PHONE_RATE_HZ)
    x = np.frombuffer(narrow, dtype="<i2").astype(np.float32)
    sos = butter(4, [300, 3400], btype="bandpass", fs=PHONE_RATE_HZ, output="sos")
    x = np.clip(np.round(sosfilt(sos, x)), -32768, 32767).astype("<i2")
    encode, decode = (g711.ulaw_encode, g711.ulaw_decode) if law == "ulaw" else (g711.alaw_encode, g711.alaw_decode)
    line = bytearray(encode(x.tobytes()))
    if packet_loss > 0:
        rng = np.random.default_rng(seed)
        n = PHONE_RATE_HZ * PACKET_MS // 1000
        silence = encode(b"\x00\x00" * n)
        for start in range(0, len(line), n):
            if rng.random() < packet_loss:
                end = min(start + n, len(line))
                line[start:end] = silence[: end - start]
    pcm8 = decode(bytes(line))
    rate = out_rate_hz or audio.sample_rate_hz
    return PcmAudio(pcm=resample_pcm16(pcm8, from_hz=PHONE_RATE_HZ, to_hz=rate), sample_rate_hz=rate)
