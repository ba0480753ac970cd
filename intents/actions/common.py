"""What every action needs: the call's metadata from the tracker, the table of what the bot says, custom
events for the pipeline, and the Platform API client.

Every reply is chosen by dialect (``metadata.dialect`` of the latest user message: ``yue`` → Cantonese,
anything else → Mandarin) from ``assistant/phrases.py``, the one table of everything the bot says. It is
pure data, imported from the project root, which the action server's launcher (``intents/secured_servers.py``)
and the test runner (``intents/tests/run_actions.py``) put on the path; the platform's name comes from
``ASSISTANT_PLATFORM_NAME`` (set by the assistant from ``settings.platform.name``).
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.platform_api import PlatformApi
from assistant.phrases import DEFAULT_PLATFORM_NAME, Phrasebook

# intents that interrupt a form instead of answering its question (handled by rules, then the form resumes
# or ends); everything else is read as an answer, and an unclear answer is asked again
INTERRUPT_INTENTS = frozenset(
    {"emergency", "request_human", "repeat", "slower", "ask_identity", "report_suspicious_call", "goodbye", "health_consult",
     "checkin_unwell"}
)
CANCEL = "cancel"


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


def heard_text(tracker: Tracker) -> str:
    """What the elder said: the latest text, or for an intent the pipeline sent on the elder's behalf ("/emergency"
    after a yes, "/checkin_unwell" after a read-back was confirmed) the transcript it sends in the metadata."""
    text = latest_text(tracker)
    return str(call_metadata(tracker).get("transcript") or text) if text.startswith("/") else text


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
    """``assistant/phrases.py`` with the platform's name."""
    return Phrasebook(platform_name=os.environ.get("ASSISTANT_PLATFORM_NAME") or DEFAULT_PLATFORM_NAME)


def say(key: str, dialect: str, **fields: Any) -> str:
    return phrasebook().say(key, dialect, **fields)


_YUE_WORDS = (("今天", "今日"), ("明天", "听日"), ("后天", "后日"), ("上午", "上昼"), ("下午", "下昼"), ("晚上", "夜晚"), ("每天", "日日"))


def spoken_when(value: str, dialect: str) -> str:
    """A canonical day / time value (``parsing.parse_when``: Mandarin words) as the dialect says it."""
    if dialect == "yue":
        for cmn, yue in _YUE_WORDS:
            value = value.replace(cmn, yue)
    return value
