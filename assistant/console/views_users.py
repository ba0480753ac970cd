"""User management pages for admins (``/console/users``): list, create, disable/enable, reset password, link a
family user to elders. The work is ``assistant.console.users`` (the same functions as ``assistant admin``);
this module only reads forms, shows Chinese messages by error code, and renders."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.console import auth, users
from assistant.console.auth import Principal
from assistant.console.render import (
    AUDIT_LABELS,
    ROLE_LABELS,
    csrf_field,
    esc,
    iso,
    local_time,
    page,
    select_field,
)
from assistant.console.web import client_ip, guarded
from assistant.platform.models import Elder, FamilyContact
from assistant.platform.models_console import AuditEntry, ConsoleUser

admins = guarded(area="console", roles=("admin",))
ELDER_CHOICES = 2000  # elders offered in the link field's list (any id can still be typed)

ERROR_TEXT = {
    "console_bad_username": "用户名需要 1–64 个字符，不能有空格。",
    "console_bad_role": "只有家属账号可以关联长者，请检查角色。",
    "console_no_elder": "请填写存在的长者编号（家属账号至少关联一位长者）。",
    "console_bad_contact": "所选联系人不是这位长者的家属联系人。",
    "console_bad_number": "编号需要是数字。",
    "console_user_exists": "这个用户名已被使用。",
    "console_weak_password": f"密码太短：至少 {auth.MIN_PASSWORD_CHARS} 个字符。",
    "console_password_mismatch": "两次输入的密码不一致。",
    "console_no_password": "请输入密码。",
    "console_self_disable": "不能停用自己的账号。",
    "console_last_elder": "家属账号至少要关联一位长者；如不再需要，请停用该账号。",
    "console_no_link": "这个账号没有关联这位长者。",
    "console_no_user": "用户不存在。",
}
DONE_MESSAGES = {
    "created": "用户已创建。",
    "created_family": "用户已创建。如需代长者下单或取消工单，请在下面为关联的长者选择其家属联系人记录。",
    "disabled": "账号已停用，其登录已全部退出。",
    "enabled": "账号已启用。",
    "password": "新密码已设置，该用户的其他登录已退出。",
    "linked": "关联已保存。",
    "unlinked": "已取消关联。",
}


def error_text(exc: auth.ConsoleError) -> str:
    return ERROR_TEXT.get(exc.code, exc.message)


def _opt_int(value: object) -> int | None:
    text = str(value or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise auth.ConsoleError(f"not a number: {text!r}", code="console_bad_number") from exc


def _user_id(request: web.Request) -> int:
    try:
        return int(request.match_info["user_id"])
    except ValueError as exc:
        raise auth.NotFoundError("页面不存在") from exc


def _banner(request: web.Request, error: str) -> str:
    if error:
        return f'<p class="error" role="alert">{esc(error)}</p>'
    done = request.query.get("done", "")
    return f'<p class="flash" role="status">{esc(DONE_MESSAGES[done])}</p>' if done in DONE_MESSAGES else ""


async def _elder_options(db: AsyncSession) -> str:
    rows = await db.execute(select(Elder.id, Elder.name, Elder.district).where(Elder.active.is_(True))
                            .order_by(Elder.id).limit(ELDER_CHOICES))
    items = "".join(f'<option value="{i}">{esc(n)}（{esc(d)}）</option>' for i, n, d in rows.all())
    return f'<datalist id="elder-list">{items}</datalist>'


def _elder_field(field_id: str, *, required: bool) -> str:
    req = " required" if required else ""
    return (f'<label for="{field_id}">长者编号</label><input id="{field_id}" name="elder_id" inputmode="numeric" '
            f'pattern="[0-9]+" list="elder-list" autocomplete="off"{req}>')


# ---------------------------------------------------------------- list and create


async def _users_page(request: web.Request, p: Principal, db: AsyncSession, *, error: str = "", status: int = 200,
                      form: dict[str, str] | None = None) -> web.Response:
    form = form or {}
    rows = []
    for row in await users.list_users(db):
        u = row.user
        links = "、".join(f"{link.elder_name}（#{link.elder_id}）" for link in row.links) or ("—" if u.role != "family"
                                                                                         else "未关联")
        rows.append(
            f'<tr class="{"active" if u.active else "inactive"}"><td><a href="/console/users/{u.id}">{esc(u.username)}</a>'
            f"{'（本人）' if u.id == p.user_id else ''}</td><td>{esc(u.display_name or '—')}</td>"
            f"<td>{esc(ROLE_LABELS.get(u.role, u.role))}</td><td>{'启用' if u.active else '已停用'}</td>"
            f"<td>{esc(links)}</td><td>{local_time(u.last_login_at)}</td></tr>"
        )
    roles = {"": "请选择", **ROLE_LABELS}
    body = f"""{_banner(request, error)}
