"""Operator console pages: sign-in, review queue, flagged call, order board, care dashboard, audit log."""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import quote, urlencode

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.console import actions, auth, charts, handover, notices, queries
from assistant.console.auth import Principal
from assistant.console.events import stream
from assistant.console.redaction import display_text, personal_of, redact_text
from assistant.console.render import (
    ALERT_KIND_LABELS,
    ALERT_STATUS_LABELS,
    AUDIT_LABELS,
    ORDER_STATUS_LABELS,
    ORDER_TYPE_LABELS,
    ROLE_LABELS,
    SEVERITY_LABELS,
    SPEAKER_LABELS,
    alert_reason_text,
    csrf_field,
    error_page,
    esc,
    highlight,
    iso,
    local_time,
    page,
)
from assistant.console.web import (
    HUB_KEY,
    client_ip,
    guarded,
    set_session_cookie,
)
from assistant.platform.models import Call
from assistant.platform.models_console import REVEAL_ROLES, STAFF_ROLES
from assistant.services import SERVICES_KEY

staff = guarded(area="console", roles=STAFF_ROLES)
supervisors = guarded(area="console", roles=REVEAL_ROLES)
LOW_CONFIDENCE = 0.6
DONE_MESSAGES = {
    "acknowledge": "已确认。",
    "callback": "已安排回电（已写入待发队列）。",
    "dispatch": "已派员处理。",
    "false_alarm": "已标记为误报，并记录到诈骗识别反馈。",
    "note": "备注已保存。",
}


# ---------------------------------------------------------------- sign-in (shared with /family)


def _safe_next(value: str | None, area: str) -> str:
    if value and value.startswith(f"/{area}") and not value.startswith("//") and "\\" not in value:
        return value
    return f"/{area}/"


