"""Accessibility as a test (issue #26), in Debian's headless chromium with axe-core injected (tests/e2e/a11y.py).

- console and family portal: every page, signed in with real data on it (a flagged call with its transcript,
  an SOS, orders on the board, users): 0 axe violations of WCAG 2.2 A/AA;
- family portal phone-first: no sideways scrolling from 320 to 430 px, every control ≥ 44×44 px (≥ 48 tall
  for buttons and fields), the open alert and "给…打电话" before everything else; a 360 px screenshot
  goes to the reports folder (docs/screenshots/ with ASSISTANT_UPDATE_SCREENSHOTS=1).

The smart screen's checks (AAA contrast, 48 px targets, keyboard path) are in test_screen_a11y_browser.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.console import users
from assistant.console.app import create_app
from assistant.console.seed import seed_demo
from assistant.services import SERVICES_KEY
from tests.e2e.a11y import axe_violations, need_axe, screenshots_dir, sideways_overflow_px, small_targets
from tests.e2e.test_console_browser import (
    ARGS,
    CHROMIUM,
    need_browser,
    seed_flagged_call,
    sign_in,
    speech_wav,
    start_site,
)
from tests.unit.console_helpers import PASSWORD, write_wav

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
PHONE_WIDTHS = (320, 360, 390, 430)


async def test_console_and_family_portal_pass_axe_and_fit_a_phone(settings, tmp_path):
    need_browser()
    need_axe()
    from playwright.async_api import async_playwright

    app = create_app(settings)
    runner, base = await start_site(app)
    try:
        store = app[SERVICES_KEY].store
        async with app[SERVICES_KEY].sessions() as db:
            demo = await seed_demo(db, audio_path=write_wav(tmp_path / "demo.wav"))
        elder_id, alert_id, _call_id = await seed_flagged_call(store, speech_wav(tmp_path))
        async with app[SERVICES_KEY].sessions() as db:
            await users.create_user(db, username="sup", role="supervisor", password=PASSWORD, display_name="张主管")
            admin = await users.create_user(db, username="boss", role="admin", password=PASSWORD, display_name="刘管理员")
            await users.create_user(db, username="fam", role="family", password=PASSWORD, display_name="陈小红",
                                    elder_ids=(demo.elder_a,), contact_ids={demo.elder_a: demo.contact_a})
        admin_id = admin.id

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                found: dict[str, list] = {}

                async def audit(page, name: str) -> None:
                    found[name] = await axe_violations(page)

                ctx = await browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN")
                page = await ctx.new_page()
                await page.goto(f"{base}/console/login")
                await audit(page, "console login")
                await page.goto(f"{base}/family/login")
                await audit(page, "family login")
                await sign_in(page, base, "boss")
                for path in ("/console/", f"/console/alerts/{alert_id}", f"/console/alerts/{demo.sos_alert}",
                             "/console/orders", "/console/care", "/console/outbound", "/console/audit", "/console/users",
                             f"/console/users/{admin_id}", "/console/voice?dialect=yue", f"/console/elders/{demo.elder_a}"):
                    await page.goto(base + path)
                    await audit(page, path)

                # the family portal on a phone
                fam_ctx = await browser.new_context(viewport={"width": 360, "height": 780}, locale="zh-CN",
                                                    device_scale_factor=1, is_mobile=True, has_touch=True)
                fam = await fam_ctx.new_page()
                await sign_in(fam, base, "fam", area="family")
                assert fam.url.endswith(f"/family/elders/{demo.elder_a}")
                await audit(fam, "family elder page (360 px)")
                for width in PHONE_WIDTHS:
                    await fam.set_viewport_size({"width": width, "height": 780})
                    assert await sideways_overflow_px(fam) <= 0, f"sideways scrolling at {width} px"
                    targets = await small_targets(fam, min_px=44)
                    assert targets["checked"] >= 10
                    assert targets["small"] == [], f"tap targets under 44 px at {width} px: {targets['small']}"
                # buttons and fields are 48 px tall; the alert and "call" come first
                heights = await fam.evaluate(
                    "[...document.querySelectorAll('main button, main input:not([type=hidden]), main select')]"
                    ".map(e => e.getBoundingClientRect().height)")
                assert heights and min(heights) >= 47.5, heights
                call = fam.locator("a.call")
                assert await call.get_attribute("href") == "tel:07503331234"
                order = await fam.evaluate(
                    """() => ['.urgent-banner', 'a.call', '#h-alerts', '#h-orders']
                          .map(s => document.querySelector(s).getBoundingClientRect().top)""")
                assert order == sorted(order), order
                assert "疑似诈骗" in await fam.inner_text(".urgent-banner")
                # no wide tables: orders are cards, with Chinese dates (12月7日 14:05)
                assert await fam.locator("main table").count() == 0
                assert await fam.locator("#family-orders li.item").count() >= 2
                assert "月" in await fam.inner_text("#family-orders")
                await fam.set_viewport_size({"width": 360, "height": 780})
                await fam.screenshot(path=str(screenshots_dir(settings.paths.reports_dir) / "family-portal-360.png"))
                await fam.screenshot(path=str(settings.paths.reports_dir / "family-portal-360-full.png"), full_page=True)
                # still good on a desktop
                await fam.set_viewport_size({"width": 1280, "height": 900})
                assert await sideways_overflow_px(fam) <= 0
                await audit(fam, "family elder page (1280 px)")
            finally:
                await browser.close()
        bad = {name: v for name, v in found.items() if v}
        assert len(found) >= 12
        assert bad == {}, bad
    finally:
        await runner.cleanup()