<table class="users"><caption class="sr-only">所有用户，启用的在前</caption>
<thead><tr><th scope=col>用户名</th><th scope=col>姓名</th><th scope=col>角色</th><th scope=col>状态</th>
<th scope=col>关联长者</th><th scope=col>最近登录</th></tr></thead><tbody>{''.join(rows)}</tbody></table>
<section class="card" aria-labelledby="h-new"><h2 id="h-new">新建用户</h2>
<form method="post" action="/console/users" class="stacked" id="new-user">{csrf_field(p)}
<label for="u-username">用户名（登录用，不能有空格）</label>
<input id="u-username" name="username" required maxlength="64" autocomplete="off" value="{esc(form.get("username", ""))}">
<label for="u-display">姓名（显示用）</label>
<input id="u-display" name="display_name" maxlength="64" autocomplete="off" value="{esc(form.get("display_name", ""))}">
{select_field("role", roles, form.get("role", ""), "角色", field_id="u-role", required=True)}
<label for="u-password">密码（至少 {auth.MIN_PASSWORD_CHARS} 个字符）</label>
<input id="u-password" name="password" type="password" autocomplete="new-password" required minlength="{auth.MIN_PASSWORD_CHARS}">
<label for="u-password2">再次输入密码</label>
<input id="u-password2" name="password_again" type="password" autocomplete="new-password" required>
<p class="hint">家属账号必须填写所照顾长者的编号（可从列表中选择）。</p>
{_elder_field("u-elder", required=False)}
<p><button type="submit">创建用户</button></p>
</form>{await _elder_options(db)}</section>"""
    return page("用户管理", body, principal=p, current="/console/users", status=status)


@admins
async def users_page(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    return await _users_page(request, p, db)


@admins
async def create_user(request: web.Request, p: Principal, db: AsyncSession) -> web.StreamResponse:
    form = {k: str(v) for k, v in (await request.post()).items()}
    try:
        elder_id = _opt_int(form.get("elder_id"))
        user = await users.create_user(
            db, username=form.get("username", ""), role=form.get("role", ""),
            password=users.check_new_password(form.get("password", ""), form.get("password_again", "")),
            display_name=form.get("display_name", ""), elder_ids=(elder_id,) if elder_id is not None else (),
            actor=p, ip=client_ip(request))
    except auth.ConsoleError as exc:
        await db.rollback()
        return await _users_page(request, p, db, error=error_text(exc), status=exc.status, form=form)
    done = "created_family" if user.role == "family" else "created"
    raise web.HTTPSeeOther(f"/console/users/{user.id}?done={done}")


# ---------------------------------------------------------------- one user


@admins
async def user_page(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    return await _user_page(request, p, db, _user_id(request))


async def _user_page(request: web.Request, p: Principal, db: AsyncSession, user_id: int, *, error: str = "",
                     status: int = 200) -> web.Response:
    try:
        u = await users.get_user(db, user_id)
    except auth.NotFoundError as exc:
        raise auth.NotFoundError(error_text(exc)) from exc
    return await _render_user(request, p, db, u, error=error, status=status)


async def _render_user(request: web.Request, p: Principal, db: AsyncSession, u: ConsoleUser, *, error: str,
                       status: int) -> web.Response:
    me = u.id == p.user_id
    facts = [("用户名", u.username), ("姓名", u.display_name or "—"), ("角色", ROLE_LABELS.get(u.role, u.role)),
             ("状态", "启用" if u.active else "已停用"), ("创建时间", local_time(u.created_at)),
             ("最近登录", local_time(u.last_login_at))]
    facts_html = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    if me:
        active_html = '<p class="hint">这是您自己的账号：不能停用自己。</p>'
    elif u.active:
        active_html = (f'<form method="post" action="/console/users/{u.id}/disable" class="action" '
                       f'data-confirm="确定停用 {esc(u.username)} 吗？其登录会立即退出。">{csrf_field(p)}'
                       '<button type="submit" class="warn">停用账号</button></form>')
    else:
        active_html = (f'<form method="post" action="/console/users/{u.id}/enable" class="action">{csrf_field(p)}'
                       '<button type="submit">启用账号</button></form>')
    password_html = f"""<form method="post" action="/console/users/{u.id}/password" class="stacked">{csrf_field(p)}
