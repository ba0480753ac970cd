"""The gateway's lines: the one place that decides whether a call may take one (issue #17 item 2, session 10).

The gateway has ``lines`` (``telephony.max_concurrent_calls``) and keeps ``inbound_reserve``
(``telephony.engine_inbound_reserve_calls``) of them for elders calling in. ``SipEndpoint`` owns one
``LineGate``: it admits an inbound INVITE while any line is free (``admits_inbound``) and every outbound
INVITE goes out on a ``LineTicket`` taken here first — the call engine's jobs (taken when the job is
claimed), the console's operator call-backs (``telephony.handover.OperatorCallbacks``), a hand-over's legs
(operators, family, duty phone, the emergency number), call screening's legs, the identity call-back and
``assistant phone call`` (``SipEndpoint.dial`` takes a routine ticket itself when it is given none).

What an outbound call may take, by ``LineUse``:

- ``ROUTINE`` — everything that can wait: care calls, warnings, reminders, follow-ups and their family
  escalations, the console's call-backs, the identity call-back, screening legs, the legs of a hand-over that
  is not urgent (keypad 0, 转人工, repeated misunderstanding, a dialogue outage). Never a reserved line: with
  every non-reserved line busy it waits (``take(wait_s=...)``, first come first served) or is refused
  (``try_take``). A routine call that waits is ahead of the call engine: the engine claims only lines nobody
  is waiting for, so a queued operator call-back gets the next line an engine call frees instead of the
  engine refilling it at its next tick.
- ``URGENT`` — the legs of an urgent hand-over (SOS, an unconfirmed emergency, the fraud guard's scam
  moment: ``telephony.handover.URGENT_KINDS``). May take reserved lines and goes before routine waiters.
  Reasoning: the reserve exists so that an elder in an emergency reaches a person. An elder whose SOS
  came in on a reserved line is that elder; refusing the operator's leg for them would keep a line free
  for a hypothetical second emergency while the real one goes unanswered. The cost is bounded: a
  hand-over holds at most its ringing legs (one operator at a time by default) and ends with the elder's
  call. A routine call-back has no elder on the line waiting; it waits for a non-reserved line instead.

Inbound calls may take any line, reserved or not; with every line busy the endpoint answers 503 with
Retry-After (``SipEndpoint._on_invite``) and the gateway records a missed call for a known elder so an
operator calls back (``Gateway._missed_call``).

A ticket counts as a busy line from ``take`` until it is released or spent: ``SipEndpoint.dial`` spends it
in the same step that registers the call (no await between), after which the call counts itself; a dial
that fails before that releases it. ``changed()`` (a call ended, a ticket released) wakes the waiters.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LineGate", "LineTicket", "LineUse"]


class LineUse(enum.StrEnum):
    ROUTINE = "routine"  # never a reserved line; waits or is refused
    URGENT = "urgent"  # an urgent hand-over's legs: may take the inbound reserve


@dataclass(eq=False, kw_only=True)
class LineTicket:
    """One line promised to one outbound INVITE. ``spend()`` when the call is registered (it counts itself
    from then on), ``release()`` when it will not be placed; both are idempotent, either ends the ticket."""

    use: LineUse
    gate: LineGate
    state: str = "held"  # held → spent | released

    def spend(self) -> None:
        if self.state == "held":
            self.state = "spent"
            self.gate._held.discard(self)

    def release(self) -> None:
        if self.state == "held":
            self.state = "released"
            self.gate._held.discard(self)
            self.gate.changed()


@dataclass(eq=False, kw_only=True)
class _Waiter:
    use: LineUse
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class LineGate:
    """See the module doc. ``calls()``: the calls on the gateway now (inbound and outbound)."""

    def __init__(self, *, lines: int, inbound_reserve: int, calls: Callable[[], int]) -> None:
        if lines < 1:
            raise ValueError("the gateway needs at least one line")
        if inbound_reserve < 0 or inbound_reserve >= lines:
            raise ValueError("the inbound reserve must leave outbound calls at least one of the gateway's lines")
        self.lines = lines
        self.inbound_reserve = inbound_reserve
        self.calls = calls
        self._held: set[LineTicket] = set()
        self._waiters: list[_Waiter] = []  # urgent ones first, then routine; each kind first come first served
        self.refused_inbound = 0  # inbound calls refused (503) because every line was busy (SipEndpoint counts)

    @property
    def busy(self) -> int:
        """Lines taken: the gateway's calls and the tickets not yet spent."""
        return self.calls() + len(self._held)

    @property
    def waiting(self) -> int:
        """Outbound calls waiting for a line (console, metrics)."""
        return len(self._waiters)

    def admits_inbound(self) -> bool:
        """An inbound call may take any free line, reserved or not."""
        return self.busy < self.lines

    def free(self, use: LineUse) -> int:
        """Lines a call of ``use`` that does not wait may take now: never ahead of those waiting for one
        (urgent calls wait only behind urgent ones), a routine call never a reserved line."""
        ahead = sum(1 for w in self._waiters if use is LineUse.ROUTINE or w.use is LineUse.URGENT)
        return max(self._left(use) - ahead, 0)

    def try_take(self, use: LineUse) -> LineTicket | None:
        """A ticket now, or None (no wait)."""
        return self._issue(use) if self.free(use) > 0 else None

    async def take(self, use: LineUse, *, wait_s: float | None) -> LineTicket | None:
        """A ticket, waiting up to ``wait_s`` (None: until a line is free) behind the earlier waiters of the
        same or a higher kind; None when none came in time. Cancelling the wait leaves the queue."""
        ticket = self.try_take(use)
        if ticket is not None or (wait_s is not None and wait_s <= 0):
            return ticket
        me = _Waiter(use=use)
        if use is LineUse.URGENT:
            at = next((i for i, w in enumerate(self._waiters) if w.use is LineUse.ROUTINE), len(self._waiters))
            self._waiters.insert(at, me)
        else:
            self._waiters.append(me)
        try:
            async with asyncio.timeout(wait_s):
                while True:
                    me.wake.clear()
                    if self._left(use) > self._waiters.index(me):
                        self._waiters.remove(me)
                        return self._issue(use)  # no await since the check
                    await me.wake.wait()
        except TimeoutError:
            return None
        finally:
            if me in self._waiters:
                self._waiters.remove(me)
                self.changed()  # the ones behind move up

    def changed(self) -> None:
        """A line may have come free (a call ended, a ticket was released): the waiters look again."""
        for w in self._waiters:
            w.wake.set()

    def _left(self, use: LineUse) -> int:
        left = self.lines - self.busy
        return left - self.inbound_reserve if use is LineUse.ROUTINE else left

    def _issue(self, use: LineUse) -> LineTicket:
        ticket = LineTicket(use=use, gate=self)
        self._held.add(ticket)
        return ticket
