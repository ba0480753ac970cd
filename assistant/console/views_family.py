"""Family portal: a family member sees and acts for their own parent(s) only; anyone else's → 403."""

from __future__ import annotations

import datetime as dt
import secrets

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.console import actions, auth
from assistant.console.auth import Principal
from assistant.console.events import stream
from assistant.console.render import (
    ALERT_KIND_LABELS,
    ALERT_STATUS_LABELS,
    CALL_OUTCOME_LABELS,
    ORDER_STATUS_LABELS,
    ORDER_TYPE_LABELS,
    cn_time,
    csrf_field,
    elder_settings_form,
    error_page,
    esc,
    iso,
    page,
    select_field,
)
from assistant.console.views_console import add_sign_in_routes
from assistant.console.web import HUB_KEY, client_ip, guarded, require_elder
from assistant.platform.models import OPEN_ORDER_STATUSES, Alert, Call, Elder, WorkOrder
from assistant.services import SERVICES_KEY
from assistant.tts.registry import VOICES

family = guarded(area="family", roles=("family",))
DONE_MESSAGES = {
    "order": "已为家人下单。平台会尽快派单。",
    "cancel": "工单已取消。",
    "phrase": "安全暗语已更新。",
    "contact": "联系人已更新。",
    "settings": "语音和屏幕设置已保存。",
}


def _elder_id(request: web.Request, p: Principal) -> int:
    try:
        elder_id = int(request.match_info["elder_id"])
    except ValueError as exc:
        raise auth.NotFoundError("页面不存在") from exc
    require_elder(p, elder_id)
    return elder_id


@family
async def home(request: web.Request, p: Principal, db: AsyncSession) -> web.StreamResponse:
    if len(p.elder_ids) == 1:
        raise web.HTTPSeeOther(f"/family/elders/{next(iter(p.elder_ids))}")
    elders = (await db.execute(select(Elder).where(Elder.id.in_(p.elder_ids)).order_by(Elder.id))).scalars().all()
    items = "".join(f'<li><a href="/family/elders/{e.id}">{esc(e.name)}（{esc(e.district)}）</a></li>' for e in elders)
    return page("我的家人", f'<ul class="big-links">{items or "<li>尚未关联长者，请联系平台。</li>"}</ul>',
                principal=p, area="family", current="/family/")