<label for="pw-new">新密码（至少 {auth.MIN_PASSWORD_CHARS} 个字符）</label>
<input id="pw-new" name="password" type="password" autocomplete="new-password" required minlength="{auth.MIN_PASSWORD_CHARS}">
<label for="pw-again">再次输入新密码</label>
<input id="pw-again" name="password_again" type="password" autocomplete="new-password" required>
<p><button type="submit">重置密码</button></p></form>"""
    elders_html = ""
    if u.role == "family":
        elders_html = await _links_section(p, db, u.id)
    history = (await db.execute(
        select(AuditEntry)
        .where(or_(AuditEntry.user_id == u.id, (AuditEntry.target_type == "user") & (AuditEntry.target_id == str(u.id))))
        .order_by(AuditEntry.id.desc()).limit(20)
    )).scalars().all()
    history_rows = "".join(
        f'<tr><td><time datetime="{iso(e.at)}">{local_time(e.at)}</time></td><td>{esc(e.username)}</td>'
        f'<td>{esc(AUDIT_LABELS.get(e.action, e.action))} <small class="code">{esc(e.action)}</small></td>'
        f"<td>{esc(e.ip)}</td></tr>"
        for e in history
    )
    body = f"""{_banner(request, error)}
<div class="grid">
<section class="card" aria-labelledby="h-facts"><h2 id="h-facts">账号</h2><dl class="facts">{facts_html}</dl>
{active_html}</section>
<section class="card" aria-labelledby="h-pw"><h2 id="h-pw">重置密码</h2>
<p class="hint">重置后该用户的其他登录会退出。请通过安全的方式把新密码告诉本人。</p>{password_html}</section>
</div>
{elders_html}
<section aria-labelledby="h-hist"><h2 id="h-hist">最近的记录</h2>
<table class="audit"><thead><tr><th scope=col>时间</th><th scope=col>操作人</th><th scope=col>操作</th>
<th scope=col>IP</th></tr></thead><tbody>{history_rows}</tbody></table></section>
<p><a href="/console/users">← 返回用户列表</a></p>"""
    return page(f"用户 {u.username}", body, principal=p, current="/console/users", status=status)


async def _links_section(p: Principal, db: AsyncSession, user_id: int) -> str:
    links = (await users.elder_links(db, [user_id])).get(user_id, [])
    contacts: dict[int, dict[str, str]] = {}
    if links:
        rows = await db.execute(select(FamilyContact).where(FamilyContact.elder_id.in_([k.elder_id for k in links]))
                                .order_by(FamilyContact.priority, FamilyContact.id))
        for c in rows.scalars():
            can = "，可代下单" if c.can_act else "，不能代下单"
            contacts.setdefault(c.elder_id, {})[str(c.id)] = f"{c.name}（{c.relation or '家属'}{can}）"
    rows_html = []
    for link in links:
        options = {"": "不关联（不能代下单或取消工单）", **contacts.get(link.elder_id, {})}
        current = str(link.contact_id) if link.contact_id is not None else ""
        rows_html.append(
            f"<tr><td>{esc(link.elder_name)}（#{link.elder_id}）</td><td>{esc(link.district)}</td><td>"
            f'<form method="post" action="/console/users/{user_id}/elders" class="row">{csrf_field(p)}'
            f'<input type="hidden" name="elder_id" value="{link.elder_id}">'
            f'{select_field("contact_id", options, current, "本人的联系人记录", field_id=f"contact-{link.elder_id}")}'
            '<button type="submit" class="secondary">保存</button></form></td><td>'
            f'<form method="post" action="/console/users/{user_id}/elders/{link.elder_id}/delete" class="inline" '
            f'data-confirm="确定取消与 {esc(link.elder_name)} 的关联吗？">{csrf_field(p)}'
            '<button type="submit" class="secondary">取消关联</button></form></td></tr>'
        )
    table = (
        '<table class="links"><thead><tr><th scope=col>长者</th><th scope=col>区</th><th scope=col>联系人记录</th>'
        f"<th scope=col>操作</th></tr></thead><tbody>{''.join(rows_html)}</tbody></table>"
        if rows_html else '<p class="empty">尚未关联长者。</p>'
    )
    return f"""<section class="card" aria-labelledby="h-links"><h2 id="h-links">关联的长者</h2>
