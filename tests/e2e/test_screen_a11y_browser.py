"""The smart screen for shaky fingers, switches and weak eyes (issue #26), in Debian's headless chromium with
axe-core injected (tests/e2e/a11y.py) and the test stand-in voice (no models):

- both text sizes (标准 and 特大) at 1024×600 with real data on the page (orders, a care call), the fraud
  warning and the SOS dialog open: 0 axe violations of WCAG 2.2 A/AA, and AAA contrast; every control
  ≥ 48×48 px; every text follows the size setting; screenshots to the reports folder (docs/screenshots/ with ASSISTANT_UPDATE_SCREENSHOTS=1);
- keyboard only: a ≥ 3 px focus ring; "这是骗子吗？" with Enter; talk with Space (press to start, press to
  stop); SOS with Enter → a modal dialog that keeps focus, "按错了，取消" → the SOS marked cancelled by the
  elder and a call-back task for the operator; Escape gives focus back to the SOS button;
- a finger that slides 100 px off "按住说话" while talking does not end the turn; lifting it does;
- the acceptance with the fake microphone (the project's TTS voice) and real whisper-base: the finger slides
  off mid-sentence and the whole sentence is transcribed (before: "我要叫煤气要15公里", cut off).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.utils.time import time_now_iso8601

from assistant.asr.registry import recognize
from assistant.audio.convert import PcmAudio, read_audio, write_wav
from assistant.screen.app import create_app
from assistant.screen.standin import build_standin_worker
from assistant.screen.testing import alerts, seed_demo
from assistant.screen.tokens import screen_path
from tests.e2e.a11y import axe_violations, need_axe, screenshots_dir, sideways_overflow_px, small_targets
from tests.e2e.test_screen_browser import (
    CHROMIUM,
    _project_tts_wav,
    chromium_args,
    espeak_wav,
    need_browser,
    start_site,
    wait_js,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
SIZES = {1: ("normal", 30.0), 2: ("xlarge", 40.0)}  # elder id → text size, its --base in px (screen.css)

TEXT_SIZES_JS = """
() => [...document.querySelectorAll('#hello, #clock, #conn, #fraud-check, #captions .caption, #ptt-label, #status h2, #status-lines li, .big')]
  .filter(e => e.getBoundingClientRect().width > 0)
  .map(e => ({id: e.id || e.className, px: parseFloat(getComputedStyle(e).fontSize)}))
