"""Who may take one of the gateway's lines (``telephony.lines``, session 10): outbound calls never the lines
kept for elders calling in, urgent hand-over legs may, a waiting call-back goes before the call engine,
a busy elder's call becomes a missed-call alert. No SIP here (tests/e2e/test_line_reserve.py has the peers)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from types import SimpleNamespace

import pytest

from assistant.errors import TelephonyError
from assistant.platform.db import create_engine_for
from assistant.platform.migrate import upgrade_heads_async
from assistant.platform.store import PlatformStore
from assistant.services import SERVICES_KEY
from telephony.engine import CallEngine
from telephony.gateway import Gateway
from telephony.gateway_service import identity_call_back
from telephony.handover import Escalation, HandOverState, OperatorCallbacks, line_use
from telephony.lines import LineGate, LineTicket, LineUse
from telephony.metrics import metrics
from telephony.scheduler import RETRYABLE


class Calls:
    """Stand-in for the gateway's calls in progress."""

    def __init__(self, n: int = 0) -> None:
        self.n = n

    def __call__(self) -> int:
        return self.n


def gate(lines: int = 3, reserve: int = 1, calls: int = 0) -> tuple[LineGate, Calls]:
    c = Calls(calls)
    return LineGate(lines=lines, inbound_reserve=reserve, calls=c), c


def test_routine_calls_never_take_the_reserve_inbound_and_urgent_calls_may():
    g, calls = gate(lines=3, reserve=1)
    a, b = g.try_take(LineUse.ROUTINE), g.try_take(LineUse.ROUTINE)
    assert a is not None and b is not None and g.busy == 2
    assert g.try_take(LineUse.ROUTINE) is None and g.free(LineUse.ROUTINE) == 0  # only the reserved line is left
    assert g.admits_inbound()  # an elder calling in gets it
    assert g.free(LineUse.URGENT) == 1 and g.try_take(LineUse.URGENT) is not None  # an SOS leg may take it too
    assert not g.admits_inbound()  # now every line is busy: the next INVITE gets 503
    a.spend()  # the call is registered: it counts itself, the ticket no more
    calls.n = 1
    assert g.busy == 3
    b.release()
    b.release()  # idempotent
    assert g.busy == 2 and g.admits_inbound() and g.free(LineUse.ROUTINE) == 0
    calls.n = 0  # the spent ticket's call ended
    assert g.free(LineUse.ROUTINE) == 1


def test_a_reserve_that_leaves_outbound_calls_nothing_is_refused():
    with pytest.raises(ValueError):
        LineGate(lines=2, inbound_reserve=2, calls=Calls())
    with pytest.raises(ValueError):
        LineGate(lines=0, inbound_reserve=0, calls=Calls())


async def test_a_waiting_call_gets_the_next_free_line_before_anyone_who_does_not_wait():
    g, calls = gate(lines=3, reserve=1, calls=2)  # 2 engine calls: only the reserve is free
    waiting = asyncio.create_task(g.take(LineUse.ROUTINE, wait_s=None))  # an operator call-back
    await asyncio.sleep(0.01)
    assert not waiting.done() and g.waiting == 1
    calls.n = 1  # an engine call ended ...
    assert g.try_take(LineUse.ROUTINE) is None and g.free(LineUse.ROUTINE) == 0  # ... the engine may not refill it
    g.changed()
    ticket = await asyncio.wait_for(waiting, 1.0)
    assert ticket is not None and ticket.use is LineUse.ROUTINE and g.waiting == 0 and g.busy == 2


async def test_urgent_waiters_go_first_and_a_timed_out_or_cancelled_wait_leaves_the_queue():
    g, calls = gate(lines=2, reserve=1, calls=2)
    routine = asyncio.create_task(g.take(LineUse.ROUTINE, wait_s=None))
    await asyncio.sleep(0.01)
    urgent = asyncio.create_task(g.take(LineUse.URGENT, wait_s=5.0))
    await asyncio.sleep(0.01)
    calls.n = 1
    g.changed()
    assert (await asyncio.wait_for(urgent, 1.0)) is not None  # came later, served first (the reserved line)
    await asyncio.sleep(0.01)
    assert not routine.done()  # 1 call + 1 urgent ticket: nothing outside the reserve
    assert await g.take(LineUse.ROUTINE, wait_s=0.05) is None and g.waiting == 1  # timed out, gone from the queue
    routine.cancel()
    with pytest.raises(asyncio.CancelledError):
        await routine
    assert g.waiting == 0


# --- the call engine --------------------------------------------------------------------------------------
class ClaimingJobs:
    """``CallJobStore.claim`` for as many due jobs as asked (up to ``due``); records each limit."""

    def __init__(self, due: int) -> None:
        self.due = due
        self.limits: list[int] = []

    async def claim(self, node_id, *, limit, lease_s):
        self.limits.append(limit)
        n = min(limit, self.due)
        self.due -= n
        return [SimpleNamespace(id=i, kind="care_call") for i in range(n)]


