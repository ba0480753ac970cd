"""The warning and medication console pages (issue #17) in Debian's headless chromium: a supervisor sends a
typhoon warning to one district through the form; while it is being sent the warnings page shows the engine's
lines and calls per hour and the broadcast's progress and expected finish (Beijing time; the estimate
``POST /api/warnings`` answers), on a desktop and on a phone (no sideways scrolling at 320-430 px); then the
report per district and the elder it could not reach with a tel: link; an operator adds a medication plan and
stops it. Every page: 0 axe-core violations (WCAG 2.2 A/AA, tests/e2e/a11y.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from assistant.console.render import cn_time
from telephony import capacity
from telephony.call_jobs import CallJobStore
from telephony.models import CallJob, MedicationPlan
from tests.e2e.a11y import axe_violations, screenshots_dir, sideways_overflow_px

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
pytest_plugins = ["tests.e2e.fixtures_console_site"]


async def test_warning_and_medication_pages_in_chromium(console_site):
    site = console_site
    services, base, demo = site.services, site.base, site.demo
    district = (await services.store.get_elder(demo.elder_a)).district
    jobs = CallJobStore.for_engine(services.engine, now=lambda: dt.datetime.now(dt.UTC))
    found: dict[str, list] = {}
    page = await site.page("sup")
    await page.click("nav a[href='/console/warnings']")
    assert await page.locator("#h-send").is_visible()
    assert "没有在线的外呼节点" in await page.inner_text("#engine")  # no engine node yet
    found["warnings (empty)"] = await axe_violations(page)
    # an engine node of 8 lines beats; the supervisor sends a typhoon warning to elder A's district
    await capacity.beat(jobs, capacity.NodeBeat(node_id="n1", lines=8, dials_per_s=2.0, tick_s=5.0, lease_s=3600.0))
    await page.select_option("#w-kind", "typhoon")
    await page.check(f"input[name=district][value='{district}']")
    await page.fill("#w-id", "tf-browser")
    await page.click("#h-send ~ form button[type=submit]")
    await page.wait_for_url("**/console/warnings/tf-browser?added=*")
    assert "预警已发送" in await page.inner_text(".flash")
    # its call falls due at hh:mm:30 two hours ahead (the estimate then does not move with the clock)
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).replace(second=30, microsecond=0)
    async with services.engine.begin() as conn:
        await conn.execute(update(CallJob).where(CallJob.elder_id == demo.elder_a).values(not_before=due))
    eta = await capacity.broadcast_estimate(jobs, "tf-browser", telephony=services.settings.telephony)
    when = cn_time(dt.datetime.fromisoformat(eta["expected_done_at"]))  # what POST /api/warnings would answer
    await page.reload()
    assert f"正在发送：预计 {when}（北京时间）全部拨完" in await page.inner_text("#eta")
    assert "已完成 0 / 1 位（0%），待拨打 1 位。" in await page.inner_text("#eta")
    found["warning being sent"] = await axe_violations(page)
    await page.goto(f"{base}/console/warnings")
    assert "每小时可拨" in await page.inner_text("#engine-capacity")
    item = await page.inner_text("#sending li")
    assert "tf-browser" in item and "已完成 0 / 1 位（0%）" in item and f"预计 {when}（北京时间）全部拨完" in item
    found["warnings (one being sent)"] = await axe_violations(page)
    phone = await site.page("op", width=360, height=780, phone=True)
    await phone.goto(f"{base}/console/warnings")
    assert when in await phone.inner_text("#sending")
    found["warnings being sent (360 px)"] = await axe_violations(phone)
    for width in (320, 360, 390, 430):
        await phone.set_viewport_size({"width": width, "height": 780})
        assert await sideways_overflow_px(phone) <= 0, f"sideways scrolling at {width} px"
    await phone.set_viewport_size({"width": 360, "height": 780})
    box = await phone.locator("#sending .eta").bounding_box()  # the expected finish, on the screen
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
    await phone.screenshot(path=str(screenshots_dir(services.settings.paths.reports_dir) / "console-warnings-360.png"),
                           full_page=True)

    async with services.engine.begin() as conn:  # the engine could not dial elder A's line
        number = (await conn.execute(select(CallJob.number).where(CallJob.elder_id == demo.elder_a))).scalar_one()
        await conn.execute(update(CallJob).where(CallJob.elder_id == demo.elder_a)
                           .values(state="failed", result="no_route", finished_at=dt.datetime.now(dt.UTC)))
    await page.goto(f"{base}/console/warnings/tf-browser")
    assert await page.locator("#eta").count() == 0  # nothing left to send
    report = await page.inner_text("#warning-report")
    assert district in report and "合计" in report
    call = page.locator("#not-reached a.call")
    assert await call.count() == 1 and await call.get_attribute("href") == f"tel:{number}"
    assert "拨不通" in await page.inner_text("#not-reached")
    found["warning report"] = await axe_violations(page)
    await page.goto(f"{base}/console/warnings")
    assert await page.locator("a[href='/console/warnings/tf-browser']").count() == 1
    assert await page.locator("#sending-none").is_visible()
    found["warnings (list)"] = await axe_violations(page)

    # an operator: no send form; medication plan added and stopped from the elder's page
    op = await site.page("op")
    await op.goto(f"{base}/console/warnings")
    assert await op.locator("#w-kind").count() == 0
    await op.goto(f"{base}/console/elders/{demo.elder_a}")
    await op.click("a[href$='/medication']")
    found["medication (empty)"] = await axe_violations(op)
    await op.fill("#m-medicine", "降压药")
    await op.fill("#m-times", "08:00,20:00")
    await op.click("#h-add ~ form button[type=submit]")
    await op.wait_for_url("**/medication?done=added")
    assert "降压药" in await op.inner_text("#medication-plans") and "提醒中" in await op.inner_text("#medication-plans")
    found["medication (one plan)"] = await axe_violations(op)
    await op.click("#medication-plans button")
    await op.wait_for_url("**/medication?done=disabled")
    assert "已停用" in await op.inner_text("#medication-plans")
    found["medication (stopped)"] = await axe_violations(op)
    async with services.sessions() as db:
        [plan] = (await db.scalars(select(MedicationPlan))).all()
    assert (plan.medicine, plan.enabled) == ("降压药", False)
    bad = {name: v for name, v in found.items() if v}
    assert len(found) == 9 and bad == {}, bad
