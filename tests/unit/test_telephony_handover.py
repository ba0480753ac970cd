"""Hand-over pieces without peers (issue #16): who is rung first, which dialogue events start a hand-over,
and that nothing changes when no person is configured."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from assistant.phrases import Phrasebook
from telephony.gateway import Gateway
from telephony.handover import FAMILY_ALERT, OperatorPool


def test_longest_idle_operator_first_and_busy_ones_skipped():
    pool = OperatorPool(uris=("sip:op1@x", "sip:op2@x", "sip:op3@x"))
    assert pool.free() == ["sip:op1@x", "sip:op2@x", "sip:op3@x"]  # none used yet: configured order
    pool.take("sip:op1@x")
    assert pool.free() == ["sip:op2@x", "sip:op3@x"]
    pool.release("sip:op1@x")  # just finished a call: idle the shortest
    pool.take("sip:op2@x")
    pool.release("sip:op2@x")
    assert pool.free() == ["sip:op3@x", "sip:op1@x", "sip:op2@x"]


def test_family_alert_words():
    p = Phrasebook()
    text = p.say(FAMILY_ALERT, "cmn", name="王秀兰", what=p.piece("family_what_sos", "cmn"))
    assert text == "您好，这里是平安通。王秀兰刚才按了紧急求助。按1表示您来处理。"
    assert "揿1" in p.say(FAMILY_ALERT, "yue", name="黄妹", what=p.piece("family_what_sos", "yue"))
    # the platform's name is the deployment's
    assert Phrasebook(platform_name="颐康通").say(FAMILY_ALERT, "cmn", name="王秀兰", what="").startswith("您好，这里是颐康通。")


def _gateway(settings, **handover):
    s = replace(settings, handover=replace(settings.handover, **handover))
    return Gateway(settings=s, pipeline_factory=lambda **kw: None, port=0, speak=None)


async def test_dialogue_events_start_a_hand_over(settings):
    gw = _gateway(settings, operator_uris=("sip:op1@127.0.0.1:5999",))
    asked: list[tuple[str, str, int | None]] = []

    async def hand_over(call, reason, *, alert_id=None):
        asked.append((call.call_id, reason, alert_id))

    gw.hand_over = hand_over  # type: ignore[method-assign]
    call = SimpleNamespace(call_id="c1")
    listener = gw._handover_listener(call)
    await listener("asr", SimpleNamespace(events=[{"event": "handover", "reason": "requested"}]))  # not a reply yet
    await listener("reply", SimpleNamespace(events=[{"event": "slower"}]))
    await listener("reply", SimpleNamespace(events=[{"event": "emergency", "alert_id": 7}]))
    await listener("reply", SimpleNamespace(events=[{"event": "handover", "reason": "unconfirmed_emergency"}]))
    assert asked == [("c1", "emergency", 7), ("c1", "unconfirmed_emergency", None)]


async def test_no_person_configured_no_hand_over(settings):
    gw = _gateway(settings)  # default settings: no operator phones, no duty phone
    assert not gw.escalation.enabled
    assert await gw.hand_over("no-such-call", "keypad_0") is None


async def test_repeated_misunderstanding_alert_also_hands_over():
    from telephony.gateway_service import with_handover_alerts

    stored: list[str] = []
    asked: list[tuple[str, str]] = []

    async def base(alert):
        stored.append(alert.kind)

    class FakeGateway:
        async def hand_over(self, call_id, reason, *, alert_id=None):
            asked.append((call_id, reason))

    from dataclasses import dataclass

    @dataclass
    class Services:
        on_alert: object

    services = with_handover_alerts(Services(on_alert=base), FakeGateway())
    await services.on_alert(SimpleNamespace(kind="misunderstanding", call_id="c9"))
    await services.on_alert(SimpleNamespace(kind="unwell", call_id="c9"))
    assert stored == ["misunderstanding", "unwell"]  # every alert is still stored
    assert asked == [("c9", "misunderstanding")]


async def test_two_hand_overs_at_once_ring_different_operators(settings):
    """A phone ringing for one hand-over is reserved: a second SOS at the same moment rings the next one."""
    import asyncio

    from telephony.handover import Escalation, HandOverState

    s = replace(settings, handover=replace(settings.handover, operator_uris=("sip:op1@x", "sip:op2@x"), operator_ring_each_s=0.6,
                                           operator_ring_timeout_s=1.0))
    rung: list[str] = []

    class Endpoint:
        async def dial(self, uri, *, timeout_s, line=None, line_wait_s=0.0):
            from assistant.errors import TelephonyError

            rung.append(uri)
            await asyncio.sleep(timeout_s)
            raise TelephonyError("no answer", code="no_answer")

    esc = Escalation(settings=s, endpoint=Endpoint(), speak=None)
    elder = SimpleNamespace(state="active", call_id="e", wait_ended=lambda: asyncio.sleep(60))
    states = [HandOverState(call_id=f"c{i}", reason="sos") for i in (1, 2)]
    await asyncio.gather(*(esc._ring_operators(elder, st) for st in states))
    assert rung[:2] == ["sip:op1@x", "sip:op2@x"]  # not op1 twice
    assert esc.pool.free()  # every reservation released after ringing out


def _queue_escalation(settings, *, uris=("sip:op1@x",), timeout_s=5.0, reminder_s=15.0, spoken=None):
    import asyncio

    from telephony.handover import Escalation

    s = replace(settings, handover=replace(settings.handover, operator_uris=uris, operator_ring_each_s=timeout_s,
                                           operator_ring_timeout_s=timeout_s, hold_reminder_s=reminder_s))
    rung: list[str] = []

    class Endpoint:
        async def dial(self, uri, *, timeout_s, line=None, line_wait_s=0.0):
            rung.append(uri)
            await asyncio.sleep(0)
            return SimpleNamespace(call_id=f"op-{len(rung)}", state="active", remote_uri=uri)

    async def speak(text, dialect):
        if spoken is not None:
            spoken.append(text)
        return b"\0\0" * 80

    esc = Escalation(settings=s, endpoint=Endpoint(), speak=speak)
    return esc, rung


def _elder(name: str = "e"):
    import asyncio

    ended = asyncio.Event()
    return SimpleNamespace(state="active", call_id=name, wait_ended=ended.wait, play=lambda pcm: None, ended=ended)


async def test_every_operator_busy_the_elders_queue_in_order(settings):
    """All operators busy: a second SOS went straight to family; now it waits for the next free phone, in order."""
    import asyncio

    from telephony.handover import HandOverState

    esc, rung = _queue_escalation(settings)
    esc.pool.take("sip:op1@x")  # the only operator is on another elder's call
    b, c = HandOverState(call_id="b", reason="sos"), HandOverState(call_id="c", reason="human")
    tb = asyncio.create_task(esc._ring_operators(_elder("b"), b))
    await asyncio.sleep(0.05)
    tc = asyncio.create_task(esc._ring_operators(_elder("c"), c))
    await asyncio.sleep(0.05)
    assert (b.queue_position, c.queue_position) == (1, 2) and rung == []
    assert (esc.pool.position(b), esc.pool.position(c)) == (1, 2)
    esc.pool.release("sip:op1@x")  # that call ended: the first in the queue gets the phone
    uri, _call = await asyncio.wait_for(tb, 2)
    assert uri == "sip:op1@x" and rung == ["sip:op1@x"] and b.queue_position is None
    await asyncio.sleep(0.05)
    assert esc.pool.position(c) == 1 and not tc.done()  # op1 is now busy with b
    esc.pool.release("sip:op1@x")
    uri, _call = await asyncio.wait_for(tc, 2)
    assert uri == "sip:op1@x" and rung == ["sip:op1@x", "sip:op1@x"] and esc.pool.queued == 0


async def test_the_queue_is_bounded_by_the_ring_timeout_and_the_elder_hanging_up(settings):
    import asyncio

    from telephony.handover import HandOverState

    esc, rung = _queue_escalation(settings, timeout_s=0.3)
    esc.pool.take("sip:op1@x")
    late = HandOverState(call_id="late", reason="sos")
    t0 = asyncio.get_running_loop().time()
    assert await esc._ring_operators(_elder("late"), late) is None  # then family, as before
    assert 0.25 < asyncio.get_running_loop().time() - t0 < 1.5
    assert late.attempts == [{"who": "operator", "uri": None, "result": "all_busy"}] and esc.pool.queued == 0
    esc2, _ = _queue_escalation(settings, timeout_s=30.0)
    esc2.pool.take("sip:op1@x")
    gone = _elder("gone")
    task = asyncio.create_task(esc2._ring_operators(gone, HandOverState(call_id="gone", reason="sos")))
    await asyncio.sleep(0.05)
    gone.state = "ended"
    gone.ended.set()  # the elder hung up while queued: leaves the queue at once
    assert await asyncio.wait_for(task, 2) is None and esc2.pool.queued == 0 and rung == []


async def test_the_elder_hears_their_place_in_the_queue_then_connecting(settings):
    import asyncio

    from telephony.handover import HandOverState

    spoken: list[str] = []
    esc, _rung = _queue_escalation(settings, reminder_s=0.1, spoken=spoken)
    esc.pool.take("sip:op1@x")
    ahead, me = HandOverState(call_id="a", reason="sos"), HandOverState(call_id="m", reason="sos")
    esc.pool.join(ahead)
    esc.pool.join(me)
    elder = _elder("m")
    reminders = asyncio.create_task(esc._remind(elder, "cmn", me))
    await asyncio.sleep(0.25)
    esc.pool.leave(ahead)  # the one ahead was served
    await asyncio.sleep(0.2)
    esc.pool.leave(me)  # now it rings for me
    await asyncio.sleep(0.2)
    reminders.cancel()
    assert spoken[0] == "值班人员正在接听其他电话，您现在排在第2位，请不要挂机。"
    assert "值班人员正在接听其他电话，您现在排在第1位，请不要挂机。" in spoken
    assert spoken[-1] == "正在为您接通，请不要挂机。"
    assert len(spoken) <= 8  # one every hold_reminder_s (0.1 s here) over ~0.65 s


async def test_a_fraud_flag_hands_the_call_over_and_family_are_told_what_happened(settings):
    gw = _gateway(settings, operator_uris=("sip:op1@127.0.0.1:5999",))
    asked: list[tuple[str, str]] = []

    async def hand_over(call, reason, *, alert_id=None):
        asked.append((call.call_id, reason))

    gw.hand_over = hand_over  # type: ignore[method-assign]
    await gw._fraud_listener(SimpleNamespace(call_id="c9"))(SimpleNamespace(call_id="c9"))
    assert asked == [("c9", "fraud")]
    from telephony.handover import REASON_KINDS, URGENT_KINDS

    assert REASON_KINDS["fraud"] == "fraud" and "fraud" in URGENT_KINDS  # the guard's own alert, not a second one
    p = Phrasebook()
    assert "诈骗" in p.say(FAMILY_ALERT, "cmn", name="王秀兰", what=p.piece("family_what_fraud", "cmn"))


async def test_the_hold_message_waits_for_the_bots_reply_to_start_then_play_out(settings):
    """The SOS reassurance / fraud warning is decided before its audio exists (TTS): the hand-over muted the
    bot 0.3 s after the request, before that audio started, so the elder never heard it."""
    import asyncio
    import time

    from telephony.handover import Escalation

    s = replace(settings, handover=replace(settings.handover, operator_uris=("sip:op1@x",), reply_drain_max_s=6.0))
    esc = Escalation(settings=s, endpoint=None, speak=None)
    meter = SimpleNamespace(last_write=0.0)
    muting = SimpleNamespace(meter=meter)
    call = SimpleNamespace(state="active", pending_ms=0.0)
    since = time.monotonic()

    async def bot_speaks() -> None:
        await asyncio.sleep(0.9)  # TTS: the reply's first audio after 0.9 s
        for _ in range(10):  # 1 s of audio written
            meter.last_write = time.monotonic()
            await asyncio.sleep(0.1)

    speaking = asyncio.create_task(bot_speaks())
    await esc._drain(call, muting, since=since)
    waited = time.monotonic() - since
    await speaking
    assert waited > 2.5  # the reply started and played (until 0.8 s of quiet)
    t0 = time.monotonic()
    await esc._drain(call, muting, since=t0)  # no reply on its way (keypad 0): not longer than the start wait
    assert 1.5 < time.monotonic() - t0 < 3.0


async def test_ring_all_after_the_queue_rings_only_for_the_time_left(settings):
    import asyncio

    from telephony.handover import HandOverState

    esc, _rung = _queue_escalation(settings, timeout_s=1.0)
    esc.cfg = replace(esc.cfg, operator_strategy="ring_all")
    given: list[float] = []
    dial = esc.endpoint.dial

    async def timed_dial(uri, *, timeout_s, **line):
        given.append(timeout_s)
        return await dial(uri, timeout_s=timeout_s, **line)

    esc.endpoint.dial = timed_dial
    esc.pool.take("sip:op1@x")
    task = asyncio.create_task(esc._ring_operators(_elder("q"), HandOverState(call_id="q", reason="sos")))
    await asyncio.sleep(0.6)
    esc.pool.release("sip:op1@x")
    assert (await asyncio.wait_for(task, 2))[0] == "sip:op1@x"
    assert given and given[0] <= 0.5  # operator_ring_timeout_s (1 s) is the whole wait, queue included


async def test_family_phones_ring_while_the_elders_prompt_is_synthesised(settings):
    """The bench (real voices, loaded machine) showed family calls tens of seconds late: the family was
    dialled only after "we are phoning your family" had been synthesised for the elder."""
    import asyncio
    import time

    from assistant.errors import TelephonyError
    from telephony.handover import Escalation, HandOverState

    s = replace(settings, handover=replace(settings.handover, operator_uris=(), duty_uri="", call_family=True))
    events: list[tuple[str, float]] = []
    t0 = time.monotonic()

    class Endpoint:
        async def dial(self, uri, *, timeout_s, line=None, line_wait_s=0.0):
            events.append((f"dial {uri}", time.monotonic() - t0))
            raise TelephonyError("no answer", code="no_answer")

    async def slow_speak(text, dialect):
        await asyncio.sleep(1.0)  # a voice on a busy machine
        events.append((f"said {text[:6]}", time.monotonic() - t0))
        return b"\0\0" * 80

    class Store:
        async def raise_alert(self, **kw):
            return SimpleNamespace(alert_id=1)

        async def contacts_for(self, elder_id):
            return [SimpleNamespace(priority=1, contact_id=1, phone="13900001111", name="王小明")]

        async def get_elder(self, elder_id):
            return SimpleNamespace(name="王秀兰")

    esc = Escalation(settings=s, endpoint=Endpoint(), speak=slow_speak, store=Store())
    ended = asyncio.Event()
    elder = SimpleNamespace(state="active", call_id="e1", on_audio=None, on_dtmf=None, play=lambda pcm: None,
                            wait_ended=ended.wait, wait_played=lambda timeout_s: asyncio.sleep(0), hangup=lambda: asyncio.sleep(0))
    session = SimpleNamespace(dialect="cmn", elder_id=1, call_id="e1")
    await esc.run(call=elder, session=session, reason="sos", state=HandOverState(call_id="e1", reason="sos"))
    dial_at = next(t for what, t in events if what.startswith("dial"))
    said_at = next(t for what, t in events if what.startswith("said"))
    assert dial_at < 0.5 < said_at, events  # dialled at once, not after the 1 s synthesis
