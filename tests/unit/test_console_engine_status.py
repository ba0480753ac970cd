"""The call engine in the console (issue #17): the night operator and the supervisor see on /console/warnings
and 外呼统计 what the engine can place now (live nodes, lines, holding time, calls per hour) and each warning
broadcast being sent with its progress and expected finish in Beijing time — the estimate ``POST /api/warnings``
answers (``telephony.capacity.broadcast_estimate``), not a second one. Staff pages: family accounts get 403."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import update

from assistant.console import users
from assistant.console.app import create_app
from assistant.console.engine_status import duration
from assistant.console.render import LOCAL_TZ, cn_time
from assistant.console.seed import seed_demo
from assistant.services import SERVICES_KEY
from telephony import capacity
from telephony.call_jobs import CallJobStore
from telephony.models import CallJob
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
    c.session.cookie_jar.clear()
    area = "family" if username == "fam" else "console"
    assert (await login(c, username, area=area)).status == 303
    return csrf_from(await (await c.get(f"/{area}/")).text())


def _jobs(c) -> CallJobStore:
    return CallJobStore.for_engine(c.server.app[SERVICES_KEY].engine, now=lambda: dt.datetime.now(dt.UTC))


def _tiles(html: str) -> dict[str, str]:
    box = re.search(r'<ul class="stats" id="engine-capacity">(.*?)</ul>', html, re.S).group(1)
    return {k: v for v, k in re.findall(r'<span class="num">([^<]*)</span> ([^<]+)</li>', box)}


async def test_capacity_and_a_broadcast_being_sent_with_the_apis_estimate(env):
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
    jobs = _jobs(c)
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
        table = re.search(r'<table id="sending".*?</table>', html, re.S).group(0)
        row = re.findall(r"<tr><th scope=row>(.*?)</th>((?:<td>[^<]*</td>)+)</tr>", table)
        [(link, cells)] = [(link, re.findall(r"<td>([^<]*)</td>", tds)) for link, tds in row]
        assert link == '<a href="/console/warnings/tf-eta">tf-eta</a>' and cells[:3] == ["0 / 2（0%）", "2", when], path
        left = api["expected_done_s"]  # asked a moment before the page: the same within a second or two
        assert cells[3].startswith("约 2 小时") and cells[3] in {duration(left + d) for d in (-3, 0, 3)}, path
        assert '<div class="table-scroll" role="region" aria-labelledby="sending-c" tabindex="0">' in html
        assert " style=" not in html and "<script>" not in html  # the CSP holds
    page = await (await c.get("/console/warnings/tf-eta")).text()
    assert f"正在发送：已完成 0 / 2 位（0%），待拨打 2 位。预计 {when}（北京时间）全部拨完" in page

    # one elder heard it: 1 / 2; then the other: no longer being sent, no line on its page
    async with c.server.app[SERVICES_KEY].engine.begin() as conn:
        await conn.execute(update(CallJob).where(CallJob.elder_id == c.ids.elder_a).values(
            state="done", outcome="heard", finished_at=dt.datetime.now(dt.UTC)))
    html = await (await c.get("/console/warnings")).text()
    assert "<td>1 / 2（50%）</td><td>1</td>" in html
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
