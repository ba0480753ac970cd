"""Console sign-in: argon2 hashing, sessions, lockout after ten wrong passwords, no default accounts."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from assistant.console import auth, users
from assistant.console.app import create_app
from assistant.platform.models_console import AuditEntry, ConsoleSession, ConsoleUser, LoginAttempt
from assistant.services import SERVICES_KEY
from tests.unit.console_helpers import PASSWORD, login


def test_hash_is_argon2id_and_verifies():
    h = auth.hash_password(PASSWORD)
    assert h.startswith("$argon2id$")
    assert PASSWORD not in h
    assert auth.verify_password(h, PASSWORD)
    assert not auth.verify_password(h, PASSWORD + "x")
    assert not auth.verify_password("not-a-hash", PASSWORD)
    assert auth.hash_password(PASSWORD) != h  # salted


def test_short_password_refused():
    with pytest.raises(auth.WeakPasswordError):
        auth.hash_password("short")


@pytest.fixture
async def app_db(aiohttp_client, settings):
    app = create_app(settings)
    client = await aiohttp_client(app)
    sessions = app[SERVICES_KEY].sessions
    async with sessions() as db:
        await users.create_user(db, username="op1", role="operator", password=PASSWORD)
    return client, sessions


async def test_no_users_exist_until_created(aiohttp_client, settings):
    app = create_app(settings)
    client = await aiohttp_client(app)
    async with app[SERVICES_KEY].sessions() as db:
        assert await db.scalar(select(func.count()).select_from(ConsoleUser)) == 0
    for name in ("admin", "operator", "root"):
        out = await login(client, name, "admin")
        assert out.status == 401


async def test_login_sets_strict_httponly_session_and_stores_only_hash(app_db):
    client, sessions = app_db
    out = await login(client, "op1")
    assert out.status == 303 and out.location == "/console/"
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/console/"))[auth.SESSION_COOKIE]
    header = next(h for h in out.set_cookie if h.startswith(auth.SESSION_COOKIE + "="))
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
    assert len(cookie.value) >= 40
    async with sessions() as db:
        stored = (await db.execute(select(ConsoleSession.id_hash))).scalars().all()
    assert stored == [auth.session_id_hash(cookie.value)]
    assert cookie.value not in stored
    resp = await client.get("/console/")
    assert resp.status == 200 and "审核队列" in await resp.text()


async def test_wrong_password_then_lockout_after_ten(app_db):
    client, sessions = app_db
    for i in range(auth.MAX_FAILED_LOGINS - 1):
        out = await login(client, "op1", "wrong password!")
        assert out.status == 401, i
    out = await login(client, "op1", "wrong password!")  # the tenth
    assert out.status == 429 and "锁定" in out.text
    # now even the right password is refused while locked
    out = await login(client, "op1", PASSWORD)
    assert out.status == 429
    async with sessions() as db:
        assert await db.scalar(select(func.count()).select_from(ConsoleSession)) == 0
        # the refused attempt is audited, not counted (it checked no password)
        assert await db.scalar(select(func.count()).select_from(LoginAttempt).where(LoginAttempt.ok.is_(False))) == 10
        locked = await db.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "login_locked"))
        assert locked == 1


async def test_lock_expires_and_success_resets_count(app_db):
    client, sessions = app_db
    async with sessions() as db:
        old = auth.utcnow() - dt.timedelta(seconds=auth.LOCKOUT_S + 5)
        db.add_all([LoginAttempt(username="op1", ok=False, at=old) for _ in range(12)])
        await db.commit()
        assert not await auth.is_locked(db, "op1", now=auth.utcnow())
    for _ in range(5):
        assert (await login(client, "op1", "nope nope nope")).status == 401
    assert (await login(client, "op1")).status == 303
    for _ in range(5):  # counted from the last success: 5 more do not lock
        assert (await login(client, "op1", "nope nope nope")).status == 401
    async with sessions() as db:
        assert not await auth.is_locked(db, "op1", now=auth.utcnow())


async def test_unknown_user_is_locked_the_same_way(app_db):
    client, _ = app_db
    statuses = [(await login(client, "ghost", "whatever123")).status for _ in range(auth.MAX_FAILED_LOGINS)]
    assert statuses[:-1] == [401] * (auth.MAX_FAILED_LOGINS - 1) and statuses[-1] == 429


async def test_login_form_needs_its_csrf_cookie(app_db):
    client, _ = app_db
    resp = await client.post("/console/login", data={"_csrf": "forged", "username": "op1", "password": PASSWORD},
                             allow_redirects=False)
    assert resp.status == 403
    assert auth.SESSION_COOKIE not in {c.key for c in client.session.cookie_jar}


async def test_expired_session_is_refused(app_db):
    client, sessions = app_db
    assert (await login(client, "op1")).status == 303
    async with sessions() as db:
        s = (await db.execute(select(ConsoleSession))).scalar_one()
        s.expires_at = auth.utcnow() - dt.timedelta(seconds=1)
        await db.commit()
    resp = await client.get("/console/", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/console/login")


async def test_logout_ends_session(app_db):
    client, _ = app_db
    await login(client, "op1")
    page = await client.get("/console/")
    from tests.unit.console_helpers import csrf_from

    resp = await client.post("/console/logout", data={"_csrf": csrf_from(await page.text())}, allow_redirects=False)
    assert resp.status == 303
    resp = await client.get("/console/", allow_redirects=False)
    assert resp.status == 303


async def test_next_parameter_cannot_leave_the_site(app_db):
    client, _ = app_db
    page = await client.get("/console/login")
    from tests.unit.console_helpers import csrf_from

    resp = await client.post("/console/login", data={"_csrf": csrf_from(await page.text()), "username": "op1",
                                                     "password": PASSWORD, "next": "//evil.example/"},
                             allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/"


async def test_console_principal_for_other_areas(app_db):
    from aiohttp.test_utils import make_mocked_request

    from assistant.console.app import console_principal

    client, _ = app_db
    await login(client, "op1")
    sid = client.session.cookie_jar.filter_cookies(client.make_url("/api/"))[auth.SESSION_COOKIE].value
    app = client.server.app
    req = make_mocked_request("GET", "/api/elders/1", headers={"Cookie": f"{auth.SESSION_COOKIE}={sid}"}, app=app)
    p = await console_principal(req)
    assert p is not None and p.username == "op1" and p.is_staff
    bad = make_mocked_request("GET", "/api/elders/1", headers={"Cookie": f"{auth.SESSION_COOKIE}=nope"}, app=app)
    assert await console_principal(bad) is None


async def test_one_address_guessing_many_names_is_refused(app_db):
    client, sessions = app_db
    now = auth.utcnow()
    async with sessions() as db:
        db.add_all([LoginAttempt(username=f"name{i}", ip="127.0.0.1", ok=False, at=now)
                    for i in range(auth.MAX_FAILED_PER_IP)])
        await db.commit()
    out = await login(client, "op1")  # right password, fresh name, but this address is throttled
    assert out.status == 429


async def test_platform_api_accepts_staff_sessions_only(app_db):
    from aiohttp.test_utils import make_mocked_request

    from assistant.console.app import api_auth_hook
    from tests.unit.console_helpers import csrf_from

    client, sessions = app_db
    async with sessions() as db:
        from assistant.platform.models import Elder

        elder = Elder(name="陈伯", district="蓬江")
        db.add(elder)
        await db.commit()
        await users.create_user(db, username="fam1", role="family", password=PASSWORD, elder_ids=(elder.id,))
    app = client.server.app

    def req(method: str, sid: str, **headers: str):
        return make_mocked_request(method, "/api/orders", app=app,
                                   headers={"Cookie": f"{auth.SESSION_COOKIE}={sid}", **headers})

    await login(client, "op1")
    token = csrf_from(await (await client.get("/console/")).text())
    sid = client.session.cookie_jar.filter_cookies(client.make_url("/api/"))[auth.SESSION_COOKIE].value
    assert await api_auth_hook(req("GET", sid)) == "console:op1"
    assert await api_auth_hook(req("POST", sid)) is None  # no CSRF header
    assert await api_auth_hook(req("POST", sid, **{"X-CSRF-Token": token})) == "console:op1"
    client.session.cookie_jar.clear()
    await login(client, "fam1", area="family")
    fam_sid = client.session.cookie_jar.filter_cookies(client.make_url("/api/"))[auth.SESSION_COOKIE].value
    assert await api_auth_hook(req("GET", fam_sid)) is None
