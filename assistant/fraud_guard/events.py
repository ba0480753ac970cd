"""Events the fraud guard emits (small frozen dataclasses, JSON-ready through ``to_json``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, kw_only=True)
class FraudRiskUpdated:
    """After every transcript turn."""

    call_id: str
    turn: int
    speaker: str
    risk: float
    scam_type: str | None
    new_evidence: tuple[str, ...] = ()
    flagged: bool = False


@dataclass(frozen=True, kw_only=True)
class FraudFlag:
    """The call crossed the threshold: what operators see (POST alert kind=fraud) and family are told."""

    call_id: str
    elder_id: int | None
    risk: float
    scam_type: str | None
    evidence: tuple[str, ...]
    evidence_labels: tuple[str, ...]
    turn: int
    dialect: str | None
    transcript_redacted: tuple[dict[str, str], ...]
    platform_claim_without_ledger: bool = False
    at: dt.datetime = field(default_factory=_now)

    def alert_detail(self) -> dict[str, Any]:
        """``detail`` for ``POST /api/alerts`` / ``PlatformStore.raise_alert(kind="fraud")``."""
        return {
            "risk": self.risk,
            "scam_type": self.scam_type,
            "evidence": list(self.evidence),
            "evidence_labels": list(self.evidence_labels),
            "turn": self.turn,
            "platform_claim_without_ledger": self.platform_claim_without_ledger,
            "transcript": list(self.transcript_redacted),
            "at": self.at.isoformat(),
        }

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["at"] = self.at.isoformat()
        return d


@dataclass(frozen=True, kw_only=True)
class FraudWarningSpoken:
    call_id: str
    text: str
    dialect: str | None


FraudEvent = FraudRiskUpdated | FraudFlag | FraudWarningSpoken
FlagSink = Callable[[FraudFlag], Awaitable[None]]
EventSink = Callable[[FraudEvent], Awaitable[None]]
