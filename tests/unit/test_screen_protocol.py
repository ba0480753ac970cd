"""The smart screen's wire protocol, PCM framing, device tokens and plain-language status texts."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from assistant.screen.protocol import (
    MIC_FRAME_BYTES,
    Caption,
    FraudNotice,
    PcmFramer,
    Ready,
    ScreenProtocolError,
    Status,
    StatusLine,
    check_audio,
    parse_control,
    silence,
)
from assistant.screen.store_view import appointment_text, care_call_text, order_text
from assistant.screen.tokens import check_token, device_token


def test_control_messages_parse():
    assert parse_control('{"type":"ptt","state":"start"}').state == "start"
    assert parse_control('{"type":"button","button":"gas"}').button == "gas"
    assert parse_control('{"type":"sos"}').type == "sos"
    assert parse_control('{"type":"fraud_check"}').type == "fraud_check"


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"no_type": 1}',
        '{"type": "launch_rockets"}',
        '{"type": "ptt", "state": "sideways"}',
        '{"type": "button", "button": "taxi"}',
        '{"type": "ping", "pad": "' + "x" * 5000 + '"}',
    ],
)
def test_bad_control_messages_are_coded_errors(text):
    with pytest.raises(ScreenProtocolError) as info:
        parse_control(text)
    assert info.value.code == "screen_protocol"


def test_audio_messages_must_be_whole_samples_and_short():
    assert check_audio(b"\x00\x01" * 320) == b"\x00\x01" * 320
    for bad in (b"", b"\x00" * 641, b"\x00" * (16000 * 2)):
        with pytest.raises(ScreenProtocolError):
            check_audio(bad)


def test_framer_rechunks_to_20ms_and_keeps_the_remainder():
    framer = PcmFramer(frame_bytes=MIC_FRAME_BYTES)
    assert framer.push(b"\x01" * 600) == []
    frames = framer.push(b"\x02" * 700)
    assert [len(f) for f in frames] == [640, 640]
    assert frames[0] == b"\x01" * 600 + b"\x02" * 40
    assert framer.pending_bytes == 20
    tail = framer.flush()
    assert len(tail) == 640 and tail[:20] == b"\x02" * 20 and tail[20:] == bytes(620)
    assert framer.flush() == b""


def test_framer_refuses_odd_frames():
    with pytest.raises(ValueError):
        PcmFramer(frame_bytes=641)


def test_silence_covers_the_duration_in_whole_frames():
    frames = silence(duration_s=1.1)
    assert len(frames) == 55 and all(f == bytes(640) for f in frames)


def test_server_messages_are_typed_json():
    assert json.loads(Caption(speaker="elder", text="我要叫煤气").to_json()) == {
        "type": "caption",
        "speaker": "elder",
        "text": "我要叫煤气",
        "final": True,
    }
    ready = json.loads(Ready(session_id="s", sample_rate_hz=16000).to_json())
    assert ready["type"] == "ready" and ready["mic_sample_rate_hz"] == 16000 and ready["mic_frame_ms"] == 20
    status = json.loads(Status(lines=[StatusLine(kind="order", text="煤气师傅 20 分钟内到", order_id=3)]).to_json())
    assert status["lines"] == [{"kind": "order", "text": "煤气师傅 20 分钟内到", "order_id": 3}]
    assert json.loads(FraudNotice(state="platform_calling", code="4821").to_json())["code"] == "4821"


def test_device_tokens_are_per_elder_and_per_secret():
    token = device_token(7, secret=b"s1")
    assert check_token(7, token, secret=b"s1")
    assert not check_token(8, token, secret=b"s1")
    assert not check_token(7, token, secret=b"s2")
    assert not check_token(7, None, secret=b"s1")
    assert not check_token(7, "", secret=b"s1")


def test_order_texts_are_plain_language():
    now = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.UTC)
    assert order_text(type="gas", status="answered", details={"eta_minutes": 20}, now=now) == "煤气师傅 20 分钟内到"
    eta_at = (now + dt.timedelta(minutes=15)).isoformat()
    assert order_text(type="gas", status="answered", details={"eta_at": eta_at}, now=now) == "煤气师傅 15 分钟内到"
    assert order_text(type="meal", status="placed", details={}, now=now) == "送餐已下单，正在安排"
    assert "维修" in order_text(type="repair", status="dispatched", details={}, now=now)


def test_appointment_text_is_local_time():
    text = appointment_text({"when": "2026-11-25T01:30:00+00:00", "hospital": "江门市人民医院", "department": "心内科", "escort": True})
    assert text == "看病：11月25日 上午9点30分 江门市人民医院 心内科，有人陪您去"


def test_care_call_text_without_a_call():
    assert care_call_text(None) == "今天还没有关怀电话"
