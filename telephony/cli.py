"""``assistant phone ...``: the SIP gateway and care calls from the command line.

    assistant phone gateway [--listen 127.0.0.1:5070] [--register sip:gw@host --user U --password P [--registrar host:port]]
                            [--bot]            # stand-in pipeline (no models, no Rasa): for load tests and kamailio
    assistant phone call NUMBER|sip:URI [--elder ID] [--listen ...] [--bot] [--timeout S]   # one care call now, JSON result
        (the elder: --elder, else the one whose phone NUMBER is; the call is recorded in the fraud-guard ledger
        of the configured database and opens with the same identity proof as a scheduled care call)
    assistant phone medication --elder ID --medicine 降压药 --times 08:00,20:00   # a medication reminder plan
    assistant phone edge [--gateway 127.0.0.1:5070 ...]   # the SIP edge (kamailio + rtpengine) until Ctrl-C:
        edge.trunks (SIP over UDP/TLS, SRTP off/optional/mandatory each), TLS pair from edge.tls_* (default the
        self-signed demo pair in var/edge/), calls spread over the --gateway workers (default telephony.sip_port)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from dataclasses import replace
from datetime import datetime

from assistant.errors import TelephonyError
from assistant.fraud_guard.ledger import CallLedger
from assistant.platform.db import create_engine_for
from assistant.platform.migrate import upgrade_heads_async
from assistant.platform.store import PlatformStore
from assistant.runtime import running
from assistant.settings import load_settings
from telephony.call_jobs import CallJobStore
from telephony.edge import TlsFiles, make_demo_cert, media_ip_of, tls_files, trunks_of
from telephony.gateway import Gateway
from telephony.gateway_service import place_care_call, start_gateway
from telephony.medication import add_plan
from telephony.peers import KamailioDispatcher, Rtpengine
from telephony.scheduler import RetryPolicy
from telephony.testing import bot_pipeline_factory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="phone_command", required=True)
    gw = sub.add_parser("gateway", help="answer calls (and place scheduled care calls) until Ctrl-C")
    call = sub.add_parser("call", help="place one care call now and print its result as JSON")
    call.add_argument("number", help="a number (sent to the outbound proxy / registrar) or a sip: URI")
    call.add_argument("--elder", type=int, help="the elder being called (default: the elder whose phone NUMBER is)")
    call.add_argument("--timeout", type=float, help="ring time in seconds before it counts as no answer")
    call.add_argument("--no-retry", action="store_true", help="one attempt, then family contacts / operator")
    med = sub.add_parser("medication", help="add a medication reminder plan: a call at each time, every day")
    med.add_argument("--elder", type=int, required=True, help="the elder's id")
    med.add_argument("--medicine", required=True, help="what the elder hears: 降压药")
    med.add_argument("--times", required=True, help="local times, comma-separated: 08:00,20:00")
    edge = sub.add_parser("edge", help="run the SIP edge (kamailio TLS trunks + rtpengine SRTP) until Ctrl-C")
    edge.add_argument("--gateway", action="append", metavar="HOST:PORT",
                      help="a gateway worker (repeat for several; default 127.0.0.1:<telephony.sip_port>)")
    for p in (gw, call):
        p.add_argument("--listen", help="SIP address host:port (default from settings, 127.0.0.1:5070)")
        p.add_argument("--register", metavar="URI", help="register this address-of-record, e.g. sip:gw1@127.0.0.1")
        p.add_argument("--registrar", metavar="HOST:PORT", help="registrar address (default: the URI's host)")
        p.add_argument("--user", help="digest user for --register")
        p.add_argument("--password", help="digest password for --register")
        p.add_argument("--proxy", metavar="HOST:PORT", help="outbound proxy for bare numbers")
        p.add_argument("--bot", action="store_true", help="stand-in pipeline (VAD + fixed reply), no models or Rasa")


def _settings(args):

    settings = load_settings()
    tel = settings.telephony
    if args.listen:
        host, _, port = args.listen.rpartition(":")
        if not host or not port.isdigit():
            raise TelephonyError(f"--listen wants host:port, got {args.listen!r}", code="bad_argument")
        tel = replace(tel, sip_host=host, sip_port=int(port))
    if args.proxy:
        tel = replace(tel, outbound_proxy=args.proxy)
    if getattr(args, "timeout", None):
        tel = replace(tel, answer_timeout_s=args.timeout)
    return replace(settings, telephony=tel)


async def _register(gateway, args) -> None:
    if args.register:
        if not args.user or args.password is None:
            raise TelephonyError("--register needs --user and --password", code="bad_argument")
        await gateway.endpoint.register(args.register, user=args.user, password=args.password, registrar=args.registrar)
        print(f"registered {args.register}", file=sys.stderr, flush=True)


async def _gateway(args) -> int:
    settings = _settings(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.bot:

        async def log_alert(alert) -> None:
            print(json.dumps({"alert": alert.kind, "call_id": alert.call_id, "number": alert.number}), flush=True)

        gateway = Gateway(settings=settings, pipeline_factory=bot_pipeline_factory(settings=settings), on_alert=log_alert)
        async with gateway:
            await _register(gateway, args)
            print(f"listening on udp:{gateway.endpoint.host}:{gateway.endpoint.port} (stand-in pipeline)", file=sys.stderr, flush=True)
            await stop.wait()
        return 0

    async with running(settings) as runtime:
        service = await start_gateway(runtime)
        try:
            await _register(service.gateway, args)
            print(f"listening on udp:{service.gateway.endpoint.host}:{service.gateway.endpoint.port}", file=sys.stderr, flush=True)
            await stop.wait()
        finally:
            await service.stop()
    return 0


async def _call(args) -> int:
    """One care call now, with the scheduler's wiring (``gateway_service.place_care_call``): the ledger
    entry written to the platform database before the dial, the opening with the elder's safe phrase, the
    entry's code and the call-back offer; alerts go to the platform store."""

    settings = _settings(args)
    if not args.bot:
        raise TelephonyError(
            "a care call with the real pipeline runs inside `assistant serve` (scheduled); use --bot to test the line",
            code="bad_argument",
        )

    def show_entry(intent, entry) -> None:  # what was written, never the code or the phrase
        shown = {"entry_id": entry.entry_id, "purpose": intent.purpose, "attempt": intent.attempt, "number": entry.number,
                 "valid_until": entry.valid_until.isoformat()}
        print(json.dumps({"ledger": shown}, ensure_ascii=False), flush=True)

    await upgrade_heads_async(settings.store.database_url)  # as `assistant serve` does at start (idempotent)
    engine = create_engine_for(settings)
    try:
        store = PlatformStore(engine=engine)
        ledger = CallLedger.for_engine(engine, settings=settings)
        sink = store.raise_call_alert
        gateway = Gateway(settings=settings, pipeline_factory=bot_pipeline_factory(settings=settings), on_alert=sink)
        async with gateway:
            await _register(gateway, args)
            result = await place_care_call(
                gateway=gateway, store=store, ledger=ledger, settings=settings, number=args.number, elder_id=args.elder,
                on_alert=sink, on_entry=show_entry, answer_timeout_s=args.timeout,
                retry=RetryPolicy(delays_s=()) if args.no_retry else None,
            )
    finally:
        await engine.dispose()
    print(
        json.dumps(
            {
                "elder_id": result.elder_id,
                "status": result.status,
                "outcome": result.outcome,
                "attempts": [{"number": a.number, "purpose": a.purpose, "result": a.result} for a in result.attempts],
                "alerts": result.alerts,
            },
            ensure_ascii=False,
        ),
        flush=True,
    )
    return 0


