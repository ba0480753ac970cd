"""The set-up the console's browser tests share (``pytest_plugins = ["tests.e2e.fixtures_console_site"]``):
the console (``create_app``) served on a free loopback port with the demo data (two elders, alerts, orders,
care schedules), a supervisor ``sup`` and an operator ``op``, and Debian's headless chromium to open it.
Skips with a reason when chromium, playwright or axe-core is missing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from assistant.console import users
from assistant.console.app import create_app
from assistant.console.seed import DemoIds, seed_demo
from assistant.services import SERVICES_KEY, Services
from tests.e2e.a11y import need_axe
from tests.e2e.test_console_browser import ARGS, CHROMIUM, need_browser, sign_in, start_site
from tests.unit.console_helpers import PASSWORD, write_wav

STAFF = (("sup", "supervisor", "张主管"), ("op", "operator", "李接线"))


@dataclass
class ConsoleSite:
    app: web.Application
    base: str
    demo: DemoIds
    browser: Any  # playwright's Browser

    @property
    def services(self) -> Services:
        return self.app[SERVICES_KEY]

    async def page(self, username: str, *, width: int = 1366, height: int = 900, phone: bool = False):
        """A new browser context of that size (a touch phone if ``phone``), signed in as ``username``."""
        context = await self.browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN",
                                                 is_mobile=phone, has_touch=phone)
        page = await context.new_page()
        await sign_in(page, self.base, username)
        return page


@pytest.fixture
async def console_site(settings, tmp_path) -> AsyncIterator[ConsoleSite]:
    need_browser()
    need_axe()
    from playwright.async_api import async_playwright

    app = create_app(settings)
    runner, base = await start_site(app)
    try:
        async with app[SERVICES_KEY].sessions() as db:
            demo = await seed_demo(db, audio_path=write_wav(tmp_path / "demo.wav"))
            for username, role, name in STAFF:
                await users.create_user(db, username=username, role=role, password=PASSWORD, display_name=name)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                yield ConsoleSite(app=app, base=base, demo=demo, browser=browser)
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
