"""Order follow-ups on the call engine (issue #17 item 3): 煤气送到了吗？ after a work order is marked done.

Each planning pass of the engine asks ``OrderFollowups`` for the orders done within ``within_s``: one
``order_followup`` row per order and completion (``job_key`` ``order:<order>:<done time>:a1``, so every node
may plan it and an order done again after a reopen gets a new call), due ``delay_s`` after the order was
done, at the elder's first minute outside quiet hours. The call opens with the identity proof, asks the
order type's question (gas / meal / repair / appointment) and takes keypad 1 = fine, 2 = a problem.
A problem → an operator alert row that also reopens the order (``PlatformStore.reopen_order``: done →
dispatched); both are retried together until stored. No answer → the usual retries, then the row ends.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from assistant.phrases import Phrasebook
from assistant.platform.models import Elder, ElderPhone, WorkOrder
from telephony.call_jobs import CallJobStore, NewJob, as_stored
from telephony.scheduler import CareSchedule, TimeWindow

# what the follow-up asks, per order type (each question ends with the keypad: 1 fine, 2 a problem)
QUESTION_KEYS = {"gas": "followup_gas", "meal": "followup_meal", "repair": "followup_repair",
                 "appointment": "followup_appointment"}
KEYPAD_KEY = "followup_keypad"
PROBLEM_ALERT = "order_problem"  # the operator alert's telephony kind (stored as a "human" alert)


def message(phrases: Phrasebook, detail: dict[str, Any], dialect: str | None) -> str:
    return phrases.say(QUESTION_KEYS[detail["order_type"]], dialect) + phrases.say(KEYPAD_KEY, dialect)


@dataclass(frozen=True, kw_only=True)
class OrderFollowups:
    """The engine's source of follow-up rows (``CallEngine(followups=...)``)."""

    jobs: CallJobStore
    quiet_hours: str = "21:00-08:00"
    delay_s: float = 1800.0
    within_s: float = 172800.0

    @classmethod
    def from_settings(cls, *, settings, jobs: CallJobStore) -> OrderFollowups:
        t = settings.telephony
        return cls(jobs=jobs, quiet_hours=t.quiet_hours, delay_s=t.followup_delay_s, within_s=t.followup_within_s)

    async def __call__(self, now: dt.datetime) -> list[NewJob]:
        since = now - dt.timedelta(seconds=self.within_s)
        q = (select(WorkOrder.id, WorkOrder.type, WorkOrder.elder_id, WorkOrder.done_at, ElderPhone.number,
                    Elder.dialect)
             .join(Elder, Elder.id == WorkOrder.elder_id)
             .join(ElderPhone, (ElderPhone.elder_id == Elder.id) & ElderPhone.is_primary.is_(True))
             .where(WorkOrder.status == "done", WorkOrder.done_at >= as_stored(since), Elder.active.is_(True))
             .order_by(WorkOrder.id))

        async def read(s):
            return (await s.execute(q)).all()

        quiet = TimeWindow.parse(self.quiet_hours) if self.quiet_hours else None
        out = []
        for order_id, order_type, elder_id, done_at, number, dialect in await self.jobs._run("follow-ups", read):
            if order_type not in QUESTION_KEYS:
                continue
            done = as_stored(done_at)  # a naive clock's times are kept as if UTC (telephony.call_jobs)
            done = done.astimezone(now.tzinfo) if now.tzinfo is not None else done.replace(tzinfo=None)
            s = CareSchedule(elder_id=elder_id, number=number, windows=(TimeWindow.parse("00:00-00:00"),),
                             quiet_hours=quiet, dialect=dialect)
            first = s.next_call_time(s.local(done + dt.timedelta(seconds=self.delay_s)))
            if first is None:
                continue
            chain = f"order:{order_id}:{int(as_stored(done_at).timestamp())}"
            out.append(NewJob(job_key=f"{chain}:a1", chain=chain, kind="order_followup", elder_id=elder_id,
                              number=number, not_before=s.to_clock(first, aware=now.tzinfo is not None),
                              detail={"order_id": order_id, "order_type": order_type, "dialect": dialect,
                                      "quiet": [str(quiet)] if quiet else []}))
        return out
