"""A gateway process for the crash test (tests/e2e/test_call_recording_crash.py): the stand-in pipeline
with the real pipeline's streamed recording, on 127.0.0.1. Prints ``{"port": N}`` once listening, then
runs until killed.

    python -m tests.e2e.recording_gateway RECORDINGS_DIR
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path


async def main(recordings: Path) -> None:
    from assistant.settings import load_settings
    from telephony.gateway import Gateway
    from telephony.testing import bot_pipeline_factory, tone

    settings = load_settings()
    settings = replace(settings, telephony=replace(settings.telephony, sip_host="127.0.0.1", sip_port=0))
    factory = bot_pipeline_factory(settings=settings, reply_pcm=tone(seconds=1.5, hz=1000), recordings_dir=recordings)
    async with Gateway(settings=settings, pipeline_factory=factory, port=0) as gateway:
        print(json.dumps({"port": gateway.endpoint.port}), flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
