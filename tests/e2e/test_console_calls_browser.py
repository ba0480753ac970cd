"""The warning and medication console pages (issue #17) in Debian's headless chromium: a supervisor sends a
typhoon warning to one district through the form, sees the report per district and the elder it could not
reach with a tel: link; an operator adds a medication plan and stops it. Every page: 0 axe-core violations
(WCAG 2.2 A/AA, tests/e2e/a11y.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from assistant.console import users
from assistant.console.app import create_app
from assistant.console.seed import seed_demo
from assistant.services import SERVICES_KEY
from telephony.models import CallJob, MedicationPlan
from tests.e2e.a11y import axe_violations, need_axe
from tests.e2e.test_console_browser import ARGS, CHROMIUM, need_browser, sign_in, start_site
from tests.unit.console_helpers import PASSWORD, write_wav

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


async def test_warning_and_medication_pages_in_chromium(settings, tmp_path):
    need_browser()
    need_axe()
    from playwright.async_api import async_playwright

    app = create_app(settings)
    runner, base = await start_site(app)
    try:
        services = app[SERVICES_KEY]
        async with services.sessions() as db:
            demo = await seed_demo(db, audio_path=write_wav(tmp_path / "demo.wav"))
            await users.create_user(db, username="sup", role="supervisor", password=PASSWORD, display_name="张主管")
            await users.create_user(db, username="op", role="operator", password=PASSWORD, display_name="李接线")
        district = (await services.store.get_elder(demo.elder_a)).district
        found: dict[str, list] = {}
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = await (await browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN")).new_page()
                await sign_in(page, base, "sup")
                await page.click("nav a[href='/console/warnings']")
                assert await page.locator("#h-send").is_visible()
                found["warnings (empty)"] = await axe_violations(page)
                await page.select_option("#w-kind", "typhoon")
                await page.check(f"input[name=district][value='{district}']")
                await page.fill("#w-id", "tf-browser")
                await page.click("#h-send ~ form button[type=submit]")
                await page.wait_for_url("**/console/warnings/tf-browser?added=*")
                assert "预警已发送" in await page.inner_text(".flash")
                async with services.engine.begin() as conn:  # the engine could not dial elder A's line
                    number = (await conn.execute(select(CallJob.number).where(CallJob.elder_id == demo.elder_a))).scalar_one()
                    await conn.execute(update(CallJob).where(CallJob.elder_id == demo.elder_a)
                                       .values(state="failed", result="no_route"))
                await page.reload()
                report = await page.inner_text("#warning-report")
                assert district in report and "合计" in report
                call = page.locator("#not-reached a.call")
                assert await call.count() == 1 and await call.get_attribute("href") == f"tel:{number}"
                assert "拨不通" in await page.inner_text("#not-reached")
                found["warning report"] = await axe_violations(page)
                await page.goto(f"{base}/console/warnings")
                assert await page.locator("a[href='/console/warnings/tf-browser']").count() == 1
                found["warnings (list)"] = await axe_violations(page)

                # an operator: no send form; medication plan added and stopped from the elder's page
                op = await (await browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN")).new_page()
                await sign_in(op, base, "op")
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
            finally:
                await browser.close()
        async with services.sessions() as db:
            [plan] = (await db.scalars(select(MedicationPlan))).all()
        assert (plan.medicine, plan.enabled) == ("降压药", False)
        bad = {name: v for name, v in found.items() if v}
        assert len(found) == 6 and bad == {}, bad
    finally:
        await runner.cleanup()
