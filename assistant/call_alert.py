"""A call's alert: something a person must act on, raised during a call by the dialogue (a hand-over, turns
not understood, an emergency), the phone gateway (keypad 0 with Rasa down) or the call engine (a care call's
outcome, nobody answering, a problem with a delivered order). ``PlatformStore.raise_call_alert`` stores it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class CallAlert:
    """``kind`` is an alert kind of the store ("human", "unwell", "misunderstanding" …) or a care call's own
    name for one ("help", "order_problem": stored as the kind the store knows, see ``raise_call_alert``)."""

    kind: str
    call_id: str | None
    elder_id: int | None
    number: str | None = None  # the phone line the call was on, when there was one
    detail: dict[str, Any] = field(default_factory=dict)


AlertSink = Callable[[CallAlert], Awaitable[Any]]
