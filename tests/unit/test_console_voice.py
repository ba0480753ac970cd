"""Console voice-pack recording page: progress, upload → automatic check → playback, roles and CSRF.

The uploaded "recordings" are STAND-INS spoken by the espeak-ng CLI (no real human recordings exist here);
the recogniser is a FAKE (``voice_coverage.recognize`` replaced) so the check's verdict is chosen by the test:
the real read-back (whisper-base) is measured in /work/notes/packs.md.
"""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest
from aiohttp import FormData

from assistant.asr.base import AsrResult
from assistant.console import users
from assistant.console.app import create_app
from assistant.console.seed import seed_demo
from assistant.services import SERVICES_KEY
from assistant.tts import voice_coverage
from assistant.tts.base import VoiceRequest
from assistant.tts.espeak_cli_engine import EspeakCliEngine
from assistant.tts.voice_pack import VoicePack, key_of, pack_dir, read_wav
from tests.unit.console_helpers import PASSWORD, csrf_from, login, write_wav


def stand_in_wav(text: str) -> bytes:
    """A browser-like upload: the espeak-ng yue STAND-IN at its own rate with silence around it, as WAV bytes."""
    audio = EspeakCliEngine(voice="espeak-cli-yue").synthesize(VoiceRequest(text=text, dialect="yue", rate_wpm=130))
    pad = b"\x00\x00" * (audio.sample_rate_hz // 2)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(audio.sample_rate_hz)
        w.writeframes(pad + audio.pcm + pad)
    return out.getvalue()


@pytest.fixture
async def client(aiohttp_client, settings, monkeypatch):
    heard: list[str] = []

    async def fake_recognize(pcm, *, sample_rate_hz, dialect, options, settings):
        text = heard.pop(0)
        return AsrResult(text=text, raw_text=text, confidence=0.9, dialect=dialect, engine="fake", model_id="fake")

    monkeypatch.setattr(voice_coverage, "recognize", fake_recognize)
    app = create_app(settings)
    c = await aiohttp_client(app)
    async with app[SERVICES_KEY].sessions() as db:
        await users.create_user(db, username="op", role="operator", password=PASSWORD)
        ids = await seed_demo(db, audio_path=write_wav(settings.paths.var_dir / "calls" / "demo.wav"))
        await users.create_user(db, username="fam", role="family", password=PASSWORD, elder_ids=(ids.elder_a,))
    c.heard = heard
    c.settings = settings
    return c


async def signed_in(client, name="op", area="console") -> str:
    out = await login(client, name, area=area)
    assert out.status == 303
    return csrf_from(await (await client.get(out.location)).text())


def upload(text: str, wav: bytes) -> FormData:
    form = FormData()
    form.add_field("text", text)
    form.add_field("audio", wav, filename="take.wav", content_type="audio/wav")
    return form


async def test_record_check_playback_and_progress(client):
    token = await signed_in(client)
    page = await (await client.get("/console/voice?dialect=yue")).text()
    total = len(voice_coverage.sentences("yue", settings=client.settings))
    assert f'已录 <span class="num">0</span> / {total} 句' in page and "请唔好收线" in page
    assert "/console/static/voice.js" in page

    wav = stand_in_wav("请唔好收线")
    client.heard += ["请唔好收线", "今日天气好好"]
    ok = await client.post("/console/voice/yue", data=upload("请唔好收线。", wav), headers={"X-CSRF-Token": token})
    assert ok.status == 200
    res = await ok.json()
    assert res["status"] == "passed" and res["recorded"] == 1 and res["sentences"] == total
    bad = await client.post("/console/voice/yue", data=upload("请你尽快联络确认。", wav), headers={"X-CSRF-Token": token})
    assert (await bad.json())["status"] == "failed"  # it says another sentence: flagged, never played

    pack = VoicePack.load(pack_dir(client.settings.paths.var_dir, "local", "yue"), "yue")
    stored = pack.playable()[key_of("请唔好收线。", "yue")]
    played = await client.get(f"/console/voice/yue/audio/{stored.name}")
    assert played.status == 200 and await played.read() == stored.read_bytes()
    pcm, _ = read_wav(stored)
    assert len(pcm) < len(wav)  # trimmed (and resampled to 16 kHz)
    assert np.abs(np.frombuffer(pcm, dtype="<i2")).max() > 1000
    page = await (await client.get("/console/voice?dialect=yue")).text()
    assert f'已录 <span class="num">1</span> / {total} 句（1 句未通过自动检查）' in page
    assert "识别为：今日天气好好" in page
    assert (await client.get("/console/voice/yue/audio/..%2Fmanifest.json")).status == 404


async def test_refused_without_csrf_for_family_and_for_other_sentences(client):
    token = await signed_in(client)
    wav = stand_in_wav("请你尽快联络确认")
    assert (await client.post("/console/voice/yue", data=upload("请你尽快联络确认。", wav))).status == 403  # no CSRF token
    other = await client.post("/console/voice/yue", data=upload("随便讲一句", wav), headers={"X-CSRF-Token": token})
    assert other.status == 400
    assert (await client.get("/console/voice?dialect=xx")).status == 404
    assert (await client.post("/console/voice/xx", data=upload("请你尽快联络确认。", wav),
                              headers={"X-CSRF-Token": token})).status == 404
    client.session.cookie_jar.clear()
    await signed_in(client, "fam", area="family")
    assert (await client.get("/console/voice")).status == 403
