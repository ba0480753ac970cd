"""What the order forms share: the order type's description (``OrderType``), the form validation plumbing
(``OrderForm``), asking (``AskSlot``, ``ask_actions``) and placing the order (``PlaceOrder``).

An order module declares its ``OrderType`` once, subclasses ``OrderForm`` (parsing and ``validate_<slot>``)
and ``PlaceOrder``, and builds its ``action_ask_<slot>`` actions with ``ask_actions``; Rasa's action server
registers every concrete ``Action`` subclass it finds in the ``actions`` package.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import parsing
from actions.common import (
    CANCEL,
    INTERRUPT_INTENTS,
    api,
    call_id_of,
    consecutive_fallbacks,
    custom,
    dialect_of,
    elder_id_of,
    latest_intent,
    latest_text,
    say,
)
from actions.platform_api import PlatformApiError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class OrderType:
    """One kind of order, said once: the names Rasa's domain uses and the two things only it knows."""

    form: str  # "gas_form": validated by validate_<form>
    order_type: str  # the Platform API's order type
    slots: tuple[str, ...]  # asked in this order, each by action_ask_<slot>
    confirmed_slot: str  # the last slot, asked by reading the order back
    place_action: str  # the action that places the order (domain.yml)
    readback: Callable[[Tracker, str], str]  # (tracker, dialect) → the order read back
    details: Callable[[Tracker], dict[str, Any]]  # the order's ``details`` for POST /api/orders
    # words that name a slot in a correction ("地址不对" → the address is asked again)
    correction_words: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    placed_phrase: str = "order_placed"  # said once the store answered 201
    extra_slots: tuple[str, ...] = ()  # cleared with the order, never asked


