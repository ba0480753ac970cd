"""The call engine's table: one ``call_jobs`` row per planned outbound call (issue #17).

A row is one step of an elder's day: the care call, each retry, each family escalation, each alert that
must reach an operator. Its ``state`` moves

    planned → claimed → dialling → answered → done
                      ↘ (not dialled: lease lost) → planned
                                 ↘ no_answer | busy | failed | missed   (+ the next step's row, same transaction)

``job_key`` is unique: the day's care call of an elder is ``care:<elder>:<date>``, its next steps are
``<chain>:a2``, ``<chain>:f1``, ``<chain>:alert`` … so planning is idempotent on every node. A worker owns a
row while ``lease_until`` (engine clock) is in the future and renews it every tick; an expired lease is
resolved by any node (see ``telephony.call_jobs``). Migration: ``core_0004_call_jobs``; the kinds ``warning``
(a broadcast's call, ``telephony.broadcasts``) and ``order_followup``: ``core_0007_call_job_kinds``; ``medication``
(a reminder of a ``medication_plans`` row, ``telephony.medication``): ``core_0008_medication_plans``; the
nodes' heartbeats (``call_engine_nodes``, ``telephony.capacity``): ``core_0010_call_engine_nodes``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from assistant.platform.models import Base, _in

JOB_KINDS = ("care_call", "family_escalation", "alert", "warning", "order_followup", "medication")
JOB_STATES = ("planned", "claimed", "dialling", "answered", "done", "no_answer", "busy", "failed", "missed")
FINAL_STATES = ("done", "no_answer", "busy", "failed", "missed")


class CallJob(Base):
    __tablename__ = "call_jobs"
    __table_args__ = (
        CheckConstraint(_in("kind", JOB_KINDS), name="kind"),
        CheckConstraint(_in("state", JOB_STATES), name="state"),
        Index("ix_call_jobs_state_not_before", "state", "not_before"),
        Index("ix_call_jobs_state_lease", "state", "lease_until"),
        Index("ix_call_jobs_finished_at", "finished_at"),  # the platform view's and /metrics' windows (core_0011)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_key: Mapped[str] = mapped_column(String(96), unique=True)
    chain: Mapped[str] = mapped_column(String(64), index=True)  # the day's care call this step belongs to
    kind: Mapped[str] = mapped_column(String(24))
    elder_id: Mapped[int] = mapped_column(Integer, index=True)  # no FK: an elder removed later keeps the history
    number: Mapped[str] = mapped_column(String(128), default="")  # what is dialled ('' for an alert)
    attempt: Mapped[int] = mapped_column(Integer, default=1)  # care call: 1..n; family: contact index 1..n
    state: Mapped[str] = mapped_column(String(16), default="planned")
    not_before: Mapped[dt.datetime] = mapped_column()
    deadline: Mapped[dt.datetime | None] = mapped_column(nullable=True)  # a first call later than this is missed
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    claims: Mapped[int] = mapped_column(Integer, default=0)  # how often a worker took it
    ledger_entry_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    call_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    result: Mapped[str | None] = mapped_column(String(32), nullable=True)  # answered / a TelephonyError code / why
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)  # well / unwell / …
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)  # alert kind and history
    created_at: Mapped[dt.datetime] = mapped_column()
    claimed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    dialled_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class MedicationPlan(Base):
    """An elder's medication reminder: a call at each local ``times`` ("08:00,20:00") every day."""

    __tablename__ = "medication_plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    elder_id: Mapped[int] = mapped_column(ForeignKey("elders.id", ondelete="CASCADE"), index=True)
    medicine: Mapped[str] = mapped_column(String(64))  # what the elder hears: 降压药
    times: Mapped[str] = mapped_column(String(64))  # local HH:MM, comma-separated
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column()


class CallEngineNode(Base):
    """A call-engine node's heartbeat (issue #17 item 2): written by every node each tick, read to report what
    the platform can place (``telephony.capacity``). A node is live while ``seen_at + lease_s`` is ahead."""

    __tablename__ = "call_engine_nodes"

    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    lines: Mapped[int] = mapped_column(Integer)  # outbound calls in progress it may hold (its limit, see the engine)
    dials_per_s: Mapped[float] = mapped_column(Float)  # its trunk's call rate (0 = not paced)
    tick_s: Mapped[float] = mapped_column(Float)  # how often it refills its lines
    lease_s: Mapped[float] = mapped_column(Float)
    in_progress: Mapped[int] = mapped_column(Integer, default=0)  # calls it held at its last tick
    seen_at: Mapped[dt.datetime] = mapped_column()
