"""What used to grow with a call's length or with the number of calls (issue #23, found with tracemalloc
in ``assistant bench soak --tracemalloc``): each reply's audio kept in the call's turns, every call's
report kept by the gateway forever."""

from __future__ import annotations

from assistant.settings import load_settings
from assistant.turns import TurnTracker
from telephony.gateway import CallReport, Gateway


def test_a_live_calls_tracker_does_not_keep_reply_audio():
    tracker = TurnTracker(keep_reply_audio=False)
    record = tracker.begin()
    for _ in range(50):
        assert tracker.add_audio(bytes(640), 16000) is record
    assert record.reply_audio == bytearray() and record.reply_audio_bytes == 50 * 640
    assert record.first_audio_t is not None


def test_simulate_still_gets_the_reply_audio():
    tracker = TurnTracker()
    tracker.begin()
    tracker.add_audio(b"\x01\x02" * 10, 16000)
    assert bytes(tracker.current.reply_audio) == b"\x01\x02" * 10 and tracker.current.reply_audio_bytes == 20


def test_the_gateway_keeps_only_the_latest_call_reports(tmp_path):
    gw = Gateway(settings=load_settings(), pipeline_factory=lambda **kw: None, max_reports=3)
    for i in range(10):
        gw.reports.append(CallReport(call_id=str(i), direction="inbound", number="1", elder_id=None))
    assert [r.call_id for r in gw.reports] == ["7", "8", "9"] and gw.reports[0].call_id == "7"

