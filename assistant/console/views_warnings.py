"""Console pages for warning broadcasts (issue #17): what was sent, the delivery report per district (heard,
need help, not reached), and the elders it did not reach with a call link for the night operator.

- ``GET /console/warnings``: the call engine now (lines, calls per hour) and the broadcasts being sent with
  their progress and expected finish (``assistant.console.engine_status``), the last 30 days' broadcasts with
  their totals, and the send form (supervisors and admins send; ``telephony.gateway_service.send_warning``, the
  CLI's and the API's way; audited ``send_warning``).
- ``GET /console/warnings/{broadcast}``: while it is being sent its progress and expected finish; the report per
  district and the elders not reached (could not be dialled first, then every try unanswered), each with a
  ``tel:`` link and a link to the elder's page; audited ``view_warning`` (the page lists elders' phone numbers).
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.console import auth
from assistant.console.auth import ConsoleError, Principal
from assistant.console.engine_status import engine_now, engine_section, eta_sentence
from assistant.console.render import csrf_field, error_page, esc, local_time, page
from assistant.console.web import client_ip, guarded
from assistant.errors import TelephonyError
from assistant.platform.models import DISTRICTS
from assistant.platform.models_console import REVEAL_ROLES, STAFF_ROLES
from assistant.services import SERVICES_KEY
from telephony.broadcasts import Broadcast, broadcast_summary, not_reached, warning_report
from telephony.call_jobs import CallJobStore, as_stored
from telephony.gateway_service import send_warning

staff = guarded(area="console", roles=STAFF_ROLES)
senders = guarded(area="console", roles=REVEAL_ROLES)

KIND_LABELS = {"typhoon": "台风", "heat": "高温", "outage": "停电"}
RESULT_LABELS = {"planned": "应通知", "heard": "已听到（按1）", "need_help": "需要帮助（按2）",
                 "answered": "接听未按键", "no_answer": "多次未接", "failed": "拨不通", "pending": "待拨打"}
LIST_DAYS = 30
MAX_NOT_REACHED = 500  # rows on the page (could not be dialled first); the count says how many there are


def _jobs(request: web.Request) -> CallJobStore:
    return CallJobStore.for_engine(request.app[SERVICES_KEY].engine, now=lambda: dt.datetime.now().astimezone())


def _what(summary: dict | None) -> str:
    if summary is None:
        return ""
    if summary.get("text"):
        return f"文字：{summary['text']}"
    label = KIND_LABELS.get(summary.get("warning") or "", summary.get("warning") or "")
    fields = "，".join(f"{v}" for v in (summary.get("fields") or {}).values())
    return f"{label}预警" + (f"（{fields}）" if fields else "")


def _totals(districts: dict[str, dict[str, int]]) -> dict[str, int]:
    return {k: sum(d[k] for d in districts.values()) for k in RESULT_LABELS}


def _send_form(p: Principal) -> str:
    if p.role not in REVEAL_ROLES:
        return '<p class="hint">发送预警需要主管或管理员账号。</p>'
    kinds = "".join(f'<option value="{k}">{esc(v)}</option>' for k, v in KIND_LABELS.items())
    districts = "".join(
        f'<label><input type="checkbox" name="district" value="{esc(d)}"> {esc(d)}</label>' for d in DISTRICTS)
    return f"""<form method="post" action="/console/warnings" class="stacked">{csrf_field(p)}
<p><label for="w-kind">预警内容</label><select id="w-kind" name="kind">{kinds}<option value="text">自定义文字</option></select></p>
<p><label for="w-when">停电时间（停电预警必填，如：明天上午）</label><input id="w-when" name="when"></p>
<p><label for="w-text">自定义文字（选“自定义文字”时朗读）</label><textarea id="w-text" name="text" rows="2"></textarea></p>
<fieldset><legend>区域（不选 = 全部长者）</legend>{districts}</fieldset>
<p><label for="w-id">编号（可不填；同一编号不会重复拨打）</label><input id="w-id" name="broadcast_id" maxlength="40"></p>
<p><button type="submit">发送预警</button></p></form>"""


@staff
async def warnings_page(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=LIST_DAYS)
    jobs = _jobs(request)
    report = await warning_report(jobs, since=since)
    engine = await engine_now(jobs, request.app[SERVICES_KEY].settings.telephony)
    rows = []
    for broadcast in sorted(report, reverse=True):
        t = _totals(report[broadcast])
        rows.append(f'<tr><td><a href="/console/warnings/{esc(broadcast)}">{esc(broadcast)}</a></td>'
                    f'<td>{t["planned"]}</td><td>{t["heard"]}</td><td>{t["need_help"]}</td>'
                    f'<td>{t["no_answer"] + t["failed"]}</td><td>{t["pending"]}</td></tr>')
    table = ('<table><thead><tr><th scope=col>预警</th><th scope=col>应通知</th><th scope=col>已听到</th>'
             '<th scope=col>需要帮助</th><th scope=col>未通知到</th><th scope=col>待拨打</th></tr></thead>'
             f'<tbody>{"".join(rows)}</tbody></table>') if rows else f'<p class="empty">最近 {LIST_DAYS} 天没有发送预警。</p>'
    body = f"""<p class="hint">台风、高温、停电等预警由电话逐一通知长者：按1表示听到，按2表示需要帮助（会生成警报）。