"""


async def tab_to(page, element_id: str, *, max_tabs: int = 15) -> None:
    for _ in range(max_tabs):
        if await page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached #{element_id}")


async def test_screen_accessibility_in_both_text_sizes_and_by_keyboard(settings, tmp_path):
    need_browser()
    need_axe()
    from playwright.async_api import async_playwright

    for elder_id, (size, _base) in SIZES.items():
        await seed_demo(settings, elder_id=elder_id, text_size=size)
    wav = espeak_wav("我要叫煤气", tmp_path / "gas.wav", lead_s=1.0, tail_s=20.0)

    async def factory(transport, session):  # TEST STAND-IN voice: VAD + captions + tone, no models
        return build_standin_worker(transport=transport, session=session, settings=settings, reply_s=1.0)

    app = create_app(settings, pipeline_factory=factory)
    runner, base = await start_site(app)
    shots = screenshots_dir(settings.paths.reports_dir)
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(wav))
            try:
                found: dict[str, list] = {}
                for elder_id, (size, base_px) in SIZES.items():
                    page = await browser.new_page(viewport={"width": 1024, "height": 600})
                    errors: list[str] = []
                    page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
                    await page.goto(base + screen_path(elder_id, settings=settings))
                    await wait_js(page, "document.getElementById('conn').textContent === '已连接'", timeout_s=15)
                    await wait_js(page, "document.querySelectorAll('#status-lines li.order').length >= 1", timeout_s=10)
                    found[f"{size}: home"] = await axe_violations(page, aaa_contrast=True)
                    targets = await small_targets(page, min_px=48)
                    assert targets["checked"] >= 6 and targets["small"] == [], (size, targets)
                    assert await sideways_overflow_px(page) <= 0
                    # every text follows the size setting (none stays at the 28 px floor at 特大)
                    texts = await page.evaluate(TEXT_SIZES_JS)
                    assert len(texts) >= 8
                    assert [t for t in texts if t["px"] < base_px - 0.5] == [], (size, texts)
                    await page.screenshot(path=str(shots / f"screen-1024x600-{size}.png"))
                    # what does not fit in the service panel can be scrolled to (at 特大 it does not all fit)
                    hidden = await page.evaluate(
                        "(() => { const s = document.getElementById('status');"
                        " return [s.scrollHeight - s.clientHeight, getComputedStyle(s).overflowY]; })()")
                    assert hidden[0] <= 0 or hidden[1] == "auto", hidden
                    # the fraud warning, checked by keyboard (the first control on the page)
                    await page.keyboard.press("Tab")
                    assert await page.evaluate("document.activeElement.id") == "fraud-check"
                    ring = await page.evaluate(
                        "(() => { const s = getComputedStyle(document.activeElement);"
                        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()")
                    assert ring[0] == "solid" and ring[1] >= 3, ring
                    await page.keyboard.press("Enter")
                    await page.wait_for_selector("#fraud.not_platform", timeout=5000)
                    found[f"{size}: fraud warning"] = await axe_violations(page, aaa_contrast=True)
                    assert (await small_targets(page, min_px=48))["small"] == []
                    await tab_to(page, "fraud-close")  # the warning covers the talk button: it can be put away
                    await page.keyboard.press("Enter")
                    await page.wait_for_selector("#fraud.hidden", state="attached")
                    assert await page.evaluate("document.activeElement.id") == "fraud-check"
                    assert errors == []
                    if elder_id != 1:
                        await page.close()
                        continue

                    # talk by keyboard: Space starts, Space again stops
                    await tab_to(page, "ptt")
                    await page.keyboard.press("Space")
                    assert await page.get_attribute("#ptt", "aria-pressed") == "true"
                    assert await page.evaluate("window.screenDebug.pttHow()") == "key"
                    assert "再按一下" in await page.inner_text("#ptt-label")
                    await page.wait_for_timeout(300)
                    await page.keyboard.press("Space")
                    assert await page.get_attribute("#ptt", "aria-pressed") == "false"

                    # a finger that slides 100 px off the button keeps talking; lifting it ends the turn
                    box = await page.locator("#ptt").bounding_box()
                    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                    await page.mouse.down()
                    assert await page.evaluate("window.screenDebug.pttHow()") == "pointer"
                    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] - 100, steps=5)
                    await page.wait_for_timeout(300)
                    assert await page.evaluate("window.screenDebug.pttHow()") == "pointer"
                    assert await page.locator("#ptt.active").count() == 1
                    await page.mouse.up()
                    assert await page.evaluate("window.screenDebug.pttHow()") is False

                    # SOS by keyboard: a modal dialog that keeps focus, then "按错了，取消"
                    await tab_to(page, "btn-sos")
                    await page.keyboard.press("Enter")
                    await page.wait_for_selector("#overlay:not(.hidden)")
                    assert await page.get_attribute("#overlay", "aria-modal") == "true"
                    assert await page.evaluate("document.activeElement.closest('#overlay') !== null")
                    assert await page.evaluate("document.getElementById('buttons').inert")
                    await wait_js(page, "window.screenLog.sos.length === 1", timeout_s=5)
                    for _ in range(5):
                        await page.keyboard.press("Tab")
                        assert await page.evaluate("document.activeElement.closest('#overlay') !== null")
                    found["SOS dialog"] = await axe_violations(page, aaa_contrast=True)
                    targets = await small_targets(page, min_px=48)
                    assert targets["small"] == [], targets
                    assert "按错了，取消" in await page.inner_text("#sos-cancel")
                    await page.screenshot(path=str(shots / "screen-1024x600-sos-cancel.png"))
                    await tab_to(page, "sos-cancel")
                    await page.keyboard.press("Enter")
                    await wait_js(page, "window.screenLog.sosCancel && window.screenLog.sosCancel.status === 200", timeout_s=5)
                    assert "还会打电话" in await page.inner_text("#overlay-text")
                    [sos] = await alerts(settings, kind="sos")
                    assert sos.status == "false_alarm" and sos.detail["cancelled_by"] == "elder"
                    [task] = await alerts(settings, kind="sos_cancelled")
                    assert task.status == "open" and task.detail["sos_alert_id"] == sos.id
                    await page.keyboard.press("Escape")
                    await page.wait_for_selector("#overlay.hidden", state="attached")
                    assert await page.evaluate("document.activeElement.id") == "btn-sos"
                    assert not await page.evaluate("document.getElementById('buttons').inert")
                    assert errors == []
                    await page.close()
            finally:
                await browser.close()
        assert len(found) == 5
        bad = {name: v for name, v in found.items() if v}
        assert bad == {}, bad
    finally:
        await runner.cleanup()


# ------------------------------------------------ a finger sliding off "按住说话" mid-sentence, real whisper

SLIDE_SENTENCE = "我要叫煤气，要十五公斤的大罐，今天下午送到家里。"
LEAD_S = 4.0  # silence before the sentence: the page connects and the microphone starts meanwhile


class WhisperTurns(FrameProcessor):
    """TEST worker stage: each VAD turn (with 0.5 s before the VAD noticed it) transcribed by the project's
    whisper (``assistant.asr.registry.recognize``) and captioned as the elder's words; nothing is answered."""

    def __init__(self, *, settings, sample_rate_hz: int, **kwargs):
        super().__init__(**kwargs)
        self._settings = settings
        self._rate = sample_rate_hz
        self._pre = bytearray()
        self._turn: bytearray | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            if self._turn is not None:
                self._turn += frame.audio
            else:
                self._pre = (self._pre + frame.audio)[-int(self._rate * 0.5) * 2:]
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._turn = bytearray(self._pre)
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and self._turn is not None:
            pcm, self._turn = bytes(self._turn), None
            result = await recognize(pcm, sample_rate_hz=self._rate, dialect="cmn", options=None,
                                     settings=self._settings)
            await self.push_frame(TranscriptionFrame(text=result.text or "（空）", user_id="slide",
                                                     timestamp=time_now_iso8601()))
        await self.push_frame(frame, direction)


