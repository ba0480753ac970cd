"""``assistant admin create-user --username U --role R [--elder ID] [--password-stdin]``

There are no default accounts or passwords. The password is read from standard input with
``--password-stdin`` (first line, for scripts), otherwise asked twice on the terminal without echo.
The database must be migrated first (``assistant db upgrade``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from assistant.console.models import ROLES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="admin_command", required=True)
    p = sub.add_parser("create-user", help="create a console or family-portal user")
    p.add_argument("--username", required=True)
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--elder", type=int, action="append", default=[], metavar="ID",
                   help="family users: the parent's elder id (repeat for several)")
    p.add_argument("--contact", type=int, default=None, metavar="ID",
                   help="family users: their own family_contacts id (orders they place name it)")
    p.add_argument("--display-name", default="", help="name shown in the console")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")


def _read_password(from_stdin: bool) -> str:
    from assistant.console.auth import ConsoleError

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise ConsoleError("no terminal to ask for a password: use --password-stdin", code="console_no_password")
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise ConsoleError("the two passwords differ", code="console_password_mismatch")
    if not password:
        raise ConsoleError("empty password", code="console_no_password")
    return password


async def _create(args: argparse.Namespace, password: str) -> int:
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from assistant.console.auth import ConsoleError, create_user
    from assistant.errors import StoreError
    from assistant.platform.db import create_engine_for, session_factory
    from assistant.platform.models import Elder, FamilyContact
    from assistant.settings import load_settings

    settings = load_settings()
    engine = create_engine_for(settings)
    try:
        async with session_factory(engine)() as db:
            for elder_id in args.elder:
                if await db.scalar(select(Elder.id).where(Elder.id == elder_id)) is None:
                    raise ConsoleError(f"no elder with id {elder_id}", code="console_no_elder")
            contacts = None
            if args.contact is not None:
                if len(args.elder) != 1:
                    raise ConsoleError("--contact needs exactly one --elder", code="console_bad_contact")
                contact = await db.get(FamilyContact, args.contact)
                if contact is None or contact.elder_id != args.elder[0]:
                    raise ConsoleError(f"contact {args.contact} is not a family contact of elder {args.elder[0]}",
                                       code="console_bad_contact")
                contacts = {args.elder[0]: args.contact}
            user = await create_user(db, username=args.username, role=args.role, password=password,
                                     display_name=args.display_name, elder_ids=tuple(args.elder), contact_ids=contacts)
    except (OperationalError, ProgrammingError) as exc:
        raise StoreError(f"database not ready ({type(exc).__name__}); run `assistant db upgrade` first") from exc
    finally:
        await engine.dispose()
    print(f"created {user.role} user {user.username!r} (id {user.id})")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.admin_command == "create-user":
        return asyncio.run(_create(args, _read_password(args.password_stdin)))
    return 2
