"""Console page for an elder's medication reminders (issue #17): the plans (medicine, local times, on/off),
adding one and stopping or restarting one, and the last week's reminder calls. Staff only; every change is
audited (``medication_add``, ``medication_disable``, ``medication_enable``). The plans are
``telephony.medication``'s (the same ``add_plan`` as ``assistant phone medication``).

- ``GET /console/elders/{id}/medication``
- ``POST /console/elders/{id}/medication``: ``medicine``, ``times`` ("08:00,20:00")
- ``POST /console/elders/{id}/medication/{plan}/enabled``: ``enabled`` = "0" | "1"
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.console import auth
from assistant.console.auth import ConsoleError, Principal
from assistant.console.render import csrf_field, error_page, esc, local_time, page
from assistant.console.views_elders import elder_id_of
from assistant.console.web import client_ip, guarded
from assistant.platform.models import Elder
from assistant.platform.models_console import STAFF_ROLES
from assistant.services import SERVICES_KEY
from telephony.call_jobs import CallJobStore, as_stored
from telephony.medication import add_plan, list_plans, set_plan_enabled
from telephony.models import CallJob

staff = guarded(area="console", roles=STAFF_ROLES)
MAX_MEDICINE = 64
RESULT_LABELS = {"heard": "已吃（按1）", "need_help": "需要帮助（按2）", "no_answer": "未接", "busy": "占线",
                 "failed": "拨不通", "missed": "已停用", "planned": "待拨打", "answered": "接听未按键"}


def _jobs(request: web.Request) -> CallJobStore:
    return CallJobStore.for_engine(request.app[SERVICES_KEY].engine, now=lambda: dt.datetime.now().astimezone())


def _result(job: CallJob) -> str:
    if job.state == "done":
        return job.outcome if job.outcome in ("heard", "need_help") else "answered"
    return job.state if job.state in RESULT_LABELS else "planned"


@staff
async def medication_page(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    elder = await db.get(Elder, elder_id_of(request))
    if elder is None:
        return error_page(404, "没有这位长者。", p)
    base = f"/console/elders/{elder.id}/medication"
    plans = await list_plans(_jobs(request), elder_id=elder.id)
    rows = "".join(
        f'<tr><td>{esc(pl.medicine)}</td><td>{esc(pl.times)}</td><td>{"提醒中" if pl.enabled else "已停用"}</td>'
        f'<td><form method="post" action="{base}/{pl.plan_id}/enabled" class="inline">{csrf_field(p)}'
        f'<input type="hidden" name="enabled" value="{"0" if pl.enabled else "1"}">'
        f'<button type="submit" class="{"secondary" if pl.enabled else ""}" '
        f'aria-label="{"停用" if pl.enabled else "恢复"}：{esc(pl.medicine)} {esc(pl.times)}">'
        f'{"停用" if pl.enabled else "恢复"}</button></form></td></tr>'
        for pl in plans)
    table = ('<table id="medication-plans"><thead><tr><th scope=col>药</th><th scope=col>提醒时间</th>'
             f'<th scope=col>状态</th><th scope=col>操作</th></tr></thead><tbody>{rows}</tbody></table>'
             if rows else '<p class="empty">还没有吃药提醒。</p>')
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=7)
    calls = (await db.scalars(select(CallJob).where(CallJob.kind == "medication", CallJob.elder_id == elder.id,
                                                    CallJob.not_before >= since)
                              .order_by(CallJob.not_before.desc(), CallJob.id.desc()).limit(60))).all()
    history = "".join(
        f'<tr><td>{local_time(as_stored(j.not_before))}</td><td>{esc(j.detail.get("medicine", ""))}</td>'
        f'<td>{"家属" if j.detail.get("to_family") else "长者"}（第 {j.attempt} 次）</td>'
        f'<td>{esc(RESULT_LABELS[_result(j)])}</td></tr>' for j in calls)
    history_table = ('<table id="medication-calls"><thead><tr><th scope=col>时间</th><th scope=col>药</th>'
                     f'<th scope=col>打给</th><th scope=col>结果</th></tr></thead><tbody>{history}</tbody></table>'
                     if history else '<p class="empty">最近 7 天没有吃药提醒电话。</p>')
    done = {"added": "已添加吃药提醒。", "disabled": "已停用。", "enabled": "已恢复提醒。"}.get(request.query.get("done", ""))
    flash = f'<p class="flash" role="status">{esc(done)}</p>' if done else ""
    body = f"""{flash}<p class="hint">{esc(elder.name)} · {esc(elder.district)}。到了提醒时间，电话会问长者“药吃了吗？”：
