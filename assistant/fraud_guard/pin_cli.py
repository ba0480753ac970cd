"""``assistant pin``: the elder's keypad PIN (issue #15), for administrators.

    assistant pin set --elder ID [--pin-stdin] [--by WHO]    (also lifts a lock-out)
    assistant pin clear --elder ID [--by WHO]
    assistant pin status --elder ID

The PIN (4–6 digits, not repeated or sequential) is read from standard input with ``--pin-stdin`` (first
line, for scripts), otherwise asked twice on the terminal without echo — never from the command line,
where it would land in shell history and ``ps``. It is stored as an argon2id hash
(``assistant.fraud_guard.pin``). Give the PIN to the elder in person or on paper, never by phone.
Setting and clearing are written to the console's audit log (``pin_set`` / ``pin_clear``, actor ``--by`` or
``cli:<os user>``). The database must be migrated first (``assistant db upgrade``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from assistant.errors import FraudGuardError, StoreError
from assistant.fraud_guard.pin import PinStore, pin_problem
from assistant.platform.audit import cli_actor
from assistant.platform.db import create_engine_for, session_factory
from assistant.platform.models import utcnow
from assistant.platform.models_fraud import ElderPin
from assistant.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pin_command", required=True)
    p = sub.add_parser("set", help="set or replace an elder's keypad PIN (lifts a lock-out)")
    p.add_argument("--elder", type=int, required=True, metavar="ID")
    p.add_argument("--pin-stdin", action="store_true", help="read the PIN from standard input")
    p.add_argument("--by", default=None, help="who did it, for the audit log (default cli:<os user>)")
    p = sub.add_parser("clear", help="remove an elder's PIN (inbound calls can then only be verified by call-back)")
    p.add_argument("--elder", type=int, required=True, metavar="ID")
    p.add_argument("--by", default=None, help="who did it, for the audit log (default cli:<os user>)")
    sub.add_parser("status", help="whether a PIN is set and whether it is locked").add_argument(
        "--elder", type=int, required=True, metavar="ID")


def _read_pin(from_stdin: bool) -> str:

    if from_stdin:
        pin = sys.stdin.readline().strip()
    else:
        if not sys.stdin.isatty():
            raise FraudGuardError("no terminal to ask for the PIN: use --pin-stdin", code="fraud_pin_input")
        pin = getpass.getpass("PIN (4-6 digits): ").strip()
        if getpass.getpass("again: ").strip() != pin:
            raise FraudGuardError("the two PINs differ", code="fraud_pin_input")
    problem = pin_problem(pin)
    if problem is not None:
        raise FraudGuardError(problem, code="fraud_pin_input")
    return pin


async def _run(args: argparse.Namespace, pin: str | None) -> str:
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError, ProgrammingError


    settings = load_settings()
    engine = create_engine_for(settings)
    pins = PinStore.for_engine(engine, settings=settings)
    try:
        if args.pin_command == "set":
            assert pin is not None
            await pins.set_pin(args.elder, pin, actor=cli_actor(args.by))
            return f"PIN set for elder {args.elder}"
        if args.pin_command == "clear":
            cleared = await pins.clear_pin(args.elder, actor=cli_actor(args.by))
            return f"PIN cleared for elder {args.elder}" if cleared else f"elder {args.elder} had no PIN"
        async with session_factory(engine)() as db:
            row = (await db.scalars(select(ElderPin).where(ElderPin.elder_id == args.elder))).first()
        if row is None:
            return f"elder {args.elder}: no PIN"
        if row.locked_until is not None and row.locked_until > utcnow():
            return f"elder {args.elder}: PIN set, locked until {row.locked_until:%Y-%m-%d %H:%M:%S} UTC"
        return f"elder {args.elder}: PIN set, {row.failed_count} wrong attempt(s) since the last success"
    except (OperationalError, ProgrammingError) as exc:
        raise StoreError(f"database not ready ({type(exc).__name__}); run `assistant db upgrade` first") from exc
    finally:
        await engine.dispose()


def run(args: argparse.Namespace) -> int:
    pin = _read_pin(args.pin_stdin) if args.pin_command == "set" else None
    print(asyncio.run(_run(args, pin)))
    return 0
