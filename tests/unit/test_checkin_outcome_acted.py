"""A care call's outcome comes from what the dialogue acted on, not from an intent it held back (#27): a TV
advertisement heard as "I'm unwell" and read back, not confirmed, is no "unwell" answer."""

from __future__ import annotations

from types import SimpleNamespace

from assistant.session import CallSession
from assistant.turns import TurnRecord, TurnTracker
from telephony.gateway_service import with_checkin_outcomes


class _Runner:
    def __init__(self) -> None:
        self.outcomes: list[tuple[str, str]] = []

    def record_outcome(self, call_id: str, outcome: str) -> None:
        self.outcomes.append((call_id, outcome))


def _turn(intent: str, decision: str | None) -> TurnRecord:
    record = TurnRecord(turn=1, intent=intent, intent_confidence=0.92)
    if decision is not None:
        record.events.append({"event": "decision", "decision": decision})
    return record


def test_acted_intent_is_none_when_the_decision_held_it_back():
    for held in ("confirm", "not_heard", "ask_emergency"):
        assert _turn("checkin_unwell", held).acted_intent is None, held
    assert _turn("checkin_unwell", "act").acted_intent == "checkin_unwell"
    assert _turn("emergency", "emergency").acted_intent == "emergency"
    assert _turn("checkin_unwell", None).acted_intent == "checkin_unwell"  # keypad, a confirmed read-back


async def test_care_call_outcome_only_from_turns_acted_on():
    runner = _Runner()
    session = CallSession(channel="phone")
    factory = with_checkin_outcomes(lambda **_: SimpleNamespace(tracker=TurnTracker()), runner)
    listener = factory(transport=None, session=session).tracker.listeners[0]
    await listener("reply", _turn("checkin_unwell", "confirm"))  # read back: "您是说身体不舒服…吗？"
    assert runner.outcomes == []
    await listener("reply", _turn("checkin_unwell", None))  # the elder's yes: Rasa acted on /checkin_unwell
    assert runner.outcomes == [(session.call_id, "unwell")]