@pytest.mark.flaky(reruns=1, reruns_delay=2)
async def test_a_finger_sliding_off_the_talk_button_mid_sentence_still_gets_the_whole_sentence(settings, tmp_path):
    """Rerun once, as the real-voice screen test: the fake microphone plays in real time and on a loaded CI
    machine the pointer steps can land late against it; the assertions are unchanged."""
    need_browser()
    from dataclasses import replace

    from assistant.settings import load_settings

    models = load_settings().paths.models_dir
    if not (models / "whisper-base" / "model.bin").exists():
        pytest.skip(f"whisper-base model missing at {models} (`assistant models fetch whisper-base`)")
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.audio.vad_processor import VADProcessor
    from playwright.async_api import async_playwright

    from assistant.audio.vad import WebRtcVadAnalyzer, vad_params

    settings = replace(settings, paths=replace(settings.paths, models_dir=models))
    await seed_demo(settings, elder_id=1)
    try:
        wav = await _project_tts_wav(settings, tmp_path / "slide.wav", [("。", 0.0), (SLIDE_SENTENCE, 6.0)])
    except Exception as exc:  # noqa: BLE001 - the project's voice is not provisioned here
        pytest.skip(f"the project's TTS voice is not available ({type(exc).__name__}: {exc})")
    speech = read_audio(wav, sample_rate_hz=16000)
    pcm = speech.pcm
    # where the sentence is in the file (the TTS leaves its own silences)
    wav = write_wav(tmp_path / "slide-lead.wav", PcmAudio(pcm=bytes(int(16000 * LEAD_S) * 2) + pcm, sample_rate_hz=16000))
    sentence_s = len(pcm) / 2 / 16000 - 6.0

    async def factory(transport, session):  # TEST worker: VAD + real whisper captions, no dialogue
        rate = settings.audio.pipeline_sample_rate_hz
        vad = VADProcessor(vad_analyzer=WebRtcVadAnalyzer(aggressiveness=settings.audio.vad_aggressiveness,
                                                          params=vad_params(settings.audio)), audio_idle_timeout=0)
        turns = WhisperTurns(settings=settings, sample_rate_hz=rate)
        return PipelineWorker(Pipeline([transport.input(), vad, turns, transport.output()]),
                              params=PipelineParams(audio_in_sample_rate=rate, audio_out_sample_rate=rate),
                              idle_timeout_secs=None, enable_rtvi=False, enable_turn_tracking=False,
                              conversation_id=session.call_id)

    app = create_app(settings, pipeline_factory=factory)
    runner, base = await start_site(app)
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(wav))
            try:
                page = await browser.new_page(viewport={"width": 1024, "height": 600})
                await page.goto(base + screen_path(1, settings=settings))
                await wait_js(page, "window.screenLog.micFrames > 0", timeout_s=LEAD_S - 0.5)
                frame_ms = await page.evaluate("window.screenState.ready.mic_frame_ms")

                async def at_audio_s(seconds: float) -> None:  # where the fake microphone is in the file
                    await wait_js(page, f"window.screenLog.micFrames * {frame_ms} >= {seconds * 1000}", timeout_s=30)

                box = await page.locator("#ptt").bounding_box()
                await at_audio_s(LEAD_S - 1.0)
                await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                await page.mouse.down()
                await at_audio_s(LEAD_S + sentence_s / 2)  # mid-sentence the finger slides 100 px up, off the button
                await page.mouse.move(box["x"] + box["width"] / 2, box["y"] - 100, steps=4)
                await at_audio_s(LEAD_S + sentence_s + 0.3)
                still_talking = await page.evaluate("window.screenDebug.pttHow()")
                await page.mouse.up()
                await wait_js(page, "window.screenLog.captions.some(c => c.speaker === 'elder')", timeout_s=60)
                await page.wait_for_timeout(2500)  # a split turn would bring a second caption
                elder = [c["text"] for c in await page.evaluate("window.screenLog.captions") if c["speaker"] == "elder"]
                print("elder captions:", elder)
                assert len(elder) == 1, elder
                assert "煤气" in elder[0] and ("下午" in elder[0] or "家里" in elder[0] or "送" in elder[0]), elder
                assert still_talking == "pointer"
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