def login_form(area: str, *, next_url: str, message: str = "", status: int = 200, token: str | None = None) -> web.Response:
    token = token or secrets.token_urlsafe(32)
    err = f'<p class="error" role="alert">{esc(message)}</p>' if message else ""
    body = f"""{err}
<form method="post" action="/{area}/login" class="card narrow">
<input type="hidden" name="_csrf" value="{esc(token)}">
<input type="hidden" name="next" value="{esc(next_url)}">
<p><label for="username">用户名</label><input id="username" name="username" autocomplete="username" required autofocus></p>
<p><label for="password">密码</label><input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit">登录</button></p>
</form>"""
    title = "家属登录" if area == "family" else "接线员登录"
    resp = page(title, body, area=area, status=status)
    resp.set_cookie(auth.LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict", path=f"/{area}/login")
    return resp


def login_handlers(area: str):
    async def get(request: web.Request) -> web.Response:
        return login_form(area, next_url=_safe_next(request.query.get("next"), area))

    async def post(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        next_url = _safe_next(str(form.get("next", "")), area)
        if not auth.tokens_equal(str(form.get("_csrf", "")), request.cookies.get(auth.LOGIN_CSRF_COOKIE)):
            return login_form(area, next_url=next_url, message="表单已过期，请重新登录。", status=403)
        async with request.app[SERVICES_KEY].sessions() as db:
            result = await auth.login(db, username=str(form.get("username", "")), password=str(form.get("password", "")),
                                      ip=client_ip(request))
        if result.locked:
            return login_form(area, next_url=next_url, status=429,
                              message=f"密码错误次数过多，账号已锁定 {int(auth.LOCKOUT_S // 60)} 分钟，请稍后再试或联系主管。")
        if not result.ok or result.user is None:
            return login_form(area, next_url=next_url, message="用户名或密码不正确。", status=401)
        home = "/family/" if result.user.role == "family" else "/console/"
        target = next_url if next_url.startswith(home.rstrip("/")) else home
        resp = web.Response(status=303, headers={"Location": target})
        set_session_cookie(resp, request, result.session_id)
        resp.del_cookie(auth.LOGIN_CSRF_COOKIE, path=f"/{area}/login")
        return resp

    return get, post


def logout_handler(area: str, roles: tuple[str, ...]):
    @guarded(area=area, roles=roles)
    async def post(request: web.Request, p: Principal, db: AsyncSession) -> web.StreamResponse:
        await auth.logout(db, p, ip=client_ip(request))
        resp = web.Response(status=303, headers={"Location": f"/{area}/login"})
        resp.del_cookie(auth.SESSION_COOKIE, path="/")
        return resp

    return post


# ---------------------------------------------------------------- review queue


def _alert_summary(a) -> str:
    if a.kind == "fraud":
        scam, score, _ = queries.fraud_info(a.detail or {})
        score_txt = f"{score:.2f}" if score is not None else "—"
        return f"{esc(scam or '类型未知')} · 风险分 {score_txt}"
    if a.kind in ("sla_dispatch", "sla_answer") and a.order_id:
        return f"工单 #{a.order_id}"
    return esc(redact_text(alert_reason_text(a.detail or {}))[:80])


def queue_table(qp: queries.QueuePage) -> str:
    if not qp.rows:
        return '<p class="empty">目前没有需要处理的警报。</p>'
    rows = []
    for r in qp.rows:
        a = r.alert
        rows.append(
            f'<tr class="sev-{esc(a.severity)} st-{esc(a.status)}">'
            f'<td><span class="badge sev-{esc(a.severity)}">{esc(SEVERITY_LABELS.get(a.severity, a.severity))}</span></td>'
            f'<td><a href="/console/alerts/{a.id}">{esc(ALERT_KIND_LABELS.get(a.kind, a.kind))} #{a.id}</a></td>'
            f"<td>{_alert_summary(a)}</td>"
            f"<td>{esc(r.elder_name)}<br><small>{esc(r.district)}</small></td>"
            f'<td><time datetime="{iso(a.created_at)}">{local_time(a.created_at)}</time></td>'
            f"<td>{esc(ALERT_STATUS_LABELS.get(a.status, a.status))}</td></tr>"
        )
    return (
        '<table class="queue"><caption class="sr-only">警报列表，最紧急、最新的在前</caption>'
        "<thead><tr><th scope=col>级别</th><th scope=col>类型</th><th scope=col>摘要</th>"
        "<th scope=col>长者</th><th scope=col>时间</th><th scope=col>状态</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


@staff
async def queue_page(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    status = request.query.get("status", "active")
    kind = request.query.get("kind") or None
    if kind not in ALERT_KIND_LABELS:
        kind = None
    statuses = {"active": queries.ACTIVE_ALERT_STATUSES, "open": ("open",),
                "closed": ("resolved", "false_alarm")}.get(status, queries.ACTIVE_ALERT_STATUSES)
    try:
        page_no = int(request.query.get("page", "1"))
    except ValueError:
        page_no = 1
    qp = await queries.review_queue(db, statuses=statuses, kind=kind, page=page_no)
    table = queue_table(qp)
    if request.query.get("fragment"):
        return web.Response(text=table, content_type="text/html", charset="utf-8")

    def opt(value: str, label: str, current: str | None) -> str:
        sel = " selected" if value == (current or "") else ""
        return f'<option value="{esc(value)}"{sel}>{esc(label)}</option>'

    kinds = opt("", "全部类型", kind) + "".join(opt(k, v, kind) for k, v in ALERT_KIND_LABELS.items())
    statuses_opts = "".join(opt(k, v, status) for k, v in (("active", "待处理和已确认"), ("open", "仅待处理"),
                                                             ("closed", "已关闭")))
    nav = []
    base = {"status": status, **({"kind": kind} if kind else {})}
    if qp.page > 1:
        nav.append(f'<a href="/console/?{urlencode({**base, "page": qp.page - 1})}">上一页</a>')
    nav.append(f"<span>第 {qp.page} / {qp.pages} 页，共 {qp.total} 条</span>")
    if qp.page < qp.pages:
        nav.append(f'<a href="/console/?{urlencode({**base, "page": qp.page + 1})}">下一页</a>')
    body = f"""
<form method="get" action="/console/" class="filters">
<label for="f-kind">类型</label><select id="f-kind" name="kind">{kinds}</select>
<label for="f-status">状态</label><select id="f-status" name="status">{statuses_opts}</select>
<button type="submit" class="secondary">筛选</button>
</form>
<p class="hint">新警报会自动出现，无需刷新。</p>
<div id="queue" data-fragment="{esc(request.path_qs)}">{table}</div>
<nav class="pager" aria-label="翻页">{" ".join(nav)}</nav>"""
    return page("审核队列", body, principal=p, current="/console/", live="/console/events")


# ---------------------------------------------------------------- one flagged call


def _int(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError as exc:
        raise auth.NotFoundError("页面不存在") from exc


async def _dial_callback(request: web.Request, store, alert_id: int, *, code: str | None, by: str) -> bool:
    """安排回电 dials when the phone gateway runs in this process with operator phones configured
    (``telephony.handover.OperatorCallbacks``): the elder's number on file, the ledger code spoken first."""
    dialler = request.app[SERVICES_KEY].callbacks
    if dialler is None:
        return False
    alert = await store.get_alert(alert_id)
    if alert.elder_id is None:
        return False
    elder = await store.get_elder(alert.elder_id)
    number = next((ph.number for ph in elder.phones if ph.is_primary), elder.phones[0].number if elder.phones else "")
    if not number:
        return False
    return dialler.request(alert_id=alert_id, elder_id=elder.elder_id, number=number, code=code, dialect=elder.dialect,
                           requested_by=by)


async def _render_alert(request: web.Request, p: Principal, db: AsyncSession, alert_id: int, *, reveal: bool) -> web.Response:
    d = await queries.alert_detail(db, alert_id)
    if d is None:
        return error_page(404, f"警报 #{alert_id} 不存在", p)
    a = d.alert
    await auth.audit(db, p, "reveal_transcript" if reveal else "view_transcript", target_type="alert",
                     target_id=a.id, detail={"call_id": a.call_id}, ip=client_ip(request))
    await db.commit()
    scam, score, evidence = queries.fraud_info(a.detail or {}) if a.kind == "fraud" else ("", None, [])
    done = request.query.get("done")
    flash = f'<p class="flash" role="status">{esc(DONE_MESSAGES[done])}</p>' if done in DONE_MESSAGES else ""
    code = request.query.get("code", "")
    dialling = "系统正在拨打长者电话，长者接听后会转到值班人员的电话上。" if done == "callback" and request.query.get("dialling") else ""
    if dialling and not (code.isdigit() and len(code) <= 8):
        flash = f'<p class="flash" role="status">已安排回电。{esc(dialling)}</p>'
    if done == "callback" and code.isdigit() and len(code) <= 8:
        # family get the code only through a configured SMS channel (issue #16): say so when there is none
        shown = "长者的屏幕和家属短信会显示同一个号码" if notices.sms_configured(request.app) else \
            "长者的屏幕会显示同一个号码（短信通道未配置，家属收不到短信）"
        flash = (f'<p class="flash" role="status">已登记回电。来电确认码 <strong class="code">{esc(code)}</strong>：'
                 f"回电时请告诉长者这个号码，{shown}。{esc(dialling)}</p>")

    personal = personal_of(d.elder)
    facts = [
        ("级别", SEVERITY_LABELS.get(a.severity, a.severity)),
        ("状态", ALERT_STATUS_LABELS.get(a.status, a.status)
         + (f"（{a.acknowledged_by}）" if a.acknowledged_by else "")),
        ("时间", local_time(a.created_at)),
    ]
    if d.elder is not None:
        facts += [("长者", f"{d.elder.name}（{d.elder.district}）"), ("地址", d.elder.address or "—")]
    reason = alert_reason_text(a.detail or {}) if a.kind != "fraud" else ""
    if not reveal:  # a free-text summary may quote the caller
        reason = redact_text(reason, personal)
    if reason:
        facts.append(("原因", reason))
    if a.kind == "fraud":
        detail = a.detail or {}
        facts += [("诈骗类型", scam or "未知"), ("风险分", f"{score:.2f}" if score is not None else "—"),
                  ("可疑说法", "、".join(evidence) or "—")]
        labels = [str(x) for x in detail.get("evidence_labels") or [] if x]
        if labels:
            facts.append(("识别依据", "、".join(dict.fromkeys(labels))))
        if detail.get("platform_claim_without_ledger"):
            facts.append(("警示", "来电自称平安通，但平台没有登记这通电话"))
    facts_html = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    if d.elder is not None and a.elder_id is not None:
        facts_html += f'<dt>长者设置</dt><dd><a href="/console/elders/{a.elder_id}">声音、语速和说话速度</a></dd>'
    facts_html += _call_kind_link(a)
    # the live hand-over (issue #16): refreshed when the phone gateway reports a step
    facts_html += (f'<dt>人工接通</dt><dd id="handover-state" data-alert="{a.id}" aria-live="polite" '
                   f'data-fragment="/console/alerts/{a.id}?fragment=handover">{handover.state_fragment(a.detail)}</dd>')

    audio = ""
    if d.call is not None and d.call.audio_path:
        audio = (f'<section aria-labelledby="h-audio"><h2 id="h-audio">通话录音</h2>'
                 f'<audio id="call-audio" controls preload="none" src="/console/calls/{esc(d.call.call_id)}/audio">'
                 "您的浏览器不能播放录音。</audio></section>")

    turn_rows = []
    for t in d.turns:
        text = display_text(text=t.text, text_redacted=t.text_redacted, reveal=reveal, personal=personal)
        conf = ""
        if t.asr_confidence is not None:
            low = " low" if t.asr_confidence < LOW_CONFIDENCE else ""
            conf = f'<span class="conf{low}">{t.asr_confidence * 100:.0f}%</span>'
        turn_rows.append(
            f'<tr class="spk-{esc(t.speaker)}"><td>{t.turn}</td><td>{esc(SPEAKER_LABELS.get(t.speaker, t.speaker))}</td>'
            f'<td class="text">{highlight(text, evidence)}</td><td>{conf or "—"}</td>'
            f'<td>{esc(t.intent or "")}</td></tr>'
        )
    if not turn_rows:
        # no turns stored (yet): the fraud guard's alert carries its own redacted transcript
        for i, item in enumerate((a.detail or {}).get("transcript") or [], start=1):
            if isinstance(item, dict):
                speaker = str(item.get("speaker", ""))
                turn_rows.append(
                    f'<tr class="spk-{esc(speaker)}"><td>{i}</td><td>{esc(SPEAKER_LABELS.get(speaker, speaker))}</td>'
                    f'<td class="text">{highlight(redact_text(str(item.get("text", "")), personal), evidence)}</td>'
                    "<td>—</td><td></td></tr>"
                )
    mode = ('<p class="revealed" role="status">正在显示<strong>未脱敏原文</strong>（已记入审计日志）。</p>' if reveal
            else '<p class="hint">个人信息已脱敏显示。</p>')
    reveal_btn = ""
    if p.can_reveal and not reveal and d.turns:  # (the alert's own transcript is redacted at the source)
        reveal_btn = (f'<form method="post" action="/console/alerts/{a.id}/reveal" class="inline">{csrf_field(p)}'
                      '<button type="submit" class="secondary">查看原文（主管，记入审计）</button></form>')
    transcript = (
        f'<section aria-labelledby="h-tr"><h2 id="h-tr">通话文字记录</h2>{mode}{reveal_btn}'
        '<table class="transcript"><thead><tr><th scope=col>轮次</th><th scope=col>说话人</th><th scope=col>内容</th>'
        f"<th scope=col>识别置信度</th><th scope=col>意图</th></tr></thead><tbody>{''.join(turn_rows)}</tbody></table></section>"
        if turn_rows else '<p class="empty">这条警报没有通话文字记录。</p>'
    )
    timeline = "".join(
        f'<li><time datetime="{iso(i.at)}">{local_time(i.at)}</time> {esc(i.label)}</li>' if i.at
        else f'<li><span class="notime">—</span> {esc(i.label)}</li>'
        for i in d.timeline
    )
    orders = "".join(
        f"<li>工单 #{o.id} {esc(ORDER_TYPE_LABELS.get(o.type, o.type))}：{esc(ORDER_STATUS_LABELS.get(o.status, o.status))}</li>"
        for o in d.orders
    )
    notes = "".join(
        f'<li><strong>{esc(n.author)}</strong> <time datetime="{iso(n.created_at)}">{local_time(n.created_at)}</time>'
        f"<br>{esc(n.text)}</li>"
        for n in d.notes
    ) or '<li class="empty">暂无备注</li>'
    closed = a.status in ("resolved", "false_alarm")

    def action(name: str, label: str, cls: str = "", confirm: str = "", extra: str = "") -> str:
        data = f' data-confirm="{esc(confirm)}"' if confirm else ""
        dis = " disabled" if closed else ""
        return (f'<form method="post" action="/console/alerts/{a.id}/{name}" class="action"{data}>{csrf_field(p)}{extra}'
                f'<button type="submit" class="{cls}"{dis}>{esc(label)}</button></form>')

    actions_html = (
        action("acknowledge", "确认收到")
        + action("callback", "安排回电")
        + action("dispatch", "派员处理", "warn")
        + action("false-alarm", "标记误报", "secondary", "确定这是误报吗？",
                 '<label for="fa-reason" class="sr-only">误报原因</label>'
                 '<input id="fa-reason" name="reason" placeholder="原因（可选）">')
    )
    notices_html = notices.notices_card(a.id, await notices.alert_outbox(db, a.id))
    body = f"""{flash}
<div class="grid">
<section aria-labelledby="h-facts" class="card"><h2 id="h-facts">概要</h2><dl class="facts">{facts_html}</dl></section>
<section aria-labelledby="h-act" class="card"><h2 id="h-act">处理</h2>{actions_html}
<form method="post" action="/console/alerts/{a.id}/note" class="note">{csrf_field(p)}
<label for="note-text">添加备注</label><textarea id="note-text" name="text" rows="3" required></textarea>
<button type="submit" class="secondary">保存备注</button></form></section>
</div>
{audio}
{transcript}
{notices_html}
<div class="grid">
<section aria-labelledby="h-tl" class="card"><h2 id="h-tl">时间线</h2><ol class="timeline">{timeline}</ol>
{f'<h3>相关工单</h3><ul>{orders}</ul>' if orders else ''}</section>
<section aria-labelledby="h-notes" class="card"><h2 id="h-notes">备注</h2><ul class="notes">{notes}</ul></section>
</div>
<p><a href="/console/">← 返回审核队列</a></p>"""
    title = f"{ALERT_KIND_LABELS.get(a.kind, a.kind)} #{a.id}"
    return page(title, body, principal=p, live="/console/events")


def _call_kind_link(a) -> str:
    """An alert raised by a warning broadcast or a medication reminder links to that page (issue #17)."""
    detail = a.detail or {}
    if detail.get("source") == "warning" and detail.get("broadcast"):
        b = str(detail["broadcast"])
        return f'<dt>预警</dt><dd><a href="/console/warnings/{quote(b, safe="")}">预警「{esc(b)}」的送达情况</a></dd>'
    if detail.get("source") == "medication" and a.elder_id is not None:
        return f'<dt>吃药提醒</dt><dd><a href="/console/elders/{a.elder_id}/medication">这位长者的吃药提醒</a></dd>'
    return ""


@staff
async def alert_page(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    fragment = request.query.get("fragment")
    if fragment == "notices":  # the live delivery states (no transcript: not audited)
        rows = await notices.alert_outbox(db, _int(request, "alert_id"))
        return web.Response(text=notices.notices_table(rows), content_type="text/html")
    if fragment in ("handover", "pop"):  # the live hand-over; the pop-up (no transcript: not audited)
        d = await queries.alert_detail(db, _int(request, "alert_id"))
        if d is None:
            return error_page(404, "警报不存在", p)
        html = (handover.state_fragment(d.alert.detail) if fragment == "handover"
                else handover.pop_fragment(d.alert, d.elder, phone_uri=p.phone_uri, personal=personal_of(d.elder)))
        return web.Response(text=html, content_type="text/html")
    return await _render_alert(request, p, db, _int(request, "alert_id"), reveal=False)


@supervisors
async def alert_reveal(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    return await _render_alert(request, p, db, _int(request, "alert_id"), reveal=True)


def _alert_action(name: str):
    @staff
    async def handler(request: web.Request, p: Principal, db: AsyncSession) -> web.StreamResponse:
        alert_id = _int(request, "alert_id")
        ip = client_ip(request)
        form = await request.post()
        store = request.app[SERVICES_KEY].store
        suffix = ""
        if name == "acknowledge":
            event = await actions.acknowledge(db, store, p, alert_id, ip=ip)
        elif name == "callback":
            event, code = await actions.request_callback(db, store, request.app[SERVICES_KEY].ledger, p, alert_id, ip=ip)
            suffix = f"&code={code}" if code else ""
            if await _dial_callback(request, store, alert_id, code=code, by=p.username):
                suffix += "&dialling=1"
        elif name == "dispatch":
            event = await actions.dispatch(db, store, p, alert_id, ip=ip)
        elif name == "false_alarm":
            var_dir = request.app[SERVICES_KEY].settings.paths.var_dir
            event = await actions.mark_false_alarm(db, store, p, alert_id, ip=ip, reason=str(form.get("reason", "")),
                                                   feedback_path=actions.feedback_path(var_dir))
        else:
            event = await actions.add_note(db, p, alert_id, ip=ip, text=str(form.get("text", "")))
        request.app[HUB_KEY].publish(event)
        raise web.HTTPSeeOther(f"/console/alerts/{alert_id}?done={name}{suffix}")

    return handler


# ---------------------------------------------------------------- audio


@staff
async def call_audio(request: web.Request, p: Principal, db: AsyncSession) -> web.StreamResponse:
    call = await db.get(Call, request.match_info["call_id"])
    if call is None or not call.audio_path:
        return error_page(404, "这通电话没有录音", p)
    settings = request.app[SERVICES_KEY].settings
    path = Path(call.audio_path)
    if not path.is_absolute():
        path = settings.paths.var_dir / path
    if path.suffix.lower() not in (".wav", ".ogg", ".mp3", ".opus") or not path.is_file():
        return error_page(404, "录音文件不存在", p)
    # a player fetches in ranges: log the first request of a playback only
    if request.http_range.start in (None, 0):
        await auth.audit(db, p, "play_audio", target_type="call", target_id=call.call_id, ip=client_ip(request))
        await db.commit()
    return web.FileResponse(path, headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------- work orders


def _deadline(label: str, deadline) -> str:
    if deadline is None:
        return ""
    return f'<span class="sla" data-deadline="{iso(deadline)}">{esc(label)} {local_time(deadline, with_date=False)}</span>'


@staff
async def orders_page(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    settings = request.app[SERVICES_KEY].settings
    now = auth.utcnow()
    order_type = request.query.get("type") or None
    if order_type not in ORDER_TYPE_LABELS:
        order_type = None
    board = await queries.order_board(db, dispatch_sla_s=settings.store.dispatch_sla_s,
                                      answer_sla_s=settings.store.answer_sla_s, now=now, order_type=order_type)
    next_labels = {"dispatched": "派单", "answered": "已响应", "done": "完成", "cancelled": "取消"}
    cols = []
    for status, items in board.items():
        cards = []
        for b in items[:200]:
            o = b.order
            buttons = "".join(
                f'<form method="post" action="/console/orders/{o.id}/status" class="inline">{csrf_field(p)}'
                f'<input type="hidden" name="status" value="{nxt}">'
                f'<button type="submit" class="{"secondary" if nxt == "cancelled" else ""}"'
                f'{" data-confirm=确定取消这个工单吗？" if nxt == "cancelled" else ""}>{next_labels[nxt]}</button></form>'
                for nxt in actions.NEXT_STATUS.get(o.status, ())
            )
            overdue = " overdue" if b.overdue(now) else ""
            details = o.details or {}
            note = details.get("note") or details.get("summary") or ""
            if o.type == "appointment" and details.get("hospital"):
                note = f"{details.get('hospital')} {details.get('department') or ''} {details.get('when') or ''} {note}"
            cards.append(
                f'<li class="order{overdue}"><strong>#{o.id} {esc(ORDER_TYPE_LABELS.get(o.type, o.type))}</strong> '
                f"{esc(b.elder_name)}（{esc(b.district)}）<br><small>下单 {local_time(o.created_at)} · "
                f"{esc({'elder': '长者', 'family': '家属', 'operator': '接线员'}.get(o.placed_by, o.placed_by))}</small>"
                f"{'<br>' + esc(str(note)[:60]) if note else ''}<br>"
                f'{_deadline("派单时限", b.dispatch_deadline)} {_deadline("响应时限", b.answer_deadline)}'
                f'<div class="buttons">{buttons}</div></li>'
            )
        more = f"<p>另有 {len(items) - 200} 个</p>" if len(items) > 200 else ""
        cols.append(
            f'<section class="column" aria-labelledby="col-{status}"><h2 id="col-{status}">'
            f"{esc(ORDER_STATUS_LABELS[status])}（{len(items)}）</h2>"
            f'<ul class="orders">{"".join(cards) or "<li class=empty>无</li>"}</ul>{more}</section>'
        )
    types = "".join(
        f'<a href="/console/orders?type={k}"{" aria-current=true" if k == order_type else ""}>{esc(v)}</a>'
        for k, v in ORDER_TYPE_LABELS.items()
    )
    done = '<p class="flash" role="status">工单状态已更新。</p>' if request.query.get("done") else ""
    sla = (f"派单时限 {settings.store.dispatch_sla_s / 60:.0f} 分钟，响应时限 {settings.store.answer_sla_s / 60:.0f} 分钟"
           "（从下单起算）。已完成/已取消列显示最近 24 小时。")
    body = (f'{done}<p class="hint">{esc(sla)}</p><nav class="types" aria-label="服务类型">'
            f'<a href="/console/orders"{" aria-current=true" if not order_type else ""}>全部</a>{types}</nav>'
            f'<div id="board" class="board" data-fragment="{esc(request.path_qs)}">{"".join(cols)}</div>')
    if request.query.get("fragment"):
        return web.Response(text="".join(cols), content_type="text/html", charset="utf-8")
    return page("工单看板", body, principal=p, current="/console/orders", live="/console/events")


@staff
async def order_status(request: web.Request, p: Principal, db: AsyncSession) -> web.StreamResponse:
    form = await request.post()
    event = await actions.change_order_status(db, request.app[SERVICES_KEY].store, p, _int(request, "order_id"),
                                              str(form.get("status", "")), ip=client_ip(request))
    request.app[HUB_KEY].publish(event)
    raise web.HTTPSeeOther("/console/orders?done=1")


# ---------------------------------------------------------------- care calls


CARE_LABELS = {"answered": "已接听", "unanswered": "未接听", "escalated": "已升级处理", "pending": "待拨打"}


@staff
async def care_page(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    dash = await queries.care_dashboard(db, now=auth.utcnow())
    totals = "".join(
        f'<li class="stat st-{k}"><span class="num">{dash.totals[k]}</span> {esc(v)}</li>' for k, v in CARE_LABELS.items()
    )
    summary = "；".join(f"{d}：" + "，".join(f"{v} {counts[k]}" for k, v in CARE_LABELS.items())
                        for d, counts in dash.by_district.items()) + "。"
    bars = charts.stacked_bars(
        chart_id="care-bars", title="各区今天的关怀电话", summary=summary, css="chart bars",
        rows=[(d, [(f"c-{k}", counts[k]) for k in CARE_LABELS]) for d, counts in dash.by_district.items()],
    ) + charts.legend([(f"c-{k}", v) for k, v in CARE_LABELS.items()])
    rows = "".join(
        f'<tr class="st-{r.state}"><td>{esc(r.elder_name)}</td><td>{esc(r.district)}</td><td>{esc(r.window)}</td>'
        f"<td>{esc(CARE_LABELS[r.state])}</td><td>{local_time(r.last_call_at)}</td></tr>"
        for r in dash.rows
    )
    table = (
        '<table><thead><tr><th scope=col>长者</th><th scope=col>区</th><th scope=col>时段</th><th scope=col>结果</th>'
        f"<th scope=col>最近拨打</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows else '<p class="empty">今天没有排定的关怀电话。</p>'
    )
    more = f"（下面列出最需要关注的 {len(dash.rows)} 位）" if dash.elders > len(dash.rows) else ""
    body = f"""<p class="hint">{dash.day:%Y年%m月%d日}（北京时间）排定的关怀电话：共 {dash.elders} 位长者{more}。</p>
<ul class="stats">{totals}</ul>
<section aria-labelledby="h-dist" class="card"><h2 id="h-dist">各区情况</h2>{bars}</section>
<section aria-labelledby="h-list"><h2 id="h-list">名单（未接和升级的在前）</h2>{table}</section>"""
    return page("关怀电话", body, principal=p, current="/console/care", live="/console/events")


# ---------------------------------------------------------------- audit log


@supervisors
async def audit_page(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    action = request.query.get("action") or None
    entries = await queries.recent_audit(db, action=action)
    rows = "".join(
        f'<tr><td><time datetime="{iso(e.at)}">{local_time(e.at)}</time></td><td>{esc(e.username)}</td>'
        f"<td>{esc(ROLE_LABELS.get(e.role, e.role))}</td>"
        f'<td>{esc(AUDIT_LABELS.get(e.action, e.action))} <small class="code">{esc(e.action)}</small></td>'
        f"<td>{esc(e.target_type)} {esc(e.target_id)}</td><td>{esc(e.ip)}</td></tr>"
        for e in entries
    )
    body = (
        '<form method="get" class="filters"><label for="a-action">操作</label>'
        f'<input id="a-action" name="action" value="{esc(action or "")}" placeholder="如 view_transcript">'
        '<button type="submit" class="secondary">筛选</button></form>'
        '<table class="audit"><thead><tr><th scope=col>时间</th><th scope=col>用户</th><th scope=col>角色</th>'
        f"<th scope=col>操作</th><th scope=col>对象</th><th scope=col>IP</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return page("审计日志", body, principal=p, current="/console/audit")


# ---------------------------------------------------------------- live updates


@staff
async def events(request: web.Request, p: Principal, db: AsyncSession) -> web.StreamResponse:
    await db.close()
    return await stream(request, request.app[HUB_KEY], elder_ids=None, phone_uri=p.phone_uri)


def add_sign_in_routes(router: web.UrlDispatcher, area: str, roles: tuple[str, ...]) -> None:
    """``/<area>/login`` (GET, POST), ``/<area>/logout`` and ``/<area>`` → ``/<area>/`` (console and family)."""
    login_get, login_post = login_handlers(area)

    async def redirect_home(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"/{area}/")

    router.add_get(f"/{area}/login", login_get)
    router.add_post(f"/{area}/login", login_post)
    router.add_post(f"/{area}/logout", logout_handler(area, roles))
    router.add_get(f"/{area}", redirect_home)


def add_routes(router: web.UrlDispatcher) -> None:
    add_sign_in_routes(router, "console", STAFF_ROLES)
    router.add_get("/console/", queue_page)
    router.add_get(r"/console/alerts/{alert_id:\d+}", alert_page)
    router.add_post(r"/console/alerts/{alert_id:\d+}/reveal", alert_reveal)
    for path, name in (("acknowledge", "acknowledge"), ("callback", "callback"), ("dispatch", "dispatch"),
                       ("false-alarm", "false_alarm"), ("note", "note")):
        router.add_post(rf"/console/alerts/{{alert_id:\d+}}/{path}", _alert_action(name))
    router.add_get("/console/calls/{call_id}/audio", call_audio)
    router.add_get("/console/orders", orders_page)
    router.add_post(r"/console/orders/{order_id:\d+}/status", order_status)
    router.add_get("/console/care", care_page)
    router.add_get("/console/audit", audit_page)
    router.add_get("/console/events", events)
