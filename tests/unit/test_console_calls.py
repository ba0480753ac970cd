"""Console pages for warning broadcasts and medication reminders (issue #17): roles, CSRF, audit, the report
per district, the elders not reached with a call link, medication plans added / stopped / restarted; the call
engine's capacity and the broadcasts being sent with their expected finish (``engine_status``)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select, update

from assistant.call_alert import CallAlert
from assistant.console import users, views_warnings
from assistant.console.app import create_app
from assistant.console.engine_status import duration
from assistant.console.render import LOCAL_TZ, cn_time
from assistant.console.seed import seed_demo
from assistant.platform.models_console import AuditEntry
from assistant.services import SERVICES_KEY
from telephony import capacity
from telephony.call_jobs import CallJobStore
from telephony.medication import MedicationReminders
from telephony.models import CallJob, MedicationPlan
from tests.unit.console_helpers import PASSWORD, csrf_from, login, write_wav


@pytest.fixture
async def env(aiohttp_client, settings):
    app = create_app(settings)
    c = await aiohttp_client(app)
    async with app[SERVICES_KEY].sessions() as db:
        for name, role in (("op", "operator"), ("sup", "supervisor")):
            await users.create_user(db, username=name, role=role, password=PASSWORD)
        ids = await seed_demo(db, audio_path=write_wav(settings.paths.var_dir / "calls" / "demo.wav"))
        await users.create_user(db, username="fam", role="family", password=PASSWORD, elder_ids=(ids.elder_a,))
    c.ids = ids
    return c


async def _as(c, username: str) -> str:
    await c.post("/console/logout", data={"_csrf": "x"})
    c.session.cookie_jar.clear()
    assert (await login(c, username, area="family" if username == "fam" else "console")).status == 303
    return csrf_from(await (await c.get("/console/" if username != "fam" else "/family/")).text())


async def _audit(c, action: str) -> list[AuditEntry]:
    async with c.server.app[SERVICES_KEY].sessions() as db:
        return list((await db.scalars(select(AuditEntry).where(AuditEntry.action == action))).all())


async def test_warning_pages_send_report_and_not_reached(env, monkeypatch):
    c = env
    await _as(c, "fam")
    assert (await c.get("/console/warnings")).status == 403
    token = await _as(c, "op")
    page = await c.get("/console/warnings")
    assert page.status == 200 and "最近 30 天没有发送预警" in await page.text() and "需要主管或管理员" in await page.text()
    refused = await c.post("/console/warnings", data={"_csrf": token, "kind": "typhoon"}, allow_redirects=False)
    assert refused.status == 403  # operators see, supervisors send
    token = await _as(c, "sup")
    assert (await c.post("/console/warnings", data={"kind": "typhoon", "broadcast_id": "tf1"},
                         allow_redirects=False)).status == 403  # no CSRF token
    bad = await c.post("/console/warnings", data={"_csrf": token, "kind": "outage"})  # an outage needs its time
    assert bad.status == 400 and "预警内容有误" in await bad.text()
    sent = await c.post("/console/warnings", data={"_csrf": token, "kind": "typhoon", "broadcast_id": "tf1"},
                        allow_redirects=False)
    assert sent.status == 303 and sent.headers["Location"].startswith("/console/warnings/tf1?added=")
    jobs = CallJobStore.for_engine(c.server.app[SERVICES_KEY].engine, now=lambda: dt.datetime.now(dt.UTC))
    rows = await jobs.jobs()
    assert rows and {r.kind for r in rows} == {"warning"}
    [audit] = await _audit(c, "send_warning")
    assert audit.target_id == "tf1" and audit.detail["added"] == len(rows)
    # one elder could not be dialled, another heard it
    failed, heard = rows[0], rows[1]
    async with c.server.app[SERVICES_KEY].engine.begin() as conn:
        await conn.execute(update(CallJob).where(CallJob.id == failed.id).values(state="failed", result="no_route"))
        await conn.execute(update(CallJob).where(CallJob.id == heard.id).values(state="done", outcome="heard"))
    report = await c.get("/console/warnings/tf1")
    html = await report.text()
    assert report.status == 200 and "台风预警" in html and 'id="warning-report"' in html
    assert f'href="tel:{failed.number}"' in html and f'/console/elders/{failed.elder_id}"' in html
    assert f'tel:{heard.number}"' not in html  # heard: not in the not-reached list
    assert "拨不通（1 次）" in html
    assert [a.target_id for a in await _audit(c, "view_warning")] == ["tf1"]
    listing = await (await c.get("/console/warnings")).text()
    assert 'href="/console/warnings/tf1"' in listing
    assert (await c.get("/console/warnings/nope")).status == 404
    monkeypatch.setattr(views_warnings, "MAX_NOT_REACHED", 0)  # 25,000 not reached: the page lists a few
    capped = await (await c.get("/console/warnings/tf1")).text()
    assert "共 1 位，下面列出前 0 位" in capped and "tel:" not in capped


async def test_medication_plans_add_stop_restart_audited(env):
    c = env
    elder = c.ids.elder_a
    base = f"/console/elders/{elder}/medication"
    await _as(c, "fam")
    assert (await c.get(base)).status == 403
    token = await _as(c, "op")
    assert "还没有吃药提醒" in await (await c.get(base)).text()
    assert (await c.get(f"/console/elders/{elder}")).status == 200
    bad = await c.post(base, data={"_csrf": token, "medicine": "降压药", "times": "早上八点"})
    assert bad.status == 400 and "08:00,20:00" in await bad.text()
    added = await c.post(base, data={"_csrf": token, "medicine": "降压药", "times": "08:00，20:00"}, allow_redirects=False)
    assert added.status == 303
    async with c.server.app[SERVICES_KEY].sessions() as db:
        [plan] = (await db.scalars(select(MedicationPlan))).all()
    assert (plan.elder_id, plan.medicine, plan.times, plan.enabled) == (elder, "降压药", "08:00,20:00", True)
    html = await (await c.get(base)).text()
    assert "降压药" in html and "提醒中" in html
    # the engine's planning pass plans today's and tomorrow's reminders; stopping the plan ends them
    jobs = CallJobStore.for_engine(c.server.app[SERVICES_KEY].engine, now=lambda: dt.datetime.now(dt.UTC))
    now = dt.datetime(2030, 1, 7, 7, 0)
    planned = await jobs.plan(await MedicationReminders(jobs=jobs)(now))
    assert planned == 4
    stop = await c.post(f"{base}/{plan.id}/enabled",
                        data={"_csrf": token, "enabled": "0"}, allow_redirects=False)
    assert stop.status == 303
    rows = await jobs.jobs()
    assert {(r.state, r.result) for r in rows} == {("missed", "plan_disabled")}
    assert await MedicationReminders(jobs=jobs)(now) == []
    assert "已停用" in await (await c.get(base)).text()
    again = await c.post(f"{base}/{plan.id}/enabled", data={"_csrf": token, "enabled": "1"}, allow_redirects=False)
    assert again.status == 303 and await jobs.jobs() == []  # the ended rows go: the next pass plans them again
    assert await jobs.plan(await MedicationReminders(jobs=jobs)(now)) == 4
    other = await c.post(f"/console/elders/{c.ids.elder_b}/medication/{plan.id}/enabled",
                         data={"_csrf": token, "enabled": "0"})
    assert other.status == 404  # another elder's plan
    assert [a.action for a in await _audit(c, "medication_add")] == ["medication_add"]
    assert len(await _audit(c, "medication_disable")) == 1 and len(await _audit(c, "medication_enable")) == 1


async def test_an_alert_of_a_warning_or_reminder_links_to_its_page(env):
    c = env
    store = c.server.app[SERVICES_KEY].store
    warn = await store.raise_call_alert(CallAlert(kind="no_answer", call_id=None, elder_id=c.ids.elder_a,
                                                  detail={"source": "warning", "broadcast": "台风 1",
                                                          "summary": "预警「台风 1」未能送达"}))
    med = await store.raise_call_alert(CallAlert(kind="no_answer", call_id=None, elder_id=c.ids.elder_b,
                                                 detail={"source": "medication", "medicine": "降压药"}))
    await _as(c, "op")
    html = await (await c.get(f"/console/alerts/{warn.alert_id}")).text()
    assert 'href="/console/warnings/%E5%8F%B0%E9%A3%8E%201"' in html and "未能送达" in html
    html = await (await c.get(f"/console/alerts/{med.alert_id}")).text()
    assert f'href="/console/elders/{c.ids.elder_b}/medication"' in html


def _tiles(html: str) -> dict[str, str]:
    box = re.search(r'<ul class="stats" id="engine-capacity">(.*?)</ul>', html, re.S).group(1)
    return {k: v for v, k in re.findall(r'<span class="num">([^<]*)</span> ([^<]+)</li>', box)}


async def test_capacity_and_a_broadcast_being_sent_with_the_apis_estimate(env):
    """The night operator and the supervisor see on /console/warnings and 外呼统计 what the engine can place now
    (live nodes, lines, holding time, calls per hour) and each warning broadcast being sent with its progress
    and expected finish in Beijing time — the estimate ``POST /api/warnings`` answers
    (``telephony.capacity.broadcast_estimate``), not a second one. Family accounts get 403."""
    c = env
    await _as(c, "fam")
    for path in ("/console/warnings", "/console/outbound"):
        assert (await c.get(path)).status == 403, path
    token = await _as(c, "sup")
    # no engine node: said plainly, nothing being sent
    html = await (await c.get("/console/warnings")).text()
    assert "没有在线的外呼节点" in html and _tiles(html)["在线节点"] == "0" and "现在没有正在发送的预警" in html
    # a typhoon warning to both demo elders, due at hh:mm:30 two hours ahead (then the estimate does not move
    # with the clock), and one engine node of 8 lines beating
    r = await c.post("/console/warnings", data={"_csrf": token, "kind": "typhoon", "broadcast_id": "tf-eta"},
                     allow_redirects=False)
    assert r.status == 303
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).replace(second=30, microsecond=0)
    async with c.server.app[SERVICES_KEY].engine.begin() as conn:
        await conn.execute(update(CallJob).where(CallJob.kind == "warning").values(not_before=due))
    jobs = CallJobStore.for_engine(c.server.app[SERVICES_KEY].engine, now=lambda: dt.datetime.now(dt.UTC))
    await capacity.beat(jobs, capacity.NodeBeat(node_id="n1", lines=8, dials_per_s=2.0, tick_s=5.0, lease_s=3600.0,
                                                in_progress=3))
    api = await capacity.broadcast_estimate(jobs, "tf-eta", telephony=c.server.app[SERVICES_KEY].settings.telephony)
    done_at = dt.datetime.fromisoformat(api["expected_done_at"])
    # 8 lines at the default 90-s hold (5-s tick) = 320 calls/h; 2 elders: due + 5 + 22.5 + 2 × (900 + 5 + 90) + 90
    assert api["capacity_calls_per_h"] == 320
    assert abs(done_at - (due + dt.timedelta(seconds=5 + 22.5 + 2 * 995 + 90))) <= dt.timedelta(seconds=1)
    when = cn_time(done_at)
    assert when.startswith(f"{done_at.astimezone(LOCAL_TZ).month}月")  # Beijing time

    for path in ("/console/warnings", "/console/outbound"):
        res = await c.get(path)
        html = await res.text()
        assert res.status == 200 and "没有在线的外呼节点" not in html, path
        assert _tiles(html) == {"在线节点": "1", "外呼线路": "8", "通话中": "3", "每通占线": "90 秒",
                                "每小时可拨": "320 通"}, path
        assert "按默认 90 秒估算" in html
        items = re.findall(r'<li><p><a href="/console/warnings/tf-eta">tf-eta</a></p><p class="eta">([^<]*)</p>'
                           r'<p class="item-meta">([^<]*)</p></li>', html)
        assert len(items) == 1, path
        [(eta, progress)] = items
        left = api["expected_done_s"]  # asked a moment before the page: the same within a second or two
        assert eta in {f"预计 {when}（北京时间）全部拨完，还需{duration(left + d)}。" for d in (-3, 0, 3)}, path
        assert "还需约 2 小时" in eta and progress == "已完成 0 / 2 位（0%），待拨打 2 位。", path
        assert " style=" not in html and "<script>" not in html  # the CSP holds
    page = await (await c.get("/console/warnings/tf-eta")).text()
    assert f"正在发送：预计 {when}（北京时间）全部拨完" in page and "已完成 0 / 2 位（0%），待拨打 2 位。" in page

    # one elder heard it: 1 / 2; then the other: no longer being sent, no line on its page
    async with c.server.app[SERVICES_KEY].engine.begin() as conn:
        await conn.execute(update(CallJob).where(CallJob.elder_id == c.ids.elder_a).values(
            state="done", outcome="heard", finished_at=dt.datetime.now(dt.UTC)))
    html = await (await c.get("/console/warnings")).text()
    assert "已完成 1 / 2 位（50%），待拨打 1 位。" in html
    async with c.server.app[SERVICES_KEY].engine.begin() as conn:
        await conn.execute(update(CallJob).where(CallJob.elder_id == c.ids.elder_b).values(
            state="done", outcome="heard", finished_at=dt.datetime.now(dt.UTC)))
    html = await (await c.get("/console/warnings")).text()
    assert "现在没有正在发送的预警" in html and 'href="/console/warnings/tf-eta"' in html  # still in the list
    assert "正在发送" not in await (await c.get("/console/warnings/tf-eta")).text()
    # an operator sees the same (staff), without the send form
    await _as(c, "op")
    assert _tiles(await (await c.get("/console/warnings")).text())["外呼线路"] == "8"


def test_durations_read_in_chinese():
    assert [duration(s) for s in (20, 60, 299, 3600, 4800, 7260)] == [
        "不到 1 分钟", "约 1 分钟", "约 5 分钟", "约 1 小时", "约 1 小时 20 分", "约 2 小时 1 分"]
