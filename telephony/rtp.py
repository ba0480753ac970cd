"""RTP media for one call: G.711 (our bit-exact tables), RFC 4733 telephone-events, a small jitter buffer,
one 20 ms packet per 20 ms on a monotonic clock, symmetric RTP latched to the negotiated address.

Media security (issue #15): a stream sends only to the address the SDP named, or to the port its first
packets came from on that same IP (symmetric RTP behind NAT), and accepts packets only from that latched
address and the first sender's SSRC; anything else is dropped and counted (``MediaStats.foreign_packets``,
``foreign_ssrc``). Ports are drawn at random from the configured range.

aiortp provides the packet format (``RtpPacket``) and the telephone-event payload (``DtmfEvent``); the
jitter buffer, the pacing and the codec are ours: aiortp's A-law has its sign bit inverted and its jitter
buffer copes poorly with reordering (see ``/work/shared/notes/stack-facts.md``).

Pure parts (``JitterBuffer``, ``RtpPacketizer``, ``DtmfDetector``) are unit-tested without sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortp import DtmfEvent, RtpPacket
from aiortp.dtmf import DTMF_EVENTS

from assistant.audio import g711
from assistant.errors import TelephonyError

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 8000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE_HZ * FRAME_MS // 1000  # 160
FRAME_BYTES_PCM16 = FRAME_SAMPLES * 2  # 320
CODEC_PT = {"PCMU": 0, "PCMA": 8}
MAX_CONCEALED_FRAMES = 5
GAP_FILL_AFTER_S = 0.08  # no packet for this long → silence frames on our clock
# a new SSRC from the latched address is taken over only after the current one was silent this long (a
# restarted sender); while it is still talking, a second SSRC is an injection and dropped
SSRC_SWITCH_AFTER_S = 0.3
_UNSPECIFIED = "0.0.0.0"
_rng = secrets.SystemRandom()


def _seq_diff(a: int, b: int) -> int:
    """Signed distance a - b on the 16-bit sequence-number circle."""
    d = (a - b) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d


@dataclass(frozen=True, kw_only=True)
class JitterOutput:
    """One 20 ms slot leaving the jitter buffer: a payload, or ``lost`` when the packet never came."""

    seq: int
    payload: bytes = b""
    lost: bool = False


@dataclass(kw_only=True)
class JitterStats:
    received: int = 0
    delivered: int = 0
    lost: int = 0
    late: int = 0
    duplicate: int = 0
    resyncs: int = 0


class JitterBuffer:
    """Arrival-driven reordering buffer (no added delay when packets come in order).

    A packet that is early is held until the gap before it is filled, or until more than
    ``max_reorder_frames`` packets wait behind the gap: the missing ones are then declared lost (the caller
    conceals them). Late and duplicate packets are dropped. A jump of more than ``capacity_frames`` (a
    restarted sender) resynchronises without reporting a burst of losses.
    """

    def __init__(self, *, max_reorder_frames: int = 3, capacity_frames: int = 50) -> None:
        self.max_reorder_frames = max_reorder_frames
        self.capacity_frames = capacity_frames
        self._expected: int | None = None
        self._held: dict[int, bytes] = {}
        self.stats = JitterStats()

    def reset(self) -> None:
        self._expected = None
        self._held.clear()

    def put(self, seq: int, payload: bytes) -> list[JitterOutput]:
        self.stats.received += 1
        if self._expected is None:
            self._expected = seq
        d = _seq_diff(seq, self._expected)
        if d < 0:
            self.stats.late += 1
            return []
        if d > self.capacity_frames:
            self.stats.resyncs += 1
            self._held.clear()
            self._expected = seq
            d = 0
        if seq in self._held:
            self.stats.duplicate += 1
            return []
        self._held[seq] = payload
        out = self._drain()
        if len(self._held) > self.max_reorder_frames:
            # give up on the gap: declare the missing slots lost up to the oldest held packet
            oldest = min(self._held, key=lambda s: _seq_diff(s, self._expected))
            while self._expected != oldest:
                out.append(JitterOutput(seq=self._expected, lost=True))
                self.stats.lost += 1
                self._expected = (self._expected + 1) & 0xFFFF
            out.extend(self._drain())
        return out

    def _drain(self) -> list[JitterOutput]:
        out = []
        while self._expected in self._held:
            out.append(JitterOutput(seq=self._expected, payload=self._held.pop(self._expected)))
            self.stats.delivered += 1
            self._expected = (self._expected + 1) & 0xFFFF
        return out


class RtpPacketizer:
    """Sequence numbers and timestamps for our outgoing stream: +1 and +160 per 20 ms slot, silence included."""

    def __init__(self, *, payload_type: int, ssrc: int | None = None, seq: int | None = None, timestamp: int | None = None):
        self.payload_type = payload_type
        self.ssrc = ssrc if ssrc is not None else random.getrandbits(32)
        self.seq = seq if seq is not None else random.getrandbits(16)
        self.timestamp = timestamp if timestamp is not None else random.getrandbits(32)
        self._talking = False

    def audio(self, payload: bytes, *, speech: bool = True) -> bytes:
        marker = 1 if speech and not self._talking else 0
        self._talking = speech
        pkt = RtpPacket(payload_type=self.payload_type, marker=marker, sequence_number=self.seq, timestamp=self.timestamp, ssrc=self.ssrc, payload=payload)
        self.seq = (self.seq + 1) & 0xFFFF
        self.timestamp = (self.timestamp + len(payload)) & 0xFFFFFFFF
        return pkt.serialize()

    def event(self, *, payload_type: int, event: DtmfEvent, timestamp: int, marker: bool) -> bytes:
        pkt = RtpPacket(payload_type=payload_type, marker=int(marker), sequence_number=self.seq, timestamp=timestamp, ssrc=self.ssrc, payload=event.serialize())
        self.seq = (self.seq + 1) & 0xFFFF
        return pkt.serialize()

    def skip_slot(self) -> None:
        """A 20 ms slot spent on a telephone-event packet: the audio clock still advances."""
        self.timestamp = (self.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF


class DtmfDetector:
    """RFC 4733: report each digit once, on the first packet of its event (robust to lost end packets)."""

    def __init__(self) -> None:
        self._seen: set[tuple[int, int]] = set()
        self._order: list[tuple[int, int]] = []

    def feed(self, *, timestamp: int, payload: bytes) -> str | None:
        try:
            ev = DtmfEvent.parse(payload)
        except ValueError:
            return None
        if ev.event not in range(16):
            return None
        key = (timestamp, ev.event)
        if key in self._seen:
            return None
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > 64:
            self._seen.discard(self._order.pop(0))
        return ev.digit


def encode(codec: str, pcm16: bytes) -> bytes:
    return g711.ulaw_encode(pcm16) if codec == "PCMU" else g711.alaw_encode(pcm16)


def decode(codec: str, data: bytes) -> bytes:
    return g711.ulaw_decode(data) if codec == "PCMU" else g711.alaw_decode(data)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr) -> None:
        self._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable while the peer is gone
        logger.debug("rtp socket error: %s", exc)


class PortAllocator:
    """Even RTP ports from a range, drawn at random (not guessable from the last call's); the odd one
    above each is bound too (RTCP, discarded)."""

    def __init__(self, *, port_min: int, port_max: int) -> None:
        self._ports = list(range(port_min + (port_min % 2), port_max, 2))
        self._used: set[int] = set()

    async def bind(self, host: str, on_rtp, on_rtcp) -> tuple[int, asyncio.DatagramTransport, asyncio.DatagramTransport]:
        loop = asyncio.get_running_loop()
        free = [p for p in self._ports if p not in self._used]
        _rng.shuffle(free)
        for port in free:
            if port in self._used:  # taken by a bind that ran while we awaited
                continue
            try:
                rtp, _ = await loop.create_datagram_endpoint(lambda: _Protocol(on_rtp), local_addr=(host, port))
            except OSError:
                continue
            try:
                rtcp, _ = await loop.create_datagram_endpoint(lambda: _Protocol(on_rtcp), local_addr=(host, port + 1))
            except OSError:
                rtp.close()
                continue
            self._used.add(port)
            return port, rtp, rtcp
        raise TelephonyError(f"no free RTP port on {host} in the configured range", code="rtp_ports_exhausted")

    def release(self, port: int) -> None:
        self._used.discard(port)


@dataclass(kw_only=True)
class MediaStats:
    packets_in: int = 0
    packets_out: int = 0
    bad_packets: int = 0
    foreign_packets: int = 0  # from an address other than the negotiated / latched one: dropped
    foreign_ssrc: int = 0  # from the right address but another sender's SSRC: dropped
    dtmf_in: int = 0
    late_ticks: int = 0
    gap_filled: int = 0
    jitter: JitterStats = field(default_factory=JitterStats)


class RtpStream:
    """One call's audio both ways. ``on_audio`` gets 20 ms of 8 kHz PCM16 per packet (lost ones concealed);
    ``play`` queues 8 kHz PCM16; a monotonic 20 ms clock sends one packet per slot (silence when idle)."""

    def __init__(
        self,
        *,
        host: str,
        remote_addr: tuple[str, int],
        codec: str,
        dtmf_payload_type: int | None,
        ports: PortAllocator,
        max_reorder_frames: int = 3,
        symmetric: bool = True,
    ) -> None:
        if codec not in CODEC_PT:
            raise TelephonyError(f"unsupported codec {codec}", code="codec_unsupported")
        self.host = host
        self.remote_addr = remote_addr
        self.codec = codec
        self.dtmf_payload_type = dtmf_payload_type
        self.symmetric = symmetric
        self.on_audio: Callable[[bytes], None] | None = None
        self.on_dtmf: Callable[[str], None] | None = None
        self.stats = MediaStats()
        self.port = 0
        self.sending = True  # False while the peer holds the call
        self._ports = ports
        self._jitter = JitterBuffer(max_reorder_frames=max_reorder_frames)
        self.stats.jitter = self._jitter.stats
        self._dtmf = DtmfDetector()
        self._packetizer = RtpPacketizer(payload_type=CODEC_PT[codec])
        self._remote_ssrc: int | None = None
        self._ssrc_seen_at = 0.0  # when the locked SSRC last sent
        self._sdp_addr = remote_addr  # where the SDP says the far end receives (and sends from)
        self._latched = False
        self.last_packet_at: float | None = None  # monotonic time of the last accepted packet (idle timeout)
        self._out = bytearray()
        self._dtmf_out: list[tuple[DtmfEvent, bool]] = []
        self._dtmf_ts = 0
        self._space = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._clock: asyncio.Task | None = None
        self._last_pcm = bytes(FRAME_BYTES_PCM16)
        self._last_rx: float | None = None  # when audio last reached on_audio

    def configure(self, plan) -> None:
        """Apply a (re-)negotiated ``sdp.MediaPlan``: remote address, codec, telephone-event type, hold."""
        if plan.remote_addr[0] != _UNSPECIFIED and plan.remote_addr != self._sdp_addr:
            # a new (or first) media address: latch afresh to it and to whoever sends from it
            self._sdp_addr = self.remote_addr = plan.remote_addr
            self._latched = False
            self._remote_ssrc = None
        self.codec = plan.codec
        self.dtmf_payload_type = plan.dtmf_payload_type
        self._packetizer.payload_type = CODEC_PT[plan.codec]
        self.sending = not plan.on_hold

    async def bind(self) -> int:
        self.port, self._rtp, self._rtcp = await self._ports.bind(self.host, self._on_rtp, lambda d, a: None)
        return self.port

    def start(self) -> None:
        if self._rtp is None:
            raise TelephonyError("RTP stream started before bind()", code="rtp_not_bound")
        if self.last_packet_at is None:
            self.last_packet_at = time.monotonic()  # the idle clock starts with the media
        if self._clock is None:
            self._clock = asyncio.get_running_loop().create_task(self._run_clock(), name=f"rtp-clock-{self.port}")

    async def close(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
            self._clock = None
        for t in (self._rtp, self._rtcp):
            if t is not None:
                t.close()
        self._rtp = self._rtcp = None
        if self.port:
            self._ports.release(self.port)
        self._drained.set()
        self._space.set()

    # --- receive -------------------------------------------------------------------------------
    def _on_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            if len(data) < 12 or data[0] >> 6 != 2:
                raise ValueError("not RTP")
            pkt = RtpPacket.parse(data)
        except ValueError:
            self.stats.bad_packets += 1
            return
        if 72 <= pkt.payload_type <= 76:  # RTCP on the RTP port (rtcp-mux): not used
            return
        if not self._accept(addr, pkt.ssrc):
            return
        self.stats.packets_in += 1
        if self.dtmf_payload_type is not None and pkt.payload_type == self.dtmf_payload_type:
            digit = self._dtmf.feed(timestamp=pkt.timestamp, payload=pkt.payload)
            # the telephone-event took a sequence number: keep the jitter buffer's order intact
            for out in self._jitter.put(pkt.sequence_number, b""):
                self._deliver(out)
            if digit is not None:
                self.stats.dtmf_in += 1
                if self.on_dtmf is not None:
                    self.on_dtmf(digit)
            return
        if pkt.payload_type != CODEC_PT[self.codec]:
            if pkt.payload_type in (0, 8):  # peer switched between PCMU and PCMA
                self.codec = "PCMU" if pkt.payload_type == 0 else "PCMA"
            else:
                self.stats.bad_packets += 1
                return
        for out in self._jitter.put(pkt.sequence_number, pkt.payload):
            self._deliver(out)

    def _accept(self, addr: tuple[str, int], ssrc: int) -> bool:
        """Only the negotiated peer: its SDP address, or (symmetric RTP, NAT) the first port that sends from
        its IP, latched for the rest of the session; and only one sender (SSRC) at a time."""
        if addr != self.remote_addr:
            if self._latched or not self.symmetric or addr[0] != self._sdp_addr[0] or addr[0] == _UNSPECIFIED:
                self.stats.foreign_packets += 1
                if self.stats.foreign_packets in (1, 100, 10000):
                    logger.info("RTP on port %s from %s:%s dropped: not the call's peer %s:%s (%d so far)", self.port,
                                addr[0], addr[1], self.remote_addr[0], self.remote_addr[1], self.stats.foreign_packets)
                return False
            logger.debug("symmetric RTP: latching %s → %s", self.remote_addr, addr)
            self.remote_addr = addr
        self._latched = True
        now = time.monotonic()
        if ssrc != self._remote_ssrc:
            if self._remote_ssrc is not None and now - self._ssrc_seen_at < SSRC_SWITCH_AFTER_S:
                self.stats.foreign_ssrc += 1
                return False
            self._remote_ssrc = ssrc
            self._jitter.reset()
        self._ssrc_seen_at = now
        self.last_packet_at = now
        return True

    def _deliver(self, out: JitterOutput) -> None:
        if out.lost:
            # conceal: repeat the last frame at half level once, then silence
            pcm = bytes(FRAME_BYTES_PCM16)
            if self._last_pcm:
                import numpy as np

                pcm = (np.frombuffer(self._last_pcm, dtype="<i2") // 2).astype("<i2").tobytes()
                self._last_pcm = b""
        elif not out.payload:  # a telephone-event slot
            return
        else:
            pcm = decode(self.codec, out.payload)
            self._last_pcm = pcm
        self._last_rx = time.monotonic()
        if self.on_audio is not None:
            self.on_audio(pcm)

    def _fill_gap(self, now: float) -> None:
        """The peer stopped sending (silence suppression / DTX, a hold, a dead line): feed silence on our
        clock so the VAD can still end the turn. Resumes as soon as packets arrive again."""
        if self._last_rx is not None and now - self._last_rx > GAP_FILL_AFTER_S:
            self.stats.gap_filled += 1
            self._last_rx = now - GAP_FILL_AFTER_S  # one frame per 20 ms tick from here on
            if self.on_audio is not None:
                self.on_audio(bytes(FRAME_BYTES_PCM16))

    # --- send ----------------------------------------------------------------------------------
    def play(self, pcm16: bytes) -> None:
        """Queue 8 kHz PCM16 for sending (sent from the next 20 ms slot on)."""
        if pcm16:
            self._out.extend(pcm16)
            self._drained.clear()

    @property
    def pending_ms(self) -> float:
        return len(self._out) / 2 / SAMPLE_RATE_HZ * 1000

    def clear_playback(self) -> None:
        """Drop everything queued (barge-in): the next slot is silence."""
        self._out.clear()
        self._drained.set()
        self._space.set()

    async def wait_for_space(self, *, max_pending_ms: float) -> None:
        while self.pending_ms > max_pending_ms and self._clock is not None:
            self._space.clear()
            await self._space.wait()

    async def wait_drained(self) -> None:
        await self._drained.wait()

    def send_dtmf(self, digit: str, *, duration_ms: int = 160) -> None:
        code = DTMF_EVENTS.get(digit.upper())
        if code is None or self.dtmf_payload_type is None:
            raise TelephonyError(f"cannot send DTMF {digit!r} on this call", code="dtmf_unsupported")
        steps = max(1, duration_ms // FRAME_MS)
        events = [(DtmfEvent(event=code, end=False, volume=10, duration=FRAME_SAMPLES * (i + 1)), i == 0) for i in range(steps - 1)]
        end = DtmfEvent(event=code, end=True, volume=10, duration=FRAME_SAMPLES * steps)
        events += [(end, steps == 1)] + [(end, False), (end, False)]
        self._dtmf_out.extend(events)

    def _tick(self) -> None:
        if self._rtp is None:
            return
        if self._dtmf_out:
            ev, first = self._dtmf_out.pop(0)
            if first:
                self._dtmf_ts = self._packetizer.timestamp
            data = self._packetizer.event(payload_type=self.dtmf_payload_type or 101, event=ev, timestamp=self._dtmf_ts, marker=first)
            self._packetizer.skip_slot()
        else:
            chunk = bytes(self._out[:FRAME_BYTES_PCM16])
            del self._out[:FRAME_BYTES_PCM16]
            speech = bool(chunk)
            if len(chunk) < FRAME_BYTES_PCM16:
                chunk += bytes(FRAME_BYTES_PCM16 - len(chunk))
            data = self._packetizer.audio(encode(self.codec, chunk), speech=speech)
            if not self._out:
                self._drained.set()
            self._space.set()
        if self.sending:
            self._rtp.sendto(data, self.remote_addr)
            self.stats.packets_out += 1

    async def _run_clock(self) -> None:
        period = FRAME_MS / 1000
        next_t = time.monotonic()
        while True:
            self._tick()
            self._fill_gap(time.monotonic())
            next_t += period
            delay = next_t - time.monotonic()
            if delay < -0.2:  # the loop was blocked: resync instead of bursting
                self.stats.late_ticks += 1
                next_t = time.monotonic()
                delay = 0
            await asyncio.sleep(max(delay, 0))