def engine_on(g: LineGate, jobs, **kw) -> CallEngine:
    runner = dataclasses.make_dataclass("R", [("retry", object)])(None)
    return CallEngine(jobs=jobs, runner=runner, schedules=None, clock=None, node_id="x", tick_s=5, lease_s=60,
                      max_calls=8, lines=g.lines, inbound_reserve=g.inbound_reserve, line_gate=g, **kw)


async def test_the_engine_holds_a_line_from_its_claim_and_leaves_the_reserve_and_waiting_call_backs_alone():
    g, calls = gate(lines=3, reserve=1)
    jobs = ClaimingJobs(due=5)
    engine = engine_on(g, jobs)

    ringing: list[asyncio.Task] = []

    async def work(job):  # the job's call rings on: it holds its line
        ringing.append(asyncio.current_task())
        await asyncio.Event().wait()

    engine._run_job = work
    async with asyncio.TaskGroup() as tg:
        await engine._claim(tg)
        await asyncio.sleep(0)
        assert jobs.limits == [2] and len(engine._tickets) == 2 and g.busy == 2  # 3 lines less the reserve
        assert g.try_take(LineUse.ROUTINE) is None  # an operator call-back cannot take a line claimed, not yet dialled
        assert g.admits_inbound()  # the elder calling in can
        for t in ringing:
            t.cancel()
    # a call-back waits for a line: the engine claims none, even when one comes free
    engine._tickets.clear(), engine._held.clear()
    for t in list(g._held):
        t.release()
    calls.n = 2
    waiting = asyncio.create_task(g.take(LineUse.ROUTINE, wait_s=None))
    await asyncio.sleep(0.01)
    calls.n = 1
    assert engine.free_lines() == 0
    g.changed()
    assert await asyncio.wait_for(waiting, 1.0) is not None


def test_the_engine_counts_the_gateways_other_calls_against_its_measured_capacity():
    g, calls = gate(lines=12, reserve=2)
    engine = engine_on(g, ClaimingJobs(due=0), measured_calls=8)
    assert engine.free_lines() == 8
    calls.n = 5  # inbound calls share the CPU
    assert engine.free_lines() == 3
    calls.n = 11
    assert engine.free_lines() == 0


# --- hand-overs and call-backs ------------------------------------------------------------------------------
def test_only_an_urgent_hand_overs_legs_may_take_the_reserve():
    assert [line_use(r) for r in ("emergency", "sos", "unconfirmed_emergency", "fraud")] == [LineUse.URGENT] * 4
    assert [line_use(r) for r in ("keypad_0", "requested", "misunderstanding", "operator_callback")] == [LineUse.ROUTINE] * 4
    assert "no_free_line" in RETRYABLE  # a full gateway is like a busy callee: tried again, not a fault


async def test_hand_over_legs_ask_for_their_kind_of_line(settings):
    s = dataclasses.replace(settings, handover=dataclasses.replace(settings.handover, operator_uris=("sip:op1@x",),
                                                                   operator_ring_each_s=1.0, operator_ring_timeout_s=2.0))
    asked: list[tuple[str, float]] = []

    class Endpoint:
        async def dial(self, uri, *, timeout_s, line=LineUse.ROUTINE, line_wait_s=0.0):
            asked.append((line, line_wait_s))
            raise TelephonyError("no free line", code="no_free_line")

    esc = Escalation(settings=s, endpoint=Endpoint(), speak=None)
    elder = SimpleNamespace(state="active", call_id="e", wait_ended=lambda: asyncio.sleep(60))
    for reason in ("sos", "keypad_0"):
        await esc._ring_operators(elder, HandOverState(call_id="c", reason=reason))
    assert [a for a, _ in asked] == [LineUse.URGENT, LineUse.ROUTINE]
    assert all(0 < w <= 1.0 for _, w in asked)  # each waits for a line within its ring time, no longer


class CallbackGateway:
    """What ``OperatorCallbacks`` uses of the gateway: its line gate, its escalation, ``dial``."""

    def __init__(self, g: LineGate, settings) -> None:
        self.lines = g
        self.noted: list[str] = []
        self.dialled: list[object] = []
        gw = self

        class Esc:
            cfg = settings.handover

            async def _note(self, state):
                gw.noted.append(state.state)

        self.escalation = Esc()

    async def dial(self, number, *, timeout_s=None, line=LineUse.ROUTINE):
        self.dialled.append(line)
        line.release()
        raise TelephonyError("no answer", code="no_answer")


