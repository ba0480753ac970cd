"""The platform view ``/console/outbound`` (issue #17 item 4) in Debian's headless chromium: an operator opens it
from the navigation, the three charts and their tables are there, 0 axe-core violations (WCAG 2.2 A/AA,
tests/e2e/a11y.py) on a desktop and on a 360 px phone, and no sideways scrolling of the page at 320-430 px
(wide tables scroll inside their own focusable box). Screenshots go to the reports folder."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import insert

from telephony.models import CallJob
from tests.e2e.a11y import axe_violations, screenshots_dir, sideways_overflow_px

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
pytest_plugins = ["tests.e2e.fixtures_console_site"]


def _week_of_rows(elders: list[int]) -> list[dict]:
    """A week of care calls, family escalations, alerts and a warning for ``elders``, ending a few seconds ago."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    out = []
    for back in range(7):
        t = now - dt.timedelta(days=back)
        for i, e in enumerate(elders):
            chain = f"care:{e}:{t.date().isoformat()}"
            answered = (i + back) % 3 != 0
            out.append((f"{chain}:a1", "care_call", e, 1, "done" if answered else "no_answer", "well" if answered else None, t))
            if not answered:
                out.append((f"{chain}:f1", "family_escalation", e, 1, "done" if back % 2 else "busy", None, t))
        out.append((f"warn:heat{back}:{elders[0]}:a1", "warning", elders[0], 1, "done", "heard", t))
        out.append((f"warn:heat{back}:{elders[1]}:a1", "warning", elders[1], 1, "no_answer", None, t))
    return [{"job_key": k, "chain": k.rsplit(":", 1)[0], "kind": kind, "elder_id": e, "number": "1", "attempt": n,
             "state": state, "outcome": outcome, "not_before": t, "created_at": t, "finished_at": t, "detail": {}}
            for k, kind, e, n, state, outcome, t in out]


async def test_outbound_page_in_chromium(console_site, settings):
    site = console_site
    async with site.services.engine.begin() as conn:
        await conn.execute(insert(CallJob), _week_of_rows([site.demo.elder_a, site.demo.elder_b]))
    found: dict[str, list] = {}
    shots = screenshots_dir(settings.paths.reports_dir)
    page = await site.page("op")
    await page.click("nav a[href='/console/outbound']")
    await page.wait_for_url("**/console/outbound")
    for chart in ("#chart-calls", "#chart-rate", "#chart-warn"):
        assert await page.locator(chart).get_attribute("role") == "img"
    assert await page.locator("#by-day tbody tr").count() == 7
    assert await page.locator("#by-district tbody tr").count() == 2
    assert await page.locator("#engine-capacity").is_visible()  # the engine now, above the statistics
    found["outbound (desktop)"] = await axe_violations(page)
    await page.screenshot(path=str(shots / "console-outbound-1366.png"), full_page=True)
    await page.click("details summary")
    assert await page.locator("#cells").is_visible()
    found["outbound, details open"] = await axe_violations(page)
    await page.select_option("#s-district", "蓬江")
    await page.select_option("#s-days", "14")
    await page.click("form.filters button")
    await page.wait_for_url("**/console/outbound?days=14&district=*")
    assert await page.locator("#by-district tbody tr").count() == 1
    found["outbound, one district"] = await axe_violations(page)

    phone = await site.page("op", width=360, height=780, phone=True)
    await phone.goto(f"{site.base}/console/outbound")
    found["outbound (360 px)"] = await axe_violations(phone)
    for width in (320, 360, 390, 430):
        await phone.set_viewport_size({"width": width, "height": 780})
        assert await sideways_overflow_px(phone) <= 0, f"sideways scrolling at {width} px"
        box = await phone.locator("#chart-calls").bounding_box()
        assert box is not None and box["width"] <= width
    await phone.set_viewport_size({"width": 360, "height": 780})
    await phone.screenshot(path=str(shots / "console-outbound-360.png"), full_page=True)
    assert len(found) == 4
    assert {name: v for name, v in found.items() if v} == {}
