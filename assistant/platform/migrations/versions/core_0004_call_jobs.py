"""call_jobs: every planned outbound call as a row with its state, lease and ledger link (issue #17).

Revision ID: core_0004 (branch "core"). Model: ``telephony.models.CallJob``; the engine that works the rows
is ``telephony.engine.CallEngine``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "core_0004"
down_revision: str | Sequence[str] | None = "core_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = "kind IN ('care_call', 'family_escalation', 'alert')"
_STATES = ("state IN ('planned', 'claimed', 'dialling', 'answered', 'done', 'no_answer', 'busy', 'failed', "
           "'missed')")


def upgrade() -> None:
    op.create_table(
        "call_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_key", sa.String(length=96), nullable=False),
        sa.Column("chain", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.Column("ledger_entry_id", sa.Integer(), nullable=True),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("result", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dialled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(_KINDS, name=op.f("ck_call_jobs_kind")),
        sa.CheckConstraint(_STATES, name=op.f("ck_call_jobs_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_jobs")),
        sa.UniqueConstraint("job_key", name=op.f("uq_call_jobs_job_key")),
    )
    with op.batch_alter_table("call_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_call_jobs_chain"), ["chain"], unique=False)
        batch_op.create_index(batch_op.f("ix_call_jobs_elder_id"), ["elder_id"], unique=False)
        batch_op.create_index("ix_call_jobs_state_not_before", ["state", "not_before"], unique=False)
        batch_op.create_index("ix_call_jobs_state_lease", ["state", "lease_until"], unique=False)


def downgrade() -> None:
    op.drop_table("call_jobs")
