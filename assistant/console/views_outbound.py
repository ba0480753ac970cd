"""``GET /console/outbound`` (外呼统计): what the call engine did in the last N local days, per district and day —
calls placed, answer rate, no answers, busy / not dialable, family told, operator alerts of care calls,
medication reminders taken / missed, warnings heard / need help / not reached (issue #17 item 4).

The numbers are counted in SQL (``telephony.outbound_report``). Three SVG charts (calls per day, answer rate
per district, warnings per day; ``assistant.console.charts``), each followed by a table with the same numbers,
and every district × day in a table under a disclosure. Staff (operators, supervisors, admins): the page
shows counts only, no elder's name or number, and the night operator is the one who acts on a bad answer rate;
family accounts are refused. Query: ``days`` (1, 7, 14 or 30; default 7), ``district`` (one of ``DISTRICTS``).
Above the statistics: the call engine now and the warnings being sent (``assistant.console.engine_status``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from assistant.console.auth import ConsoleError, Principal
from assistant.console.charts import legend, rate_bars, stacked_columns
from assistant.console.engine_status import engine_now, engine_section
from assistant.console.render import LOCAL_TZ, esc, page, select_field
from assistant.console.web import guarded
from assistant.platform.models import DISTRICTS
from assistant.platform.models_console import STAFF_ROLES
from assistant.services import SERVICES_KEY
from telephony.call_jobs import CallJobStore
from telephony.outbound_report import OutboundReport, Tally, outbound_report

staff = guarded(area="console", roles=STAFF_ROLES)

DAY_CHOICES = {"1": "今天", "7": "最近 7 天", "14": "最近 14 天", "30": "最近 30 天"}
CALL_PARTS = (("answered", "c-answered", "接通"), ("no_answer", "c-unanswered", "未接"),
              ("busy_failed", "c-busy", "占线/拨不通"))
WARN_PARTS = (("warn_heard", "c-answered", "已听到"), ("warn_need_help", "c-help", "需要帮助"),
              ("warn_not_reached", "c-unanswered", "未通知到"))
# the tables' columns: (heading, how a Tally shows in it)
CALL_COLUMNS: tuple[tuple[str, Callable[[Tally], object]], ...] = (
    ("拨出", lambda t: t.placed), ("接通", lambda t: t.answered), ("接通率", lambda t: _pct(t.answer_rate)),
    ("未接", lambda t: t.no_answer), ("占线/拨不通", lambda t: t.busy_failed),
    ("时段已过未拨", lambda t: t.not_dialled), ("家属：告知/拨打", lambda t: f"{t.family_told}/{t.family_calls}"),
    ("关怀警报", lambda t: t.care_alerts))
CARE_COLUMNS: tuple[tuple[str, Callable[[Tally], object]], ...] = (
    ("吃药：已吃", lambda t: t.med_taken), ("吃药：需帮助", lambda t: t.med_need_help),
    ("吃药：未接", lambda t: t.med_missed), ("预警：已听到", lambda t: t.warn_heard),
    ("预警：需帮助", lambda t: t.warn_need_help), ("预警：接听未按键", lambda t: t.warn_answered),
    ("预警：未通知到", lambda t: t.warn_not_reached))


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.0%}"


def _day(d: dt.date) -> str:
    return f"{d.month}月{d.day}日"


def _table(table_id: str, caption: str, first: str, rows: list[tuple[str, Tally]],
           columns: tuple[tuple[str, Callable[[Tally], object]], ...], *, total: Tally | None = None) -> str:
    """A table in a focusable scroll box (wide tables scroll sideways inside it on a phone, not the page)."""
    head = "".join(f"<th scope=col>{esc(h)}</th>" for h, _ in columns)
    body = "".join(f"<tr><th scope=row>{esc(label)}</th>" + "".join(f"<td>{esc(f(t))}</td>" for _, f in columns)
                   + "</tr>" for label, t in rows)
    foot = ("<tfoot><tr><th scope=row>合计</th>" + "".join(f"<td>{esc(f(total))}</td>" for _, f in columns)
            + "</tr></tfoot>") if total is not None else ""
    return (f'<div class="table-scroll" role="region" aria-labelledby="{table_id}-c" tabindex="0">'
            f'<table id="{table_id}" class="numbers"><caption id="{table_id}-c">{esc(caption)}</caption>'
            f"<thead><tr><th scope=col>{esc(first)}</th>{head}</tr></thead><tbody>{body}</tbody>{foot}</table></div>")


def _calls_chart(r: OutboundReport) -> str:
    total = r.total()
    busiest = max(r.days, key=lambda d: r.day(d).placed)
    summary = (f"{_day(r.days[0])}至{_day(r.days[-1])}共拨出 {total.placed} 通电话，接通 {total.answered} 通"
               f"（{_pct(total.answer_rate)}），未接 {total.no_answer} 通，占线或拨不通 {total.busy_failed} 通；"
               f"最多的一天是{_day(busiest)}，{r.day(busiest).placed} 通。")
    columns = [(f"{d.month}/{d.day}", [(css, getattr(r.day(d), key)) for key, css, _ in CALL_PARTS]) for d in r.days]
    return (stacked_columns(chart_id="chart-calls", title="每天拨出的电话：接通、未接、占线/拨不通", summary=summary,
                            columns=columns) + legend([(css, label) for _, css, label in CALL_PARTS]))


def _rate_chart(r: OutboundReport) -> str:
    rates = [(d or "—", r.district(d).answer_rate) for d in r.districts]
    known = [(d, x) for d, x in rates if x is not None]
    summary = "各区接通率：" + "，".join(f"{d} {_pct(x)}" for d, x in rates) + "。"
    if known:
        low = min(known, key=lambda p: p[1])
        summary += f"最低的是{low[0]}（{_pct(low[1])}）。"
    return rate_bars(chart_id="chart-rate", title="各区接通率（接通/拨出）", summary=summary, rows=rates)


def _warn_chart(r: OutboundReport) -> str:
    total = r.total()
    summary = (f"预警电话：已听到 {total.warn_heard} 位，需要帮助 {total.warn_need_help} 位，"
               f"未通知到 {total.warn_not_reached} 位（每位长者按最后一次拨打计）。")
    columns = [(f"{d.month}/{d.day}", [(css, getattr(r.day(d), key)) for key, css, _ in WARN_PARTS]) for d in r.days]
    return (stacked_columns(chart_id="chart-warn", title="每天的预警送达：已听到、需要帮助、未通知到", summary=summary,
                            columns=columns) + legend([(css, label) for _, css, label in WARN_PARTS]))


@staff
async def outbound_page(request: web.Request, p: Principal, db: AsyncSession) -> web.Response:
    days = request.query.get("days", "7")
    district = request.query.get("district", "")
    if days not in DAY_CHOICES:
        raise ConsoleError("天数只能是 1、7、14 或 30")
    if district and district not in DISTRICTS:
        raise ConsoleError("未知的区域")
    jobs = CallJobStore.for_engine(request.app[SERVICES_KEY].engine, now=lambda: dt.datetime.now(dt.UTC))
    today = dt.datetime.now(LOCAL_TZ).date()
    r = await outbound_report(jobs, today=today, days=int(days), tz=LOCAL_TZ, district=district or None)
    engine = await engine_now(jobs, request.app[SERVICES_KEY].settings.telephony)
    total = r.total()
    stats = "".join(f'<li class="stat"><span class="num">{esc(v)}</span> {esc(k)}</li>' for k, v in (
        ("拨出电话", total.placed), ("接通率", _pct(total.answer_rate)), ("未接", total.no_answer),
        ("家属已告知", total.family_told), ("关怀警报", total.care_alerts), ("预警已听到", total.warn_heard),
        ("预警未通知到", total.warn_not_reached)))
    districts = {"": "全部区域"} | {d: d for d in DISTRICTS}
    form = (f'<form method="get" action="/console/outbound" class="filters">'
            f'{select_field("days", DAY_CHOICES, days, "时间")}{select_field("district", districts, district, "区域")}'
            '<button type="submit" class="secondary">查看</button></form>')
    where = district or "全部区域"
    by_day = [(_day(d), r.day(d)) for d in reversed(r.days)]
    by_district = [(d or "—", r.district(d)) for d in r.districts]
    cells = [(f"{_day(d)} {dist or '—'}", r.cell(dist, d)) for d in reversed(r.days) for dist in r.districts
             if (dist, d) in r.cells]
    if total == Tally():
        content = f'<p class="empty">{esc(where)}在这段时间没有外呼电话。</p>'
    else:
        content = f"""<ul class="stats">{stats}</ul>