按1表示已吃，按2表示需要帮助；多次未接时依次打给家属。夜间免打扰时段内的时间不会拨打。</p>
<section aria-labelledby="h-plans"><h2 id="h-plans">吃药提醒</h2>{table}</section>
<section aria-labelledby="h-add" class="card"><h2 id="h-add">添加提醒</h2>
<form method="post" action="{base}" class="stacked">{csrf_field(p)}
<p><label for="m-medicine">药名（电话里会读出来）</label><input id="m-medicine" name="medicine" required maxlength="{MAX_MEDICINE}"></p>
<p><label for="m-times">提醒时间（24 小时制，多个用逗号分开，如 08:00,20:00）</label><input id="m-times" name="times" required></p>
<p><button type="submit">添加</button></p></form></section>
<section aria-labelledby="h-calls"><h2 id="h-calls">最近 7 天的提醒电话</h2>{history_table}</section>
<p><a href="/console/elders/{elder.id}">返回长者设置</a></p>"""
    return page(f"{elder.name}的吃药提醒", body, principal=p)


@staff
async def medication_add(request: web.Request, p: Principal, db: AsyncSession) -> web.StreamResponse:
    elder_id = elder_id_of(request)
    if await db.get(Elder, elder_id) is None:
        return error_page(404, "没有这位长者。", p)
    form = await request.post()
    medicine, times = str(form.get("medicine", "")).strip(), str(form.get("times", "")).replace("，", ",").strip()
    if not medicine or len(medicine) > MAX_MEDICINE:
        raise ConsoleError("请填写药名（不超过 64 个字）")
    try:
        plan_id = await add_plan(_jobs(request), elder_id=elder_id, medicine=medicine, times=times)
    except ValueError as exc:
        raise ConsoleError("提醒时间要写成 08:00,20:00 这样") from exc
    await auth.audit(db, p, "medication_add", target_type="elder", target_id=elder_id,
                     detail={"plan_id": plan_id, "medicine": medicine, "times": times}, ip=client_ip(request))
    await db.commit()
    raise web.HTTPSeeOther(f"/console/elders/{elder_id}/medication?done=added")


@staff
async def medication_enabled(request: web.Request, p: Principal, db: AsyncSession) -> web.StreamResponse:
    elder_id, plan_id = elder_id_of(request), int(request.match_info["plan_id"])
    enabled = str((await request.post()).get("enabled", "")) == "1"
    if not await set_plan_enabled(_jobs(request), plan_id=plan_id, elder_id=elder_id, enabled=enabled):
        return error_page(404, "没有这条吃药提醒。", p)
    await auth.audit(db, p, "medication_enable" if enabled else "medication_disable", target_type="elder",
                     target_id=elder_id, detail={"plan_id": plan_id}, ip=client_ip(request))
    await db.commit()
    raise web.HTTPSeeOther(f"/console/elders/{elder_id}/medication?done={'enabled' if enabled else 'disabled'}")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(r"/console/elders/{elder_id:\d+}/medication", medication_page)
    router.add_post(r"/console/elders/{elder_id:\d+}/medication", medication_add)
    router.add_post(r"/console/elders/{elder_id:\d+}/medication/{plan_id:\d+}/enabled", medication_enabled)
