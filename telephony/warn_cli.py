"""``assistant warn ...``: warning broadcasts on the call engine (``telephony.broadcasts``).

    assistant warn send --kind typhoon|heat|outage [--field when=明天上午] [--district 蓬江 ...] [--id ID]
    assistant warn send --text "明天上午全市停水" [--district ...]       # a free text, read after the platform's name
    assistant warn report [--id ID] [--json]                            # elders per district and result

``send`` writes one ``warning`` row per active elder with a phone (of the districts, or all) into the
configured database and prints ``{"broadcast", "elders", "added", "capacity_calls_per_h", "nodes",
"expected_calls", "expected_done_s", "expected_done_at"}``: the ``assistant serve`` nodes' call engines place
the calls at their pace (``telephony.engine_max_calls`` / ``engine_dials_per_s``), each outside the elder's
quiet hours, and the engine's reported capacity says when every elder will have been tried
(``telephony.capacity``; ``expected_done_s`` is null while no engine node is running). Sending the same
``--id`` again adds nobody twice.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json

from assistant.errors import TelephonyError
from assistant.platform.db import create_engine_for
from assistant.platform.migrate import upgrade_heads_async
from assistant.platform.models import DISTRICTS
from assistant.platform.store import PlatformStore
from assistant.settings import load_settings
from telephony.broadcasts import WARNING_KEYS, Broadcast, warning_report
from telephony.call_jobs import CallJobStore
from telephony.capacity import broadcast_estimate
from telephony.gateway_service import send_warning


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="warn_command", required=True)
    send = sub.add_parser("send", help="broadcast a warning to every elder, or to --district")
    what = send.add_mutually_exclusive_group(required=True)
    what.add_argument("--kind", choices=sorted(WARNING_KEYS), help="a warning of the phrase table")
    what.add_argument("--text", help="a free text (read after '<platform>提醒您')")
    send.add_argument("--field", action="append", default=[], metavar="NAME=VALUE", help="a field of the phrase")
    send.add_argument("--district", action="append", default=[], choices=DISTRICTS, help="only these (repeat)")
    send.add_argument("--id", help="broadcast id (default: <kind>-<UTC time>); the same id never calls twice")
    report = sub.add_parser("report", help="delivery report by district")
    report.add_argument("--id", help="one broadcast (default: all)")
    report.add_argument("--json", action="store_true", help="print JSON (default: a table)")


async def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    await upgrade_heads_async(settings.store.database_url)
    engine = create_engine_for(settings)
    try:
        jobs = CallJobStore.for_engine(engine, now=lambda: dt.datetime.now().astimezone())
        if args.warn_command == "report":
            report = await warning_report(jobs, broadcast_id=args.id)
            if args.json:
                print(json.dumps(report, ensure_ascii=False), flush=True)
            else:
                for broadcast, districts in sorted(report.items()):
                    for district, counts in sorted(districts.items()):
                        print(broadcast, district or "-", " ".join(f"{k}={v}" for k, v in counts.items()))
            return 0
        fields = {}
        for f in args.field:
            name, sep, value = f.partition("=")
            if not sep:
                raise TelephonyError(f"--field wants NAME=VALUE, got {f!r}", code="bad_argument")
            fields[name] = value
        now = dt.datetime.now().astimezone()
        broadcast = Broadcast(broadcast_id=args.id or f"{args.kind or 'text'}-{now.astimezone(dt.UTC):%Y%m%d%H%M}",
                              kind=args.kind, text=args.text, fields=fields)
        planned = await send_warning(store=PlatformStore(engine=engine), jobs=jobs, broadcast=broadcast,
                                     districts=args.district, quiet_hours=settings.telephony.quiet_hours, now=now)
        eta = await broadcast_estimate(jobs, broadcast.broadcast_id, telephony=settings.telephony)
        print(json.dumps({"broadcast": broadcast.broadcast_id, **planned, **eta}, ensure_ascii=False), flush=True)
        return 0
    finally:
        await engine.dispose()


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