<p class="hint">家属只能看到并代办关联长者的事务；代下单或取消工单还需要选择其本人的联系人记录（且该记录允许代办）。</p>
{table}
<form method="post" action="/console/users/{user_id}/elders" class="row" id="link-elder">{csrf_field(p)}
{_elder_field("link-elder-id", required=True)}<button type="submit">关联这位长者</button></form>
{await _elder_options(db)}</section>"""


def _user_action(kind: str):
    @admins
    async def handler(request: web.Request, p: Principal, db: AsyncSession) -> web.StreamResponse:
        user_id = _user_id(request)
        form = await request.post()
        ip = client_ip(request)
        try:
            if kind in ("disable", "enable"):
                await users.set_active(db, user_id, kind == "enable", actor=p, ip=ip)
                done = f"{kind}d"
            elif kind == "password":
                password = users.check_new_password(str(form.get("password", "")), str(form.get("password_again", "")))
                await users.reset_password(db, user_id, password, actor=p, ip=ip)
                done = "password"
            elif kind == "link":
                elder_id = _opt_int(form.get("elder_id"))
                if elder_id is None:
                    raise auth.ConsoleError("no elder id", code="console_no_elder")
                await users.link_elder(db, user_id, elder_id, _opt_int(form.get("contact_id")), actor=p, ip=ip)
                done = "linked"
            else:
                try:
                    elder_id = int(request.match_info["elder_id"])
                except ValueError as exc:
                    raise auth.NotFoundError("页面不存在") from exc
                await users.unlink_elder(db, user_id, elder_id, actor=p, ip=ip)
                done = "unlinked"
        except auth.ConsoleError as exc:
            await db.rollback()
            return await _user_page(request, p, db, user_id, error=error_text(exc), status=exc.status)
        raise web.HTTPSeeOther(f"/console/users/{user_id}?done={done}")

    return handler


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/console/users", users_page)
    router.add_post("/console/users", create_user)
    router.add_get(r"/console/users/{user_id:\d+}", user_page)
    for path, kind in (("disable", "disable"), ("enable", "enable"), ("password", "password"), ("elders", "link")):
        router.add_post(rf"/console/users/{{user_id:\d+}}/{path}", _user_action(kind))
    router.add_post(r"/console/users/{user_id:\d+}/elders/{elder_id:\d+}/delete", _user_action("unlink"))
