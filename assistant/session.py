"""Per-call state shared by the stages of one pipeline (one call or one smart-screen session)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

Channel = Literal["phone", "screen", "simulate", "talk"]
Verification = Literal["unverified", "verified"]


@dataclass(kw_only=True)
class CallSession:
    channel: Channel
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    direction: Literal["inbound", "outbound"] = "inbound"
    elder_id: int | None = None
    caller_number: str | None = None
    # "cmn" | "yue"; None = decide from the first utterance and keep for the call
    dialect: str | None = None
    # the fraud guard's verdict: personal data may be spoken only when "verified"
    verification: Verification = "unverified"
    ledger_entry_id: int | None = None
    tts_rate_wpm: int = 130
    tts_volume: float = 1.0
    # the voice chosen for this elder (e.g. "pack-yue", a recorded voice pack), tried first; None: the chain
    tts_voice: str | None = None
    failed_turns: int = 0
    last_bot_text: str = ""
    # whose voice the pipeline hears, in the scam detector's terms: "callee" (the elder, the usual case) or
    # "caller" (a recorded or relayed call where the other party speaks, e.g. `simulate --speaker caller`)
    heard_speaker: Literal["callee", "caller"] = "callee"
    # what the bot just asked: "yes_no" (a read-back to confirm), "menu" (keypad menu) or None (open)
    expect: str | None = None
    # a slow speaker's longer wait in silence when Smart Turn judges a turn unfinished (None: the setting
    # audio.turn_incomplete_max_silence_s)
    end_of_turn_max_silence_s: float | None = None
    # the form slot Rasa just asked for (custom event "asking"): answers to it are slot values, not requests
    asking_slot: str | None = None
    # an uncertain emergency was asked about ("do you need help?"): what raised it, until it is answered
    pending_emergency: dict[str, Any] | None = None
    # a consequence understood on weak evidence was read back ("您是说身体不舒服…吗？"): what, until yes / no / silence
    pending_confirm: dict[str, Any] | None = None
    # the question after turns not understood was asked in this call: later failures lead to the keypad menu
    failure_question_asked: bool = False
    # while the caller keys their PIN (``*`` … ``#``), until this ``time.monotonic()`` deadline: keypad digits
    # are then secret (no keypad alerts, not in reports or transcripts); after it the keypad works as usual
    pin_entry_until: float | None = None
    # the caller (an inbound call from an elder's registered number) asked us to hang up and call them back
    # on that number: the gateway places the outbound call (with the full proof) after this call ends
    callback_requested: bool = False

    @property
    def verified(self) -> bool:
        return self.verification == "verified"

    @property
    def keypad_secret(self) -> bool:
        return self.pin_entry_until is not None and time.monotonic() < self.pin_entry_until
