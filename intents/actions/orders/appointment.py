"""A hospital appointment (预约看病): which hospital, which department, when, and whether someone goes along.
Staff confirm the time by phone, so the elder hears "registered", not an order number."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import parsing
from actions.common import latest_intent, phrasebook, spoken_when
from actions.orders.base import OrderForm, OrderType, PlaceOrder, ask_actions

logger = logging.getLogger(__name__)


def readback(tracker: Tracker, dialect: str) -> str:
    """The order read back slowly: short sentences, numbers as words."""
    s = tracker.get_slot
    p = phrasebook()
    return p.say("readback_appointment", dialect, hospital=s("appt_hospital"), department=s("appt_department"),
                 when=spoken_when(s("appt_time") or "", dialect),
                 escort=p.piece("escort_yes" if s("appt_escort") else "escort_no", dialect))


def details(tracker: Tracker) -> dict[str, Any]:
    """The order's ``details`` for ``POST /api/orders``."""
    s = tracker.get_slot
    return {
        "hospital": s("appt_hospital"),
        "department": s("appt_department"),
        "when": s("appt_time"),
        "needs_escort": bool(s("appt_escort")),
    }


APPOINTMENT = OrderType(
    form="appointment_form", order_type="appointment",
    slots=("appt_hospital", "appt_department", "appt_time", "appt_escort"),
    confirmed_slot="appt_confirmed",
    place_action="action_book_appointment",
    readback=readback, details=details,
    correction_words={
        "appt_hospital": ("医院",),
        "appt_department": ("科",),
        "appt_time": ("时间", "日子", "哪天", "边日", "几点"),
        "appt_escort": ("陪",),
    },
    placed_phrase="appointment_placed",
)


class ValidateAppointmentForm(OrderForm):
    order = APPOINTMENT

    def parse_text(self, text: str, *, intent: str | None, requested: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        hospital = parsing.parse_hospital(text, free_text_ok=requested == "appt_hospital")
        if hospital:
            out["appt_hospital"] = hospital
        department = parsing.parse_department(text, free_text_ok=requested == "appt_department")
        if department and requested != "appt_escort":
            out["appt_department"] = department
        when = parsing.parse_when(text)
        if when and when != "尽快":
            out["appt_time"] = when
        if requested == "appt_escort":
            escort = parsing.parse_escort(text, intent=intent)
            if escort is not None:
                out["appt_escort"] = escort
        return out

    async def validate_appt_hospital(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return self.kept("appt_hospital", parsing.parse_hospital(str(value or ""), free_text_ok=True))

    async def validate_appt_department(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return self.kept("appt_department", parsing.parse_department(str(value or ""), free_text_ok=True))

    async def validate_appt_time(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        when = parsing.parse_when(str(value or ""))
        return {"appt_time": when} if when and when != "尽快" else self.retry("appt_time")

    async def validate_appt_escort(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        if isinstance(value, bool):
            return {"appt_escort": value}
        escort = parsing.parse_escort(str(value or ""), intent=latest_intent(tracker))
        return {"appt_escort": escort} if escort is not None else self.retry("appt_escort")

    async def validate_appt_confirmed(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return await self.validate_confirmed(value, tracker)


ASK_ACTIONS = ask_actions(APPOINTMENT)


class ActionBookAppointment(PlaceOrder):
    order = APPOINTMENT
