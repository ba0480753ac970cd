"""User management in the console (``/console/users``, admins only): list, create, disable/enable, reset
password, link family users to elders. Same functions as ``assistant admin``; every change audited."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from assistant.console import auth, users
from assistant.console.app import create_app
from assistant.console.seed import DemoIds, seed_demo
from assistant.platform.models_console import AuditEntry, ConsoleSession, ConsoleUser, ConsoleUserElder
from assistant.services import SERVICES_KEY
from tests.unit.console_helpers import PASSWORD, csrf_from, login

NEW_PASSWORD = "a new long passphrase"


@dataclass
class Env:
    client: TestClient
    app: object
    ids: DemoIds
    admin_id: int

    def db(self):
        return self.app[SERVICES_KEY].sessions()

    async def as_user(self, name: str, password: str = PASSWORD) -> str:
        self.client.session.cookie_jar.clear()
        out = await login(self.client, name, password)
        assert out.status == 303, out.text
        return csrf_from(await (await self.client.get("/console/")).text())

    async def user(self, username: str) -> ConsoleUser | None:
        async with self.db() as db:
            return await db.scalar(select(ConsoleUser).where(ConsoleUser.username == username))

    async def audit(self, action: str) -> list[AuditEntry]:
        async with self.db() as db:
            return list((await db.execute(select(AuditEntry).where(AuditEntry.action == action))).scalars())

    async def post(self, path: str, data: dict, *, token: str):
        return await self.client.post(path, data={"_csrf": token, **data}, allow_redirects=False)


async def session_of(env: Env, name: str) -> str:
    """Sign ``name`` in and return their session cookie (to present again later)."""
    await env.as_user(name)
    cookie = env.client.session.cookie_jar.filter_cookies(env.client.make_url("/"))[auth.SESSION_COOKIE].value
    await use_session(env, cookie, expect=200)
    return cookie


async def use_session(env: Env, cookie: str, *, expect: int) -> None:
    """Present an earlier session cookie (303 to the sign-in page once that session has ended)."""
    env.client.session.cookie_jar.clear()
    env.client.session.cookie_jar.update_cookies({auth.SESSION_COOKIE: cookie})
    assert (await env.client.get("/console/", allow_redirects=False)).status == expect


@pytest.fixture
async def env(aiohttp_client, settings) -> Env:
    app = create_app(settings)
    client = await aiohttp_client(app)
    async with app[SERVICES_KEY].sessions() as db:
        ids = await seed_demo(db)
        admin = await users.create_user(db, username="boss", role="admin", password=PASSWORD, display_name="刘管理员")
        await users.create_user(db, username="sup", role="supervisor", password=PASSWORD)
        await users.create_user(db, username="op", role="operator", password=PASSWORD)
        await users.create_user(db, username="fam_a", role="family", password=PASSWORD, elder_ids=(ids.elder_a,))
    return Env(client=client, app=app, ids=ids, admin_id=admin.id)


async def test_only_admins_reach_user_pages(env):
    for name in ("op", "sup"):
        token = await env.as_user(name)
        assert "/console/users" not in await (await env.client.get("/console/")).text()  # no nav link
        assert (await env.client.get("/console/users")).status == 403
        r = await env.post("/console/users", {"username": "x1", "role": "operator", "password": NEW_PASSWORD,
                                              "password_again": NEW_PASSWORD}, token=token)
        assert r.status == 403
        target = await env.user("fam_a")
        assert (await env.post(f"/console/users/{target.id}/disable", {}, token=token)).status == 403
    assert await env.user("x1") is None and (await env.user("fam_a")).active
    env.client.session.cookie_jar.clear()
    r = await env.client.get("/console/users", allow_redirects=False)
    assert r.status == 303 and "/console/login" in r.headers["Location"]
    # family users are not staff at all
    env.client.session.cookie_jar.clear()
    await login(env.client, "fam_a", area="family")
    assert (await env.client.get("/console/users")).status == 403


async def test_list_shows_users_roles_and_links(env):
    await env.as_user("boss")
    home = await (await env.client.get("/console/")).text()
    assert 'href="/console/users"' in home
    html = await (await env.client.get("/console/users")).text()
    for name in ("boss", "sup", "op", "fam_a"):
        assert f">{name}</a>" in html
    assert "管理员" in html and "家属" in html and f"陈伯（#{env.ids.elder_a}）" in html
    assert "（本人）" in html
    assert PASSWORD not in html and "$argon2" not in html
    assert f'<option value="{env.ids.elder_b}">李婆婆（新会）</option>' in html  # elders to pick from


async def test_create_users_with_the_cli_policy_and_audit(env):
    token = await env.as_user("boss")
    base = {"display_name": "王小明", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
    r = await env.post("/console/users", {**base, "username": "wang", "role": "operator"}, token=token)
    assert r.status == 303
    wang = await env.user("wang")
    assert r.headers["Location"] == f"/console/users/{wang.id}?done=created"
    assert wang.role == "operator" and wang.display_name == "王小明" and wang.active
    assert wang.password_hash.startswith("$argon2id$") and auth.verify_password(wang.password_hash, NEW_PASSWORD)
    created = [e for e in await env.audit("create_user") if e.username != "admin-cli"]  # (not the fixture's)
    assert [(e.username, e.role, e.target_id, e.detail["username"]) for e in created] == [
        ("boss", "admin", str(wang.id), "wang")]

    refusals = [
        ({"username": "li", "role": "operator", "password": "short", "password_again": "short"}, "密码太短"),
        ({"username": "li", "role": "operator", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD + "x"},
         "两次输入的密码不一致"),
        ({**base, "username": "wang", "role": "operator"}, "这个用户名已被使用"),
        ({**base, "username": "has space", "role": "operator"}, "不能有空格"),
        ({**base, "username": "li", "role": "root"}, "请检查角色"),
        ({**base, "username": "f2", "role": "family"}, "请填写存在的长者编号"),
        ({**base, "username": "f2", "role": "family", "elder_id": "999"}, "请填写存在的长者编号"),
        ({**base, "username": "f2", "role": "family", "elder_id": "abc"}, "编号需要是数字"),
        ({**base, "username": "li", "role": "operator", "elder_id": str(env.ids.elder_a)}, "只有家属账号可以关联长者"),
    ]
    for data, message in refusals:
        r = await env.post("/console/users", data, token=token)
        html = await r.text()
        assert r.status == 400 and message in html, (data, r.status)
        assert NEW_PASSWORD not in html  # the password is never echoed back
        if data["username"] != "wang":
            assert f'value="{data["username"]}"' in html  # the rest of the form is kept
    assert await env.user("li") is None and await env.user("f2") is None
    assert len([e for e in await env.audit("create_user") if e.username == "boss"]) == 1

    r = await env.post("/console/users", {**base, "username": "chen_hong", "role": "family",
                                          "elder_id": str(env.ids.elder_a)}, token=token)
    assert r.status == 303 and r.headers["Location"].endswith("done=created_family")
    fam = await env.user("chen_hong")
    async with env.db() as db:
        links = (await db.execute(select(ConsoleUserElder).where(ConsoleUserElder.user_id == fam.id))).scalars().all()
    assert [(link.elder_id, link.contact_id) for link in links] == [(env.ids.elder_a, None)]
    # the new user can sign in with the password the admin set
    env.client.session.cookie_jar.clear()
    assert (await login(env.client, "wang", NEW_PASSWORD)).status == 303


async def test_disable_enable_ends_sessions_and_never_self(env):
    # op is signed in elsewhere
    op_cookie = await session_of(env, "op")
    token = await env.as_user("boss")
    op = await env.user("op")
    page = await (await env.client.get(f"/console/users/{op.id}")).text()
    assert f'action="/console/users/{op.id}/disable"' in page
    r = await env.post(f"/console/users/{op.id}/disable", {}, token=token)
    assert r.status == 303 and r.headers["Location"].endswith("done=disabled")
    assert not (await env.user("op")).active
    async with env.db() as db:
        assert await db.scalar(select(func.count()).select_from(ConsoleSession)
                               .where(ConsoleSession.user_id == op.id)) == 0
    # the old session is dead, and the password no longer works
    await use_session(env, op_cookie, expect=303)
    env.client.session.cookie_jar.clear()
    assert (await login(env.client, "op")).status == 401

    token = await env.as_user("boss")
    html = await (await env.client.get("/console/users")).text()
    assert "已停用" in html
    r = await env.post(f"/console/users/{op.id}/enable", {}, token=token)
    assert r.status == 303 and (await env.user("op")).active
    assert [e.detail["username"] for e in await env.audit("disable_user")] == ["op"]
    assert [e.username for e in await env.audit("enable_user")] == ["boss"]

    # an admin cannot disable themself (so one admin always remains)
    own = await (await env.client.get(f"/console/users/{env.admin_id}")).text()
    assert "/disable" not in own and "不能停用自己" in own
    r = await env.post(f"/console/users/{env.admin_id}/disable", {}, token=token)
    assert r.status == 409 and "不能停用自己的账号" in await r.text()
    assert (await env.user("boss")).active
    assert len(await env.audit("disable_user")) == 1
    # unknown user
    assert (await env.post("/console/users/9999/disable", {}, token=token)).status == 404
    assert (await env.client.get("/console/users/9999")).status == 404


async def test_reset_password(env):
    sup_cookie = await session_of(env, "sup")
    token = await env.as_user("boss")
    sup = await env.user("sup")
    url = f"/console/users/{sup.id}/password"
    r = await env.post(url, {"password": "short", "password_again": "short"}, token=token)
    assert r.status == 400 and "密码太短" in await r.text()
    r = await env.post(url, {"password": NEW_PASSWORD, "password_again": "different passphrase"}, token=token)
    assert r.status == 400 and "不一致" in await r.text()
    assert auth.verify_password((await env.user("sup")).password_hash, PASSWORD)
    r = await env.post(url, {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD}, token=token)
    assert r.status == 303 and r.headers["Location"].endswith("done=password")
    assert auth.verify_password((await env.user("sup")).password_hash, NEW_PASSWORD)
    resets = await env.audit("reset_password")
    assert [(e.username, e.target_id) for e in resets] == [("boss", str(sup.id))]
    assert NEW_PASSWORD not in str(resets[0].detail)
    # sup's old session ended; the new password works, the old one does not
    await use_session(env, sup_cookie, expect=303)
    env.client.session.cookie_jar.clear()
    assert (await login(env.client, "sup")).status == 401
    assert (await login(env.client, "sup", NEW_PASSWORD)).status == 303
    # an admin resetting their own password stays signed in
    token = await env.as_user("boss")
    r = await env.post(f"/console/users/{env.admin_id}/password",
                       {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD}, token=token)
    assert r.status == 303
    assert (await env.client.get("/console/users")).status == 200


async def test_link_family_user_to_elders_and_contacts(env):
    token = await env.as_user("boss")
    fam = await env.user("fam_a")
    base = f"/console/users/{fam.id}"
    page = await (await env.client.get(base)).text()
    assert "关联的长者" in page and "陈小红（女儿，可代下单）" in page

    r = await env.post(f"{base}/elders", {"elder_id": str(env.ids.elder_b)}, token=token)
    assert r.status == 303 and r.headers["Location"].endswith("done=linked")
    # choose their own contact row for elder a; a contact of another elder is refused
    r = await env.post(f"{base}/elders", {"elder_id": str(env.ids.elder_a), "contact_id": str(env.ids.contact_b)},
                       token=token)
    assert r.status == 400 and "不是这位长者的家属联系人" in await r.text()
    r = await env.post(f"{base}/elders", {"elder_id": str(env.ids.elder_a), "contact_id": str(env.ids.contact_a)},
                       token=token)
    assert r.status == 303
    for bad, message in (({"elder_id": "999"}, "请填写存在的长者编号"), ({"elder_id": ""}, "请填写存在的长者编号")):
        r = await env.post(f"{base}/elders", bad, token=token)
        assert r.status == 400 and message in await r.text()
    async with env.db() as db:
        links = (await db.execute(select(ConsoleUserElder).where(ConsoleUserElder.user_id == fam.id)
                                  .order_by(ConsoleUserElder.elder_id))).scalars().all()
    assert [(k.elder_id, k.contact_id) for k in links] == [(env.ids.elder_a, env.ids.contact_a),
                                                           (env.ids.elder_b, None)]
    page = await (await env.client.get(base)).text()
    assert re.search(rf'<option value="{env.ids.contact_a}" selected>', page)

    # the family member now reaches both parents and may order for elder a (contact linked)
    env.client.session.cookie_jar.clear()
    await login(env.client, "fam_a", area="family")
    assert (await env.client.get(f"/family/elders/{env.ids.elder_b}")).status == 200

    token = await env.as_user("boss")
    r = await env.post(f"{base}/elders/{env.ids.elder_b}/delete", {}, token=token)
    assert r.status == 303 and r.headers["Location"].endswith("done=unlinked")
    r = await env.post(f"{base}/elders/{env.ids.elder_a}/delete", {}, token=token)  # the last one
    assert r.status == 409 and "至少要关联一位长者" in await r.text()
    r = await env.post(f"{base}/elders/{env.ids.elder_b}/delete", {}, token=token)
    assert r.status == 404
    # staff users are not linked to elders
    op = await env.user("op")
    r = await env.post(f"/console/users/{op.id}/elders", {"elder_id": str(env.ids.elder_a)}, token=token)
    assert r.status == 400 and "只有家属账号" in await r.text()
    assert [e.detail["elder_id"] for e in await env.audit("link_elder")] == [env.ids.elder_b, env.ids.elder_a]
    assert [e.detail["elder_id"] for e in await env.audit("unlink_elder")] == [env.ids.elder_b]
    env.client.session.cookie_jar.clear()
    await login(env.client, "fam_a", area="family")
    assert (await env.client.get(f"/family/elders/{env.ids.elder_b}")).status == 403


async def test_user_changes_need_csrf(env):
    await env.as_user("boss")
    op = await env.user("op")
    for path, data in ((f"/console/users/{op.id}/disable", {}),
                       (f"/console/users/{op.id}/password", {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD}),
                       ("/console/users", {"username": "x2", "role": "operator", "password": NEW_PASSWORD,
                                           "password_again": NEW_PASSWORD})):
        r = await env.client.post(path, data={**data, "_csrf": "forged"}, allow_redirects=False)
        assert r.status == 403 and "CSRF" in await r.text()
    op = await env.user("op")
    assert op.active and auth.verify_password(op.password_hash, PASSWORD) and await env.user("x2") is None
    assert len(await env.audit("csrf_refused")) == 3


async def test_user_page_shows_history_and_audit_labels(env):
    token = await env.as_user("boss")
    op = await env.user("op")
    await env.post(f"/console/users/{op.id}/disable", {}, token=token)
    html = await (await env.client.get(f"/console/users/{op.id}?done=disabled")).text()
    assert "账号已停用" in html and "停用用户" in html and "启用账号" in html
    audit = await (await env.client.get("/console/audit")).text()
    assert "停用用户" in audit and "disable_user" in audit


async def test_a_password_reset_lifts_the_lockout(env):
    env.client.session.cookie_jar.clear()
    for _ in range(auth.MAX_FAILED_LOGINS):
        await login(env.client, "sup", "wrong password!")
    assert (await login(env.client, "sup")).status == 429  # locked, even with the right password
    token = await env.as_user("boss")
    r = await env.post(f"/console/users/{(await env.user('sup')).id}/password",
                       {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD}, token=token)
    assert r.status == 303
    env.client.session.cookie_jar.clear()
    assert (await login(env.client, "sup", NEW_PASSWORD)).status == 303
    # the count starts again from the reset: ten more wrong passwords lock the name again
    env.client.session.cookie_jar.clear()
    statuses = [(await login(env.client, "sup", "wrong again!")).status for _ in range(auth.MAX_FAILED_LOGINS)]
    assert statuses[-1] == 429 and statuses[0] == 401
