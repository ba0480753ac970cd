"""``assistant talk``: talk to the assistant with this machine's microphone and speaker.

The same as ``assistant screen --local`` (one implementation, in ``assistant/screen/cli.py``): the call
pipeline on a sounddevice transport. ``--list-devices`` shows what PortAudio sees; a machine without a
microphone or speaker stops at once with ``error[audio_device]: ...``.
"""

from __future__ import annotations

import argparse

from assistant.screen.cli import add_arguments as screen_arguments
from assistant.screen.cli import run as screen_run


def add_arguments(parser: argparse.ArgumentParser) -> None:

    screen_arguments(parser)


def run(args: argparse.Namespace) -> int:

    args.local = True
    return screen_run(args)
