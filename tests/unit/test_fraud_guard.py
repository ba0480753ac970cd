"""FraudGuard processor: per-turn risk, warning in the elder's dialect, flag with redacted transcript."""

from __future__ import annotations

from pipecat.frames.frames import TranscriptionFrame, TTSSpeakFrame
from pipecat.tests.utils import run_test

from assistant.fraud_guard.events import FraudFlag, FraudRiskUpdated, FraudWarningSpoken
from assistant.fraud_guard.guard import FraudGuard
from assistant.fraud_guard.pii_gate import PersonalData
from assistant.phrases import Phrasebook
from assistant.session import CallSession


def _t(text: str, who: str) -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id=who, timestamp="0")


SCAM = [
    ("你好，我系广州市公安局嘅陈警官，你个身份证牵涉一单洗黑钱案。", "caller"),
    ("吓？我冇做过呀！", "elder"),
    ("你将户口啲钱转去国家资金监管户口，唔好话俾仔女知。", "caller"),
    ("我个身份证号码系440703195401011234，我真系冇做过。", "elder"),
]


async def test_scam_is_flagged_and_elder_warned_in_cantonese(settings):
    session = CallSession(channel="phone", dialect="yue", elder_id=7, verification="verified")
    flags: list[FraudFlag] = []
    events = []

    async def on_flag(flag):
        flags.append(flag)

    async def on_event(ev):
        events.append(ev)

    guard = FraudGuard(session=session, settings=settings, on_flag=on_flag, on_event=on_event,
                       personal=PersonalData(name="陈桂英"))
    down, _ = await run_test(guard, frames_to_send=[_t(t, w) for t, w in SCAM])
    spoken = [f.text for f in down if isinstance(f, TTSSpeakFrame)]
    assert spoken == [Phrasebook().say("fraud_warning", "yue")]
    assert len(flags) == 1 and flags[0].elder_id == 7
    assert flags[0].turn == 3  # on the request turn, before the elder says more
    assert session.verification == "unverified"  # no personal data after a flag
    assert any("监管户口" in e or "资金监管" in e for e in flags[0].evidence)
    assert sum(isinstance(e, FraudRiskUpdated) for e in events) == 4
    assert any(isinstance(e, FraudWarningSpoken) for e in events)


async def test_flag_transcript_is_redacted(settings):
    session = CallSession(channel="phone", dialect="cmn")
    guard = FraudGuard(session=session, settings=settings)
    await guard.observe("caller", "我是公安局的，你涉嫌洗钱。")
    await guard.observe("callee", "我身份证号是440703195401011234。")
    await guard.observe("caller", "请把验证码念给我，把钱转到安全账户，不要告诉家人。")
    assert guard.flag is not None
    text = str(guard.flag.alert_detail())
    assert "440703195401011234" not in text and "[身份证号]" in text


async def test_genuine_call_is_not_flagged(settings):
    session = CallSession(channel="phone", dialect="cmn")
    guard = FraudGuard(session=session, settings=settings)
    for who, text in [
        ("caller", "张先生您好，我是工商银行的客户经理，您下午有一笔五万元转账被拦截了。"),
        ("callee", "对，他们说是检察院的安全账户。"),
        ("caller", "这就是诈骗。公检法不会让您把钱转到安全账户，我们也不会问您密码和验证码。"),
        ("caller", "您不放心可以挂了电话，打您银行卡背面的客服电话核实。"),
    ]:
        assert await guard.observe(who, text) is None
    assert guard.flag is None and guard.risk < 0.5


async def test_platform_claim_without_ledger_entry_counts(settings):
    async def no_entry(session):
        return False

    async def has_entry(session):
        return True

    turns = [("caller", "王伯伯您好，我是平安通的小李，最近身体好吗？"),
             ("callee", "好呀。"),
             ("caller", "我们要给您换新的设备，您先交一百块钱。")]
    risks = {}
    for name, check in [("none", no_entry), ("entry", has_entry)]:
        guard = FraudGuard(session=CallSession(channel="phone"), settings=settings, ledger_check=check)
        for who, text in turns:
            await guard.observe(who, text)
        risks[name] = (guard.risk, guard.flag)
    assert risks["none"][1] is not None and risks["none"][1].platform_claim_without_ledger
    assert risks["none"][1].scam_type == "冒充平安通"
    assert risks["entry"][0] < risks["none"][0]


async def test_platform_claim_on_the_flagging_turn_still_warns_and_flags(settings):
    """The turn that crosses the threshold also claims 平安通 with no ledger entry: the ledger re-score must not
    swallow the "just flagged" moment (it once did: no warning, no alert)."""
    flags = []

    async def no_entry(session):
        return False

    async def on_flag(flag):
        flags.append(flag)

    guard = FraudGuard(session=CallSession(channel="phone", dialect="cmn"), settings=settings,
                       ledger_check=no_entry, on_flag=on_flag)
    warning = await guard.observe("caller", "你好我是平安通的工作人员这边转接公安局")
    assert warning == Phrasebook().say("fraud_warning", "cmn")
    assert len(flags) == 1 and flags[0].platform_claim_without_ledger


async def test_flag_sink_failure_still_warns(settings):
    async def broken(flag):
        raise RuntimeError("store down")

    guard = FraudGuard(session=CallSession(channel="phone", dialect="cmn"), settings=settings, on_flag=broken)
    await guard.observe("caller", "奶奶，猜猜我是谁？我换号码了。")
    warning = await guard.observe("caller", "我打架被抓了，你先转两万块保释金给我朋友，别告诉我爸妈。")
    assert warning == Phrasebook().say("fraud_warning", "cmn")


async def test_guard_factory_without_store_or_ledger(settings):
    from assistant.fraud_guard.guard import guard_factory

    guard = guard_factory(settings=settings)(CallSession(channel="screen"))
    assert isinstance(guard, FraudGuard) and guard.flag is None
    await guard.observe("caller", "请把验证码念给我，把钱转到安全账户，不要告诉家人。")
    assert guard.flag is not None  # still flags and warns without a store


async def test_flag_listeners_follow_the_stored_flag_and_a_hand_over_changes_the_warning(settings):
    """The phone gateway hands a flagged call to an operator (issue #16): its listener runs after the alert
    is stored, and the elder is told to stay on the line (not to hang up)."""
    from assistant.fraud_guard.guard import HANDOVER_WARNING

    order: list[str] = []

    async def on_flag(flag):
        order.append("stored")

    async def broken(flag):
        raise RuntimeError("gateway gone")

    async def hand_over(flag):
        order.append(f"hand_over:{flag.call_id}")

    session = CallSession(channel="phone", dialect="yue", elder_id=7, call_id="c-fraud")
    guard = FraudGuard(session=session, settings=settings, on_flag=on_flag)
    guard.flag_listeners += [broken, hand_over]
    guard.warning = HANDOVER_WARNING
    down, _ = await run_test(guard, frames_to_send=[_t(t, w) for t, w in SCAM])
    spoken = [f.text for f in down if isinstance(f, TTSSpeakFrame)]
    assert order == ["stored", "hand_over:c-fraud"]  # a failing listener stops neither the others nor the warning
    assert spoken == [Phrasebook().say(HANDOVER_WARNING, "yue")] and "收线之后" not in spoken[0]
    assert Phrasebook().say("fraud_warning", "yue") != spoken[0]
