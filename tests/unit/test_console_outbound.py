"""The console's platform view ``/console/outbound`` (issue #17 item 4): staff only, SVG charts that name and
describe themselves, the same numbers in tables, a district filter, no inline script or style (CSP)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import insert

from assistant.console import users
from assistant.console.app import create_app
from assistant.console.seed import seed_demo
from assistant.services import SERVICES_KEY
from telephony.models import CallJob
from tests.unit.console_helpers import PASSWORD, csrf_from, login, write_wav


@pytest.fixture
async def env(aiohttp_client, settings):
    app = create_app(settings)
    c = await aiohttp_client(app)
    async with app[SERVICES_KEY].sessions() as db:
        await users.create_user(db, username="op", role="operator", password=PASSWORD)
        ids = await seed_demo(db, audio_path=write_wav(settings.paths.var_dir / "calls" / "demo.wav"))
        await users.create_user(db, username="fam", role="family", password=PASSWORD, elder_ids=(ids.elder_a,))
    c.ids = ids
    return c


async def _as(c, username: str) -> None:
    c.session.cookie_jar.clear()
    assert (await login(c, username, area="family" if username == "fam" else "console")).status == 303
    csrf_from(await (await c.get("/console/" if username != "fam" else "/family/")).text())


async def _rows(c, rows: list[tuple[str, str, int, int, str, str | None]]) -> None:
    """(job_key, kind, elder, attempt, state, outcome), all ended 5 s ago."""
    t = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    async with c.server.app[SERVICES_KEY].engine.begin() as conn:
        await conn.execute(insert(CallJob), [
            {"job_key": k, "chain": k.rsplit(":", 1)[0], "kind": kind, "elder_id": e, "number": "1", "attempt": n,
             "state": state, "outcome": outcome, "not_before": t, "created_at": t, "finished_at": t, "detail": {}}
            for k, kind, e, n, state, outcome in rows])


async def test_outbound_page_charts_and_tables_for_staff_only(env):
    c = env
    a, b = c.ids.elder_a, c.ids.elder_b  # 蓬江, 新会
    day = dt.datetime.now(dt.UTC).date().isoformat()
    await _rows(c, [
        (f"care:{a}:{day}:a1", "care_call", a, 1, "no_answer", None),
        (f"care:{a}:{day}:a2", "care_call", a, 2, "done", "well"),
        (f"care:{b}:{day}:a1", "care_call", b, 1, "busy", None),
        (f"care:{b}:{day}:alert", "alert", b, 1, "done", None),
        (f"warn:tf9:{a}:a1", "warning", a, 1, "done", "heard"),
        (f"warn:tf9:{b}:a1", "warning", b, 1, "failed", None),
    ])
    await _as(c, "fam")
    assert (await c.get("/console/outbound")).status == 403
    await _as(c, "op")
    res = await c.get("/console/outbound")
    html = await res.text()
    assert res.status == 200 and "default-src 'self'" in res.headers["Content-Security-Policy"]
    assert 'href="/console/outbound" aria-current=page' in html  # in the navigation
    # three charts, each an image named by its title and described in words
    for chart in ("chart-calls", "chart-rate", "chart-warn"):
        assert re.search(rf'<svg id="{chart}" class="chart" role="img" viewBox="[^"]+" '
                         rf'aria-labelledby="{chart}-t {chart}-d"><title id="{chart}-t">', html), chart
    assert "共拨出 5 通电话，接通 2 通（40%），未接 1 通，占线或拨不通 2 通" in html
    assert "各区接通率：新会 0%，蓬江 67%。最低的是新会（0%）。" in html
    assert "已听到 1 位，需要帮助 0 位，未通知到 1 位" in html
    # the same numbers in tables: per district (placed, answered, rate, no answer, busy/failed, …, care alerts)
    cells = lambda table: re.findall(r"<td>([^<]*)</td>",  # noqa: E731
                                     re.search(rf'<table id="{table}".*?</table>', html, re.S).group(0))
    district_rows = re.findall(r"<tr><th scope=row>([^<]+)</th>((?:<td>[^<]*</td>)+)</tr>",
                               re.search(r'<table id="by-district".*?</table>', html, re.S).group(0))
    assert [(d, re.findall(r"<td>([^<]*)</td>", tds)) for d, tds in district_rows] == [
        ("新会", ["2", "0", "0%", "0", "2", "0", "0/0", "1"]),
        ("蓬江", ["3", "2", "67%", "1", "0", "0", "0/0", "0"]),
        ("合计", ["5", "2", "40%", "1", "2", "0", "0/0", "1"])]
    assert cells("care-by-district")[-7:] == ["0", "0", "0", "1", "0", "0", "1"]  # the total row
    assert "<script>" not in html and " style=" not in html  # CSP: no inline script or style
    # one district; a district without calls; bad parameters
    only = await (await c.get("/console/outbound", params={"district": "新会", "days": "1"})).text()
    assert "共拨出 2 通电话" in only and "蓬江 67%" not in only
    empty = await (await c.get("/console/outbound", params={"district": "台山"})).text()
    assert "台山在这段时间没有外呼电话" in empty and "<svg id=" not in empty
    assert (await c.get("/console/outbound", params={"days": "9"})).status == 400
    assert (await c.get("/console/outbound", params={"district": "北京"})).status == 400
