"""G.711 µ-law and A-law with numpy lookup tables (no ``audioop``: it is gone in Python 3.13).

Bit-exact with ``audioop.lin2ulaw``/``ulaw2lin`` and ``lin2alaw``/``alaw2lin`` for 16-bit samples.
"""

from __future__ import annotations

import numpy as np


def _ulaw_decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


def _ulaw_encode_table() -> np.ndarray:
    # index: 14-bit magnitude-biased value of every int16 >> 2, computed like audioop's st_14linear2ulaw
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    pcm = np.where(pcm < 0, -pcm, pcm)
    pcm = np.minimum(pcm, 8159) + (0x84 >> 2)
    seg = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), pcm)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((pcm >> (seg + 1)) & 0x0F))
    return (code ^ mask).astype(np.uint8)


def _alaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    pcm = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]), pcm)
    aval = np.where(seg < 2, (pcm >> 1) & 0x0F, (pcm >> seg) & 0x0F) | (seg << 4)
    code = np.where(seg >= 8, 0x7F, aval)
    return (code ^ mask).astype(np.uint8)


_ULAW_DEC = _ulaw_decode_table()
_ALAW_DEC = _alaw_decode_table()
_ULAW_ENC = _ulaw_encode_table()
_ALAW_ENC = _alaw_encode_table()


def _index(pcm16: bytes) -> np.ndarray:
    return np.frombuffer(pcm16, dtype="<i2").astype(np.int32) + 32768


def ulaw_encode(pcm16: bytes) -> bytes:
    """16-bit little-endian PCM → µ-law bytes (one byte per sample)."""
    return _ULAW_ENC[_index(pcm16)].tobytes()


def ulaw_decode(data: bytes) -> bytes:
    return _ULAW_DEC[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def alaw_encode(pcm16: bytes) -> bytes:
    return _ALAW_ENC[_index(pcm16)].tobytes()


def alaw_decode(data: bytes) -> bytes:
    return _ALAW_DEC[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()