class OrderForm(FormValidationAction, ABC):
    """Extraction, validation plumbing, correction and confirmation for one order form."""

    @property
    @abstractmethod
    def order(self) -> OrderType: ...

    def name(self) -> str:
        return f"validate_{self.order.form}"

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        required = list(self.order.slots)
        if tracker.get_slot("order_fix_pending"):
            required.append("order_fix")
        required.append(self.order.confirmed_slot)
        return required

    @abstractmethod
    def parse_text(self, text: str, *, intent: str | None, requested: str | None) -> dict[str, Any]:
        """Every slot of this form that the text mentions (canonical values)."""

    async def prefill(self, tracker: Tracker) -> dict[str, Any]:
        return {}

    def slots_named_in(self, text: str) -> list[str]:
        """The slots a correction names (``OrderType.correction_words``)."""
        t = parsing.normalize(text)
        return [slot for slot, words in self.order.correction_words.items() if any(w in t for w in words)]

    async def get_extraction_events(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        intent = latest_intent(tracker)
        if intent in INTERRUPT_INTENTS:
            return []  # no slot → the form is rejected and the interrupting rule runs
        text = latest_text(tracker)
        requested = tracker.get_slot("requested_slot")
        confirmed = self.order.confirmed_slot
        values: dict[str, Any] = {}
        if requested is None:
            values.update(await self.prefill(tracker))
        if requested == confirmed:
            # a correction said with the answer ("不对，要三罐") changes the slot and reads back again
            values.update({k: v for k, v in self.parse_text(text, intent=intent, requested=None).items() if v is not None})
            values[confirmed] = text  # validated below: yes / no / unclear / cancel
        elif requested == "order_fix":
            values.update({k: v for k, v in self.parse_text(text, intent=intent, requested=None).items() if v is not None})
            values["order_fix"] = text
        else:
            values.update(self.parse_text(text, intent=intent, requested=requested))
            if requested and requested not in values:
                values[requested] = text  # an answer we could not parse: validate_<slot> asks again
        return [SlotSet(k, v) for k, v in values.items()]

    def retry(self, slot: str) -> dict[str, Any]:
        """Clear ``slot`` and have its ask action say the retry question."""
        return {slot: None, "retry_slot": slot}

    def kept(self, slot: str, value: Any) -> dict[str, Any]:
        """``slot`` set to the parsed ``value``, or asked again when nothing could be parsed."""
        return {slot: value} if value else self.retry(slot)

    async def validate_order_fix(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        text = str(value or "")
        if parsing.is_cancel(text):
            return {"order_fix": text, "order_fix_pending": False, self.order.confirmed_slot: CANCEL}
        cleared = self.slots_named_in(text)
        changed = [s for s in self.order.slots if tracker.slots_to_validate().get(s) is not None]
        if not cleared and not changed:
            # could not tell what to change: ask each detail again
            cleared = list(self.order.slots)
        return {"order_fix": text, "order_fix_pending": False, **{s: None for s in cleared}}

    async def validate_confirmed(self, value: Any, tracker: Tracker) -> dict[str, Any]:
        """The answer to the read-back: yes, no (→ what to fix), cancel, a correction, or unclear."""
        confirmed = self.order.confirmed_slot
        if value in (True, CANCEL):
            return {confirmed: value}
        text = str(value or "")
        if parsing.is_cancel(text):
            return {confirmed: CANCEL}
        changed = [s for s in self.order.slots if tracker.slots_to_validate().get(s) is not None]
        if changed and parsing.parse_yes_no(text) is not True:
            return {confirmed: None}  # read the corrected order back again
        yes = parsing.parse_yes_no(text, intent=latest_intent(tracker))
        if yes is True:
            return {confirmed: True}
        if yes is False:
            return {confirmed: None, "order_fix_pending": True, "order_fix": None}
        return self.retry(confirmed)


class AskSlot(Action, ABC):
    """``action_ask_<slot>``: the slot's question, its retry after an unclear answer, the keypad menu after
    two misses in a row; the confirmation slot reads the order back."""

    order: OrderType | None = None

    @property
    @abstractmethod
    def slot(self) -> str: ...

    def name(self) -> str:
        return f"action_ask_{self.slot}"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dialect = dialect_of(tracker)
        # the pipeline reads the next turn as this slot's answer, not as a new request (issue #27)
        custom(dispatcher, "asking", slot=self.slot, form=self.order.form if self.order else "")
        retry = tracker.get_slot("retry_slot") == self.slot
        if retry and consecutive_fallbacks(tracker) >= 2:
            dispatcher.utter_message(text=say("keypad_menu", dialect))
            custom(dispatcher, "keypad_menu")
            return [SlotSet("retry_slot", None)]
        if self.order is not None and self.slot == self.order.confirmed_slot:
            if retry:
                dispatcher.utter_message(text=say("retry_confirm", dialect))
            else:
                dispatcher.utter_message(text=say("confirm_intro", dialect))
                dispatcher.utter_message(text=self.order.readback(tracker, dialect))
                dispatcher.utter_message(text=say("confirm_question", dialect))
        elif self.slot == "order_fix":
            dispatcher.utter_message(text=say("ask_order_fix", dialect))
        else:
            dispatcher.utter_message(text=say(("retry_" if retry else "ask_") + self.slot, dialect))
        return [SlotSet("retry_slot", None)] if retry else []


class ActionAskOrderFix(AskSlot):
    """After "no" to the read-back: what should change (any form)."""

    slot = "order_fix"


def ask_actions(order: OrderType) -> tuple[type[AskSlot], ...]:
    """``action_ask_<slot>`` for each slot of ``order`` and its confirmation (``ActionAskGasSize`` …): the
    module keeps the tuple, and Rasa's action server registers the classes like any other."""
    return tuple(
        type(f"ActionAsk{''.join(part.title() for part in slot.split('_'))}", (AskSlot,), {"slot": slot, "order": order})
        for slot in (*order.slots, order.confirmed_slot)
    )


class PlaceOrder(Action, ABC):
    """The form's end: ``POST /api/orders`` when the elder said yes, nothing when they cancelled; the slots
    are cleared either way."""

    @property
    @abstractmethod
    def order(self) -> OrderType: ...

    def name(self) -> str:
        return self.order.place_action

    def reset(self) -> list[EventType]:
        o = self.order
        return [SlotSet(s, None) for s in (*o.slots, *o.extra_slots, o.confirmed_slot, "order_fix", "order_fix_pending", "retry_slot")]

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dialect = dialect_of(tracker)
        if tracker.get_slot(self.order.confirmed_slot) is not True:
            dispatcher.utter_message(text=say("order_cancelled", dialect))
            return self.reset()
        seq = int(tracker.get_slot("order_seq") or 0) + 1
        key = f"{tracker.sender_id}:{self.order.form}:{seq}"
        try:
            result = await api().place_order(
                elder_id=elder_id_of(tracker),
                call_id=call_id_of(tracker),
                order_type=self.order.order_type,
                details={**self.order.details(tracker), "dialect": dialect},
                idempotency_key=key,
            )
        except PlatformApiError as exc:
            logger.error("order %s failed: %s (%s)", key, exc.message, exc.code)
            dispatcher.utter_message(text=say("order_failed", dialect))
            custom(dispatcher, "handover", reason=f"order_failed:{exc.code}")
            return self.reset()  # the operator takes it from here; nothing was claimed
        order_id = result["order_id"]
        spoken_id = " ".join(str(order_id)[-4:])  # last digits, spaced so the voice reads them one by one
        dispatcher.utter_message(text=say(self.order.placed_phrase, dialect, order_id=spoken_id))
        custom(dispatcher, "order_placed", order_id=order_id, type=self.order.order_type)
        return [*self.reset(), SlotSet("order_seq", float(seq))]
