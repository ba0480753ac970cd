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
