"""Call screening (issue #20 item 4): the state machine with stand-in calls, store, recogniser and voice."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from assistant.errors import TelephonyError
from telephony import screening
from telephony.screening import (
    AnswerCollector,
    CallScreener,
    ScreenedLine,
    announcement,
    elder_choice,
    parse_lines,
)

LINE = "07506601234"
ELDER_URI = "sip:elder-ata@127.0.0.1:5099"
FAMILY = "13800000001"
SCAM = "我是公安局的，你的银行账户涉嫌洗钱，要把钱转到安全账户，把手机验证码告诉我"
GENUINE = "我是社区医院的，提醒阿姨明天上午来复查血压"


class FakeCall:
    def __init__(self, *, call_id: str, remote: str = "", called: str = "", keys: str = "", answer_after_s: float = 0.0,
                 hang_up_after_announcement: bool = False, key_delay_s: float = 0.01):
        self.call_id = call_id
        self.remote_number = remote
        self.called_number = called
        self.state = "ringing"
        self.on_audio = None
        self.on_dtmf = None
        self.heard: list[str] = []
        self.keys = keys  # pressed after each thing this phone hears
        self.hang_up_after_announcement = hang_up_after_announcement
        self.key_delay_s = key_delay_s
        self._ended = asyncio.Event()
        self.bridged_with: str | None = None

    async def answer(self):
        self.state = "active"

    def play(self, pcm: bytes):
        text = pcm.decode()
        self.heard.append(text)
        if "按1" in text and self.keys:
            key, self.keys = self.keys[0], self.keys[1:]
            asyncio.get_running_loop().call_later(self.key_delay_s, lambda: self.on_dtmf and self.on_dtmf(key))
        if "按1" in text and self.hang_up_after_announcement:
            asyncio.get_running_loop().call_later(0.01, self._remote_hangup)

    def _remote_hangup(self):
        self.state = "ended"
        self._ended.set()

    async def wait_played(self, *, timeout_s: float = 30.0):
        await asyncio.sleep(0)

    def clear_playback(self):
        pass

    pending_ms = 0.0

    def send_dtmf(self, digit):
        pass

    async def hangup(self, *, reason: str = "local_hangup"):
        self.state = "ended"
        self._ended.set()

    async def wait_ended(self):
        await self._ended.wait()


class FakeEndpoint:
    def __init__(self, phones: dict[str, FakeCall | None]):
        self.phones = phones
        self.dialled: list[tuple[str, str | None]] = []

    async def dial(self, uri, *, timeout_s=None, caller_id=None, line=None, line_wait_s=0.0):
        self.dialled.append((uri, caller_id))
        leg = self.phones.get(uri)
        if leg is None:
            raise TelephonyError("no answer", code="no_answer")
        leg.state = "active"
        return leg


class FakeStore:
    def __init__(self, *, contacts=()):
        self.alerts: list[dict] = []
        self.elder = SimpleNamespace(elder_id=7, name="陈桂英", dialect="cmn", address="蓬江区白沙路8号",
                                     phones=[SimpleNamespace(number=LINE)], contacts=list(contacts))

    async def elder_by_phone(self, number):
        return self.elder if number == LINE else None

    async def contacts_for(self, elder_id):
        return list(self.elder.contacts)

    async def raise_alert(self, **kw):
        self.alerts.append(kw)
        return SimpleNamespace(alert_id=len(self.alerts))


class SaidCollector:
    """Stands in for the VAD: the caller 'said' something as soon as asked."""

    def __init__(self, **kw):
        self.done = asyncio.Event()
        self.done.set()
        self.heard_speech = True
        self.pcm = b"\x00\x01" * 800

    def feed(self, pcm):
        pass


async def _speak(text: str, dialect: str) -> bytes:
    return text.encode()


def _screener(settings, *, endpoint, store, said: str, monkeypatch, **screening_cfg):
    monkeypatch.setattr(screening, "AnswerCollector", SaidCollector)
    s = replace(settings, screening=replace(settings.screening, lines=(f"{LINE}={ELDER_URI}",), **screening_cfg))
    bridged = []

    async def fake_bridge(a, b, **kw):
        bridged.append((a.call_id, b.call_id))
        a.bridged_with, b.bridged_with = b.call_id, a.call_id
        return a

    monkeypatch.setattr(screening, "bridge", fake_bridge)

    async def recognise(pcm, dialect):
        return said, "cmn"

    return CallScreener(settings=s, endpoint=endpoint, speak=_speak, store=store, recognise=recognise), bridged


def _family_contact():
    return SimpleNamespace(name="陈建华", phone=FAMILY, priority=1, contact_id=1)


def test_lines_parse_and_reject_malformed():
    lines = parse_lines(("0750-660 1234=sip:ata@10.0.0.7:5060",))
    assert lines == {LINE: ScreenedLine(number=LINE, ring_uri="sip:ata@10.0.0.7:5060")}
    with pytest.raises(TelephonyError) as e:
        parse_lines(("07506601234",))
    assert e.value.code == "screening_config"
    with pytest.raises(TelephonyError):
        parse_lines(("07506601234=10.0.0.7",))


def test_elder_keys_map_to_choices():
    assert elder_choice("1", flagged=True, has_family=True) == "connect"
    assert elder_choice("2", flagged=False, has_family=True) == "reject"
    assert elder_choice("3", flagged=True, has_family=True) == "family"
    assert elder_choice("3", flagged=True, has_family=False) is None  # no family on file: not offered
    assert elder_choice("5", flagged=True, has_family=True) is None


def test_announcement_and_warning_words_and_length_cap():
    plain = announcement("我是小区物业，明天停水", flagged=False, has_family=True, dialect="cmn", max_chars=40)
    assert plain == "有电话找您，对方说：我是小区物业，明天停水。按1接通，按2挂断。"
    warn = announcement(SCAM, flagged=True, has_family=True, dialect="cmn", max_chars=10)
    assert warn.startswith("这个电话很像诈骗。对方说：我是公安局的，你的银……。")
    assert "不要告诉对方验证码和银行信息" in warn and "按1仍然接通" in warn and "按3联系家人" in warn
    assert "按3" not in announcement(SCAM, flagged=True, has_family=False, dialect="cmn", max_chars=40)
    yue = announcement("我係物業", flagged=True, has_family=True, dialect="yue", max_chars=40)
    assert "好似诈骗" in yue and "揿3联络屋企人" in yue
    assert "什么也没说" in announcement("", flagged=False, has_family=False, dialect="cmn", max_chars=40)


def test_outbound_platform_calls_go_straight_to_the_elder_phone(settings):
    s = replace(settings, screening=replace(settings.screening, lines=(f"{LINE}={ELDER_URI}",)))
    scr = CallScreener(settings=s, endpoint=FakeEndpoint({}), speak=_speak, store=None, recognise=None)
    assert scr.route_outbound("0750-6601234") == ELDER_URI
    assert scr.route_outbound("13800000001") == "13800000001"
    assert scr.line_for(FakeCall(call_id="c", called="07506601234")).ring_uri == ELDER_URI
    assert scr.line_for(FakeCall(call_id="c", called="assistant")) is None


async def test_scam_caller_is_warned_about_and_elder_calls_family(settings, monkeypatch):
    store = FakeStore(contacts=[_family_contact()])
    elder = FakeCall(call_id="elder", keys="3")
    family = FakeCall(call_id="family")
    ep = FakeEndpoint({ELDER_URI: elder, FAMILY: family})
    scr, bridged = _screener(settings, endpoint=ep, store=store, said=SCAM + "，陈桂英住在蓬江区白沙路8号", monkeypatch=monkeypatch)
    caller = FakeCall(call_id="scam", remote="95566", called=LINE)
    state = await scr.screen(caller, scr.lines[LINE])
    assert caller.heard[0] == "您好，这里是机主的电话助手，请问您是哪位，有什么事？"  # no name of the elder
    assert state.flagged and state.risk >= 0.5
    assert state.announcement.startswith("这个电话很像诈骗") and elder.heard[0] == state.announcement
    assert state.choice == "family" and state.state == "connected_family"
    assert bridged == [("elder", "family")]
    assert caller.state == "ended" and "不方便接听" in caller.heard[-1]
    assert "陈桂英刚接到一个很像诈骗的电话" in family.heard[0]
    [alert] = store.alerts
    assert alert["kind"] == "fraud" and alert["severity"] == "urgent" and alert["detail"]["source"] == "call_screening"
    masked = alert["detail"]["transcript"][0]["text"]
    assert "安全账户" in masked and "陈桂英" not in masked and "白沙路" not in masked


async def test_genuine_caller_is_announced_and_key_1_connects(settings, monkeypatch):
    store = FakeStore(contacts=[_family_contact()])
    elder = FakeCall(call_id="elder", keys="1")
    scr, bridged = _screener(settings, endpoint=FakeEndpoint({ELDER_URI: elder}), store=store, said=GENUINE, monkeypatch=monkeypatch)
    state = await scr.screen(FakeCall(call_id="clinic", remote="0750123", called=LINE), scr.lines[LINE])
    assert not state.flagged and store.alerts == []
    assert state.announcement == f"有电话找您，对方说：{GENUINE}。按1接通，按2挂断。"
    assert state.choice == "connect" and bridged == [("clinic", "elder")]


async def test_key_2_rejects_and_no_key_is_no_choice(settings, monkeypatch):
    for keys, expected in (("2", "rejected"), ("", "no_choice")):
        elder = FakeCall(call_id="elder", keys=keys)
        scr, bridged = _screener(settings, endpoint=FakeEndpoint({ELDER_URI: elder}), store=FakeStore(), said=GENUINE,
                                 monkeypatch=monkeypatch, elder_choice_timeout_s=0.2)
        caller = FakeCall(call_id="c", remote="0750123", called=LINE)
        state = await scr.screen(caller, scr.lines[LINE])
        assert state.state == expected and bridged == []
        assert caller.state == "ended" and elder.state == "ended"
        assert "不方便接听" in caller.heard[-1] and "已经挂断" in elder.heard[-1]
        if not keys:
            assert elder.heard.count(state.announcement) == 2  # said twice before giving up


async def test_family_number_goes_straight_through_without_announcement(settings, monkeypatch):
    store = FakeStore(contacts=[_family_contact()])
    elder = FakeCall(call_id="elder")
    ep = FakeEndpoint({ELDER_URI: elder})
    scr, bridged = _screener(settings, endpoint=ep, store=store, said="unused", monkeypatch=monkeypatch)
    son = FakeCall(call_id="son", remote=FAMILY, called=LINE)
    state = await scr.screen(son, scr.lines[LINE])
    assert not state.screened and state.state == "ended" and bridged == [("son", "elder")]
    assert son.heard == [] and elder.heard == []  # nothing asked, nothing announced
    assert ep.dialled == [(ELDER_URI, FAMILY)]


async def test_elder_not_answering_tells_the_caller(settings, monkeypatch):
    scr, _ = _screener(settings, endpoint=FakeEndpoint({}), store=FakeStore(), said=GENUINE, monkeypatch=monkeypatch)
    caller = FakeCall(call_id="c", remote="0750123", called=LINE)
    state = await scr.screen(caller, scr.lines[LINE])
    assert state.state == "elder_no_answer" and state.attempts[-1]["result"] == "no_answer"
    assert "不方便接听" in caller.heard[-1] and caller.state == "ended"


async def test_caller_hanging_up_during_the_announcement_is_told_to_the_elder(settings, monkeypatch):
    elder = FakeCall(call_id="elder", keys="1", key_delay_s=0.3)  # the elder presses 1 after the caller gave up
    scr, bridged = _screener(settings, endpoint=FakeEndpoint({ELDER_URI: elder}), store=FakeStore(), said=GENUINE,
                             monkeypatch=monkeypatch, elder_choice_timeout_s=2.0)
    caller = FakeCall(call_id="c", remote="0750123", called=LINE)

    async def hang_up_soon():
        while not elder.heard:  # noqa: ASYNC110 (a stand-in phone has no event for "heard")
            await asyncio.sleep(0.001)
        await caller.hangup()

    hanger = asyncio.create_task(hang_up_soon())
    state = await scr.screen(caller, scr.lines[LINE])
    await hanger
    assert state.state == "caller_gone" and bridged == [] and elder.heard[-1] == "对方已经挂断了。"


def _speech_8k() -> bytes:
    from pathlib import Path

    import soundfile as sf

    from assistant.audio.convert import resample_pcm16

    wavs = sorted((Path(__file__).resolve().parents[3] / "shared" / "data" / "mandarin_speech" / "wav").glob("*.wav"))
    if not wavs:
        wavs = sorted(Path("/work/shared/data/mandarin_speech/wav").glob("*.wav"))
    if not wavs:
        pytest.skip("no shared Mandarin speech clips")
    data, rate = sf.read(str(wavs[0]), dtype="int16")
    return resample_pcm16(np.asarray(data).tobytes(), from_hz=rate, to_hz=8000)


def test_answer_collector_ends_after_silence_and_keeps_the_speech():
    speech = _speech_8k()
    c = AnswerCollector(end_silence_s=0.8, max_answer_s=30.0)
    c.feed(bytes(8000 * 2 * 2))  # 2 s of silence first
    assert not c.heard_speech
    for i in range(0, len(speech), 320):
        c.feed(speech[i:i + 320])
    c.feed(bytes(8000 * 2 * 2))
    assert c.heard_speech and c.done.is_set()
    assert 0.5 * len(speech) < len(c.pcm) <= len(speech) + 8000 * 2 * 2


def test_answer_collector_cuts_a_long_answer():
    speech = _speech_8k()
    c = AnswerCollector(end_silence_s=5.0, max_answer_s=1.0)
    for i in range(0, len(speech), 320):
        c.feed(speech[i:i + 320])
    assert c.done.is_set() and len(c.pcm) <= (1.0 + 0.3) * 16000 + 640
