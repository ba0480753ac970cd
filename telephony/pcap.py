"""A libpcap file of one RTP stream, written in pure Python, for sipp's ``play_pcap_audio``.

8 kHz 16-bit mono PCM → G.711 (``assistant.audio.g711``, A-law = payload type 8 by default) → 20 ms RTP packets
(160 payload bytes) in UDP/IPv4/Ethernet frames, one pcap record per packet, 20 ms apart.

What sipp needs (``prepare_pcap.c`` / ``send_packets.c``): link type Ethernet (1) or Linux cooked, IPv4 or
IPv6, UDP; it keeps each UDP datagram (header + RTP, length from the UDP header), replaces the ports with the
call's media ports (the lowest destination port in the file maps to the remote media port) and sends the
packets as far apart as their pcap timestamps. RTP headers go out unchanged: sequence numbers and timestamps
must be right in the file, and a file played twice in one call repeats them (a receiver drops the repeat as
late packets) — so write one file that covers the whole call instead of replaying a short one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from telephony.rtp import CODEC_PT, FRAME_MS, FRAME_SAMPLES, RtpPacketizer, encode

PT_PCMU = CODEC_PT["PCMU"]
PT_PCMA = CODEC_PT["PCMA"]
_CODEC_OF_PT = {pt: codec for codec, pt in CODEC_PT.items()}

_PCAP_MAGIC = 0xA1B2C3D4  # microsecond timestamps
_LINKTYPE_ETHERNET = 1
_ETH = struct.Struct("!6s6sH")
_IP = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_RTP = struct.Struct("!BBHII")


@dataclass(frozen=True)
class RtpRecord:
    """One packet read back from a pcap file (``read_rtp_pcap``)."""

    time_us: int  # pcap timestamp, microseconds since the epoch
    src: str
    dst: str
    sport: int
    dport: int
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes


def _ip_checksum(header: bytes) -> int:
    s = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ip4(addr: str) -> bytes:
    return bytes(int(p) for p in addr.split("."))


def _udp_checksum(src: bytes, dst: bytes, udp: bytes) -> int:
    pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
    data = pseudo + udp + (b"\x00" if len(udp) % 2 else b"")
    c = _ip_checksum(data)
    return c or 0xFFFF


def encode_frames(pcm8k: bytes, *, payload_type: int = PT_PCMA) -> list[bytes]:
    """8 kHz PCM16 → G.711 payloads of 20 ms; the last frame is padded with silence."""
    if payload_type not in _CODEC_OF_PT:
        raise ValueError(f"payload type {payload_type}: only PCMU (0) and PCMA (8)")
    n = FRAME_SAMPLES * 2
    if len(pcm8k) % 2:
        pcm8k = pcm8k[:-1]
    if len(pcm8k) % n:
        pcm8k += b"\x00" * (n - len(pcm8k) % n)
    coded = encode(_CODEC_OF_PT[payload_type], pcm8k)
    return [coded[i : i + FRAME_SAMPLES] for i in range(0, len(coded), FRAME_SAMPLES)]


def rtp_pcap_bytes(
    pcm8k: bytes,
    *,
    payload_type: int = PT_PCMA,
    ssrc: int = 0x454C4445,
    first_seq: int = 1000,
    first_timestamp: int = 8000,
    start_time_us: int = 1_700_000_000_000_000,
    src: tuple[str, int] = ("10.0.0.1", 6000),
    dst: tuple[str, int] = ("10.0.0.2", 6000),
) -> bytes:
    """The pcap file (as bytes) of one continuous RTP stream carrying ``pcm8k`` (8 kHz mono PCM16).

    Every 20 ms frame becomes one packet (silence included, as a phone without silence suppression sends);
    sequence numbers and RTP timestamps wrap at 16 / 32 bits; the marker bit is set on the first packet.
    """
    src_ip, dst_ip = _ip4(src[0]), _ip4(dst[0])
    out = [struct.pack("<IHHiIII", _PCAP_MAGIC, 2, 4, 0, 0, 65535, _LINKTYPE_ETHERNET)]
    eth = _ETH.pack(b"\x02\x00\x00\x00\x00\x02", b"\x02\x00\x00\x00\x00\x01", 0x0800)
    # the gateway's own packetizer: +1 / +160 per frame, marker on the first packet of the talkspurt
    packetizer = RtpPacketizer(payload_type=payload_type, ssrc=ssrc, seq=first_seq, timestamp=first_timestamp)
    for i, payload in enumerate(encode_frames(pcm8k, payload_type=payload_type)):
        rtp = packetizer.audio(payload)
        udp_len = _UDP.size + len(rtp)
        udp = _UDP.pack(src[1], dst[1], udp_len, 0) + rtp
        udp = udp[:6] + struct.pack("!H", _udp_checksum(src_ip, dst_ip, udp)) + udp[8:]
        total = _IP.size + udp_len
        ip = _IP.pack(0x45, 0xB8, total, i & 0xFFFF, 0x4000, 64, 17, 0, src_ip, dst_ip)
        ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
        frame = eth + ip + udp
        t = start_time_us + i * FRAME_MS * 1000
        out.append(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)))
        out.append(frame)
    return b"".join(out)


def write_rtp_pcap(path: str | Path, pcm8k: bytes, **kwargs) -> Path:
    """Write ``rtp_pcap_bytes(pcm8k, **kwargs)`` to ``path`` (blocking: call it in a thread from async code)."""
    path = Path(path)
    path.write_bytes(rtp_pcap_bytes(pcm8k, **kwargs))
    return path


def read_rtp_pcap(data: bytes) -> list[RtpRecord]:
    """Parse a pcap of Ethernet/IPv4/UDP/RTP packets (ours, or e.g. Debian's ``g711a.pcap``); checks the
    IPv4 header checksum and the lengths, raises ``ValueError`` on anything else."""
    magic, major, _minor, _tz, _sig, _snap, link = struct.unpack_from("<IHHiIII", data, 0)
    if magic != _PCAP_MAGIC or major != 2 or link != _LINKTYPE_ETHERNET:
        raise ValueError(f"not a little-endian µs Ethernet pcap (magic {magic:#x}, link {link})")
    off, records = 24, []
    while off < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
        off += 16
        if incl != orig or off + incl > len(data):
            raise ValueError(f"truncated packet at byte {off}")
        frame = data[off : off + incl]
        off += incl
        _dmac, _smac, ethertype = _ETH.unpack_from(frame, 0)
        if ethertype != 0x0800:
            raise ValueError(f"ethertype {ethertype:#x}, not IPv4")
        ihl = (frame[14] & 0x0F) * 4
        vihl, _tos, total, _id, _frag, _ttl, proto, _ck, s, d = _IP.unpack_from(frame, 14)
        if vihl >> 4 != 4 or proto != 17 or total != len(frame) - 14 or _ip_checksum(frame[14 : 14 + ihl]) != 0:
            raise ValueError("bad IPv4 header")
        sport, dport, ulen, _uck = _UDP.unpack_from(frame, 14 + ihl)
        udp = frame[14 + ihl :]
        if ulen != len(udp):
            raise ValueError("UDP length does not match the frame")
        b0, b1, seq, ts, ssrc = _RTP.unpack_from(udp, 8)
        if b0 >> 6 != 2:
            raise ValueError("not RTP version 2")
        header = 8 + _RTP.size + 4 * (b0 & 0x0F)
        records.append(RtpRecord(
            time_us=sec * 1_000_000 + usec, src=".".join(map(str, s)), dst=".".join(map(str, d)), sport=sport,
            dport=dport, payload_type=b1 & 0x7F, marker=bool(b1 & 0x80), seq=seq, timestamp=ts, ssrc=ssrc,
            payload=udp[header:],
        ))
    return records
