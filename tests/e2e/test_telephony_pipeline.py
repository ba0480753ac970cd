"""A real phone call through the real pipeline: baresip plays recorded Mandarin speech into the gateway;
the integrator's ``build_call_pipeline`` (VAD → whisper → dialogue/Rasa → TTS) answers over RTP."""

from __future__ import annotations

import asyncio
import subprocess
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from assistant.asr import registry
from telephony.peers import BaresipPeer
from tests.conftest import need_program, shared_path
from tests.e2e.conftest import need_rasa, need_whisper

pytestmark = [pytest.mark.e2e, pytest.mark.sip, pytest.mark.rasa]


def rms(path: Path) -> float:
    with wave.open(str(path)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


@pytest.fixture
def caller_wav(tmp_path) -> Path:
    """6 s of silence (the greeting plays), a real Mandarin request, 40 s of silence; 8 kHz for the line."""
    sox = need_program("sox")
    src = shared_path("data", "mandarin_speech", "wav", "firered_aishell2_IT0011W0001.wav")
    wav = tmp_path / "caller_8k.wav"
    subprocess.run([sox, str(src), "-r", "8000", "-c", "1", "-b", "16", str(wav), "pad", "6", "40"], check=True)
    return wav


async def test_real_pipeline_answers_a_phone_call(phone_gateway, tmp_path, caller_wav):
    need_program("baresip")
    need_whisper()
    need_rasa()
    async with phone_gateway(rtp_ports=(22000, 22999)) as gw:
        calls, settings = gw.calls, gw.settings
        async with BaresipPeer(workdir=tmp_path / "elder", wav=caller_wav, user="13800000009") as peer:
            await peer.command("dial", gw.uri)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                turns = calls[0].tracker.turns if calls else []
                if any(t.transcript and t.reply_audio_bytes for t in turns if t.source != "system"):
                    break
                await asyncio.sleep(0.5)
            open_during_call = set(registry._CALLS)
            await asyncio.sleep(3.0)  # let the reply play out to the caller
            await peer.command("hangup")
            await asyncio.sleep(0.5)
            recordings = peer.recordings()
    # the recognizer knew the call was open (whisper's encoder margin depends on the calls open) and that it ended
    assert open_during_call == {calls[0].session.call_id}
    assert registry._CALLS == set()
    spoken = [t for t in calls[0].tracker.turns if t.transcript]
    assert spoken, "no transcript from the caller's speech"
    assert any(t.reply_text for t in spoken)
    assert recordings and max(rms(p) for p in recordings) > 300, "the caller heard only silence"
    # the call's own recording (streamed to var/calls while the call went on): the caller's speech on the
    # left, the greeting and the reply on the right
    import soundfile as sf

    from assistant.audio.recording import recording_path

    rec, rate = sf.read(str(recording_path(settings.paths.var_dir / "calls", calls[0].session.call_id)), dtype="int16")
    assert rate == 16000 and rec.shape[1] == 2 and len(rec) > 10 * rate
    left, right = rec[:, 0].astype(float), rec[:, 1].astype(float)
    assert np.sqrt(np.mean(left[6 * rate : 10 * rate] ** 2)) > 100, "the caller's speech is not on the left"
    assert np.sqrt(np.mean(right[: 5 * rate] ** 2)) > 100, "the greeting is not on the right"


async def test_keypad_2_and_0_raise_one_alert_each_on_a_real_call(phone_gateway, tmp_path, caplog):
    """Key 2 is the dialogue's alone (Rasa's check-in raises ``unwell`` once; the gateway used to raise it
    too); key 0 is seen by the gateway (hand-over) and the dialogue. The platform store holds one ``unwell``
    and one ``human`` alert for the call, the family told once."""
    need_program("baresip")
    need_whisper()
    need_rasa()

    from assistant.platform.db_cli import seed_demo

    caplog.set_level("INFO", logger="assistant.platform.store")

    async def wait_until(what: str, check, timeout_s: float = 60.0):
        deadline = time.monotonic() + timeout_s
        while not (result := await check()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.2)
        return result

    async with phone_gateway(rtp_ports=(23000, 23999)) as gw:
        calls, service = gw.calls, gw.service
        store = gw.runtime.store
        await seed_demo(store)
        elder = await store.elder_by_phone("0750-6603003")

        async def keypad_answered(n: int):
            turns = [t for t in calls[0].tracker.turns if t.source == "dtmf"] if calls else []
            return len(turns) >= n and all(t.reply_texts for t in turns)

        async with BaresipPeer(workdir=tmp_path / "elder", user="07506603003") as peer:  # silence
            await peer.command("dial", gw.uri)

            async def answered():
                return bool(service.gateway.reports)

            await wait_until("the call to be answered", answered, timeout_s=20)
            await asyncio.sleep(2.0)
            await peer.command("sndcode", "2")
            await wait_until("the dialogue's answer to key 2", lambda: keypad_answered(1))
            await peer.command("sndcode", "0")
            await wait_until("the dialogue's answer to key 0", lambda: keypad_answered(2))
            await asyncio.sleep(1.0)  # anything late still lands before we count
            await peer.command("hangup")
            await asyncio.sleep(0.5)
        call_id = service.gateway.reports[0].call_id
        await gw.stop_gateway()
        alerts = [a for a in await store.list_alerts() if a.call_id == call_id]
        outbox = [o for a in alerts for o in await store.list_outbox(alert_id=a.alert_id)]
    assert [t.intent for t in calls[0].tracker.turns if t.source == "dtmf"] == ["checkin_unwell", "request_human"]
    assert sorted(a.kind for a in alerts) == ["human", "unwell"], [(a.kind, a.detail) for a in alerts]
    assert all(a.elder_id == elder.elder_id for a in alerts)
    # key 2 was raised once (nothing folded into it); key 0's second raise was folded into the first
    messages = [r.getMessage() for r in caplog.records]
    folded = [m for m in messages if "already raised" in m]
    assert not any(" unwell " in m for m in folded) and any(" human " in m for m in folded), folded
    assert len([m for m in messages if " raised: unwell " in m]) == 1
    assert len(outbox) == 2  # the unwell alert's SMS to each of the two family contacts, once
