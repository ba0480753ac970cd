"""The smart screen's WebSocket protocol: small dataclasses, one JSON object per text message.

Binary messages carry audio, nothing else:
- page → server: 16-bit little-endian mono PCM at ``MIC_SAMPLE_RATE_HZ`` (16 kHz), ``MIC_FRAME_MS`` (20 ms)
  per message (640 bytes). Other sizes are accepted if they hold whole samples and are not too long.
- server → page: 16-bit little-endian mono PCM at the rate announced in ``Ready.sample_rate_hz``.

Text messages are JSON objects with a ``type``:
- page → server: ``ControlMessage`` (``hello``, ``ptt`` start/stop, ``button`` gas/meal/human,
  ``fraud_check``, ``sos``, ``ping``).
- server → page: the ``ServerMessage`` dataclasses below (``ready``, ``caption``, ``interrupt``,
  ``fraud``, ``status``, ``sos``, ``error``, ``pong``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from assistant.errors import AssistantError

MIC_SAMPLE_RATE_HZ = 16000
MIC_FRAME_MS = 20
MIC_FRAME_BYTES = MIC_SAMPLE_RATE_HZ * MIC_FRAME_MS // 1000 * 2  # 640
MAX_AUDIO_MESSAGE_MS = 200  # a page may batch frames, but never more than this per message
MAX_AUDIO_MESSAGE_BYTES = MIC_SAMPLE_RATE_HZ * MAX_AUDIO_MESSAGE_MS // 1000 * 2
MAX_TEXT_MESSAGE_CHARS = 4096

# what the three service buttons say for the elder (sent into the dialogue as if spoken)
BUTTON_TEXTS: dict[str, str] = {
    "gas": "我要叫煤气",
    "meal": "我要订餐",
    "human": "我要找客服",
}
FRAUD_CHECK_TEXT = "刚才打电话来的是骗子吗？"


class ScreenProtocolError(AssistantError):
    """The page sent something the protocol does not allow (bad JSON, odd-length audio, unknown type)."""

    code = "screen_protocol"


# -- page → server ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ControlMessage:
    type: Literal["hello", "ptt", "button", "fraud_check", "sos", "ping"]
    state: str | None = None  # ptt: "start" | "stop"
    button: str | None = None  # button: "gas" | "meal" | "human"


def parse_control(text: str) -> ControlMessage:
    """Parse one text message from the page, or raise ``ScreenProtocolError``."""
    if len(text) > MAX_TEXT_MESSAGE_CHARS:
        raise ScreenProtocolError(f"text message too long ({len(text)} characters)")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ScreenProtocolError("text message is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ScreenProtocolError("text message must be a JSON object with a 'type'")
    kind = data["type"]
    if kind in {"hello", "fraud_check", "sos", "ping"}:
        return ControlMessage(type=kind)
    if kind == "ptt":
        state = data.get("state")
        if state not in {"start", "stop"}:
            raise ScreenProtocolError("ptt needs state 'start' or 'stop'")
        return ControlMessage(type="ptt", state=state)
    if kind == "button":
        button = data.get("button")
        if button not in BUTTON_TEXTS:
            raise ScreenProtocolError(f"unknown button {button!r}")
        return ControlMessage(type="button", button=button)
    raise ScreenProtocolError(f"unknown message type {kind!r}")


def check_audio(data: bytes) -> bytes:
    """Validate one binary message from the page: whole 16-bit samples, not empty, not too long."""
    if not data:
        raise ScreenProtocolError("empty audio message")
    if len(data) % 2:
        raise ScreenProtocolError(f"audio message of {len(data)} bytes is not whole 16-bit samples")
    if len(data) > MAX_AUDIO_MESSAGE_BYTES:
        raise ScreenProtocolError(f"audio message of {len(data)} bytes is longer than {MAX_AUDIO_MESSAGE_MS} ms")
    return data


class PcmFramer:
    """Re-chunks a byte stream into fixed frames (``frame_bytes``), keeping the remainder for later."""

    def __init__(self, *, frame_bytes: int):
        if frame_bytes <= 0 or frame_bytes % 2:
            raise ValueError("frame_bytes must be a positive, even number")
        self.frame_bytes = frame_bytes
        self._buffer = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._buffer.extend(data)
        n = len(self._buffer) // self.frame_bytes * self.frame_bytes
        if n == 0:
            return []
        chunk, self._buffer = bytes(self._buffer[:n]), self._buffer[n:]
        return [chunk[i : i + self.frame_bytes] for i in range(0, n, self.frame_bytes)]

    def flush(self) -> bytes:
        """The remainder padded with silence to a whole frame (b"" when nothing is pending)."""
        if not self._buffer:
            return b""
        out = bytes(self._buffer) + bytes(self.frame_bytes - len(self._buffer))
        self._buffer.clear()
        return out

    def clear(self) -> None:
        self._buffer.clear()

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)


def silence(*, duration_s: float, sample_rate_hz: int = MIC_SAMPLE_RATE_HZ, frame_ms: int = MIC_FRAME_MS) -> list[bytes]:
    """Whole frames of digital silence covering at least ``duration_s``."""
    frame_bytes = sample_rate_hz * frame_ms // 1000 * 2
    count = max(1, -(-int(duration_s * 1000) // frame_ms))
    return [bytes(frame_bytes)] * count


# -- server → page ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ServerMessage:
    type: ClassVar[str] = "message"

    def to_json(self) -> str:
        return json.dumps({"type": self.type, **asdict(self)}, ensure_ascii=False)


@dataclass(frozen=True, kw_only=True)
class Ready(ServerMessage):
    type: ClassVar[str] = "ready"
    session_id: str
    sample_rate_hz: int  # reply audio rate
    mic_sample_rate_hz: int = MIC_SAMPLE_RATE_HZ
    mic_frame_ms: int = MIC_FRAME_MS
    end_of_turn_silence_s: float = 0.8  # the page sends this much silence after press-to-talk


@dataclass(frozen=True, kw_only=True)
class Caption(ServerMessage):
    type: ClassVar[str] = "caption"
    speaker: Literal["elder", "assistant", "system"]
    text: str
    final: bool = True


@dataclass(frozen=True, kw_only=True)
class Interrupt(ServerMessage):
    """Stop playing reply audio now (the elder started speaking)."""

    type: ClassVar[str] = "interrupt"
    reason: str = "barge_in"


FraudState = Literal["platform_calling", "not_platform", "clear"]


@dataclass(frozen=True, kw_only=True)
class FraudNotice(ServerMessage):
    """``platform_calling``: show the one-time code; ``not_platform``: red warning; ``clear``: hide."""

    type: ClassVar[str] = "fraud"
    state: FraudState
    code: str | None = None
    caller_name: str = "平安通"
    number: str | None = None
    text: str = ""


@dataclass(frozen=True, kw_only=True)
class StatusLine:
    kind: Literal["order", "care_call", "appointment"]
    text: str
    order_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class Status(ServerMessage):
    type: ClassVar[str] = "status"
    lines: list[StatusLine] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class SosResult(ServerMessage):
    type: ClassVar[str] = "sos"
    ok: bool
    alert_id: int | None = None
    text: str = ""


@dataclass(frozen=True, kw_only=True)
class ErrorMessage(ServerMessage):
    type: ClassVar[str] = "error"
    code: str
    text: str


@dataclass(frozen=True, kw_only=True)
class Pong(ServerMessage):
    type: ClassVar[str] = "pong"


def message_dict(message: ServerMessage) -> dict[str, Any]:
    return json.loads(message.to_json())