async def _edge(args) -> int:
    """kamailio (dispatcher + trunks) and rtpengine from ``settings.edge``, in var/edge/run, until Ctrl-C."""
    settings = load_settings()
    edge = settings.edge
    trunks = trunks_of(edge)
    tls = tls_files(edge, var_dir=settings.paths.var_dir)
    if not edge.tls_cert_file and not edge.tls_key_file:
        demo = await make_demo_cert(tls.cert_file.parent, public_host=edge.public_host)  # kept when set-up already made it
        tls = TlsFiles(cert_file=demo.cert_file, key_file=demo.key_file, client_ca_file=tls.client_ca_file)
    gateways = args.gateway or [f"127.0.0.1:{settings.telephony.sip_port}"]
    workdir = settings.paths.var_dir / "edge" / "run"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Rtpengine(workdir=workdir / "rtpengine", ng_port=edge.rtpengine_ng_port, port_min=edge.rtpengine_port_min,
                         port_max=edge.rtpengine_port_max, public_media_ip=media_ip_of(edge)) as rtp, \
            KamailioDispatcher(workdir=workdir / "kamailio", port=edge.sip_port, gateways=gateways, trunks=trunks, tls=tls,
                               rtpengine_ng_port=rtp.ng_port, strict_media_source=edge.strict_media_source,
                               public_host=edge.public_host, public_media_ip=edge.public_media_ip):
        for t in trunks:
            mutual = " client-cert=required" if t.client_cert else ""
            peers = "".join(f" peer-{kind}={'|'.join(names)}" for kind, names in (("cn", t.peer_cns), ("dns", t.peer_dns)) if names)
            sources = f" sources={','.join(t.source_networks)}" if t.source_networks else ""
            print(f"trunk {t.name}: {t.transport}:{edge.public_host}:{t.port} srtp={t.srtp}{mutual}{peers}{sources}", file=sys.stderr, flush=True)
        print(f"dispatching to {', '.join(gateways)}; logs in {workdir}", file=sys.stderr, flush=True)
        await stop.wait()
    return 0


async def _medication(args) -> int:
    """Write the plan; the ``assistant serve`` nodes' call engines plan and place the reminders."""
    settings = load_settings()
    await upgrade_heads_async(settings.store.database_url)
    engine = create_engine_for(settings)
    try:
        store = PlatformStore(engine=engine)
        await store.get_elder(args.elder)  # not_found for a wrong id
        try:
            plan_id = await add_plan(CallJobStore.for_engine(engine, now=lambda: datetime.now().astimezone()),
                                     elder_id=args.elder, medicine=args.medicine, times=args.times)
        except ValueError as exc:
            raise TelephonyError(f"--times wants HH:MM,HH:MM, got {args.times!r}", code="bad_argument") from exc
    finally:
        await engine.dispose()
    print(json.dumps({"plan_id": plan_id, "elder_id": args.elder, "medicine": args.medicine, "times": args.times},
                     ensure_ascii=False), flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.phone_command == "medication":
        return asyncio.run(_medication(args))
    if args.phone_command == "edge":
        return asyncio.run(_edge(args))
    if args.phone_command == "gateway":
        return asyncio.run(_gateway(args))
    return asyncio.run(_call(args))