<section aria-labelledby="h-calls" class="card"><h2 id="h-calls">每天的电话</h2>{_calls_chart(r)}
{_table("by-day", f"每天的电话（{where}）", "日期", by_day, CALL_COLUMNS, total=total)}</section>
<section aria-labelledby="h-rate" class="card"><h2 id="h-rate">各区接通率</h2>{_rate_chart(r)}
{_table("by-district", "各区的电话", "区", by_district, CALL_COLUMNS, total=total)}</section>
<section aria-labelledby="h-warn" class="card"><h2 id="h-warn">吃药提醒和预警</h2>{_warn_chart(r)}
{_table("care-by-day", f"每天的吃药提醒和预警（{where}）", "日期", by_day, CARE_COLUMNS, total=total)}
{_table("care-by-district", "各区的吃药提醒和预警", "区", by_district, CARE_COLUMNS, total=total)}</section>
<details><summary>各区每天明细</summary>
{_table("cells", "各区每天的电话", "日期 区", cells, CALL_COLUMNS)}
{_table("care-cells", "各区每天的吃药提醒和预警", "日期 区", cells, CARE_COLUMNS)}</details>"""
    body = f"""<p class="hint">关怀电话、家属通知、吃药提醒、预警和回访电话，按区和天统计（北京时间；每一步按结束的那天计）。
接通率 = 接通 / 拨出（含重拨和打给家属的电话）；预警和吃药提醒的“未通知到/未接”按每位长者最后一次拨打计。</p>
{engine_section(engine)}{form}{content}"""
    return page("外呼统计", body, principal=p, current="/console/outbound")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/console/outbound", outbound_page)
