"""Recording a voice pack in the console from Debian's headless chromium with a fake microphone
(``--use-file-for-fake-audio-capture``), the real automatic check (whisper-base read-back), then a call's TTS
speaking with the recording.

No real human recordings of the table's sentences exist here, so the microphone plays a STAND-IN: the project's
Mandarin voice (Kokoro, or the chain's fallback) reading a Mandarin sentence of the table — the Mandarin pack is
recorded because whisper-base cannot read back any voice we can synthesise in Cantonese (espeak-ng yue: CER ≥ 1,
see /work/notes/packs.md). The same take is then uploaded for another sentence: the check must flag it.
"""

from __future__ import annotations

import dataclasses

import pytest

from assistant.audio.convert import PcmAudio, write_wav
from assistant.console import users
from assistant.console.app import create_app
from assistant.services import SERVICES_KEY
from assistant.settings import load_settings
from assistant.tts import registry
from assistant.tts.voice_pack import VoicePack, key_of, pack_dir, read_wav
from tests.e2e.test_console_browser import CHROMIUM, need_browser, sign_in, start_site, wait_js
from tests.unit.console_helpers import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SENTENCE = "需要帮忙可以直接说，"
OTHER = "这次通话时间已经很长了，"


async def test_record_in_chromium_check_and_a_call_speaks_it(settings, tmp_path):
    need_browser()
    from playwright.async_api import async_playwright

    real = load_settings()
    if not (real.paths.models_dir / "whisper-base" / "model.bin").exists():
        pytest.skip("whisper-base is not provisioned (assistant models fetch whisper-base)")
    settings = dataclasses.replace(settings, paths=dataclasses.replace(settings.paths, models_dir=real.paths.models_dir))
    speech = await registry.synthesize(SENTENCE, dialect="cmn", rate_wpm=130, volume=1.0, settings=settings,
                                       voice="kokoro-cmn", use_cache=False)
    rate = speech.sample_rate_hz
    mic = write_wav(tmp_path / "mic.wav", PcmAudio(pcm=bytes(rate // 2 * 2) + speech.pcm + bytes(rate * 2),
                                                   sample_rate_hz=rate))
    take_s = len(speech.pcm) / 2 / rate + 1.0
    args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic}"]

    app = create_app(settings)
    runner, base = await start_site(app)
    try:
        async with app[SERVICES_KEY].sessions() as db:
            await users.create_user(db, username="op", role="operator", password=PASSWORD)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
            try:
                page = await (await browser.new_context(locale="zh-CN")).new_page()
                await sign_in(page, base, "op")
                await page.goto(f"{base}/console/voice?dialect=cmn")
                total = int((await page.inner_text("#voice-progress")).split("/")[1].split("句")[0])
                assert await page.inner_text("#voice-progress .num") == "0"

                async def take(text: str) -> str:
                    row = page.locator(f'tr[data-text="{text}"]')
                    await row.locator("button.rec").click()
                    await page.wait_for_timeout(int(take_s * 1000))
                    await row.locator("button.rec").click()
                    await wait_js(page, f'document.querySelector(\'tr[data-text="{text}"]\').dataset.status',
                                  timeout_s=120)
                    return await row.get_attribute("data-status")

                assert await take(SENTENCE) == "passed"
                assert await page.inner_text("#voice-progress .num") == "1"
                assert await page.locator(f'tr[data-text="{SENTENCE}"] audio').count() == 1
                assert await take(OTHER) == "failed"  # the same words uploaded for another sentence
            finally:
                await browser.close()
    finally:
        await runner.cleanup()

    pack = VoicePack.load(pack_dir(settings.paths.var_dir, "local", "cmn"), "cmn")
    assert key_of(OTHER, "cmn") not in pack.playable() and total > 200
    stored = pack.playable()[key_of(SENTENCE, "cmn")]
    # a call's TTS with the pack named: the recording itself, not the synthetic voice
    with_pack = dataclasses.replace(settings, tts=dataclasses.replace(settings.tts, voice_pack="local"))
    said = await registry.synthesize(SENTENCE, dialect="cmn", rate_wpm=130, volume=1.0, settings=with_pack)
    assert said.voice == "pack-cmn" and said.pcm.startswith(read_wav(stored)[0])
    other = await registry.synthesize(OTHER, dialect="cmn", rate_wpm=130, volume=1.0, settings=with_pack)
    assert other.voice != "pack-cmn"  # its take failed the check: the synthetic voice says it
