"""End to end (SQLite store, real ledger, guard → PII gate pipeline, espeak-ng for speech length):

1. an impersonation call ("I am 平安通", no ledger entry) is flagged, the elder is warned through the PII
   gate, an urgent fraud alert with the redacted transcript is stored and the family gets an outbox message;
2. a real scheduled care call proves itself (safe phrase + one-time code + call-back offer), the proof
   passes the PII gate, the call is not flagged, and the proof takes ≤ 15 s of speech at 130 wpm
   (measured by synthesising it with espeak-ng; falls back to the character-count estimate when
   espeak-ng is missing, and says so).
"""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import pytest
from pipecat.frames.frames import TranscriptionFrame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.tests.utils import run_test

from assistant.fraud_guard.guard import FraudGuard, ledger_check_for, store_flag_sink
from assistant.fraud_guard.identity import IdentityService, proof_speech_seconds, spell_code
from assistant.fraud_guard.ledger import CallLedger
from assistant.fraud_guard.pii_gate import PersonalData, PiiGate, PiiPolicy
from assistant.phrases import Phrasebook
from assistant.platform.db import create_engine_for
from assistant.platform.migrate import upgrade_heads_async
from assistant.platform.store import NewContact, PlatformStore
from assistant.session import CallSession

pytestmark = pytest.mark.e2e

ELDER_NUMBER = "07503331234"


@pytest.fixture
async def platform(settings):
    await upgrade_heads_async(settings.store.database_url)
    engine = create_engine_for(settings)
    store = PlatformStore(engine=engine)
    elder = await store.create_elder(
        name="陈桂英", district="蓬江", dialect="cmn", address="白沙街道幸福里二号楼三零一", phones=[ELDER_NUMBER],
        safe_phrase="桂花开了", contacts=[NewContact(name="陈建华", relation="儿子", phone="13800000001")],
    )
    ledger = CallLedger.for_engine(engine, settings=settings)
    yield store, ledger, elder
    await engine.dispose()


def _t(text: str, who: str) -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id=who, timestamp="0")


IMPERSONATION = [
    ("陈阿姨您好，我是平安通服务中心的小李，最近身体怎么样？", "caller"),
    ("还好还好。", "elder"),
    ("我们平台在做设备升级，您的智能屏要换新系统，不然下个月就用不了了。", "caller"),
    ("那要怎么弄？", "elder"),
    ("等一下您手机会收到一条短信，里面有六个数字，您念给我就行。", "caller"),
    ("哦，收到了，是……", "elder"),
]


async def test_impersonation_call_is_flagged_and_elder_warned(platform, settings):
    store, ledger, elder = platform
    session = CallSession(channel="phone", direction="inbound", elder_id=elder.elder_id, dialect="cmn")
    personal = PersonalData(name=elder.name, address=elder.address, family_names=("陈建华",))
    guard = FraudGuard(session=session, settings=settings, on_flag=store_flag_sink(store),
                       ledger_check=ledger_check_for(ledger), personal=personal)
    gate = PiiGate(session=session, policy=PiiPolicy(personal=personal))
    down, _ = await run_test(Pipeline([guard, gate]), frames_to_send=[_t(t, w) for t, w in IMPERSONATION])
    spoken = [f.text for f in down if isinstance(f, TTSSpeakFrame)]
    assert spoken == [Phrasebook().say("fraud_warning", "cmn")]  # the warning got through the PII gate unchanged
    flag = guard.flag
    assert flag is not None and flag.platform_claim_without_ledger and flag.scam_type == "冒充平安通"
    assert flag.turn <= 5  # at the latest on the code request, before the elder reads the digits
    alerts = await store.list_alerts(elder_id=elder.elder_id)
    fraud = [a for a in alerts if a.kind == "fraud"]
    assert len(fraud) == 1 and fraud[0].severity == "urgent"
    assert fraud[0].detail["transcript"] and fraud[0].detail["evidence"]
    assert "白沙街道幸福里" not in str(fraud[0].detail)
    outbox = await store.list_outbox(alert_id=fraud[0].alert_id)
    assert any(o.recipient == "13800000001" for o in outbox)


def _espeak_seconds(text: str, voice: str, rate_wpm: int, out: Path) -> float | None:
    import shutil

    if shutil.which("espeak-ng") is None:
        return None
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate_wpm), "-w", str(out), text], check=True,
                   capture_output=True, timeout=60)
    with wave.open(str(out)) as w:
        return w.getnframes() / w.getframerate()


@pytest.mark.parametrize("dialect", ["cmn", "yue"])
async def test_scheduled_care_call_proves_itself_quickly(platform, settings, tmp_path, dialect):
    store, ledger, elder = platform
    # the scheduler writes the ledger entry BEFORE dialling
    entry = await ledger.record_outbound_call(elder_id=elder.elder_id, number=ELDER_NUMBER, purpose="care_checkin",
                                              call_ref=f"care-{dialect}")
    session = CallSession(channel="phone", direction="outbound", elder_id=elder.elder_id, caller_number=ELDER_NUMBER,
                          dialect=dialect, ledger_entry_id=entry.entry_id)

    async def numbers(elder_id):
        return [p.number for p in (await store.get_elder(elder_id)).phones]

    identity = IdentityService(ledger=ledger, safe_phrase_of=store.safe_phrase, numbers_of=numbers)
    proof = await identity.prove(session)
    text = "".join(proof)
    assert "桂花开了" in text and spell_code(entry.code) in text
    assert await identity.verify_session(session)

    # the proof goes out through the PII gate unchanged; the screen would show the same code (/api/verify)
    gate = PiiGate(session=session, policy=PiiPolicy(personal=PersonalData(name=elder.name, address=elder.address)))
    down, _ = await run_test(gate, frames_to_send=[TTSSpeakFrame(text=t) for t in proof],
                             expected_down_frames=[TTSSpeakFrame] * len(proof))
    assert [f.text for f in down] == proof
    assert (await ledger.current_for_number(ELDER_NUMBER)).code == entry.code

    # the genuine call (it talks about money and the platform) is not flagged
    guard = FraudGuard(session=session, settings=settings, ledger_check=ledger_check_for(ledger))
    for who, t in [
        ("caller", text),
        ("callee", "对的，屏幕上也是这个数。"),
        ("caller", "您说煤气快用完了，明天上午送一罐，师傅到了您当面给他一百二十块现金，他给您开收据。"),
        ("callee", "要不要先转钱给你们？"),
        ("caller", "不用，电话里我们从来不收钱，也不会让您转账。"),
    ]:
        await guard.observe(who, t)
    assert guard.flag is None

    seconds = _espeak_seconds(text, dialect, settings.tts.rate_wpm, tmp_path / "proof.wav")
    how = "espeak-ng" if seconds is not None else "character estimate"
    if seconds is None:
        seconds = proof_speech_seconds(proof, rate_wpm=settings.tts.rate_wpm, dialect=dialect)
    print(f"proof ({dialect}) = {seconds:.1f} s by {how}: {text}")
    assert seconds <= 15.0, f"{how}: {seconds:.1f} s"
