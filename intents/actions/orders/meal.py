"""Meals delivered (送餐): which meals, which days, what the kitchen must mind (soft, low salt, diabetic)."""

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
    meals = "、".join(parsing.MEAL_NAMES[m][0] for m in s("meal_meals") or [] if m in parsing.MEAL_NAMES)
    diet = "、".join(parsing.DIET_NAMES.get(d, d) for d in s("meal_diet") or [])
    return p.say("readback_meal", dialect, meals=meals, days=spoken_when(s("meal_days") or "", dialect), diet=diet)


def details(tracker: Tracker) -> dict[str, Any]:
    """The order's ``details`` for ``POST /api/orders``."""
    s = tracker.get_slot
    return {"meals": s("meal_meals"), "days": s("meal_days"), "diet": s("meal_diet")}


MEAL = OrderType(
    form="meal_form", order_type="meal",
    slots=("meal_meals", "meal_days", "meal_diet"),
    confirmed_slot="meal_confirmed",
    place_action="action_order_meal",
    readback=readback, details=details,
    correction_words={
        "meal_meals": ("早餐", "午餐", "晚餐", "哪餐", "边餐", "几餐"),
        "meal_days": ("日子", "几天", "几日", "哪天", "边日", "时间"),
        "meal_diet": ("口味", "要求", "咸", "软", "糖"),
    },
)


class ValidateMealForm(OrderForm):
    order = MEAL

    def parse_text(self, text: str, *, intent: str | None, requested: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        meals = parsing.parse_meals(text)
        if meals and requested != "meal_days":
            out["meal_meals"] = meals
        days = parsing.parse_days(text)
        if days and requested != "meal_meals":
            out["meal_days"] = days
        if requested == "meal_diet" or requested is None:
            diet = parsing.parse_diet(text, intent=intent) if requested == "meal_diet" else None
            if requested is None:
                found = parsing.parse_diet(text)
                diet = found if found and found != ["none"] else None
            if diet:
                out["meal_diet"] = diet
        return out

    async def validate_meal_meals(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return self.kept("meal_meals", value if isinstance(value, list) and value else parsing.parse_meals(str(value or "")))

    async def validate_meal_days(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return self.kept("meal_days", parsing.parse_days(str(value or "")))

    async def validate_meal_diet(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return self.kept("meal_diet", value if isinstance(value, list) and value else parsing.parse_diet(str(value or ""), intent=latest_intent(tracker)))

    async def validate_meal_confirmed(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return await self.validate_confirmed(value, tracker)


ASK_ACTIONS = ask_actions(MEAL)


class ActionOrderMeal(PlaceOrder):
    order = MEAL
