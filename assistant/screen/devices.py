"""Audio devices through ``sounddevice`` (PortAudio): list them, pick one by index or name, or fail with
``AudioDeviceError`` (``error[audio_device]: ...``). No pipecat import here, so the CLI can check devices
before anything heavy loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from assistant.errors import AssistantError

DeviceSpec = str | int | None
Kind = Literal["input", "output"]


class AudioDeviceError(AssistantError):
    """No usable microphone/speaker (none on this machine, bad name or index, PortAudio missing)."""

    code = "audio_device"


@dataclass(frozen=True, kw_only=True)
class DeviceInfo:
    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate_hz: float

    def line(self) -> str:
        kinds = "/".join(k for k, n in (("in", self.max_input_channels), ("out", self.max_output_channels)) if n > 0)
        return f"{self.index:3d}  {kinds:6s}  {int(self.default_samplerate_hz):6d} Hz  {self.name}"


def _sd() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # the PortAudio library itself is missing
        raise AudioDeviceError("PortAudio is not installed (Debian: apt-get install libportaudio2)") from exc
    except ModuleNotFoundError as exc:
        raise AudioDeviceError("sounddevice is not installed (pip install 'elder-assistant[local-audio]')") from exc
    return sounddevice


def list_devices() -> list[DeviceInfo]:
    sd = _sd()
    try:
        devices = sd.query_devices()
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"cannot list audio devices: {exc}") from exc
    return [
        DeviceInfo(
            index=i,
            name=str(d["name"]),
            max_input_channels=int(d["max_input_channels"]),
            max_output_channels=int(d["max_output_channels"]),
            default_samplerate_hz=float(d["default_samplerate"]),
        )
        for i, d in enumerate(devices)
    ]


def resolve_device(spec: DeviceSpec, *, kind: Kind, devices: list[DeviceInfo] | None = None) -> DeviceInfo:
    """A device by index ("3" or 3), by (part of its) name, or the system default; else ``AudioDeviceError``."""
    what = "microphone (input)" if kind == "input" else "speaker (output)"
    devices = list_devices() if devices is None else devices

    def usable(d: DeviceInfo) -> bool:
        return (d.max_input_channels if kind == "input" else d.max_output_channels) > 0

    candidates = [d for d in devices if usable(d)]
    if not candidates:
        raise AudioDeviceError(f"no {what} audio device on this machine (use the smart-screen page, or plug one in)")
    if spec is None or spec == "":
        default = _default_index(kind)
        for d in candidates:
            if d.index == default:
                return d
        return candidates[0]
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        for d in devices:
            if d.index == index:
                if not usable(d):
                    raise AudioDeviceError(f"audio device {index} ({d.name}) has no {kind} channels")
                return d
        raise AudioDeviceError(f"no audio device with index {index} (see `assistant screen --list-devices`)")
    matches = [d for d in candidates if str(spec).lower() in d.name.lower()]
    if not matches:
        raise AudioDeviceError(f"no {what} device named like {spec!r} (see `assistant screen --list-devices`)")
    return matches[0]


def _default_index(kind: Kind) -> int | None:
    try:
        default = _sd().default.device
        index = default[0 if kind == "input" else 1]
    except (AudioDeviceError, TypeError, IndexError):
        return None
    return int(index) if index is not None and int(index) >= 0 else None
