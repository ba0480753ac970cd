"""What the call recorder stores for operators: redacted turns, and never the safe phrase of an identity proof.

The store here is a recording stand-in (a fake: the real PlatformStore is exercised in tests/e2e)."""

from pathlib import Path

from assistant.call_recorder import PROOF_PLACEHOLDER, CallRecorder
from assistant.session import CallSession
from assistant.turns import TurnRecord


class RecordingStore:
    def __init__(self):
        self.turns = []

    async def add_turn(self, **kw):
        self.turns.append(kw)


async def test_identity_proof_is_not_stored_but_the_rest_is(tmp_path: Path):
    store = RecordingStore()
    rec = CallRecorder(store=store, session=CallSession(channel="phone"), calls_dir=tmp_path)
    record = TurnRecord(turn=1, transcript="你真的是平安通吗", intent="ask_identity")
    proof = "平安通来电，暗语桂花飘香，确认码四八二一。"
    record.reply_texts = [proof, "还有什么可以帮您？"]
    record.secret_texts = {proof}
    await rec.on_turn("reply", record)
    elder, bot = store.turns
    assert elder["speaker"] == "elder" and elder["text"] == "你真的是平安通吗" and elder["turn"] == 1
    assert bot["speaker"] == "bot" and bot["turn"] == 2
    assert "桂花飘香" not in bot["text"] and "桂花飘香" not in bot["text_redacted"]
    assert bot["text"] == PROOF_PLACEHOLDER + "还有什么可以帮您？"


async def test_phone_numbers_are_redacted_for_review(tmp_path: Path):
    store = RecordingStore()
    rec = CallRecorder(store=store, session=CallSession(channel="phone"), calls_dir=tmp_path)
    record = TurnRecord(turn=3, transcript="我的电话是13800000101")
    record.reply_texts = ["好的。"]
    await rec.on_turn("reply", record)
    assert "13800000101" not in store.turns[0]["text_redacted"]
    assert store.turns[0]["turn"] == 5
