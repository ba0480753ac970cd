"""telephony.pcap: the RTP pcap writer read back (headers, 20 ms PCMA frames, monotone seq / timestamps)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from assistant.audio import g711
from telephony.pcap import FRAME_SAMPLES, PT_PCMA, PT_PCMU, read_rtp_pcap, rtp_pcap_bytes, write_rtp_pcap

DEBIAN_PCAP = Path("/usr/share/sip-tester/g711a.pcap")


def speech_like(seconds: float, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (x * 32767).astype("<i2").tobytes()


def test_round_trip_headers_payloads_and_timing(tmp_path):
    pcm = speech_like(1.01)  # 50.5 frames: the last one padded
    path = write_rtp_pcap(tmp_path / "a.pcap", pcm, first_seq=65530, first_timestamp=0xFFFFFF00,
                          src=("192.0.2.1", 7000), dst=("192.0.2.2", 6000), start_time_us=5_999_990)
    data = path.read_bytes()
    magic, major, minor, _tz, _sig, snaplen, link = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor, snaplen, link) == (0xA1B2C3D4, 2, 4, 65535, 1)
    recs = read_rtp_pcap(data)
    assert len(recs) == 51
    assert all(len(r.payload) == FRAME_SAMPLES == 160 for r in recs)
    assert {r.payload_type for r in recs} == {PT_PCMA}
    assert [r.marker for r in recs[:2]] == [True, False] and not any(r.marker for r in recs[1:])
    assert {(r.src, r.sport, r.dst, r.dport) for r in recs} == {("192.0.2.1", 7000, "192.0.2.2", 6000)}
    assert len({r.ssrc for r in recs}) == 1
    # sequence numbers +1 and RTP timestamps +160 per packet, modulo 2^16 / 2^32 (both wrap here)
    assert all((b.seq - a.seq) % 65536 == 1 for a, b in zip(recs, recs[1:], strict=False))
    assert all((b.timestamp - a.timestamp) % 2**32 == 160 for a, b in zip(recs, recs[1:], strict=False))
    assert recs[0].seq == 65530 and recs[10].seq == 4
    # pcap timestamps 20 ms apart (across a second boundary)
    assert recs[0].time_us == 5_999_990
    assert all(b.time_us - a.time_us == 20_000 for a, b in zip(recs, recs[1:], strict=False))
    # the audio comes back (A-law is lossy but close), the padding is silence
    back = np.frombuffer(g711.alaw_decode(b"".join(r.payload for r in recs)), dtype="<i2")
    ref = np.frombuffer(pcm, dtype="<i2")
    assert np.max(np.abs(back[: len(ref)].astype(int) - ref)) < 0.04 * 32768
    assert np.all(np.abs(back[len(ref) :]) <= 8)


def test_udp_checksum_is_valid():
    recs_bytes = rtp_pcap_bytes(speech_like(0.04))
    frame = recs_bytes[24 + 16 : 24 + 16 + 14 + 20 + 8 + 12 + 160]
    ip, udp = frame[14:34], frame[34:]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(udp))
    s = sum(struct.unpack(f"!{(len(pseudo) + len(udp)) // 2}H", pseudo + udp))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    assert s == 0xFFFF


def test_pcmu_and_bad_payload_type():
    recs = read_rtp_pcap(rtp_pcap_bytes(speech_like(0.1), payload_type=PT_PCMU))
    assert {r.payload_type for r in recs} == {PT_PCMU} and len(recs) == 5
    with pytest.raises(ValueError):
        rtp_pcap_bytes(b"\x00\x00" * 160, payload_type=18)


def test_reader_agrees_with_debians_capture():
    if not DEBIAN_PCAP.exists():
        pytest.skip("sip-tester's g711a.pcap missing")
    recs = read_rtp_pcap(DEBIAN_PCAP.read_bytes())
    assert len(recs) > 200 and {r.payload_type for r in recs} == {8} and {len(r.payload) for r in recs} == {240}
    assert all((b.seq - a.seq) % 65536 == 1 for a, b in zip(recs, recs[1:], strict=False))


def test_reader_rejects_garbage():
    with pytest.raises(ValueError):
        read_rtp_pcap(b"\x00" * 40)


def test_bench_caps_pauses_inside_an_utterance_only():
    from telephony.bench import cap_inner_pauses

    def voiced(s):
        return speech_like(s)

    def quiet(s):
        return b"\x00\x00" * int(s * 8000)

    pcm = quiet(0.5) + voiced(0.4) + quiet(0.8) + voiced(0.4) + quiet(0.1) + voiced(0.2) + quiet(0.6)
    out = cap_inner_pauses(pcm, max_pause_s=0.3)
    assert len(out) == len(pcm) - int(0.5 * 8000) * 2  # only the 0.8 s pause shrank, to 0.3 s
    assert out[: int(0.5 * 8000) * 2] == quiet(0.5) and out.endswith(quiet(0.6))
    assert cap_inner_pauses(quiet(1.0)) == quiet(1.0)
