"""Pure parts of the RTP layer: jitter buffer, packetizer, DTMF detection, streaming resampler, SDP."""

from __future__ import annotations

import numpy as np
import pytest
from aiortp import DtmfEvent, RtpPacket
from aiosipua import parse_sdp

from assistant.audio.stream_resample import StreamResampler
from assistant.errors import TelephonyError
from telephony.rtp import FRAME_SAMPLES, DtmfDetector, JitterBuffer, RtpPacketizer
from telephony.sdp import answer_for, build_sdp_text, read_media


def seqs(outs):
    return [(o.seq, o.lost) for o in outs]


def test_jitter_in_order_passes_straight_through():
    jb = JitterBuffer(max_reorder_frames=3)
    out = []
    for s in range(10, 15):
        got = jb.put(s, bytes([s]))
        assert len(got) == 1  # no added delay
        out += got
    assert [o.payload for o in out] == [bytes([s]) for s in range(10, 15)]


def test_jitter_reorders_within_window():
    jb = JitterBuffer(max_reorder_frames=3)
    out = jb.put(1, b"a") + jb.put(3, b"c") + jb.put(2, b"b") + jb.put(4, b"d")
    assert seqs(out) == [(1, False), (2, False), (3, False), (4, False)]
    assert jb.stats.lost == 0


def test_jitter_declares_loss_after_window_and_drops_late():
    jb = JitterBuffer(max_reorder_frames=2)
    out = jb.put(1, b"a") + jb.put(3, b"c") + jb.put(4, b"d") + jb.put(5, b"e")
    assert seqs(out) == [(1, False), (2, True), (3, False), (4, False), (5, False)]
    assert jb.put(2, b"b") == []  # too late now
    assert jb.stats.late == 1 and jb.stats.lost == 1


def test_jitter_wraps_sequence_numbers_and_resyncs_on_jump():
    jb = JitterBuffer(max_reorder_frames=3, capacity_frames=50)
    out = jb.put(65534, b"x") + jb.put(65535, b"y") + jb.put(0, b"z")
    assert seqs(out) == [(65534, False), (65535, False), (0, False)]
    out = jb.put(3000, b"new")  # sender restarted far ahead
    assert seqs(out) == [(3000, False)] and jb.stats.resyncs == 1
    assert jb.put(3000, b"new") == [] and jb.stats.late == 1


def test_packetizer_advances_seq_and_timestamp_per_20ms_slot():
    p = RtpPacketizer(payload_type=0, ssrc=7, seq=65535, timestamp=2**32 - 160)
    a = RtpPacket.parse(p.audio(bytes(160), speech=True))
    b = RtpPacket.parse(p.audio(bytes(160), speech=True))
    c = RtpPacket.parse(p.audio(bytes(160), speech=False))
    assert (a.sequence_number, b.sequence_number, c.sequence_number) == (65535, 0, 1)
    assert (b.timestamp - a.timestamp) % 2**32 == FRAME_SAMPLES
    assert a.marker == 1 and b.marker == 0 and c.marker == 0  # marker only at talkspurt start
    assert a.ssrc == 7 and a.payload_type == 0


def test_dtmf_detector_reports_each_digit_once_even_without_end_packets():
    d = DtmfDetector()
    start = DtmfEvent(event=2, end=False, volume=10, duration=160).serialize()
    end = DtmfEvent(event=2, end=True, volume=10, duration=800).serialize()
    got = [d.feed(timestamp=1000, payload=start), d.feed(timestamp=1000, payload=start), d.feed(timestamp=1000, payload=end)]
    assert got == ["2", None, None]
    assert d.feed(timestamp=5000, payload=DtmfEvent(event=11, end=False, volume=10, duration=160).serialize()) == "#"
    assert d.feed(timestamp=9000, payload=b"\x01") is None  # truncated payload


def test_stream_resampler_matches_one_shot_without_frame_edge_clicks():
    rate_in = 8000
    t = np.arange(rate_in) / rate_in
    x = (np.sin(2 * np.pi * 440 * t) * 10000).astype("<i2")
    r = StreamResampler(from_hz=8000, to_hz=16000, context_in=0)  # the phone line's: 20 ms frames, 1.4 ms held back
    chunks = b"".join(r.feed(x[i : i + 160].tobytes()) for i in range(0, len(x), 160)) + r.flush()
    y = np.frombuffer(chunks, dtype="<i2").astype(float)
    assert len(y) == 2 * len(x)
    ref = np.sin(2 * np.pi * 440 * (np.arange(len(y)) / 16000))
    # after the filter's delay the output is the same sine (no 50 Hz buzz from frame edges)
    delay = np.argmax([np.dot(y[400:4400], ref[400 - k : 4400 - k]) for k in range(0, 40)])
    err = y[400:4400] / 10000 - ref[400 - delay : 4400 - delay]
    assert np.sqrt(np.mean(err**2)) < 0.02


SDP_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 8 0 96\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\na=sendrecv\r\n"
)


def test_sdp_answer_keeps_offer_order_and_telephone_event_type():
    plan = read_media(parse_sdp(SDP_OFFER))
    assert plan.codec == "PCMA" and plan.dtmf_payload_type == 96 and plan.remote_addr == ("127.0.0.1", 40000)
    ans = answer_for(plan, ip="127.0.0.1", port=20000)
    assert ans.audio.formats == ["8", "96"] and ans.audio.direction == "sendrecv"