拨不通的长者会各生成一条警报，请值班人员电话联系。</p>
{engine_section(engine)}
<section aria-labelledby="h-list"><h2 id="h-list">最近的预警</h2>{table}</section>
<section aria-labelledby="h-send" class="card"><h2 id="h-send">发送预警</h2>{_send_form(p)}</section>"""
    return page("预警广播", body, principal=p, current="/console/warnings")


@senders
async def send_warning_action(request: web.Request, p: Principal, db: AsyncSession) -> web.StreamResponse:
    form = await request.post()
    kind = str(form.get("kind", ""))
    districts = [str(d) for d in form.getall("district", [])]
    if any(d not in DISTRICTS for d in districts):
        raise ConsoleError("未知的区域")
    now = dt.datetime.now().astimezone()
    text = str(form.get("text", "")).strip()
    when = str(form.get("when", "")).strip()
    try:
        broadcast = Broadcast(
            broadcast_id=str(form.get("broadcast_id", "")).strip() or f"{kind}-{now.astimezone(dt.UTC):%Y%m%d%H%M%S}",
            kind=None if kind == "text" else kind, text=(text or None) if kind == "text" else None,
            fields={"when": when} if kind == "outage" and when else {})
    except TelephonyError as exc:
        raise ConsoleError(f"预警内容有误：{exc.message}") from exc
    services = request.app[SERVICES_KEY]
    planned = await send_warning(store=services.store, jobs=_jobs(request), broadcast=broadcast, districts=districts,
                                 quiet_hours=services.settings.telephony.quiet_hours, now=now)
    await auth.audit(db, p, "send_warning", target_type="broadcast", target_id=broadcast.broadcast_id,
                     detail={**broadcast.detail(), "districts": districts, **planned}, ip=client_ip(request))
    await db.commit()
    raise web.HTTPSeeOther(f"/console/warnings/{broadcast.broadcast_id}?added={planned['added']}")


@staff
async def warning_page(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    broadcast = request.match_info["broadcast"]
    jobs = _jobs(request)
    summary = await broadcast_summary(jobs, broadcast)
    if summary is None:
        return error_page(404, "没有这条预警。", p)
    report = (await warning_report(jobs, broadcast_id=broadcast)).get(broadcast, {})
    missed = await not_reached(jobs, broadcast)
    sending = []
    if sum(c["pending"] for c in report.values()):
        sending = (await engine_now(jobs, request.app[SERVICES_KEY].settings.telephony, broadcast_ids=[broadcast])).sending
    await auth.audit(db, p, "view_warning", target_type="broadcast", target_id=broadcast, ip=client_ip(request))
    await db.commit()
    head = "".join(f"<th scope=col>{esc(v)}</th>" for v in RESULT_LABELS.values())
    rows = "".join(f'<tr><th scope=row>{esc(d or "—")}</th>' + "".join(f"<td>{c[k]}</td>" for k in RESULT_LABELS)
                   + "</tr>" for d, c in sorted(report.items()))
    totals = _totals(report)
    foot = '<tr><th scope=row>合计</th>' + "".join(f"<td>{totals[k]}</td>" for k in RESULT_LABELS) + "</tr>"
    by_district = (f'<table id="warning-report"><thead><tr><th scope=col>区</th>{head}</tr></thead>'
                   f"<tbody>{rows}</tbody><tfoot>{foot}</tfoot></table>")
    people = "".join(
        f'<tr class="st-{esc(m["result"])}"><td><a href="/console/elders/{m["elder_id"]}">{esc(m["name"] or m["elder_id"])}</a></td>'
        f'<td>{esc(m["district"])}</td><td>{esc(RESULT_LABELS[m["result"]])}（{m["attempts"]} 次）</td>'
        f'<td><a class="button call" href="tel:{esc(m["number"])}">打电话 {esc(m["number"])}</a></td></tr>'
        for m in missed[:MAX_NOT_REACHED])
    people_table = ('<table id="not-reached"><thead><tr><th scope=col>长者</th><th scope=col>区</th>'
                    '<th scope=col>结果</th><th scope=col>联系</th></tr></thead>'
                    f"<tbody>{people}</tbody></table>") if missed else '<p class="empty">没有未通知到的长者。</p>'
    more = (f'<p class="hint">共 {len(missed)} 位，下面列出前 {MAX_NOT_REACHED} 位（拨不通的在前）。</p>'
            if len(missed) > MAX_NOT_REACHED else "")
    added = request.query.get("added")
    flash = (f'<p class="flash" role="status">预警已发送：新增 {esc(added)} 位长者的电话。</p>'
             if added is not None else "")
    progress = "".join(f'<p id="eta" class="card">{esc(eta_sentence(s))}</p>' for s in sending)
    body = f"""{flash}<p class="hint">{esc(_what(summary))} · 发送于 {local_time(as_stored(summary["sent_at"]))}</p>
{progress}<section aria-labelledby="h-report" class="card"><h2 id="h-report">各区送达情况</h2>{by_district}</section>
<section aria-labelledby="h-missed"><h2 id="h-missed">未通知到的长者（请电话联系）</h2>{more}{people_table}</section>
<p><a href="/console/warnings">返回预警列表</a></p>"""
    return page(f"预警 {broadcast}", body, principal=p, current="/console/warnings")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/console/warnings", warnings_page)
    router.add_post("/console/warnings", send_warning_action)
    router.add_get(r"/console/warnings/{broadcast:[^/:]{1,40}}", warning_page)
