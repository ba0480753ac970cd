"""``assistant admin create-user`` against a database migrated by ``assistant db upgrade`` (console_0001)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.console_helpers import PASSWORD

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assistant.cli", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    env = dict(os.environ)
    env["ASSISTANT_VAR_DIR"] = str(tmp_path / "var")
    env["ASSISTANT_STORE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'a.db'}"
    up = cli("db", "upgrade", env=env)
    assert up.returncode == 0, up.stderr
    return env


def test_create_users_and_refusals(cli_env):
    import asyncio

    from sqlalchemy import select

    from assistant.console.auth import verify_password
    from assistant.platform.db import create_engine_for, session_factory
    from assistant.platform.models import Elder
    from assistant.platform.models_console import AuditEntry, ConsoleUser, ConsoleUserElder
    from assistant.settings import load_settings

    ok = cli("admin", "create-user", "--username", "wang", "--role", "operator", "--password-stdin",
             env=cli_env, stdin=PASSWORD + "\n")
    assert ok.returncode == 0 and "created operator user 'wang'" in ok.stdout, ok.stderr
    again = cli("admin", "create-user", "--username", "wang", "--role", "operator", "--password-stdin",
                env=cli_env, stdin=PASSWORD + "\n")
    assert again.returncode == 2 and "error[console_user_exists]" in again.stderr
    weak = cli("admin", "create-user", "--username", "li", "--role", "operator", "--password-stdin",
               env=cli_env, stdin="123\n")
    assert weak.returncode == 2 and "error[console_weak_password]" in weak.stderr
    no_tty = cli("admin", "create-user", "--username", "li", "--role", "operator", env=cli_env)
    assert no_tty.returncode == 2 and "--password-stdin" in no_tty.stderr  # never a default password
    fam_no_elder = cli("admin", "create-user", "--username", "f1", "--role", "family", "--password-stdin",
                       env=cli_env, stdin=PASSWORD + "\n")
    assert fam_no_elder.returncode == 2 and "error[console_no_elder]" in fam_no_elder.stderr
    missing_elder = cli("admin", "create-user", "--username", "f1", "--role", "family", "--elder", "999",
                        "--password-stdin", env=cli_env, stdin=PASSWORD + "\n")
    assert missing_elder.returncode == 2 and "no elder with id 999" in missing_elder.stderr

    settings = load_settings(cli_env)

    async def check() -> None:
        engine = create_engine_for(settings)
        try:
            async with session_factory(engine)() as db:
                elder = Elder(name="陈伯", district="蓬江")
                db.add(elder)
                await db.commit()
                elder_id = elder.id
            bad = await asyncio.to_thread(
                cli, "admin", "create-user", "--username", "x", "--role", "family", "--elder", str(elder_id),
                "--contact", "77", "--password-stdin", env=cli_env, stdin=PASSWORD + "\n")
            assert bad.returncode == 2 and "error[console_bad_contact]" in bad.stderr
            fam = await asyncio.to_thread(
                cli, "admin", "create-user", "--username", "chen_hong", "--role", "family", "--elder", str(elder_id),
                "--password-stdin", env=cli_env, stdin=PASSWORD + "\n")
            assert fam.returncode == 0, fam.stderr
            async with session_factory(engine)() as db:
                users = {u.username: u for u in (await db.execute(select(ConsoleUser))).scalars()}
                assert set(users) == {"wang", "chen_hong"}
                assert verify_password(users["wang"].password_hash, PASSWORD)
                links = (await db.execute(select(ConsoleUserElder))).scalars().all()
                assert [(link.user_id, link.elder_id) for link in links] == [(users["chen_hong"].id, elder_id)]

            # the same functions as the console's user pages: reset, disable/enable, link
            def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
                return cli("admin", *args, env=cli_env, stdin=stdin)

            weak = await asyncio.to_thread(run, "reset-password", "--username", "wang", "--password-stdin", stdin="x\n")
            assert weak.returncode == 2 and "error[console_weak_password]" in weak.stderr
            reset = await asyncio.to_thread(run, "reset-password", "--username", "wang", "--password-stdin",
                                            stdin="another long passphrase\n")
            assert reset.returncode == 0, reset.stderr
            nobody = await asyncio.to_thread(run, "disable", "--username", "nobody")
            assert nobody.returncode == 2 and "error[console_no_user]" in nobody.stderr
            off = await asyncio.to_thread(run, "disable", "--username", "wang")
            assert off.returncode == 0 and "disabled" in off.stdout, off.stderr
            staff_link = await asyncio.to_thread(run, "link-elder", "--username", "wang", "--elder", str(elder_id))
            assert staff_link.returncode == 2 and "error[console_bad_role]" in staff_link.stderr
            async with session_factory(engine)() as db:
                wang = await db.scalar(select(ConsoleUser).where(ConsoleUser.username == "wang"))
                assert not wang.active and verify_password(wang.password_hash, "another long passphrase")
                actions = [e.action for e in (await db.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars()
                           if e.username == "admin-cli"]
                assert actions == ["create_user", "create_user", "reset_password", "disable_user"]
            on = await asyncio.to_thread(run, "enable", "--username", "wang")
            assert on.returncode == 0, on.stderr
        finally:
            await engine.dispose()

    asyncio.run(check())


def test_unlock_lifts_a_sign_in_lock(cli_env):
    import asyncio

    from sqlalchemy import select

    from assistant.console import auth
    from assistant.platform.db import create_engine_for, session_factory
    from assistant.platform.models_console import LoginAttempt
    from assistant.settings import load_settings

    made = cli("admin", "create-user", "--username", "wang", "--role", "operator", "--password-stdin",
               env=cli_env, stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    settings = load_settings(cli_env)

    async def locked() -> bool:
        engine = create_engine_for(settings)
        try:
            async with session_factory(engine)() as db:
                if not await db.scalar(select(LoginAttempt.id).limit(1)):
                    db.add_all([LoginAttempt(username="wang", ip="192.0.2.9", ok=False, at=auth.utcnow())
                                for _ in range(auth.MAX_FAILED_LOGINS)])
                    await db.commit()
                return await auth.is_locked(db, "wang", now=auth.utcnow(), ip="192.0.2.9")
        finally:
            await engine.dispose()

    assert asyncio.run(locked())
    none = cli("admin", "unlock", env=cli_env)
    assert none.returncode == 2 and "error[console_bad_unlock]" in none.stderr
    out = cli("admin", "unlock", "--username", "wang", env=cli_env)
    assert out.returncode == 0 and "unlocked user 'wang'" in out.stdout, out.stderr
    assert not asyncio.run(locked())


def test_set_phone_links_an_operator_to_their_sip_phone(cli_env):
    """Hand-overs ring operators' SIP phones (issue #16): the console pops the call for the user linked to it."""
    import asyncio

    from sqlalchemy import select

    from assistant.platform.db import create_engine_for, session_factory
    from assistant.platform.models_console import ConsoleUser
    from assistant.settings import load_settings

    for name in ("wang", "li"):
        made = cli("admin", "create-user", "--username", name, "--role", "operator", "--password-stdin",
                   env=cli_env, stdin=PASSWORD + "\n")
        assert made.returncode == 0, made.stderr
    out = cli("admin", "set-phone", "--username", "wang", "--phone", "sip:op1@sip.platform.example", env=cli_env)
    assert out.returncode == 0 and "sip:op1@sip.platform.example" in out.stdout, out.stderr
    taken = cli("admin", "set-phone", "--username", "li", "--phone", "sip:op1@sip.platform.example:5060", env=cli_env)
    assert taken.returncode != 0 and "console_phone_taken" in taken.stderr
    bad = cli("admin", "set-phone", "--username", "li", "--phone", "op2", env=cli_env)
    assert bad.returncode != 0 and "console_bad_phone" in bad.stderr

    async def phones() -> dict[str, str | None]:
        engine = create_engine_for(load_settings(cli_env))
        try:
            async with session_factory(engine)() as db:
                return {u.username: u.phone_uri for u in (await db.scalars(select(ConsoleUser))).all()}
        finally:
            await engine.dispose()

    assert asyncio.run(phones()) == {"wang": "sip:op1@sip.platform.example", "li": None}
    cleared = cli("admin", "set-phone", "--username", "wang", "--clear", env=cli_env)
    assert cleared.returncode == 0 and "no phone" in cleared.stdout
    assert asyncio.run(phones())["wang"] is None
