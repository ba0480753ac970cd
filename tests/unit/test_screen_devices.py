"""Local audio devices: choosing by index or name, and the one-line error on a machine without any
(this CI machine has no sound card, so the real PortAudio path is exercised too)."""

from __future__ import annotations

import argparse

import pytest

from assistant.cli import main
from assistant.screen import cli as screen_cli
from assistant.screen.devices import AudioDeviceError, DeviceInfo, list_devices, resolve_device

DEVICES = [
    DeviceInfo(index=0, name="HDA Intel PCH: ALC269 Analog", max_input_channels=2, max_output_channels=2, default_samplerate_hz=44100),
    DeviceInfo(index=1, name="HDMI 0", max_input_channels=0, max_output_channels=8, default_samplerate_hz=48000),
    DeviceInfo(index=2, name="USB PnP Sound Device", max_input_channels=1, max_output_channels=0, default_samplerate_hz=48000),
]


def test_pick_by_index_or_name():
    assert resolve_device("2", kind="input", devices=DEVICES).name == "USB PnP Sound Device"
    assert resolve_device(1, kind="output", devices=DEVICES).index == 1
    assert resolve_device("usb", kind="input", devices=DEVICES).index == 2
    assert resolve_device("hdmi", kind="output", devices=DEVICES).index == 1


@pytest.mark.parametrize(
    ("spec", "kind", "words"),
    [
        ("1", "input", "has no input channels"),
        ("9", "input", "no audio device with index 9"),
        ("bluetooth", "output", "no speaker (output) device named like 'bluetooth'"),
    ],
)
def test_bad_choices_are_coded_errors(spec, kind, words):
    with pytest.raises(AudioDeviceError) as info:
        resolve_device(spec, kind=kind, devices=DEVICES)
    assert info.value.code == "audio_device"
    assert words in info.value.message


def test_no_devices_at_all():
    with pytest.raises(AudioDeviceError, match="no microphone"):
        resolve_device(None, kind="input", devices=[])
    with pytest.raises(AudioDeviceError, match="no speaker"):
        resolve_device(None, kind="output", devices=DEVICES[2:])


def test_local_mode_without_a_device_is_one_line(capsys):
    if list_devices():
        pytest.skip("this machine has audio devices; the no-device path needs a machine without")
    assert main(["screen", "--local"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "error[audio_device]: no microphone (input) audio device on this machine "
        "(use the smart-screen page, or plug one in)"
    )
    assert not any("Traceback" in line for line in err)


def test_sounddevice_transport_refuses_a_missing_device():
    from assistant.screen.sounddevice_transport import SoundDeviceTransport

    with pytest.raises(AudioDeviceError):
        SoundDeviceTransport(input_device="usb", output_device="usb", devices=DEVICES)
    transport = SoundDeviceTransport(input_device="usb", output_device=None, devices=DEVICES)
    assert transport.input_device.index == 2 and transport.output_device.max_output_channels > 0


def test_cli_arguments():
    parser = argparse.ArgumentParser()
    screen_cli.add_arguments(parser)
    args = parser.parse_args(["--local", "--input-device", "USB", "--output-device", "1"])
    assert args.local and args.input_device == "USB" and args.output_device == "1"


class FakePortAudio:
    """Stands in for the sounddevice module: an input stream whose 'device' thread delivers 20 ms blocks,
    an output stream that records what it plays."""

    class PortAudioError(Exception):
        pass

    def __init__(self, *, refuse_rates: tuple[int, ...] = ()):
        self.refuse_rates = refuse_rates
        self.played = bytearray()
        self.opened_rates: list[int] = []
        fake = self

        class RawInputStream:
            def __init__(self, *, samplerate, channels, dtype, blocksize, device, callback):
                if samplerate in fake.refuse_rates:
                    raise fake.PortAudioError("Invalid sample rate")
                fake.opened_rates.append(samplerate)
                self.samplerate, self.blocksize, self.callback = samplerate, blocksize, callback
                self.active = False
                self._thread = None

            def start(self):
                import threading

                self.active = True

                def deliver():
                    for i in range(10):
                        self.callback(bytes([i]) * self.blocksize * 2, self.blocksize, None, None)

                self._thread = threading.Thread(target=deliver)
                self._thread.start()

            def stop(self):
                self.active = False
                if self._thread is not None:
                    self._thread.join()

            def close(self):
                pass

        class RawOutputStream:
            def __init__(self, *, samplerate, channels, dtype, device):
                self.active = False

            def start(self):
                self.active = True

            def write(self, data):
                fake.played.extend(data)

            def stop(self):
                self.active = False

            def close(self):
                pass

        self.RawInputStream = RawInputStream
        self.RawOutputStream = RawOutputStream


@pytest.mark.parametrize("refuse_16k", [False, True])
async def test_sounddevice_transport_moves_audio_both_ways(monkeypatch, refuse_16k):
    import asyncio

    from pipecat.frames.frames import EndFrame, InputAudioRawFrame, OutputAudioRawFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    from assistant.screen import sounddevice_transport as sdt

    fake = FakePortAudio(refuse_rates=(16000,) if refuse_16k else ())
    monkeypatch.setattr(sdt, "_sd", lambda: fake)
    transport = sdt.SoundDeviceTransport(input_device="usb", output_device="hdmi", devices=DEVICES)

    heard: list[InputAudioRawFrame] = []

    class Ear(FrameProcessor):
        async def process_frame(self, frame, direction):
            await super().process_frame(frame, direction)
            if isinstance(frame, InputAudioRawFrame):
                heard.append(frame)
            await self.push_frame(frame, direction)

    worker = PipelineWorker(
        Pipeline([transport.input(), Ear(), transport.output()]),
        params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=16000),
        idle_timeout_secs=None,
        enable_rtvi=False,
        enable_turn_tracking=False,
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    run = asyncio.create_task(runner.run())
    try:
        for _ in range(200):
            if len(heard) >= 10:
                break
            await asyncio.sleep(0.02)
        # three whole 40 ms chunks (a partial chunk waits for the TTS to say it has stopped)
        await worker.queue_frame(OutputAudioRawFrame(audio=b"\x01\x00" * 1920, sample_rate=16000, num_channels=1))
        for _ in range(200):
            if len(fake.played) >= 3840:
                break
            await asyncio.sleep(0.02)
        await worker.queue_frame(EndFrame())
        await asyncio.wait_for(run, timeout=10)
    finally:
        if not run.done():
            await runner.cancel()
    assert len(heard) == 10
    assert all(f.sample_rate == 16000 and len(f.audio) == 640 for f in heard)  # 20 ms at 16 kHz, resampled if need be
    assert fake.opened_rates == ([48000] if refuse_16k else [16000])  # the USB mic's default rate as fallback
    assert bytes(fake.played) == b"\x01\x00" * 1920
