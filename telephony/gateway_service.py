"""The phone gateway inside ``assistant serve``: wires the platform store, the fraud-guard ledger, the
alert store and the real call pipeline into ``Gateway`` and the call engine (``telephony.engine``: care
calls planned as ``call_jobs`` rows in the platform database, shared by every node).

``start_gateway(runtime)`` is what ``assistant serve`` calls (``runtime``: the process's ``Runtime`` with its
store, ledger and pipeline services); the returned service has ``stop()``. Built in order: the gateway, then
the care-call runner on it, then the gateway's pipeline factory that reports spoken answers to the runner,
then the call engine that runs the runner.
Every care call is written to the fraud-guard ledger before it is dialled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial

from assistant.errors import StoreError, TelephonyError
from assistant.platform.models import normalize_phone
from telephony.broadcasts import Broadcast, plan_warning, target_elders
from telephony.call_jobs import CallJobStore
from telephony.engine import CallEngine
from telephony.followups import OrderFollowups
from telephony.gateway import Gateway, _maybe_await, default_pipeline_factory
from telephony.handover import OperatorCallbacks
from telephony.lines import LineGate, LineUse
from telephony.medication import MedicationReminders
from telephony.scheduler import (
    INTENT_OUTCOMES,
    CareCallResult,
    CareCallRunner,
    CareSchedule,
    FamilyContact,
    TimeWindow,
)

logger = logging.getLogger(__name__)

# our alert kinds → the platform's (contracts.md: sos | unwell | human | nurse_callback | fraud | no_answer)


# pipeline alerts that also put a person on the line (request_human, emergencies and dialogue outages
# arrive as the dialogue's handover / emergency events, which the gateway sees itself)
HANDOVER_ALERT_KINDS = frozenset({"misunderstanding"})


def with_handover_alerts(services, gateway: Gateway):
    """``services`` whose alert sink also starts a hand-over for repeated misunderstanding (issue #16)."""
    base = services.on_alert

    async def on_alert(alert) -> None:
        try:
            if base is not None:
                await base(alert)
        finally:
            if alert.kind in HANDOVER_ALERT_KINDS and alert.call_id:
                await gateway.hand_over(alert.call_id, alert.kind)

    return replace(services, on_alert=on_alert)


def ledger_recorder(ledger):
    """``LedgerIntent`` → ``CallLedger.record_outbound_call`` (written before the dial)."""

    async def record(intent):
        # the phone the callee will call back from: a sip: URI's user part, not the URI's digits
        return await ledger.record_outbound_call(elder_id=intent.elder_id, number=_phone_of(intent.number),
                                                 purpose=intent.purpose, call_ref=intent.call_ref)

    return record


def ledger_marker(ledger):
    """(entry id, call id) → ``CallLedger.mark(..., status="answered")`` after an answered care call.
    ``answered`` (not a closed status) keeps the entry valid for the elder's call-back to the official
    number inside the code's window."""

    async def mark(entry_id: int, call_id: str) -> None:
        await ledger.mark(entry_id, status="answered", call_id=call_id)

    return mark


def schedule_from_store(info, elder, *, quiet_hours: str = "21:00-08:00") -> CareSchedule:
    """``PlatformStore`` schedule + elder rows → our ``CareSchedule`` (ISO weekdays 1 = Monday → 0)."""
    extra = ()
    if info.quiet_start is not None and info.quiet_end is not None:
        extra = (TimeWindow(start=info.quiet_start, end=info.quiet_end),)
    return replace(
        schedule_for_elder(elder, elder_id=info.elder_id, quiet_hours=quiet_hours),
        days=frozenset(d - 1 for d in info.days),
        windows=(TimeWindow(start=info.window_start, end=info.window_end),),
        extra_quiet=extra,
        timezone=info.timezone,
    )


def schedule_for_elder(elder, *, elder_id: int | None = None, number: str | None = None, quiet_hours: str = "21:00-08:00") -> CareSchedule:
    """An elder row (``PlatformStore.get_elder``) → a ``CareSchedule`` for a call now: the primary number
    (or ``number``, e.g. a sip: URI), the dialect, the family contacts in priority order, the quiet hours."""
    primary = next((p.number for p in elder.phones if p.is_primary), elder.phones[0].number if elder.phones else "")
    family = tuple(FamilyContact(name=c.name, number=c.phone) for c in sorted(elder.contacts, key=lambda c: c.priority) if c.phone)
    return CareSchedule(
        elder_id=elder_id if elder_id is not None else elder.elder_id,
        number=number or primary,
        quiet_hours=TimeWindow.parse(quiet_hours) if quiet_hours else None,
        family=family,
        dialect=elder.dialect,
    )


def care_call_runner(*, gateway, store, ledger, on_alert=None, on_entry=None, **kwargs) -> CareCallRunner:
    """The one way a care call is wired, for the scheduler and for ``assistant phone call``: every dial
    written to the fraud-guard ledger first, the opening spoken with the full identity proof (the elder's
    safe phrase from ``store.safe_phrase`` + the entry's one-time code + the call-back offer), answered
    entries marked ``answered``. ``on_entry(intent, entry)`` sees each entry once written."""
    record = ledger_recorder(ledger)
    if on_entry is not None:
        recorder = record

        async def record(intent):
            entry = await recorder(intent)
            await _maybe_await(on_entry(intent, entry))
            return entry

    return CareCallRunner(
        gateway=gateway,
        ledger_record=record,
        on_alert=on_alert,
        safe_phrase_of=store.safe_phrase,  # the opening proves the call with the elder's own safe phrase
        ledger_mark=ledger_marker(ledger),
        **kwargs,
    )


async def place_care_call(*, gateway, store, ledger, settings, number: str | None = None, elder_id: int | None = None,
                          on_alert=None, on_entry=None, **kwargs) -> CareCallResult:
    """One care call now, dialled by hand (``assistant phone call``), with the scheduler's proof.

    The elder is ``elder_id`` or the one whose phone is ``number`` (a sip: URI's user part counts); the
    call goes to ``number`` if given, else to the elder's primary phone. No elder → no call (a care call's
    proof needs the elder's ledger entry and safe phrase)."""
    elder = None
    if elder_id is not None:
        try:
            elder = await store.get_elder(elder_id)
        except StoreError as exc:
            if exc.code != "not_found":
                raise
    elif number:
        elder = await store.elder_by_phone(_phone_of(number))
    if elder is None:
        which = f"elder {elder_id}" if elder_id is not None else f"the number {number!r}"
        raise TelephonyError(f"no elder on file for {which}: a care call needs the elder (--elder ID)", code="unknown_elder")
    runner = care_call_runner(gateway=gateway, store=store, ledger=ledger, on_alert=on_alert, on_entry=on_entry, **kwargs)
    schedule = schedule_for_elder(elder, number=number, quiet_hours=settings.telephony.quiet_hours)
    return await runner.run_care_call(schedule)


def _phone_of(number: str) -> str:
    """``sip:07506603003@host:port`` → ``07506603003``; a plain number is returned as it is."""
    if number.startswith(("sip:", "sips:")):
        return number.split(":", 1)[1].split("@", 1)[0]
    return number


def with_checkin_outcomes(base, runner: CareCallRunner):
    """Wrap a pipeline factory so each turn's intent the dialogue acted on becomes the care call's outcome (spoken
    answers)."""

    def factory(*, transport, session):
        built = base(transport=transport, session=session)
        tracker = getattr(built, "tracker", None)
        if tracker is not None:

            async def listener(stage: str, record) -> None:
                # only what the dialogue acted on: an "unwell" read back and not yet confirmed is no answer
                outcome = INTENT_OUTCOMES.get(getattr(record, "acted_intent", None) or "")
                if outcome:
                    runner.record_outcome(session.call_id, outcome)

            tracker.listeners.append(listener)
        return built

    return factory


def identity_call_back(*, runner: CareCallRunner, store, settings, line_gate: LineGate | None = None):
    """``Gateway.call_back``: the caller on an inbound call pressed 9 → after ``fraud.callback_delay_s``
    (their line is free again) one outbound call to the number on file they rang from — caller ID picked
    the elder, but only the real subscriber of that number answers our call — with the full proof.

    A routine call (``telephony.lines``): with ``line_gate`` (the gateway's), it waits up to
    ``telephony.callback_line_wait_s`` for a line that is not kept for inbound calls; none by then → the
    dial fails ``no_free_line`` and an operator is asked to call (the "no answer" alert)."""

    async def call_back(session) -> None:
        elder = await store.get_elder(session.elder_id)
        caller = normalize_phone(_phone_of(session.caller_number or ""))
        number = next((p.number for p in elder.phones if normalize_phone(p.number) == caller), None)
        if number is None:
            raise TelephonyError("the caller's number is not on file: no call-back", code="unknown_elder")
        await asyncio.sleep(settings.fraud.callback_delay_s)
        schedule = schedule_for_elder(elder, number=number, quiet_hours=settings.telephony.quiet_hours)
        ticket = None
        if line_gate is not None:
            ticket = await line_gate.take(LineUse.ROUTINE, wait_s=settings.telephony.callback_line_wait_s)
            if ticket is None:
                logger.warning("identity call-back to elder %s: no free line within %.0f s", session.elder_id,
                               settings.telephony.callback_line_wait_s)
        try:
            result = await runner.run_identity_callback(schedule, line=ticket or LineUse.ROUTINE)
        finally:
            if ticket is not None:  # not dialled (the ledger write failed): the line goes back
                ticket.release()
        logger.info("identity call-back to elder %s: %s", session.elder_id, result.status)

    return call_back


async def send_warning(*, store, jobs: CallJobStore, broadcast: Broadcast, districts: Sequence[str] = (),
                       quiet_hours: str, now: datetime) -> dict[str, int]:
    """Plan ``broadcast`` for the active elders with a phone of ``districts`` (all when empty): their care
    schedule's own quiet times and time zone when they have one (``assistant warn send``, ``POST
    /api/warnings``)."""
    cares = {i.elder_id: i for i in await store.list_schedules()}
    elders = await store.get_elders(await target_elders(jobs, districts))  # one query per batch, not per elder
    schedules = []
    for elder_id, elder in elders.items():
        if elder.phones:
            info = cares.get(elder_id)
            schedules.append(schedule_from_store(info, elder, quiet_hours=quiet_hours) if info
                             else schedule_for_elder(elder, quiet_hours=quiet_hours))
    return await plan_warning(jobs, broadcast, schedules, now=now)


async def store_schedules(store, *, quiet_hours: str) -> list[CareSchedule]:
    """The care schedules of the active elders with a phone (the engine's planning pass in ``serve``): the
    schedules and their elders read in batches (``PlatformStore.get_elders``), not one elder at a time."""
    infos = await store.list_schedules()
    elders = await store.get_elders(i.elder_id for i in infos)
    return [schedule_from_store(info, elder, quiet_hours=quiet_hours) for info in infos
            if (elder := elders.get(info.elder_id)) is not None and elder.active and elder.phones]


def call_engine(*, settings, store, runner: CareCallRunner, schedules, node_id: str | None = None,
                line_gate: LineGate | None = None) -> CallEngine:
    """The call engine on the platform store's database (``call_jobs``); ``line_gate``: the gateway's
    (``telephony.lines``: the engine's calls take routine lines, never the inbound reserve)."""
    jobs = CallJobStore.for_engine(store.engine, now=runner.clock.now)
    return CallEngine.from_settings(settings=settings, jobs=jobs, runner=runner, schedules=schedules, node_id=node_id,
                                    sources=[OrderFollowups.from_settings(settings=settings, jobs=jobs),
                                             MedicationReminders.from_settings(settings=settings, jobs=jobs)],
                                    reopen_order=store.reopen_order, line_gate=line_gate)


@dataclass(kw_only=True)
class GatewayService:
    gateway: Gateway
    engine: CallEngine
    _stop: asyncio.Event
    _task: asyncio.Task | None
    callbacks: OperatorCallbacks | None = None  # the console's 安排回电 dialler (operators configured)
    _callbacks_task: asyncio.Task | None = None

    async def stop(self) -> None:
        self._stop.set()
        for task in (self._task, self._callbacks_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.gateway.stop()


async def start_gateway(runtime, *, pipeline_factory=None, host: str | None = None, port: int | None = None) -> GatewayService:
    """The gateway, the call engine and the console's call-back dialler on ``runtime``'s store, ledger
    and pipeline services (``pipeline_factory``: a test's stand-in for the real call pipeline)."""
    settings, store, ledger = runtime.settings, runtime.store, runtime.ledger
    sink = store.raise_call_alert
    gateway = Gateway(settings=settings, pipeline_factory=pipeline_factory, directory=store, on_alert=sink, host=host, port=port)
    if pipeline_factory is None:  # a repeated misunderstanding hands the call over on this gateway
        gateway.pipeline_factory = default_pipeline_factory(with_handover_alerts(runtime.services, gateway))
    runner = care_call_runner(gateway=gateway, store=store, ledger=ledger, on_alert=sink)
    gateway.pipeline_factory = with_checkin_outcomes(gateway.pipeline_factory, runner)
    gateway.call_back = identity_call_back(runner=runner, store=store, settings=settings, line_gate=gateway.lines)
    await gateway.start()

    schedules = partial(store_schedules, store, quiet_hours=settings.telephony.quiet_hours)

    stop = asyncio.Event()
    engine = call_engine(settings=settings, store=store, runner=runner, schedules=schedules, line_gate=gateway.lines)
    task = asyncio.create_task(engine.run(stop=stop), name="call-engine")
    runtime.use_phone_lines(gateway.lines)
    callbacks = callbacks_task = None
    if gateway.escalation.enabled:  # the console's 安排回电 dials: elder first, then an operator's phone
        callbacks = OperatorCallbacks(gateway=gateway)
        callbacks_task = asyncio.create_task(callbacks.run(), name="console-callbacks")
        runtime.use_callback_dialler(callbacks)
    logger.info("phone gateway on udp:%s:%s", gateway.endpoint.host, gateway.endpoint.port)
    return GatewayService(gateway=gateway, engine=engine, _stop=stop, _task=task, callbacks=callbacks,
                          _callbacks_task=callbacks_task)
