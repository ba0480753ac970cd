"""Medication reminders on the call engine (issue #17 item 3): a call at each of an elder's
``medication_plans`` times, 吃了吗？ with the keypad, missed → the family.

Each planning pass of the engine asks ``MedicationReminders`` for the reminders of today and tomorrow that
are still ahead (times inside quiet hours are skipped): one ``medication`` row per plan, day and time
(``job_key`` ``med:<plan>:<date>:<HHMM>:a1``; every node may plan it). The elder hears the identity proof,
then 到吃药的时间了。<medicine>吃了吗？ — keypad 1 = taken (outcome ``heard``), 2 = need help (an operator
alert). No answer → the care call's retries, then each family contact on file in priority order
(``…:f1``, ``…:f2``; the code only, never the elder's safe phrase; keypad 1 = received); nobody answered, or
the elder's line cannot be dialled → one operator alert naming the medicine and time (``no_answer``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update

from assistant.phrases import Phrasebook
from assistant.platform.models import Elder, ElderPhone, FamilyContact
from telephony.call_jobs import CallJobStore, NewJob
from telephony.models import CallJob, MedicationPlan
from telephony.scheduler import CareSchedule, TimeWindow

REMINDER_KEY = "medication_reminder"
FAMILY_KEY = "medication_family"
DISABLED = "plan_disabled"  # the result of a reminder row ended because its plan was disabled


def message(phrases: Phrasebook, detail: dict[str, Any], dialect: str | None) -> str:
    if detail.get("to_family"):
        return phrases.say(FAMILY_KEY, None)
    return phrases.say(REMINDER_KEY, dialect, medicine=detail["medicine"])


async def add_plan(jobs: CallJobStore, *, elder_id: int, medicine: str, times: str) -> int:
    """A medication plan (``times`` "08:00,20:00", local); returns its id."""
    parsed = [dt.time.fromisoformat(t.strip()) for t in times.split(",") if t.strip()]
    if not parsed:
        raise ValueError("a medication plan needs at least one time")

    async def write(s) -> int:
        plan = MedicationPlan(elder_id=elder_id, medicine=medicine, times=",".join(f"{t:%H:%M}" for t in parsed),
                              enabled=True, created_at=dt.datetime.now(dt.UTC))
        s.add(plan)
        await s.commit()
        return plan.id

    return await jobs._run("add medication plan", write)


@dataclass(frozen=True, kw_only=True)
class PlanInfo:
    plan_id: int
    elder_id: int
    medicine: str
    times: str
    enabled: bool
    created_at: dt.datetime


async def list_plans(jobs: CallJobStore, *, elder_id: int) -> list[PlanInfo]:
    """An elder's medication plans, enabled first, oldest first."""
    q = (select(MedicationPlan).where(MedicationPlan.elder_id == elder_id)
         .order_by(MedicationPlan.enabled.desc(), MedicationPlan.id))

    async def read(s):
        return [PlanInfo(plan_id=p.id, elder_id=p.elder_id, medicine=p.medicine, times=p.times, enabled=p.enabled,
                         created_at=p.created_at) for p in (await s.scalars(q)).all()]

    return await jobs._run("list medication plans", read)


async def set_plan_enabled(jobs: CallJobStore, *, plan_id: int, elder_id: int, enabled: bool) -> bool:
    """Stop (or restart) a plan's reminders; False when the elder has no such plan. Disabling also ends the
    plan's reminder rows still waiting to be dialled (``missed``, result ``plan_disabled``: today's later
    times and tomorrow's are already planned); enabling again removes those rows so the next planning pass
    plans the times still ahead."""
    rows = CallJob.__table__
    mine = (rows.c.kind == "medication") & rows.c.chain.like(f"med:{plan_id}:%")

    async def write(s) -> bool:
        plan = await s.get(MedicationPlan, plan_id)
        if plan is None or plan.elder_id != elder_id:
            return False
        plan.enabled = enabled
        if enabled:
            await s.execute(delete(rows).where(mine, rows.c.state == "missed", rows.c.result == DISABLED))
        else:
            await s.execute(update(rows).where(mine, rows.c.state == "planned")
                            .values(state="missed", result=DISABLED, finished_at=jobs.now()))
        await s.commit()
        return True

    return await jobs._run("set medication plan", write)


@dataclass(frozen=True, kw_only=True)
class MedicationReminders:
    """The engine's source of reminder rows (``CallEngine(sources=[...])``)."""

    jobs: CallJobStore
    quiet_hours: str = "21:00-08:00"

    @classmethod
    def from_settings(cls, *, settings, jobs: CallJobStore) -> MedicationReminders:
        return cls(jobs=jobs, quiet_hours=settings.telephony.quiet_hours)

    async def __call__(self, now: dt.datetime) -> list[NewJob]:
        q = (select(MedicationPlan.id, MedicationPlan.elder_id, MedicationPlan.medicine, MedicationPlan.times,
                    ElderPhone.number, Elder.dialect)
             .join(Elder, Elder.id == MedicationPlan.elder_id)
             .join(ElderPhone, (ElderPhone.elder_id == Elder.id) & ElderPhone.is_primary.is_(True))
             .where(MedicationPlan.enabled.is_(True), Elder.active.is_(True)).order_by(MedicationPlan.id))
        fq = select(FamilyContact.elder_id, FamilyContact.phone).order_by(FamilyContact.priority, FamilyContact.id)

        async def read(s):
            return (await s.execute(q)).all(), (await s.execute(fq)).all()

        plans, contacts = await self.jobs._run("medication plans", read)
        family: dict[int, list[str]] = {}
        for elder_id, phone in contacts:
            if phone:
                family.setdefault(elder_id, []).append(phone)
        quiet = TimeWindow.parse(self.quiet_hours) if self.quiet_hours else None
        aware = now.tzinfo is not None
        local_now = now.astimezone().replace(tzinfo=None) if aware else now
        out = []
        for plan_id, elder_id, medicine, times, number, dialect in plans:
            s = CareSchedule(elder_id=elder_id, number=number, quiet_hours=quiet, dialect=dialect)
            for day in (local_now.date(), local_now.date() + dt.timedelta(days=1)):
                for text in filter(None, (t.strip() for t in times.split(","))):
                    at = dt.datetime.combine(day, dt.time.fromisoformat(text))
                    if at < local_now.replace(second=0, microsecond=0) or s.quiet(at):
                        continue
                    chain = f"med:{plan_id}:{day.isoformat()}:{at:%H%M}"
                    out.append(NewJob(job_key=f"{chain}:a1", chain=chain, kind="medication", elder_id=elder_id,
                                      number=number, not_before=s.to_clock(at, aware=aware),
                                      detail={"medicine": medicine, "dialect": dialect, "family": family.get(elder_id, []),
                                              "quiet": [str(quiet)] if quiet else []}))
        return out


def family_step(job_chain: str, elder_id: int, detail: dict[str, Any], *, index: int, now: dt.datetime) -> NewJob | None:
    """The call to the ``index``-th family contact (1-based) after the elder missed the reminder."""
    numbers = detail.get("family", [])
    if index > len(numbers):
        return None
    return NewJob(job_key=f"{job_chain}:f{index}", chain=job_chain, kind="medication", elder_id=elder_id,
                  number=numbers[index - 1], attempt=index, not_before=now,
                  detail={**detail, "to_family": index})
