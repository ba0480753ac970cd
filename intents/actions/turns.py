"""The always-available turns: greeting, goodbye, repeat, slower, a person, not understood, who are you."""

from __future__ import annotations

from abc import ABC, abstractmethod

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import call_metadata, consecutive_fallbacks, custom, dialect_of, latest_intent, say


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


def last_bot_text(tracker: Tracker) -> str | None:
    """What the bot said last (the form's own re-ask repeats inside a form)."""
    return next((e["text"] for e in reversed(tracker.events) if e.get("event") == "bot" and e.get("text")), None)


class ActionRepeat(Action):
    """Say the last bot utterance again. Inside a form the form's own re-ask is the repetition."""

    def name(self) -> str:
        return "action_repeat"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        if tracker.active_loop.get("name"):
            return []
        dispatcher.utter_message(text=last_bot_text(tracker) or say("nothing_to_repeat", dialect_of(tracker)))
        return []


class ActionSlower(Action):
    def name(self) -> str:
        return "action_slower"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        custom(dispatcher, "slower")
        dispatcher.utter_message(text=say("slower", dialect_of(tracker)))
        said = last_bot_text(tracker)
        if said and not tracker.active_loop.get("name"):  # outside a form, repeat what was said, slower
            dispatcher.utter_message(text=said)
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
