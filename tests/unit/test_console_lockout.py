"""Sign-in throttling per (name, client address): an attacker elsewhere cannot lock the real admin out.

The HTTP tests run a real server on 127.0.0.1 and connect from two loopback source addresses
(127.0.0.2 = the attacker, 127.0.0.1 = the admin), so the address is the socket peer, as in production.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from assistant.console import auth, users
from assistant.console.app import client_ip, create_app
from assistant.platform.models_console import AuditEntry, LoginAttempt
from assistant.services import SERVICES_KEY
from tests.unit.console_helpers import PASSWORD, login

ATTACKER, ADMIN = "127.0.0.2", "127.0.0.1"


def _loopback_alias_works() -> bool:
    try:
        with socket.socket() as s:
            s.bind((ATTACKER, 0))
        return True
    except OSError:
        return False


@pytest.fixture
async def sessions(settings):
    app = create_app(settings)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    async with app[SERVICES_KEY].sessions() as db:
        await users.create_user(db, username="admin", role="admin", password=PASSWORD)
    try:
        yield app, client
    finally:
        await client.close()


async def _client_from(server_client: TestClient, source_ip: str) -> TestClient:
    """A second client of the same server whose connections come from ``source_ip``."""
    connector = aiohttp.TCPConnector(local_addr=(source_ip, 0))
    client = TestClient(server_client.server, connector=connector)
    await client.start_server()
    return client


async def test_failures_from_one_address_do_not_lock_the_name_elsewhere(sessions):
    app, _ = sessions
    async with app[SERVICES_KEY].sessions() as db:
        for _ in range(auth.MAX_FAILED_LOGINS + 5):
            result = await auth.login(db, username="admin", password="wrong password!", ip="203.0.113.9")
        assert result.locked
        ok = await auth.login(db, username="admin", password=PASSWORD, ip="198.51.100.1")
        assert ok.ok and not ok.locked
        # the attacker's address stays locked for that name, right password or not
        again = await auth.login(db, username="admin", password=PASSWORD, ip="203.0.113.9")
        assert again.locked and not again.ok


@pytest.mark.skipif(not _loopback_alias_works(), reason="cannot bind 127.0.0.2 on this host")
async def test_lockout_from_another_ip_does_not_block_the_real_admin(sessions):
    app, server_client = sessions
    attacker = await _client_from(server_client, ATTACKER)
    admin = await _client_from(server_client, ADMIN)
    try:
        statuses = []
        for _ in range(auth.MAX_FAILED_LOGINS + 2):
            # a forged X-Forwarded-For does not move the failures onto the admin's address
            attacker.session.headers["X-Forwarded-For"] = ADMIN
            statuses.append((await login(attacker, "admin", "wrong password!")).status)
        assert statuses[-1] == 429 and statuses[0] == 401
        out = await login(admin, "admin")
        assert out.status == 303 and out.location == "/console/"
        async with app[SERVICES_KEY].sessions() as db:
            ips = set((await db.execute(select(LoginAttempt.ip).where(LoginAttempt.ok.is_(False)))).scalars())
        assert ips == {ATTACKER}
        assert (await login(attacker, "admin")).status == 429  # still locked where the guessing came from
    finally:
        await attacker.close()
        await admin.close()


async def test_many_addresses_guessing_one_name_spare_the_owners_known_address(sessions):
    app, _ = sessions
    async with app[SERVICES_KEY].sessions() as db:
        assert (await auth.login(db, username="admin", password=PASSWORD, ip="198.51.100.1")).ok
        now = auth.utcnow() + dt.timedelta(milliseconds=1)
        db.add_all([LoginAttempt(username="admin", ip=f"203.0.113.{i % 250}", ok=False, at=now)
                    for i in range(auth.MAX_FAILED_PER_NAME)])
        await db.commit()
        fresh = await auth.login(db, username="admin", password=PASSWORD, ip="192.0.2.77")
        assert fresh.locked and not fresh.ok  # a new address is refused while the name is under attack
        known = await auth.login(db, username="admin", password=PASSWORD, ip="198.51.100.1")
        assert known.ok  # the owner's usual address still signs in


async def test_unlock_lifts_a_lock_without_a_password_change(sessions):
    app, _ = sessions
    async with app[SERVICES_KEY].sessions() as db:
        for _ in range(auth.MAX_FAILED_LOGINS):
            await auth.login(db, username="admin", password="wrong password!", ip="198.51.100.1")
        assert await auth.is_locked(db, "admin", now=auth.utcnow(), ip="198.51.100.1")
        await auth.unlock(db, username="admin")
        assert not await auth.is_locked(db, "admin", now=auth.utcnow(), ip="198.51.100.1")
        assert (await auth.login(db, username="admin", password=PASSWORD, ip="198.51.100.1")).ok
        # an address over the per-address limit, unlocked by address
        db.add_all([LoginAttempt(username=f"n{i}", ip="192.0.2.5", ok=False, at=auth.utcnow())
                    for i in range(auth.MAX_FAILED_PER_IP)])
        await db.commit()
        assert await auth.is_locked(db, "admin", now=auth.utcnow(), ip="192.0.2.5")
        await auth.unlock(db, ip="192.0.2.5")
        assert not await auth.is_locked(db, "admin", now=auth.utcnow(), ip="192.0.2.5")
        rows = (await db.execute(select(AuditEntry).where(AuditEntry.action == "unlock_login"))).scalars().all()
        assert [(r.target_type, r.username) for r in rows] == [("user", "admin-cli"), ("ip", "admin-cli")]
        with pytest.raises(auth.NotFoundError):
            await auth.unlock(db, username="nobody")


async def test_password_reset_still_unlocks(sessions):
    app, _ = sessions
    async with app[SERVICES_KEY].sessions() as db:
        for _ in range(auth.MAX_FAILED_LOGINS):
            await auth.login(db, username="admin", password="wrong password!", ip="198.51.100.1")
        user = await users.user_by_name(db, "admin")
        await users.reset_password(db, user.id, PASSWORD + "!")
        later = auth.utcnow() + dt.timedelta(milliseconds=1)
        assert not await auth.is_locked(db, "admin", now=later, ip="198.51.100.1")


def test_client_ip_is_the_peer_unless_the_peer_is_a_trusted_proxy(settings):
    from aiohttp.test_utils import make_mocked_request

    class Transport:
        def __init__(self, peer: str) -> None:
            self.peer = peer

        def get_extra_info(self, name: str, default=None):
            return (self.peer, 40000) if name == "peername" else default

        def is_closing(self) -> bool:
            return False

    def ip(peer: str, forwarded: str | None, trusted: tuple[str, ...]) -> str:
        from types import SimpleNamespace

        from aiohttp import web

        app = web.Application()  # client_ip reads the trusted proxies from the process's services
        app[SERVICES_KEY] = SimpleNamespace(settings=dataclasses.replace(  # type: ignore[assignment]
            settings, server=dataclasses.replace(settings.server, trusted_proxies=trusted)))
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        return client_ip(make_mocked_request("POST", "/console/login", headers=headers, app=app,
                                             transport=Transport(peer)))

    assert ip("192.0.2.1", "10.9.9.9", ()) == "192.0.2.1"  # no trusted proxy: the header is ignored
    assert ip("192.0.2.1", "10.9.9.9", ("10.0.0.1",)) == "192.0.2.1"  # the peer is not the proxy
    assert ip("10.0.0.1", "1.2.3.4, 10.9.9.9", ("10.0.0.1",)) == "10.9.9.9"  # right-most untrusted hop
    assert ip("10.0.0.1", "10.9.9.9, 10.0.0.2", ("10.0.0.1", "10.0.0.2")) == "10.9.9.9"
    assert ip("10.0.0.1", None, ("10.0.0.1",)) == "10.0.0.1"


async def test_one_address_hammering_a_locked_name_does_not_lock_it_for_new_addresses(sessions):
    """Attempts refused because of a lock are not counted: a single attacker cannot reach the name's total."""
    app, _ = sessions
    async with app[SERVICES_KEY].sessions() as db:
        for _ in range(auth.MAX_FAILED_PER_NAME + 20):
            await auth.login(db, username="admin", password="wrong password!", ip="203.0.113.9")
        count, _ = await auth.failed_logins(db, "admin", now=auth.utcnow())
        assert count == auth.MAX_FAILED_LOGINS
        assert (await auth.login(db, username="admin", password=PASSWORD, ip="192.0.2.200")).ok
