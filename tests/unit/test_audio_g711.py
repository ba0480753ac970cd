import numpy as np

from assistant.audio import g711


def test_ulaw_roundtrip_is_close_for_speech_levels():
    x = (np.sin(np.linspace(0, 200, 8000)) * 12000).astype("<i2").tobytes()
    y = np.frombuffer(g711.ulaw_decode(g711.ulaw_encode(x)), dtype="<i2").astype(int)
    err = np.abs(y - np.frombuffer(x, dtype="<i2"))
    assert err.max() < 12000 * 0.05


def test_alaw_sign_is_preserved():
    x = np.array([-20000, -100, 100, 20000], dtype="<i2").tobytes()
    y = np.frombuffer(g711.alaw_decode(g711.alaw_encode(x)), dtype="<i2")
    assert list(np.sign(y)) == [-1, -1, 1, 1]


def test_matches_reference_tables():
    # values from ITU-T G.711 / audioop: µ-law 0 → 0xFF, A-law 0 → 0xD5
    assert g711.ulaw_encode(b"\x00\x00") == b"\xff"
    assert g711.alaw_encode(b"\x00\x00") == b"\xd5"
    assert g711.ulaw_decode(b"\x00") == np.array([-32124], dtype="<i2").tobytes()
