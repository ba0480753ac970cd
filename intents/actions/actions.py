"""Custom actions: the always-available turns, care alerts, and four order forms that really book services.

Every reply is chosen by dialect (``metadata.dialect`` of the latest user message: ``yue`` → Cantonese,
anything else → Mandarin) from ``assistant/phrases.py``, the table of everything the bot says (pure data:
the action server puts the project root on its path to import it). Personal data (addresses) is spoken only when the call's
metadata says ``verified: true``. Orders are confirmed to the elder only after ``POST /api/orders``
answered 201; otherwise the elder hears an apology and is handed to an operator.

Forms (``gas_form``, ``meal_form``, ``repair_form``, ``appointment_form``) fill their slots through
``extract``/``validate_<slot>`` in one ``FormValidationAction`` per form; slot values are parsed from
the text by ``parsing.py``. The last required slot ``<form>_confirmed`` is asked by reading the order
back; "no" asks what to fix (``order_fix``), "cancel" ends without an order.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from abc import ABC, abstractmethod
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import parsing
from actions.platform_api import PlatformApi, PlatformApiError
from assistant.phrases import DEFAULT_PLATFORM_NAME, Phrasebook

logger = logging.getLogger(__name__)

# intents that interrupt a form instead of answering its question (handled by rules, then the form resumes
# or ends); everything else is read as an answer, and an unclear answer is asked again
INTERRUPT_INTENTS = frozenset(
    {"emergency", "request_human", "repeat", "slower", "ask_identity", "report_suspicious_call", "goodbye", "health_consult"}
)
CANCEL = "cancel"


# -- tracker helpers ---------------------------------------------------------------------------------------
def call_metadata(tracker: Tracker) -> dict[str, Any]:
    """Metadata of the latest user message that had any (else the session start's)."""
    meta = (tracker.latest_message or {}).get("metadata") or {}
    if meta:
        return meta
    for event in reversed(tracker.events):
        if event.get("event") == "user" and event.get("metadata"):
            return event["metadata"]
    return tracker.get_slot("session_started_metadata") or {}


def dialect_of(tracker: Tracker) -> str:
    return "yue" if str(call_metadata(tracker).get("dialect") or "").startswith("yue") else "cmn"


def is_verified(tracker: Tracker) -> bool:
    return call_metadata(tracker).get("verified") is True


def elder_id_of(tracker: Tracker) -> Any:
    return call_metadata(tracker).get("elder_id")


def call_id_of(tracker: Tracker) -> str:
    return str(call_metadata(tracker).get("call_id") or tracker.sender_id)


def latest_intent(tracker: Tracker) -> str | None:
    return ((tracker.latest_message or {}).get("intent") or {}).get("name")


def latest_text(tracker: Tracker) -> str:
    return str((tracker.latest_message or {}).get("text") or "")


def consecutive_fallbacks(tracker: Tracker) -> int:
    """How many user turns in a row, counting back from the latest, were not understood."""
    n = 0
    for event in reversed(tracker.events):
        if event.get("event") != "user":
            continue
        name = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
        if name != "nlu_fallback":
            break
        n += 1
    return n


def user_turn_time(tracker: Tracker) -> float:
    """When the latest user message arrived (tracker event timestamp), else now."""
    for event in reversed(tracker.events):
        if event.get("event") == "user" and event.get("timestamp"):
            return float(event["timestamp"])
    return time.time()


def custom(dispatcher: CollectingDispatcher, event: str, **fields: Any) -> None:
    dispatcher.utter_message(json_message={"event": event, **fields})


def api() -> PlatformApi:
    return PlatformApi.from_env()


@functools.cache
def phrasebook() -> Phrasebook:
    """``assistant/phrases.py`` with the platform's name (``ASSISTANT_PLATFORM_NAME``, set by the assistant)."""
    return Phrasebook(platform_name=os.environ.get("ASSISTANT_PLATFORM_NAME") or DEFAULT_PLATFORM_NAME)


def say(key: str, dialect: str, **fields: Any) -> str:
    return phrasebook().say(key, dialect, **fields)


# -- always-available turns -----------------------------------------------------------------------------
class _Say(Action, ABC):
    phrase = ""

    @abstractmethod
    def name(self) -> str: ...

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dispatcher.utter_message(text=say(self.phrase, dialect_of(tracker)))
        return []


class ActionGreet(_Say):
    phrase = "greeting"

    def name(self) -> str:
        return "action_greet"


class ActionAnythingElse(_Say):
    phrase = "anything_else"

    def name(self) -> str:
        return "action_anything_else"


class ActionCheckinWell(_Say):
    phrase = "checkin_well"

    def name(self) -> str:
        return "action_checkin_well"


class ActionGoodbye(Action):
    def name(self) -> str:
        return "action_goodbye"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dispatcher.utter_message(text=say("goodbye", dialect_of(tracker)))
        if call_metadata(tracker).get("channel") == "phone":
            custom(dispatcher, "hangup")
        return []


class ActionRepeat(Action):
    """Say the last bot utterance again. Inside a form the form's own re-ask is the repetition."""

    def name(self) -> str:
        return "action_repeat"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        if tracker.active_loop.get("name"):
            return []
        for event in reversed(tracker.events):
            if event.get("event") == "bot" and event.get("text"):
                dispatcher.utter_message(text=event["text"])
                return []
        dispatcher.utter_message(text=say("nothing_to_repeat", dialect_of(tracker)))
        return []


class ActionSlower(Action):
    def name(self) -> str:
        return "action_slower"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        custom(dispatcher, "slower")
        dispatcher.utter_message(text=say("slower", dialect_of(tracker)))
        if not tracker.active_loop.get("name"):  # outside a form, repeat what was said, slower
            for event in reversed(tracker.events):
                if event.get("event") == "bot" and event.get("text"):
                    dispatcher.utter_message(text=event["text"])
                    break
        return []


class ActionHandover(Action):
    """request_human: the pipeline flags the call and raises the operator alert on the custom event."""

    def name(self) -> str:
        return "action_handover"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dispatcher.utter_message(text=say("handover", dialect_of(tracker)))
        custom(dispatcher, "handover", reason="requested")
        return []


class ActionFallback(Action):
    """Not understood: ask again; the second time in a row, offer the keypad menu (0 = operator)."""

    def name(self) -> str:
        return "action_fallback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        if consecutive_fallbacks(tracker) >= 2:
            dispatcher.utter_message(text=say("keypad_menu", dialect_of(tracker)))
            custom(dispatcher, "keypad_menu")
        else:
            dispatcher.utter_message(text=say("not_understood", dialect_of(tracker)))
        return []


class ActionFraudCheck(Action):
    """ask_identity / report_suspicious_call → the fraud guard (issue #6, #15), which answers in the pipeline."""

    def name(self) -> str:
        return "action_fraud_check"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        text = say("fraud_check", dialect_of(tracker))
        # the fraud guard answers with its own words (the platform's proof on our calls, the inbound answer
        # on the caller's): ``fallback_text`` is what it drops then; only a pipeline without it says this
        custom(dispatcher, "fraud_check", intent=latest_intent(tracker), fallback_text=text)
        dispatcher.utter_message(text=text)
        return []


# -- care alerts --------------------------------------------------------------------------------------------
class ActionEmergency(Action):
    """SOS at once: POST /api/alerts kind=sos (time-to-alert in the detail), then short reassurance."""

    def name(self) -> str:
        return "action_emergency"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dialect = dialect_of(tracker)
        received_at = user_turn_time(tracker)
        action_started_at = time.time()
        text = latest_text(tracker)
        meta = call_metadata(tracker)
        detail = {
            # "/emergency" comes from the pipeline's decision (a keyword, or the elder's "yes"): it sends what was heard
            "transcript": str(meta.get("transcript") or text) if text.startswith("/") else text,
            "decision": meta.get("decision"),
            "intent_received_at": received_at,
            "alert_sent_at": action_started_at,
            "dialect": dialect,
        }
        try:
            alert = await api().raise_alert(elder_id=elder_id_of(tracker), call_id=call_id_of(tracker), kind="sos", detail=detail)
        except PlatformApiError as exc:
            logger.error("SOS alert for %s failed: %s (%s)", tracker.sender_id, exc.message, exc.code)
            dispatcher.utter_message(text=say("emergency_alert_failed", dialect))
            custom(dispatcher, "emergency", alert_id=None, error=exc.code)
            custom(dispatcher, "handover", reason="emergency_alert_failed")
            return []
        stored_at = time.time()
        time_to_alert_ms = round((stored_at - received_at) * 1000, 1)
        logger.info("SOS alert %s stored %.1f ms after the intent arrived", alert.get("alert_id"), time_to_alert_ms)
        # family are mentioned only when the platform says a message to them is on its way (a configured
        # channel carries it); otherwise the elder hears what is true: the operators have the alert
        family_notified = alert.get("family_notice") == "on_its_way"
        custom(
            dispatcher,
            "emergency",
            alert_id=alert.get("alert_id") or alert.get("id"),
            intent_received_at=received_at,
            alert_stored_at=stored_at,
            time_to_alert_ms=time_to_alert_ms,
            family_notified=family_notified,
        )
        dispatcher.utter_message(text=say("emergency" if family_notified else "emergency_staff_only", dialect))
        return []


class ActionHealthConsult(Action):
    """No medical advice beyond the 120 line; books a nurse callback (alert kind nurse_callback)."""

    def name(self) -> str:
        return "action_health_consult"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dialect = dialect_of(tracker)
        dispatcher.utter_message(text=say("health_consult", dialect))
        try:
            await api().raise_alert(
                elder_id=elder_id_of(tracker),
                call_id=call_id_of(tracker),
                kind="nurse_callback",
                detail={"transcript": latest_text(tracker), "dialect": dialect},
            )
        except PlatformApiError as exc:
            logger.error("nurse callback for %s failed: %s", tracker.sender_id, exc.code)
            dispatcher.utter_message(text=say("nurse_failed", dialect))
            custom(dispatcher, "handover", reason="nurse_callback_failed")
            return []
        dispatcher.utter_message(text=say("nurse_booked", dialect))
        return []


class ActionCheckinUnwell(Action):
    def name(self) -> str:
        return "action_checkin_unwell"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dialect = dialect_of(tracker)
        try:
            await api().raise_alert(
                elder_id=elder_id_of(tracker),
                call_id=call_id_of(tracker),
                kind="unwell",
                detail={"transcript": latest_text(tracker), "dialect": dialect},
            )
        except PlatformApiError as exc:
            logger.error("unwell alert for %s failed: %s", tracker.sender_id, exc.code)
            dispatcher.utter_message(text=say("checkin_unwell", dialect))
            custom(dispatcher, "handover", reason="unwell_alert_failed")
            return []
        dispatcher.utter_message(text=say("checkin_unwell", dialect))
        return []


# -- order forms --------------------------------------------------------------------------------------------
_YUE_WORDS = (("今天", "今日"), ("明天", "听日"), ("后天", "后日"), ("上午", "上昼"), ("下午", "下昼"), ("晚上", "夜晚"), ("每天", "日日"))


def spoken_when(value: str, dialect: str) -> str:
    if dialect == "yue":
        for cmn, yue in _YUE_WORDS:
            value = value.replace(cmn, yue)
    return value


class _OrderForm(FormValidationAction, ABC):
    """Shared extraction, validation plumbing, correction and confirmation for one order form."""

    form = ""
    order_type = ""
    slots: tuple[str, ...] = ()

    @property
    def confirmed_slot(self) -> str:
        return f"{self.form.removesuffix('_form')}_confirmed"

    def name(self) -> str:
        return f"validate_{self.form}"

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        required = list(self.slots)
        if tracker.get_slot("order_fix_pending"):
            required.append("order_fix")
        required.append(self.confirmed_slot)
        return required

    @abstractmethod
    def parse_text(self, text: str, *, intent: str | None, requested: str | None) -> dict[str, Any]:
        """Every slot of this form that the text mentions (canonical values)."""

    async def prefill(self, tracker: Tracker) -> dict[str, Any]:
        return {}

    async def get_extraction_events(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        intent = latest_intent(tracker)
        if intent in INTERRUPT_INTENTS:
            return []  # no slot → the form is rejected and the interrupting rule runs
        text = latest_text(tracker)
        requested = tracker.get_slot("requested_slot")
        values: dict[str, Any] = {}
        if requested is None:
            values.update(await self.prefill(tracker))
        if requested == self.confirmed_slot:
            # a correction said with the answer ("不对，要三罐") changes the slot and reads back again
            values.update({k: v for k, v in self.parse_text(text, intent=intent, requested=None).items() if v is not None})
            values[self.confirmed_slot] = text  # validated below: yes / no / unclear / cancel
        elif requested == "order_fix":
            values.update({k: v for k, v in self.parse_text(text, intent=intent, requested=None).items() if v is not None})
            values["order_fix"] = text
        else:
            values.update(self.parse_text(text, intent=intent, requested=requested))
            if requested and requested not in values:
                values[requested] = text  # an answer we could not parse: validate_<slot> asks again
        return [SlotSet(k, v) for k, v in values.items()]

    def _retry(self, slot: str) -> dict[str, Any]:
        return {slot: None, "retry_slot": slot}

    async def validate_order_fix(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        text = str(value or "")
        if parsing.is_cancel(text):
            return {"order_fix": text, "order_fix_pending": False, self.confirmed_slot: CANCEL}
        cleared = self.slots_named_in(text)
        changed = [s for s in self.slots if tracker.slots_to_validate().get(s) is not None]
        if not cleared and not changed:
            # could not tell what to change: ask each detail again
            cleared = list(self.slots)
        return {"order_fix": text, "order_fix_pending": False, **{s: None for s in cleared}}

    def slots_named_in(self, text: str) -> list[str]:
        return []

    async def _validate_confirmed(self, value: Any, tracker: Tracker) -> dict[str, Any]:
        if value in (True, CANCEL):
            return {self.confirmed_slot: value}
        text = str(value or "")
        if parsing.is_cancel(text):
            return {self.confirmed_slot: CANCEL}
        changed = [s for s in self.slots if tracker.slots_to_validate().get(s) is not None]
        if changed and parsing.parse_yes_no(text) is not True:
            return {self.confirmed_slot: None}  # read the corrected order back again
        yes = parsing.parse_yes_no(text, intent=latest_intent(tracker))
        if yes is True:
            return {self.confirmed_slot: True}
        if yes is False:
            return {self.confirmed_slot: None, "order_fix_pending": True, "order_fix": None}
        return self._retry(self.confirmed_slot)


class ValidateGasForm(_OrderForm):
    form = "gas_form"
    order_type = "gas"
    slots = ("gas_size", "gas_quantity", "gas_address", "gas_time")

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

    def slots_named_in(self, text: str) -> list[str]:
        t = parsing.normalize(text)
        named = []
        if any(w in t for w in ("大小", "公斤", "规格", "大罐", "小罐", "大樽", "细樽")):
            named.append("gas_size")
        if any(w in t for w in ("数量", "几罐", "几樽", "罐数", "多少罐")):
            named.append("gas_quantity")
        if any(w in t for w in ("地址", "送去边", "送到哪")):
            named.append("gas_address")
        if any(w in t for w in ("时间", "几时", "什么时候", "日子")):
            named.append("gas_time")
        return named

    async def validate_gas_size(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        size = value if value in ("15kg", "5kg", "50kg", "usual") else parsing.parse_gas_size(str(value or ""))
        return {"gas_size": size} if size else self._retry("gas_size")

    async def validate_gas_quantity(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        n = parsing.parse_quantity(str(value), bare_ok=True) if value is not None else None
        return {"gas_quantity": n} if n else self._retry("gas_quantity")

    async def validate_gas_address(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        text = str(value or "").strip()
        if tracker.get_slot("gas_address_source") == "profile" and text:
            return {"gas_address": text, "gas_address_source": "profile"}
        if len(parsing.normalize(text)) >= 4:
            return {"gas_address": text, "gas_address_source": "spoken"}
        return self._retry("gas_address")

    async def validate_gas_time(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        when = parsing.parse_when(str(value or ""))
        return {"gas_time": when} if when else self._retry("gas_time")

    async def validate_gas_confirmed(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return await self._validate_confirmed(value, tracker)


class ValidateMealForm(_OrderForm):
    form = "meal_form"
    order_type = "meal"
    slots = ("meal_meals", "meal_days", "meal_diet")

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

    def slots_named_in(self, text: str) -> list[str]:
        t = parsing.normalize(text)
        named = []
        if any(w in t for w in ("早餐", "午餐", "晚餐", "哪餐", "边餐", "几餐")):
            named.append("meal_meals")
        if any(w in t for w in ("日子", "几天", "几日", "哪天", "边日", "时间")):
            named.append("meal_days")
        if any(w in t for w in ("口味", "要求", "咸", "软", "糖")):
            named.append("meal_diet")
        return named

    async def validate_meal_meals(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        meals = value if isinstance(value, list) and value else parsing.parse_meals(str(value or ""))
        return {"meal_meals": meals} if meals else self._retry("meal_meals")

    async def validate_meal_days(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        days = parsing.parse_days(str(value or ""))
        return {"meal_days": days} if days else self._retry("meal_days")

    async def validate_meal_diet(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        diet = value if isinstance(value, list) and value else parsing.parse_diet(str(value or ""), intent=latest_intent(tracker))
        return {"meal_diet": diet} if diet else self._retry("meal_diet")

    async def validate_meal_confirmed(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return await self._validate_confirmed(value, tracker)


class ValidateRepairForm(_OrderForm):
    form = "repair_form"
    order_type = "repair"
    slots = ("repair_item", "repair_urgency")

    def parse_text(self, text: str, *, intent: str | None, requested: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        item = parsing.parse_repair_item(text, free_text_ok=requested == "repair_item")
        if item and requested in (None, "repair_item"):
            out["repair_item"] = item
        urgency = parsing.parse_urgency(text, intent=intent, asked=requested == "repair_urgency")
        if urgency and (requested == "repair_urgency" or "不急" in text or "唔急" in text or "急" in text):
            out["repair_urgency"] = urgency
        return out

    def slots_named_in(self, text: str) -> list[str]:
        t = parsing.normalize(text)
        named = []
        if any(w in t for w in ("东西", "嘢", "坏", "不是", "唔系")):
            named.append("repair_item")
        if "急" in t:
            named.append("repair_urgency")
        return named

    async def validate_repair_item(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        item = parsing.parse_repair_item(str(value or ""), free_text_ok=True)
        return {"repair_item": item} if item else self._retry("repair_item")

    async def validate_repair_urgency(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        if value in ("urgent", "normal"):
            return {"repair_urgency": value}
        urgency = parsing.parse_urgency(str(value or ""), intent=latest_intent(tracker), asked=True)
        return {"repair_urgency": urgency} if urgency else self._retry("repair_urgency")

    async def validate_repair_confirmed(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return await self._validate_confirmed(value, tracker)


class ValidateAppointmentForm(_OrderForm):
    form = "appointment_form"
    order_type = "appointment"
    slots = ("appt_hospital", "appt_department", "appt_time", "appt_escort")

    @property
    def confirmed_slot(self) -> str:
        return "appt_confirmed"

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

    def slots_named_in(self, text: str) -> list[str]:
        t = parsing.normalize(text)
        named = []
        if "医院" in t:
            named.append("appt_hospital")
        if "科" in t:
            named.append("appt_department")
        if any(w in t for w in ("时间", "日子", "哪天", "边日", "几点")):
            named.append("appt_time")
        if "陪" in t:
            named.append("appt_escort")
        return named

    async def validate_appt_hospital(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        hospital = parsing.parse_hospital(str(value or ""), free_text_ok=True)
        return {"appt_hospital": hospital} if hospital else self._retry("appt_hospital")

    async def validate_appt_department(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        department = parsing.parse_department(str(value or ""), free_text_ok=True)
        return {"appt_department": department} if department else self._retry("appt_department")

    async def validate_appt_time(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        when = parsing.parse_when(str(value or ""))
        return {"appt_time": when} if when and when != "尽快" else self._retry("appt_time")

    async def validate_appt_escort(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        if isinstance(value, bool):
            return {"appt_escort": value}
        escort = parsing.parse_escort(str(value or ""), intent=latest_intent(tracker))
        return {"appt_escort": escort} if escort is not None else self._retry("appt_escort")

    async def validate_appt_confirmed(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict[str, Any]:
        return await self._validate_confirmed(value, tracker)


# -- asking: one action per slot, built from a table ----------------------------------------------------
def readback(form: str, tracker: Tracker, dialect: str) -> str:
    """The order read back slowly: short sentences, numbers as words, address only when verified."""
    s = tracker.get_slot
    p = phrasebook()
    if form == "gas_form":
        size = {"15kg": "gas_size_15kg", "5kg": "gas_size_5kg", "50kg": "gas_size_50kg"}.get(s("gas_size"), "gas_size_usual")
        if is_verified(tracker) and s("gas_address"):
            place = p.piece("gas_place_spoken", dialect, address=s("gas_address"))
        else:
            place = p.piece("gas_place_profile", dialect)
        return p.say("readback_gas", dialect, size=p.piece(size, dialect),
                     quantity=parsing.speak_number(int(s("gas_quantity") or 1)) + p.piece("gas_unit", dialect),
                     place=place, when=spoken_when(s("gas_time") or "", dialect))
    if form == "meal_form":
        meals = "、".join(parsing.MEAL_NAMES[m][0] for m in s("meal_meals") or [] if m in parsing.MEAL_NAMES)
        diet = "、".join(parsing.DIET_NAMES.get(d, d) for d in s("meal_diet") or [])
        return p.say("readback_meal", dialect, meals=meals, days=spoken_when(s("meal_days") or "", dialect), diet=diet)
    if form == "repair_form":
        urgency = p.piece("repair_urgent" if s("repair_urgency") == "urgent" else "repair_not_urgent", dialect)
        return p.say("readback_repair", dialect, item=s("repair_item"), urgency=urgency)
    if form == "appointment_form":
        return p.say("readback_appointment", dialect, hospital=s("appt_hospital"), department=s("appt_department"),
                     when=spoken_when(s("appt_time") or "", dialect),
                     escort=p.piece("escort_yes" if s("appt_escort") else "escort_no", dialect))
    return ""


class _AskSlot(Action, ABC):
    slot = ""
    form = ""

    @abstractmethod
    def name(self) -> str: ...

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dialect = dialect_of(tracker)
        # the pipeline reads the next turn as this slot's answer, not as a new request (issue #27)
        custom(dispatcher, "asking", slot=self.slot, form=self.form)
        retry = tracker.get_slot("retry_slot") == self.slot
        if retry and consecutive_fallbacks(tracker) >= 2:
            dispatcher.utter_message(text=say("keypad_menu", dialect))
            custom(dispatcher, "keypad_menu")
            return [SlotSet("retry_slot", None)]
        if self.slot.endswith("_confirmed"):
            if retry:
                dispatcher.utter_message(text=say("retry_confirm", dialect))
            else:
                dispatcher.utter_message(text=say("confirm_intro", dialect))
                dispatcher.utter_message(text=readback(self.form, tracker, dialect))
                dispatcher.utter_message(text=say("confirm_question", dialect))
        elif self.slot == "order_fix":
            dispatcher.utter_message(text=say("ask_order_fix", dialect))
        else:
            dispatcher.utter_message(text=say(("retry_" if retry else "ask_") + self.slot, dialect))
        return [SlotSet("retry_slot", None)] if retry else []


_FORM_SLOTS = {
    "gas_form": (*ValidateGasForm.slots, "gas_confirmed"),
    "meal_form": (*ValidateMealForm.slots, "meal_confirmed"),
    "repair_form": (*ValidateRepairForm.slots, "repair_confirmed"),
    "appointment_form": (*ValidateAppointmentForm.slots, "appt_confirmed"),
}


def _camel(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


for _form, _slots in _FORM_SLOTS.items():
    for _slot in _slots:
        globals()[f"ActionAsk{_camel(_slot)}"] = type(
            f"ActionAsk{_camel(_slot)}",
            (_AskSlot,),
            {"slot": _slot, "form": _form, "name": lambda self: f"action_ask_{self.slot}"},
        )


class ActionAskOrderFix(_AskSlot):
    slot = "order_fix"

    def name(self) -> str:
        return "action_ask_order_fix"


# -- placing orders -----------------------------------------------------------------------------------------
class _PlaceOrder(Action, ABC):
    form = ""
    order_type = ""
    slots: tuple[str, ...] = ()
    confirmed_slot = ""
    placed_phrase = "order_placed"

    @abstractmethod
    def details(self, tracker: Tracker) -> dict[str, Any]:
        """What goes into the order's ``details``."""

    def reset(self) -> list[EventType]:
        return [SlotSet(s, None) for s in (*self.slots, self.confirmed_slot, "order_fix", "order_fix_pending", "retry_slot")]

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dialect = dialect_of(tracker)
        confirmed = tracker.get_slot(self.confirmed_slot)
        if confirmed is not True:
            dispatcher.utter_message(text=say("order_cancelled", dialect))
            return self.reset()
        seq = int(tracker.get_slot("order_seq") or 0) + 1
        key = f"{tracker.sender_id}:{self.form}:{seq}"
        try:
            result = await api().place_order(
                elder_id=elder_id_of(tracker),
                call_id=call_id_of(tracker),
                order_type=self.order_type,
                details={**self.details(tracker), "dialect": dialect},
                idempotency_key=key,
            )
        except PlatformApiError as exc:
            logger.error("order %s failed: %s (%s)", key, exc.message, exc.code)
            dispatcher.utter_message(text=say("order_failed", dialect))
            custom(dispatcher, "handover", reason=f"order_failed:{exc.code}")
            return self.reset()  # the operator takes it from here; nothing was claimed
        order_id = result["order_id"]
        spoken_id = " ".join(str(order_id)[-4:])  # last digits, spaced so the voice reads them one by one
        dispatcher.utter_message(text=say(self.placed_phrase, dialect, order_id=spoken_id))
        custom(dispatcher, "order_placed", order_id=order_id, type=self.order_type)
        return [*self.reset(), SlotSet("order_seq", float(seq))]


class ActionOrderGas(_PlaceOrder):
    form, order_type, slots, confirmed_slot = "gas_form", "gas", (*ValidateGasForm.slots, "gas_address_source"), "gas_confirmed"

    def name(self) -> str:
        return "action_order_gas"

    def details(self, tracker: Tracker) -> dict[str, Any]:
        s = tracker.get_slot
        return {
            "cylinder": s("gas_size"),
            "quantity": int(s("gas_quantity") or 1),
            "address": s("gas_address"),
            "address_source": s("gas_address_source") or "profile",
            "time_window": s("gas_time"),
        }


class ActionOrderMeal(_PlaceOrder):
    form, order_type, slots, confirmed_slot = "meal_form", "meal", ValidateMealForm.slots, "meal_confirmed"

    def name(self) -> str:
        return "action_order_meal"

    def details(self, tracker: Tracker) -> dict[str, Any]:
        s = tracker.get_slot
        return {"meals": s("meal_meals"), "days": s("meal_days"), "diet": s("meal_diet")}


class ActionOrderRepair(_PlaceOrder):
    form, order_type, slots, confirmed_slot = "repair_form", "repair", ValidateRepairForm.slots, "repair_confirmed"

    def name(self) -> str:
        return "action_order_repair"

    def details(self, tracker: Tracker) -> dict[str, Any]:
        s = tracker.get_slot
        return {"item": s("repair_item"), "urgency": s("repair_urgency")}


class ActionBookAppointment(_PlaceOrder):
    form, order_type, slots, confirmed_slot = "appointment_form", "appointment", ValidateAppointmentForm.slots, "appt_confirmed"
    placed_phrase = "appointment_placed"

    def name(self) -> str:
        return "action_book_appointment"

    def details(self, tracker: Tracker) -> dict[str, Any]:
        s = tracker.get_slot
        return {
            "hospital": s("appt_hospital"),
            "department": s("appt_department"),
            "when": s("appt_time"),
            "needs_escort": bool(s("appt_escort")),
        }