async def test_a_routine_call_back_waits_for_a_line_visibly_and_is_placed_when_one_frees(settings):
    g, calls = gate(lines=3, reserve=1, calls=2)  # two care calls: only the reserve is free
    gw = CallbackGateway(g, settings)
    callbacks = OperatorCallbacks(gateway=gw)
    placing = asyncio.create_task(callbacks.place(SimpleNamespace(alert_id=7, elder_id=1, number="0750", code=None,
                                                                  dialect=None, requested_by="op")))
    await asyncio.sleep(0.05)
    assert gw.noted == ["waiting_for_line"] and callbacks.results[0].state == "waiting_for_line"
    assert gw.dialled == [] and not placing.done()  # not dropped, not dialled on the reserved line
    calls.n = 1  # a care call ended
    g.changed()
    state = await asyncio.wait_for(placing, 1.0)
    assert len(gw.dialled) == 1 and gw.dialled[0].use is LineUse.ROUTINE  # dialled on the ticket it waited for
    assert state.state == "elder_no_answer" and gw.noted[-1] == "elder_no_answer"


# --- an elder who finds every line busy ---------------------------------------------------------------------
async def test_a_known_elder_refused_as_busy_raises_one_missed_call_alert(settings):
    await upgrade_heads_async(settings.store.database_url)
    engine = create_engine_for(settings)
    store = PlatformStore(engine=engine, clock=lambda: dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC))
    try:
        elder = await store.create_elder(name="陈桂英", district="蓬江", phones=["0750-333 1234"])
        gw = Gateway(settings=settings, pipeline_factory=lambda **_: None, directory=store,
                     on_alert=store.raise_call_alert, port=0)
        assert gw.endpoint.on_refused == gw._missed_call  # the endpoint tells the gateway of every 503
        await gw._missed_call("07503331234", "sip-1@x")
        await gw._missed_call("07503331234", "sip-2@x")  # redialled while still busy: the same open alert
        await gw._missed_call("13911112222", "sip-3@x")  # not an elder's number: counted, no alert
        alerts = await store.list_alerts(elder_id=elder.elder_id)
        every = await store.list_alerts()
    finally:
        await engine.dispose()
    assert [(a.kind, a.severity) for a in alerts] == [("missed_call", "urgent")] and len(every) == 1
    assert alerts[0].detail["reason"] == "all_lines_busy" and "请尽快回电" in alerts[0].detail["summary"]


async def test_the_identity_call_back_waits_for_a_routine_line_then_asks_an_operator(settings):
    """The caller pressed 9: the call-back waits (``callback_line_wait_s``) for a line outside the reserve,
    dials on that ticket; with none in time it dials nothing that could take the reserve."""
    s = dataclasses.replace(settings, fraud=dataclasses.replace(settings.fraud, callback_delay_s=0.0),
                            telephony=dataclasses.replace(settings.telephony, callback_line_wait_s=0.3))
    elder = SimpleNamespace(elder_id=7, phones=[SimpleNamespace(number="0750-333 1234", is_primary=True)], contacts=[],
                            dialect="cmn")

    class Store:
        async def get_elder(self, elder_id):
            return elder

    lines_given: list[object] = []

    class Runner:
        async def run_identity_callback(self, schedule, *, line):
            lines_given.append(line)
            return SimpleNamespace(status="completed")

    g, calls = gate(lines=3, reserve=1, calls=2)
    call_back = identity_call_back(runner=Runner(), store=Store(), settings=s, line_gate=g)
    session = SimpleNamespace(elder_id=7, caller_number="07503331234")
    await call_back(session)  # no line outside the reserve within 0.3 s
    assert lines_given == [LineUse.ROUTINE] and g.busy == 2  # the dial takes a routine line or fails no_free_line
    placing = asyncio.create_task(call_back(session))
    await asyncio.sleep(0.1)
    assert len(lines_given) == 1 and g.waiting == 1
    calls.n = 1
    g.changed()
    await asyncio.wait_for(placing, 1.0)
    assert isinstance(lines_given[1], LineTicket) and lines_given[1].use is LineUse.ROUTINE
    assert lines_given[1].state == "released" and g.busy == 1  # not spent by this stand-in: given back


async def test_metrics_show_the_gateways_lines_and_the_waiting_calls(settings):
    await upgrade_heads_async(settings.store.database_url)
    engine = create_engine_for(settings)
    g, calls = gate(lines=3, reserve=1, calls=2)
    g._waiters.append(SimpleNamespace(use=LineUse.ROUTINE))  # a call-back waiting
    g.refused_inbound = 4
    try:
        services = SimpleNamespace(engine=engine, settings=settings, lines=None)
        without = (await metrics(SimpleNamespace(app={SERVICES_KEY: services}))).text
        services.lines = g  # the phone gateway runs in this process
        text = (await metrics(SimpleNamespace(app={SERVICES_KEY: services}))).text
    finally:
        await engine.dispose()
    assert "assistant_call_jobs_due 0" in without.splitlines() and "assistant_gateway" not in without
    for line in ("assistant_gateway_lines 3", "assistant_gateway_lines_reserved 1", "assistant_gateway_lines_busy 2",
                 "assistant_gateway_lines_waiting 1", "assistant_gateway_refused_busy_total 4",
                 "# TYPE assistant_gateway_refused_busy_total counter"):
        assert line in text.splitlines(), text
