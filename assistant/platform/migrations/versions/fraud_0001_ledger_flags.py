"""fraud tables: fraud_call_ledger (calls placed, one-time codes), fraud_flags

Revision ID: fraud_0001
Branch "fraud", depends on core_0001. Models: assistant/platform/models_fraud.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fraud_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("fraud",)
depends_on: str | Sequence[str] | None = ("core_0001",)


def upgrade() -> None:
    op.create_table(
        "fraud_call_ledger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=True),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("call_ref", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("resumed_call_id", sa.String(length=64), nullable=True),
        sa.Column("resumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'answered', 'resumed', 'expired', 'cancelled', 'failed')",
            name=op.f("ck_fraud_call_ledger_status"),
        ),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_fraud_call_ledger_elder_id_elders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fraud_call_ledger")),
        sa.UniqueConstraint("call_ref", name=op.f("uq_fraud_call_ledger_call_ref")),
    )
    with op.batch_alter_table("fraud_call_ledger", schema=None) as batch_op:
        batch_op.create_index("ix_fraud_call_ledger_number_valid", ["number", "valid_until"], unique=False)
        batch_op.create_index("ix_fraud_call_ledger_elder_created", ["elder_id", "created_at"], unique=False)

    op.create_table(
        "fraud_flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=True),
        sa.Column("risk", sa.Float(), nullable=False),
        sa.Column("scam_type", sa.String(length=32), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("transcript_redacted", sa.Text(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_fraud_flags_elder_id_elders"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fraud_flags")),
    )
    with op.batch_alter_table("fraud_flags", schema=None) as batch_op:
        batch_op.create_index("ix_fraud_flags_created", ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_fraud_flags_call_id"), ["call_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("fraud_flags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fraud_flags_call_id"))
        batch_op.drop_index("ix_fraud_flags_created")
    op.drop_table("fraud_flags")
    with op.batch_alter_table("fraud_call_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_fraud_call_ledger_elder_created")
        batch_op.drop_index("ix_fraud_call_ledger_number_valid")
    op.drop_table("fraud_call_ledger")
