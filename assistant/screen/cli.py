"""``assistant screen``: the elder's smart screen from the command line.

- ``assistant screen --local [--input-device NAME|INDEX] [--output-device NAME|INDEX] [--elder-id N]``:
  the same call pipeline as the kiosk page, on this machine's microphone and speaker (sounddevice).
- ``assistant screen --list-devices``: the audio devices PortAudio sees.
- ``assistant screen --url ELDER_ID [--name NAME]``: enrol a new screen for the elder and print its kiosk page
  URL (with the screen's own token).
- ``assistant screen --devices [--elder-id N]``: the enrolled screens (id, elder, name, enrolled, revoked).
- ``assistant screen --revoke DEVICE_ID``: revoke one screen (``elder-<id>``: the elder's shared token); it is
  refused on its next request and an open page is closed within seconds.

A machine without a microphone or speaker stops at once with ``error[audio_device]: ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from assistant.pipeline import build_call_pipeline, pipeline_worker
from assistant.runtime import running, with_free_ports
from assistant.screen.devices import list_devices, resolve_device
from assistant.screen.sounddevice_transport import SoundDeviceTransport
from assistant.screen.store_view import ScreenStore
from assistant.screen.tokens import enrol_device, revoke_device
from assistant.screen.tokens import list_devices as list_screens
from assistant.session import CallSession
from assistant.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--local", action="store_true", help="talk through this machine's microphone and speaker")
    parser.add_argument("--input-device", help="microphone: index or part of its name (default: system default)")
    parser.add_argument("--output-device", help="speaker: index or part of its name (default: system default)")
    parser.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    parser.add_argument("--elder-id", type=int, help="use this elder's dialect, speech rate and volume")
    parser.add_argument("--url", type=int, metavar="ELDER_ID", help="enrol a new screen for an elder and print its kiosk page URL")
    parser.add_argument("--name", default="", help="with --url: a name for the screen (e.g. 客厅)")
    parser.add_argument("--devices", action="store_true", help="list enrolled screens (JSON lines)")
    parser.add_argument("--revoke", metavar="DEVICE_ID", help="revoke one screen's token")
    parser.add_argument("--rasa-url", help="use this running Rasa server instead of starting one")


def _list_devices() -> int:
    devices = list_devices()
    if not devices:
        print("no audio devices found")
        return 0
    print("  #  kind    rate       name")
    for d in devices:
        print(d.line())
    return 0


def _devices(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    settings = load_settings()
    if args.url is not None:
        device, path = enrol_device(settings, args.url, name=args.name)
        print(f"http://{settings.server.host}:{settings.server.port}{path}")
        print(f"screen {device.device_id} enrolled for elder {device.elder_id}; revoke: assistant screen --revoke "
              f"{device.device_id}", file=sys.stderr)  # fmt: skip
        return 0
    if args.revoke:
        device = revoke_device(settings, args.revoke)
        if device is None:
            print(f"error[screen_device]: no screen {args.revoke!r} (see `assistant screen --devices`)", file=sys.stderr)
            return 2
        print(json.dumps(asdict(device), ensure_ascii=False))
        return 0
    for device in list_screens(settings, elder_id=args.elder_id):
        print(json.dumps(asdict(device), ensure_ascii=False))
    return 0


async def _run_local(args: argparse.Namespace, transport) -> int:
    from dataclasses import replace

    from loguru import logger
    from pipecat.workers.runner import WorkerRunner


    settings = with_free_ports(load_settings())
    if args.rasa_url:
        settings = replace(settings, dialogue=replace(settings.dialogue, rasa_url=args.rasa_url))
    async with running(settings, with_rasa=not args.rasa_url) as runtime:
        session = CallSession(channel="screen", elder_id=args.elder_id, tts_rate_wpm=settings.tts.rate_wpm, verification="verified")
        if args.elder_id is not None:
            store = ScreenStore.from_settings(settings)
            try:
                elder = await store.elder(args.elder_id)
            finally:
                await store.close()
            if elder is not None:
                session.dialect, session.tts_rate_wpm, session.tts_volume = elder.dialect, elder.tts_rate_wpm, elder.volume
        call = build_call_pipeline(session=session, services=runtime.services, transport=transport)
        worker = pipeline_worker(call, settings=settings)
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        logger.info(
            f"talking on {transport.input_device.name!r} → {transport.output_device.name!r}; Ctrl-C stops"
        )
        async with asyncio.TaskGroup() as tg:
            run_task = tg.create_task(runner.run())
            stop_task = tg.create_task(stop.wait())
            done, _ = await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if stop_task in done:
                await runner.cancel(reason="stopped by the user")
            else:
                stop_task.cancel()
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list_devices:
        return _list_devices()
    if args.url is not None or args.devices or args.revoke:
        return _devices(args)
    if not args.local:
        print("the smart screen is served by `assistant serve` at /screen/<elder id>; "
              "use --local to talk here, --url ELDER_ID for the page address", file=sys.stderr)
        return 2

    # devices first: a machine without a microphone fails here, before pipecat, Rasa or any model loads
    devices = list_devices()
    resolve_device(args.input_device, kind="input", devices=devices)
    resolve_device(args.output_device, kind="output", devices=devices)

    transport = SoundDeviceTransport(input_device=args.input_device, output_device=args.output_device, devices=devices)
    return asyncio.run(_run_local(args, transport))
