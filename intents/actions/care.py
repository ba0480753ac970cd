"""Care: an SOS (alert at once, then reassurance), health questions (a nurse calls back), a check-in answer.

The alert goes through ``POST /api/alerts``; what the elder hears matches what happened (family are
mentioned only when a message to them is on its way, an apology and a person when the alert failed)."""

from __future__ import annotations

import logging
import time

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import (
    api,
    call_id_of,
    call_metadata,
    custom,
    dialect_of,
    elder_id_of,
    heard_text,
    say,
    user_turn_time,
)
from actions.platform_api import PlatformApiError

logger = logging.getLogger(__name__)


class ActionEmergency(Action):
    """SOS at once: POST /api/alerts kind=sos (time-to-alert in the detail), then short reassurance."""

    def name(self) -> str:
        return "action_emergency"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dialect = dialect_of(tracker)
        received_at = user_turn_time(tracker)
        action_started_at = time.time()
        meta = call_metadata(tracker)
        detail = {
            # "/emergency" comes from the pipeline's decision (a keyword, or the elder's "yes"): it sends what was heard
            "transcript": heard_text(tracker),
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


async def care_alert(dispatcher: CollectingDispatcher, tracker: Tracker, *, kind: str, failed_reason: str) -> bool:
    """``POST /api/alerts`` with what the elder said; on failure a person is asked for (handover event)."""
    try:
        await api().raise_alert(elder_id=elder_id_of(tracker), call_id=call_id_of(tracker), kind=kind,
                                detail={"transcript": heard_text(tracker), "dialect": dialect_of(tracker)})
    except PlatformApiError as exc:
        logger.error("%s alert for %s failed: %s", kind, tracker.sender_id, exc.code)
        custom(dispatcher, "handover", reason=failed_reason)
        return False
    return True


class ActionHealthConsult(Action):
    """No medical advice beyond the 120 line; books a nurse callback (alert kind nurse_callback)."""

    def name(self) -> str:
        return "action_health_consult"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        dialect = dialect_of(tracker)
        dispatcher.utter_message(text=say("health_consult", dialect))
        booked = await care_alert(dispatcher, tracker, kind="nurse_callback", failed_reason="nurse_callback_failed")
        dispatcher.utter_message(text=say("nurse_booked" if booked else "nurse_failed", dialect))
        return []


class ActionCheckinUnwell(Action):
    """Not well on a check-in: an operator alert (kind unwell), and the same words whether it went through
    or a person is asked for instead."""

    def name(self) -> str:
        return "action_checkin_unwell"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        await care_alert(dispatcher, tracker, kind="unwell", failed_reason="unwell_alert_failed")
        dispatcher.utter_message(text=say("checkin_unwell", dialect_of(tracker)))
        return []
