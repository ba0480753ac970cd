"""Bottled gas (煤气 / 石油气): cylinder size, how many, the address (the profile's unless one is said), when."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import parsing
from actions.common import api, elder_id_of, is_verified, phrasebook, spoken_when
from actions.orders.base import OrderForm, OrderType, PlaceOrder, ask_actions
from actions.platform_api import PlatformApiError

logger = logging.getLogger(__name__)


def readback(tracker: Tracker, dialect: str) -> str:
    """The order read back slowly: short sentences, numbers as words, the address only when verified."""
    s = tracker.get_slot
    p = phrasebook()
    size = {"15kg": "gas_size_15kg", "5kg": "gas_size_5kg", "50kg": "gas_size_50kg"}.get(s("gas_size"), "gas_size_usual")
    if is_verified(tracker) and s("gas_address"):
        place = p.piece("gas_place_spoken", dialect, address=s("gas_address"))
    else:
        place = p.piece("gas_place_profile", dialect)
    return p.say("readback_gas", dialect, size=p.piece(size, dialect),
                 quantity=parsing.speak_number(int(s("gas_quantity") or 1)) + p.piece("gas_unit", dialect),
                 place=place, when=spoken_when(s("gas_time") or "", dialect))


def details(tracker: Tracker) -> dict[str, Any]:
    """The order's ``details`` for ``POST /api/orders``."""
    s = tracker.get_slot
    return {
        "cylinder": s("gas_size"),
        "quantity": int(s("gas_quantity") or 1),
        "address": s("gas_address"),
        "address_source": s("gas_address_source") or "profile",
        "time_window": s("gas_time"),
    }


GAS = OrderType(
    form="gas_form", order_type="gas",
    slots=("gas_size", "gas_quantity", "gas_address", "gas_time"),
    confirmed_slot="gas_confirmed",
    place_action="action_order_gas",
    readback=readback, details=details,
    correction_words={
        "gas_size": ("大小", "公斤", "规格", "大罐", "小罐", "大樽", "细樽"),
        "gas_quantity": ("数量", "几罐", "几樽", "罐数", "多少罐"),
        "gas_address": ("地址", "送去边", "送到哪"),
        "gas_time": ("时间", "几时", "什么时候", "日子"),
    },
    extra_slots=("gas_address_source",),
)


class ValidateGasForm(OrderForm):
    order = GAS

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        required = await super().required_slots(domain_slots, dispatcher, tracker, domain)
        if tracker.get_slot("gas_address") is not None and tracker.get_slot("gas_address_source") is not None:
            # validated with the address (profile or spoken) so that it is kept, never asked on its own
            required.insert(required.index("gas_address") + 1, "gas_address_source")
        return required

    async def validate_gas_address_source(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return {"gas_address_source": value if value in ("profile", "spoken") else "spoken"}

    def parse_text(self, text: str, *, intent: str | None, requested: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        size = parsing.parse_gas_size(text)
        if size:
            out["gas_size"] = size
        qty = parsing.parse_quantity(text, bare_ok=requested == "gas_quantity")
        if qty:
            out["gas_quantity"] = qty
        when = parsing.parse_when(text)
        if when:
            out["gas_time"] = when
        return out

    async def prefill(self, tracker: Tracker) -> dict[str, Any]:
        if tracker.get_slot("gas_address"):
            return {}
        elder_id = elder_id_of(tracker)
        if elder_id is None:
            return {}
        try:
            elder = await api().get_elder(elder_id)
        except PlatformApiError as exc:
            logger.warning("no profile address for elder %s: %s", elder_id, exc.code)
            return {}
        address = elder.get("address")
        return {"gas_address": address, "gas_address_source": "profile"} if address else {}

    async def validate_gas_size(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return self.kept("gas_size", value if value in ("15kg", "5kg", "50kg", "usual") else parsing.parse_gas_size(str(value or "")))

    async def validate_gas_quantity(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return self.kept("gas_quantity", parsing.parse_quantity(str(value), bare_ok=True) if value is not None else None)

    async def validate_gas_address(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        text = str(value or "").strip()
        if tracker.get_slot("gas_address_source") == "profile" and text:
            return {"gas_address": text, "gas_address_source": "profile"}
        if len(parsing.normalize(text)) >= 4:
            return {"gas_address": text, "gas_address_source": "spoken"}
        return self.retry("gas_address")

    async def validate_gas_time(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return self.kept("gas_time", parsing.parse_when(str(value or "")))

    async def validate_gas_confirmed(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return await self.validate_confirmed(value, tracker)


ASK_ACTIONS = ask_actions(GAS)


class ActionOrderGas(PlaceOrder):
    order = GAS