@family
async def elder_page(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    elder_id = _elder_id(request, p)
    elder = await db.get(Elder, elder_id)
    if elder is None:
        return error_page(404, "找不到这位长者", p, area="family")
    since = auth.utcnow() - dt.timedelta(days=14)
    orders = (await db.execute(select(WorkOrder).where(WorkOrder.elder_id == elder_id)
                               .order_by(WorkOrder.created_at.desc()).limit(20))).scalars().all()
    calls = (await db.execute(select(Call).where(Call.elder_id == elder_id, Call.direction == "outbound",
                                                Call.started_at >= since)
                              .order_by(Call.started_at.desc()).limit(20))).scalars().all()
    alerts = (await db.execute(select(Alert).where(Alert.elder_id == elder_id)
                               .order_by(Alert.created_at.desc()).limit(20))).scalars().all()
    base = f"/family/elders/{elder_id}"
    csrf = csrf_field(p)
    done = request.query.get("done")
    flash = f'<p class="flash" role="status">{esc(DONE_MESSAGES[done])}</p>' if done in DONE_MESSAGES else ""

    # phone-first (issue #26): cards, not wide tables; the open alert and "call Mum" come first
    order_cards = "".join(
        f'<li class="item"><p class="item-head"><strong>{esc(ORDER_TYPE_LABELS.get(o.type, o.type))}</strong>'
        f' <span class="tag">{esc(ORDER_STATUS_LABELS.get(o.status, o.status))}</span></p>'
        f'<p class="item-meta">工单 #{o.id} · 下单于 {cn_time(o.created_at)}</p>'
        + (f'<p>{esc(note)}</p>' if (note := str((o.details or {}).get("note", ""))[:80]) else "")
        + (f'<form method="post" action="{base}/orders/{o.id}/cancel" data-confirm="确定取消这个工单吗？">'
           f'{csrf}<button type="submit" class="secondary">取消工单 #{o.id}</button></form>'
           if o.status in OPEN_ORDER_STATUSES else "")
        + "</li>"
        for o in orders
    )
    order_table = f'<ul class="items">{order_cards}</ul>' if order_cards else '<p class="empty">暂无工单。</p>'
    place = f"""<form method="post" action="{base}/orders" class="stacked">{csrf}
<input type="hidden" name="idempotency_key" value="{secrets.token_urlsafe(16)}">
<p>{select_field("type", ORDER_TYPE_LABELS, "meal", "服务类型")}</p>
<p><label for="o-note">说明（如：两份午餐、厨房水龙头漏水）</label><input id="o-note" name="note" maxlength="500"></p>
<p><label for="o-hospital">医院和科室（预约挂号时填写）</label><input id="o-hospital" name="hospital" maxlength="100"></p>
<p><label for="o-when">预约时间（预约挂号时填写）</label><input id="o-when" name="when" type="datetime-local" lang="zh-CN"></p>
<p><button type="submit">代为下单</button></p></form>"""
    call_rows = "".join(
        f"<li>{cn_time(c.started_at)}：{esc(CALL_OUTCOME_LABELS.get(c.outcome or '', c.outcome or '进行中'))}</li>"
        for c in calls
    ) or '<li class="empty">最近 14 天没有关怀电话记录。</li>'
    alert_rows = "".join(
        f'<li class="item{" open" if a.status == "open" else ""}"><strong>{esc(ALERT_KIND_LABELS.get(a.kind, a.kind))}</strong>'
        f' <span class="tag">{esc(ALERT_STATUS_LABELS.get(a.status, a.status))}</span>'
        f'<br><time datetime="{iso(a.created_at)}">{cn_time(a.created_at)}</time></li>'
        for a in alerts
    ) or '<li class="empty">没有提醒。</li>'
    # safe phrase and contacts: only a family member with the right to act for the parent may change them
    can_act = await actions.may_act_for(db, p, elder_id)
    contacts = "".join(
        f'<li class="item"><p class="item-head"><strong>{esc(c.name)}</strong>（{esc(c.relation)}）· 第 {c.priority} 位</p>'
        f'<p><a class="tel" href="tel:{esc(c.phone)}">{esc(c.phone)}</a></p>'
        + ('<p class="hint">（您本人）</p>' if c.id in p.contact_ids.values() else
           f'<form method="post" action="{base}/contacts/{c.id}/delete" data-confirm="确定删除这位联系人吗？">'
           f'{csrf}<button type="submit" class="secondary">删除{esc(c.name)}</button></form>' if can_act else "")
        + "</li>"
        for c in elder.contacts
    )
    view_only = '<p class="hint">您的账号只能查看。修改安全暗语或紧急联系人需要代办权限，请联系平台。</p>'
    phrase_form = f"""<form method="post" action="{base}/safe-phrase" class="stacked">{csrf}
<p><label for="phrase">新的安全暗语</label><input id="phrase" name="phrase" minlength="2" maxlength="64" required autocomplete="off"></p>
<p><button type="submit">保存暗语</button></p></form>""" if can_act else view_only
    contact_form = f"""<form method="post" action="{base}/contacts" class="stacked">{csrf}
<p><label for="c-name">姓名</label><input id="c-name" name="name" required maxlength="64" autocomplete="name"></p>
<p><label for="c-rel">关系</label><input id="c-rel" name="relation" maxlength="32" placeholder="如 女儿"></p>
<p><label for="c-phone">电话</label><input id="c-phone" name="phone" required inputmode="tel" type="tel" maxlength="32" autocomplete="tel"></p>
<p><label for="c-pri">顺序</label><input id="c-pri" name="priority" type="number" inputmode="numeric" min="1" max="9" value="2"></p>
<p><button type="submit">添加联系人</button></p></form>""" if can_act else ""
    fragment = request.query.get("fragment")
    if fragment in ("orders", "alerts"):
        return web.Response(text=order_table if fragment == "orders" else alert_rows, content_type="text/html",
                            charset="utf-8")
    phrase_state = "已设置" if elder.safe_phrase else "未设置"
    open_alert = next((a for a in alerts if a.status == "open"), None)
    urgent = (
        f'<p class="urgent-banner" role="alert"><strong>{esc(ALERT_KIND_LABELS.get(open_alert.kind, open_alert.kind))}</strong>'
        f'（{cn_time(open_alert.created_at)}）· 平台值班人员正在处理</p>' if open_alert else ""
    )
    phone = elder.phones[0].number if elder.phones else ""
    call = (f'<a class="button call" href="tel:{esc(phone)}">给{esc(elder.name)}打电话</a>' if phone
            else '<p class="hint">没有登记电话号码。</p>')
    body = f"""{flash}
<section aria-labelledby="h-now" class="card now"><h2 id="h-now">最新情况</h2>
{urgent}{call}
<p class="hint">{esc(elder.name)}住在{esc(elder.district)} · 页面会自动更新。</p></section>
<div class="grid">
<section aria-labelledby="h-alerts" class="card"><h2 id="h-alerts">提醒</h2>
<ul id="family-alerts" class="items" data-fragment="{base}?fragment=alerts">{alert_rows}</ul></section>
<section aria-labelledby="h-orders" class="card"><h2 id="h-orders">服务工单</h2>
<div id="family-orders" data-fragment="{base}?fragment=orders">{order_table}</div></section>
<section aria-labelledby="h-place" class="card"><h2 id="h-place">代为下单</h2>{place}</section>
<section aria-labelledby="h-care" class="card"><h2 id="h-care">关怀电话</h2><ul class="items">{call_rows}</ul></section>
<section aria-labelledby="h-phrase" class="card"><h2 id="h-phrase">安全暗语（{phrase_state}）</h2>
<p class="hint">平台工作人员来电时会说出这句暗语，长者可借此辨别真假。暗语不会在页面上显示。</p>
{phrase_form}</section>
<section aria-labelledby="h-contacts" class="card"><h2 id="h-contacts">紧急联系人</h2>
<ul class="items">{contacts}</ul>
{contact_form}</section>
<section aria-labelledby="h-settings" class="card"><h2 id="h-settings">语音和屏幕设置</h2>
{elder_settings_form(elder, action=f"{base}/settings", csrf=csrf, voices=VOICES)}</section>
</div>"""
    return page(f"{elder.name}的服务", body, principal=p, area="family", current="/family/", live="/family/events")


def _form_action(kind: str):
    @family
    async def handler(request: web.Request, p: Principal, db: AsyncSession) -> web.StreamResponse:
        elder_id = _elder_id(request, p)
        form = await request.post()
        ip = client_ip(request)

        def f(name: str) -> str:
            return str(form.get(name, ""))

        done = kind
        store = request.app[SERVICES_KEY].store
        if kind == "order":
            event = await actions.family_place_order(db, store, p, elder_id, order_type=f("type"), note=f("note"),
                                                     hospital=f("hospital"), when=f("when"),
                                                     idempotency_key=f("idempotency_key"), ip=ip)
            request.app[HUB_KEY].publish(event)
        elif kind == "cancel":
            event = await actions.change_order_status(db, store, p, int(request.match_info["order_id"]), "cancelled",
                                                      ip=ip, elder_id=elder_id)
            request.app[HUB_KEY].publish(event)
        elif kind == "phrase":
            await actions.set_safe_phrase(db, store, p, elder_id, f("phrase"), ip=ip)
        elif kind == "contact":
            try:
                priority = int(f("priority") or "2")
            except ValueError:
                priority = 2
            await actions.add_contact(db, store, p, elder_id, name=f("name"), relation=f("relation"), phone=f("phone"),
                                      priority=priority, ip=ip)
        elif kind == "contact_delete":
            await actions.delete_contact(db, store, p, elder_id, int(request.match_info["contact_id"]), ip=ip)
            done = "contact"
        else:
            await actions.update_elder_settings(db, store, p, elder_id, dialect=f("dialect"), rate_wpm=f("rate_wpm"),
                                                volume=f("volume"), text_size=f("text_size"), voice=f("voice"),
                                                max_silence_s=f("max_silence_s"), ip=ip)
        raise web.HTTPSeeOther(f"/family/elders/{elder_id}?done={done}")

    return handler


@family
async def events(request: web.Request, p: Principal, db: AsyncSession) -> web.StreamResponse:
    await db.close()
    return await stream(request, request.app[HUB_KEY], elder_ids=p.elder_ids)


def add_routes(router: web.UrlDispatcher) -> None:
    add_sign_in_routes(router, "family", ("family",))
    router.add_get("/family/", home)
    router.add_get("/family/elders/{elder_id}", elder_page)
    router.add_post("/family/elders/{elder_id}/orders", _form_action("order"))
    router.add_post(r"/family/elders/{elder_id}/orders/{order_id:\d+}/cancel", _form_action("cancel"))
    router.add_post("/family/elders/{elder_id}/safe-phrase", _form_action("phrase"))
    router.add_post("/family/elders/{elder_id}/contacts", _form_action("contact"))
    router.add_post(r"/family/elders/{elder_id}/contacts/{contact_id:\d+}/delete", _form_action("contact_delete"))
    router.add_post("/family/elders/{elder_id}/settings", _form_action("settings"))
    router.add_get("/family/events", events)
