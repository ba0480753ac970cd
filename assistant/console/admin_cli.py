"""``assistant admin``: console and family-portal users from the command line.

    assistant admin create-user --username U --role R [--elder ID] [--contact ID] [--password-stdin]
    assistant admin reset-password --username U [--password-stdin]
    assistant admin disable --username U        (ends their sessions)
    assistant admin enable --username U
    assistant admin link-elder --username U --elder ID [--contact ID]
    assistant admin unlock [--username U] [--ip ADDRESS]   (lift a sign-in lock; the password stays)
    assistant admin set-phone --username U (--phone sip:op1@host | --clear)   (the operator's SIP phone:
                                                 their console pops a hand-over when it rings)

There are no default accounts or passwords. The password is read from standard input with
``--password-stdin`` (first line, for scripts), otherwise asked twice on the terminal without echo.
The database must be migrated first (``assistant db upgrade``). The work is done by
``assistant.console.users``, which the console's admin pages (``/console/users``) use too.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from assistant.console import users
from assistant.console.auth import ConsoleError, unlock
from assistant.console.users import check_new_password
from assistant.errors import StoreError
from assistant.platform.db import create_engine_for, session_factory
from assistant.platform.models_console import ROLES
from assistant.settings import load_settings


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
    p = sub.add_parser("reset-password", help="set a new password (ends the user's sessions)")
    p.add_argument("--username", required=True)
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    for name, text in (("disable", "stop a user signing in (ends their sessions)"), ("enable", "let a user sign in again")):
        sub.add_parser(name, help=text).add_argument("--username", required=True)
    p = sub.add_parser("link-elder", help="let a family user act for one more elder (or change their contact)")
    p.add_argument("--username", required=True)
    p.add_argument("--elder", type=int, required=True, metavar="ID")
    p.add_argument("--contact", type=int, default=None, metavar="ID")
    p = sub.add_parser("set-phone", help="the SIP phone a staff user answers hand-overs on (their console pops the call)")
    p.add_argument("--username", required=True)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--phone", metavar="URI", help="as in handover.operator_uris, e.g. sip:op1@sip.platform.example")
    which.add_argument("--clear", action="store_true", help="unlink the user's phone")
    p = sub.add_parser("unlock", help="lift a sign-in lock for a user (every address) and/or an address (every name)")
    p.add_argument("--username", default=None)
    p.add_argument("--ip", default=None, metavar="ADDRESS")


def _read_password(from_stdin: bool) -> str:

    if from_stdin:
        return check_new_password(sys.stdin.readline().rstrip("\r\n"))
    if not sys.stdin.isatty():
        raise ConsoleError("no terminal to ask for a password: use --password-stdin", code="console_no_password")
    password = getpass.getpass("password: ")
    return check_new_password(password, getpass.getpass("again: "))


async def _run(args: argparse.Namespace, password: str | None) -> str:
    from sqlalchemy.exc import OperationalError, ProgrammingError


    engine = create_engine_for(load_settings())
    try:
        async with session_factory(engine)() as db:
            if args.admin_command == "unlock":
                if not args.username and not args.ip:
                    raise ConsoleError("unlock needs --username and/or --ip", code="console_bad_unlock")
                await unlock(db, username=args.username, ip=args.ip)
                return "unlocked " + " and ".join(
                    x for x in (f"user {args.username!r}" if args.username else "",
                                f"address {args.ip}" if args.ip else "") if x)
            if args.admin_command == "create-user":
                assert password is not None
                if args.contact is not None and len(args.elder) != 1:
                    raise ConsoleError("--contact needs exactly one --elder", code="console_bad_contact")
                user = await users.create_user(db, username=args.username, role=args.role, password=password,
                                               display_name=args.display_name, elder_ids=tuple(args.elder),
                                               contact_ids={args.elder[0]: args.contact} if args.contact else None)
                return f"created {user.role} user {user.username!r} (id {user.id})"
            user = await users.user_by_name(db, args.username)
            if args.admin_command == "reset-password":
                assert password is not None
                await users.reset_password(db, user.id, password)
                return f"new password set for {user.username!r}; their sessions ended"
            if args.admin_command in ("disable", "enable"):
                await users.set_active(db, user.id, args.admin_command == "enable")
                return f"{user.username!r} {args.admin_command}d"
            if args.admin_command == "set-phone":
                user = await users.set_phone(db, user.id, None if args.clear else args.phone)
                return (f"{user.username!r}: hand-overs to {user.phone_uri} pop up on their console" if user.phone_uri
                        else f"{user.username!r}: no phone linked")
            await users.link_elder(db, user.id, args.elder, args.contact)
            return f"{user.username!r} linked to elder {args.elder}"
    except (OperationalError, ProgrammingError) as exc:
        raise StoreError(f"database not ready ({type(exc).__name__}); run `assistant db upgrade` first") from exc
    finally:
        await engine.dispose()


def run(args: argparse.Namespace) -> int:
    needs_password = args.admin_command in ("create-user", "reset-password")
    password = _read_password(args.password_stdin) if needs_password else None
    print(asyncio.run(_run(args, password)))
    return 0