def test_sdp_hold_and_no_codec():
    held = read_media(parse_sdp(SDP_OFFER.replace("a=sendrecv", "a=sendonly")))
    assert held.on_hold and answer_for(held, ip="127.0.0.1", port=2).audio.direction == "recvonly"
    with pytest.raises(TelephonyError) as exc:
        read_media(parse_sdp(build_sdp_text(ip="127.0.0.1", port=5, codecs=("PCMU",)).replace("RTP/AVP 0 101", "RTP/AVP 18 101").replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000")))
    assert exc.value.code == "sdp_no_codec"


def test_rtp_gap_is_filled_with_silence_on_our_clock():
    from telephony.rtp import PortAllocator, RtpStream

    s = RtpStream(host="127.0.0.1", remote_addr=("127.0.0.1", 9), codec="PCMU", dtmf_payload_type=101, ports=PortAllocator(port_min=40000, port_max=40010))
    got = []
    s.on_audio = got.append
    s._fill_gap(100.0)
    assert got == []  # nothing received yet: nothing to fill
    s._last_rx = 100.0
    s._fill_gap(100.05)
    assert got == []  # a short gap is jitter, not silence
    for i in range(5):
        s._fill_gap(100.1 + 0.02 * i)
    assert len(got) == 5 and all(f == bytes(320) for f in got) and s.stats.gap_filled == 5


def _rtp(seq: int, *, ssrc: int = 0x1234, pt: int = 0) -> bytes:
    from aiortp import RtpPacket

    return RtpPacket(payload_type=pt, marker=0, sequence_number=seq, timestamp=seq * 160, ssrc=ssrc, payload=bytes([0xFF]) * 160).serialize()


def _stream(remote=("127.0.0.1", 40000)):
    from telephony.rtp import PortAllocator, RtpStream

    s = RtpStream(host="127.0.0.1", remote_addr=remote, codec="PCMU", dtmf_payload_type=101, ports=PortAllocator(port_min=40000, port_max=40010))
    got = []
    s.on_audio = got.append
    return s, got


def test_rtp_latches_to_the_sdp_ip_only_and_drops_foreign_senders():
    """Issue #15: RTP from anyone but the negotiated peer is neither played nor redirects our media."""
    s, got = _stream()
    s._on_rtp(_rtp(1), ("192.0.2.66", 40000))  # an attacker, before the peer's first packet
    assert got == [] and s.remote_addr == ("127.0.0.1", 40000) and s.stats.foreign_packets == 1
    s._on_rtp(_rtp(2), ("127.0.0.1", 40002))  # the peer behind NAT: same IP, another port → latched
    assert len(got) == 1 and s.remote_addr == ("127.0.0.1", 40002)
    s._on_rtp(_rtp(3), ("127.0.0.1", 40000))  # once latched, no other port, not even the SDP's
    s._on_rtp(_rtp(4), ("192.0.2.66", 40002))
    assert len(got) == 1 and s.remote_addr == ("127.0.0.1", 40002) and s.stats.foreign_packets == 3
    s._on_rtp(_rtp(3), ("127.0.0.1", 40002))  # the peer goes on: the dropped packets took no slot
    assert len(got) >= 2 and s.stats.packets_in == 2


def test_rtp_locks_to_the_first_ssrc_while_it_talks(monkeypatch):
    s, got = _stream()
    s._on_rtp(_rtp(10, ssrc=1), ("127.0.0.1", 40000))
    s._on_rtp(_rtp(500, ssrc=2), ("127.0.0.1", 40000))  # spoofed source, other SSRC: injected speech
    assert len(got) == 1 and s.stats.foreign_ssrc == 1
    monkeypatch.setattr("telephony.rtp.SSRC_SWITCH_AFTER_S", 0.0)  # the first sender went quiet: a restart
    s._on_rtp(_rtp(600, ssrc=2), ("127.0.0.1", 40000))  # (a new SSRC restarts the jitter buffer)
    assert len(got) == 2


def test_rtp_without_a_known_peer_accepts_nothing_and_a_new_sdp_address_relatches():
    from telephony.sdp import MediaPlan

    s, got = _stream(remote=("0.0.0.0", 0))  # late offer: bound before the ACK names the peer
    s._on_rtp(_rtp(1), ("127.0.0.1", 40000))
    assert got == [] and s.stats.foreign_packets == 1
    plan = MediaPlan(remote_addr=("127.0.0.1", 40000), codec="PCMU", payload_type=0, dtmf_payload_type=101, direction="sendrecv")
    s.configure(plan)
    s._on_rtp(_rtp(2), ("127.0.0.1", 40000))
    assert len(got) == 1
    s.configure(plan)  # a re-INVITE with the same address keeps the latch
    s.configure(MediaPlan(**{**plan.__dict__, "remote_addr": ("127.0.0.2", 41000)}))  # a moved media server
    s._on_rtp(_rtp(3), ("127.0.0.1", 40000))
    assert len(got) == 1 and s.remote_addr == ("127.0.0.2", 41000)


async def test_rtp_ports_are_drawn_at_random():
    from telephony.rtp import PortAllocator

    ports = PortAllocator(port_min=41000, port_max=41400)
    bound = []
    try:
        for _ in range(6):
            port, rtp, rtcp = await ports.bind("127.0.0.1", lambda d, a: None, lambda d, a: None)
            bound.append((port, rtp, rtcp))
    finally:
        for _, rtp, rtcp in bound:
            rtp.close()
            rtcp.close()
    got = [p for p, _, _ in bound]
    assert all(p % 2 == 0 and 41000 <= p < 41400 for p in got) and len(set(got)) == 6
    assert got != sorted(got) or got[-1] - got[0] > 10  # not handed out in order from the bottom
