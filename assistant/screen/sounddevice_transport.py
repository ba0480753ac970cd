"""A pipecat transport on the local microphone and speaker through ``sounddevice`` (PortAudio).

pipecat's own local transport uses PyAudio; this one uses sounddevice, which ships PortAudio in its
wheels on macOS/Windows and uses Debian's ``libportaudio2`` on Linux. Used by ``assistant screen --local``
and ``assistant talk``:

    transport = SoundDeviceTransport(input_device="USB", output_device=None)   # names, indexes or None
    pipeline = [transport.input(), ..., transport.output()]

Devices are resolved in the constructor, so a machine without a microphone fails at once with
``AudioDeviceError`` (``error[audio_device]: ...``), before any model or server is started.

- Input: a ``RawInputStream`` (int16 mono, 20 ms blocks) whose PortAudio-thread callback hands bytes
  to the event loop (``call_soon_threadsafe``); a pipecat-owned task pushes ``InputAudioRawFrame``s.
  Devices that refuse 16 kHz are opened at their default rate and resampled block by block.
- Output: a ``RawOutputStream``; blocking writes run in a one-thread executor and pace playback.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from loguru import logger
from pipecat.frames.frames import CancelFrame, EndFrame, InputAudioRawFrame, OutputAudioRawFrame, StartFrame
from pipecat.processors.frame_processor import FrameProcessor, FrameProcessorSetup
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

from assistant.audio.convert import resample_pcm16
from assistant.screen.devices import (
    AudioDeviceError,
    DeviceInfo,
    DeviceSpec,
    _sd,
    list_devices,
    resolve_device,
)

__all__ = [
    "AudioDeviceError",
    "DeviceInfo",
    "SoundDeviceTransport",
    "list_devices",
    "resolve_device",
]

FRAME_MS = 20
QUEUE_MAX_FRAMES = 250  # 5 s of microphone audio waiting for the loop; older frames are dropped


def transport_params(*, sample_rate_hz: int) -> TransportParams:
    return TransportParams(
        audio_in_enabled=True,
        audio_in_sample_rate=sample_rate_hz,
        audio_out_enabled=True,
        audio_out_sample_rate=sample_rate_hz,
        audio_out_10ms_chunks=4,
        audio_out_end_silence_secs=0,
    )


class SoundDeviceInputTransport(BaseInputTransport):
    def __init__(self, *, params: TransportParams, device: DeviceInfo, **kwargs):
        super().__init__(params, **kwargs)
        self._device = device
        self._stream: Any = None
        self._device_rate = 0
        self._queue: asyncio.Queue[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: asyncio.Task | None = None
        self.overruns = 0

    async def setup(self, setup: FrameProcessorSetup):
        await super().setup(setup)
        sd = _sd()
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=QUEUE_MAX_FRAMES)
        for rate in dict.fromkeys((self.sample_rate, int(self._device.default_samplerate_hz))):
            try:
                self._stream = sd.RawInputStream(
                    samplerate=rate,
                    channels=1,
                    dtype="int16",
                    blocksize=rate * FRAME_MS // 1000,
                    device=self._device.index,
                    callback=self._callback,
                )
                self._device_rate = rate
                break
            except sd.PortAudioError as exc:
                logger.debug(f"input device {self._device.name} refused {rate} Hz: {exc}")
        if self._stream is None:
            raise AudioDeviceError(f"cannot open the microphone {self._device.name!r} at {self.sample_rate} Hz")

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio thread
        if status:
            self.overruns += 1
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._enqueue, bytes(indata))

    def _enqueue(self, data: bytes) -> None:
        if self._queue is None:
            return
        if self._queue.full():
            self._queue.get_nowait()  # keep the newest audio: the elder is talking now
        self._queue.put_nowait(data)

    async def start(self, frame: StartFrame):
        await super().start(frame)
        if self._stream is not None and not self._stream.active:
            self._stream.start()
        await self.set_transport_ready(frame)
        if self._reader is None:
            self._reader = self.create_task(self._read())

    async def _read(self) -> None:
        assert self._queue is not None
        while True:
            data = await self._queue.get()
            if self._device_rate != self.sample_rate:
                data = resample_pcm16(data, from_hz=self._device_rate, to_hz=self.sample_rate)
            await self.push_audio_frame(InputAudioRawFrame(audio=data, sample_rate=self.sample_rate, num_channels=1))

    async def _close(self) -> None:
        if self._reader is not None:
            await self.cancel_task(self._reader)
            self._reader = None
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await asyncio.to_thread(_close_stream, stream)

    async def stop(self, frame: EndFrame):
        await super().stop(frame)
        await self._close()

    async def cancel(self, frame: CancelFrame):
        await super().cancel(frame)
        await self._close()

    async def cleanup(self):
        await super().cleanup()
        await self._close()


class SoundDeviceOutputTransport(BaseOutputTransport):
    def __init__(self, *, params: TransportParams, device: DeviceInfo, **kwargs):
        super().__init__(params, **kwargs)
        self._device = device
        self._stream: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sd-out")

    async def setup(self, setup: FrameProcessorSetup):
        await super().setup(setup)
        sd = _sd()
        try:
            self._stream = sd.RawOutputStream(samplerate=self.sample_rate, channels=1, dtype="int16", device=self._device.index)
        except sd.PortAudioError as exc:
            raise AudioDeviceError(f"cannot open the speaker {self._device.name!r} at {self.sample_rate} Hz: {exc}") from exc

    async def start(self, frame: StartFrame):
        await super().start(frame)
        if self._stream is not None and not self._stream.active:
            self._stream.start()
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        if self._stream is None:
            return False
        await asyncio.get_running_loop().run_in_executor(self._executor, self._stream.write, frame.audio)
        return True

    async def cleanup(self):
        try:
            await super().cleanup()
            if self._stream is not None:
                stream, self._stream = self._stream, None
                await asyncio.to_thread(_close_stream, stream)
        finally:
            self._executor.shutdown(wait=False)


def _close_stream(stream: Any) -> None:
    try:
        stream.stop()
    finally:
        stream.close()


class SoundDeviceTransport(BaseTransport):
    """Microphone in, speaker out. ``input_device``/``output_device``: index, (part of a) name, or None."""

    def __init__(
        self,
        *,
        input_device: DeviceSpec = None,
        output_device: DeviceSpec = None,
        sample_rate_hz: int = 16000,
        params: TransportParams | None = None,
        devices: list[DeviceInfo] | None = None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        devices = list_devices() if devices is None else devices
        self.input_device = resolve_device(input_device, kind="input", devices=devices)
        self.output_device = resolve_device(output_device, kind="output", devices=devices)
        self._params = params or transport_params(sample_rate_hz=sample_rate_hz)
        self._input: SoundDeviceInputTransport | None = None
        self._output: SoundDeviceOutputTransport | None = None

    def input(self) -> FrameProcessor:
        if self._input is None:
            self._input = SoundDeviceInputTransport(params=self._params, device=self.input_device, name=f"{self}#input")
        return self._input

    def output(self) -> FrameProcessor:
        if self._output is None:
            self._output = SoundDeviceOutputTransport(params=self._params, device=self.output_device, name=f"{self}#output")
        return self._output
