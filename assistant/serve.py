"""``assistant serve``: the web app (platform API, fraud-guard lookup, operator console, smart screen),
the supervised Rasa servers and the phone gateway, on embedded defaults. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from loguru import logger

from assistant import __version__
from assistant.errors import AssistantError
from assistant.runtime import running
from assistant.server import report_component
from assistant.settings import Settings, load_settings
from telephony.gateway_service import start_gateway


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="web port (default 8080)")
    parser.add_argument("--no-rasa", action="store_true", help="do not start the Rasa servers")
    parser.add_argument("--no-phone", action="store_true", help="do not start the SIP gateway")


async def _serve(settings: Settings, *, with_rasa: bool, with_phone: bool) -> None:
    """Serve until SIGINT/SIGTERM. A signal during start-up (Rasa loads for ~30 s) stops at once: start-up is
    cancelled and what had started (child processes included) is stopped on the way out."""
    stop = asyncio.Event()
    ready = asyncio.Event()
    serving = asyncio.create_task(_serve_until(stop, ready, settings, with_rasa=with_rasa, with_phone=with_phone),
                                  name="serve")

    def on_signal() -> None:
        stop.set()
        if not ready.is_set():
            serving.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await asyncio.wait({serving})
    except asyncio.CancelledError:
        serving.cancel()
        await asyncio.wait({serving})
        raise
    if serving.cancelled():
        logger.info("stopped during start-up")
        return
    serving.result()  # start-up errors propagate to the CLI's one-line message
    logger.info("stopped cleanly")


async def _serve_until(stop: asyncio.Event, ready: asyncio.Event, settings: Settings, *, with_rasa: bool,
                       with_phone: bool) -> None:
    async with running(settings, with_rasa=with_rasa) as runtime:
        gateway = await start_phone(runtime, start_gateway=start_gateway) if with_phone else None
        if not with_phone:
            report_component(runtime.app, "phone", ok=None, note="--no-phone")
        ready.set()
        logger.info(f"assistant {__version__} serving on {runtime.base_url} — Ctrl-C stops")
        try:
            await stop.wait()
        finally:
            if gateway is not None:
                await gateway.stop()


async def start_phone(runtime, *, start_gateway):
    """The SIP gateway, or None when it cannot start (e.g. the SIP port is taken): the rest is served, the log
    says why and ``/health`` answers 503 "degraded" with ``components.phone.error``."""
    try:
        gateway = await start_gateway(runtime)
    except AssistantError as exc:
        logger.error(f"phone gateway not started: error[{exc.code}] {exc.message}")
        report_component(runtime.app, "phone", ok=False, error=exc.code, message=exc.message)
        return None
    report_component(runtime.app, "phone", ok=True)
    return gateway


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.host or args.port:
        server = {}
        if args.host:
            server["host"] = args.host
        if args.port:
            server["port"] = args.port
        overrides["server"] = server
    settings = load_settings(**overrides)
    logger.info(f"var: {settings.paths.var_dir}; database: {settings.store.database_url}; models: {settings.paths.models_dir}")
    asyncio.run(_serve(settings, with_rasa=not args.no_rasa, with_phone=not args.no_phone))
    return 0
