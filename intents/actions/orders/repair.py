"""A repair at home (报修): what broke, and whether it is urgent."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import parsing
from actions.common import latest_intent, phrasebook
from actions.orders.base import OrderForm, OrderType, PlaceOrder, ask_actions

logger = logging.getLogger(__name__)


def readback(tracker: Tracker, dialect: str) -> str:
    """The order read back slowly: short sentences, numbers as words."""
    s = tracker.get_slot
    p = phrasebook()
    urgency = p.piece("repair_urgent" if s("repair_urgency") == "urgent" else "repair_not_urgent", dialect)
    return p.say("readback_repair", dialect, item=s("repair_item"), urgency=urgency)


def details(tracker: Tracker) -> dict[str, Any]:
    """The order's ``details`` for ``POST /api/orders``."""
    s = tracker.get_slot
    return {"item": s("repair_item"), "urgency": s("repair_urgency")}


REPAIR = OrderType(
    form="repair_form", order_type="repair",
    slots=("repair_item", "repair_urgency"),
    confirmed_slot="repair_confirmed",
    place_action="action_order_repair",
    readback=readback, details=details,
    correction_words={
        "repair_item": ("东西", "嘢", "坏", "不是", "唔系"),
        "repair_urgency": ("急",),
    },
)


class ValidateRepairForm(OrderForm):
    order = REPAIR

    def parse_text(self, text: str, *, intent: str | None, requested: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        item = parsing.parse_repair_item(text, free_text_ok=requested == "repair_item")
        if item and requested in (None, "repair_item"):
            out["repair_item"] = item
        urgency = parsing.parse_urgency(text, intent=intent, asked=requested == "repair_urgency")
        if urgency and (requested == "repair_urgency" or "不急" in text or "唔急" in text or "急" in text):
            out["repair_urgency"] = urgency
        return out

    async def validate_repair_item(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return self.kept("repair_item", parsing.parse_repair_item(str(value or ""), free_text_ok=True))

    async def validate_repair_urgency(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        if value in ("urgent", "normal"):
            return {"repair_urgency": value}
        return self.kept("repair_urgency", parsing.parse_urgency(str(value or ""), intent=latest_intent(tracker), asked=True))

    async def validate_repair_confirmed(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return await self.validate_confirmed(value, tracker)


ASK_ACTIONS = ask_actions(REPAIR)


class ActionOrderRepair(PlaceOrder):
    order = REPAIR
