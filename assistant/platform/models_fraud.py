"""Fraud-guard tables (branch "fraud" of the platform's Alembic history, revision ``fraud_0001``).

- ``fraud_call_ledger``: every call the platform places, written BEFORE dialling, with a short one-time
  code and its validity window. The smart screen shows the code; the bot speaks it on that call only (an
  inbound call is never linked to an entry: its caller ID may be spoofed).
- ``fraud_flags``: calls the detector flagged (risk, scam type, evidence, redacted transcript).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from assistant.platform.models import Base, utcnow

LEDGER_STATUSES = ("pending", "answered", "resumed", "expired", "cancelled", "failed")


class LedgerEntry(Base):
    __tablename__ = "fraud_call_ledger"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'answered', 'resumed', 'expired', 'cancelled', 'failed')", name="status"),
        Index("ix_fraud_call_ledger_number_valid", "number", "valid_until"),
        Index("ix_fraud_call_ledger_elder_created", "elder_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    elder_id: Mapped[int | None] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), nullable=True)
    number: Mapped[str] = mapped_column(String(32))  # normalised (digits, optional leading +)
    purpose: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(8))
    call_ref: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    valid_until: Mapped[dt.datetime] = mapped_column()
    call_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the outbound call
    resumed_call_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the elder's call back
    resumed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class FraudFlagRow(Base):
    __tablename__ = "fraud_flags"
    __table_args__ = (Index("ix_fraud_flags_created", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    elder_id: Mapped[int | None] = mapped_column(ForeignKey("elders.id", ondelete="SET NULL"), nullable=True)
    risk: Mapped[float] = mapped_column(Float)
    scam_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    transcript_redacted: Mapped[str] = mapped_column(Text, default="")
    alert_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ElderPin(Base):
    """The elder's keypad PIN (4–6 digits) as an argon2 hash, and the per-elder attempt counter.

    ``failed_count`` counts attempts since the last success (an attempt is counted *before* the hash is
    checked, so parallel calls cannot guess past the limit); ``locked_until`` set → every attempt is
    refused until then. Migration: ``core_0002_elder_pins``."""

    __tablename__ = "elder_pins"

    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), primary_key=True)
    pin_hash: Mapped[str] = mapped_column(String(255))
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
