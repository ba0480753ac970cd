"""medication_plans (an elder's medication reminder times) and the call_jobs kind ``medication``
(issue #17 item 3).

Revision ID: core_0008 (branch "core"). Models: ``telephony.models.MedicationPlan``, ``CallJob``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "core_0008"
down_revision: str | Sequence[str] | None = "core_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "kind IN ('care_call', 'family_escalation', 'alert', 'warning', 'order_followup')"
NEW = "kind IN ('care_call', 'family_escalation', 'alert', 'warning', 'order_followup', 'medication')"


def upgrade() -> None:
    op.create_table(
        "medication_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=False),
        sa.Column("medicine", sa.String(length=64), nullable=False),
        sa.Column("times", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["elder_id"], ["elders.id"], name=op.f("fk_medication_plans_elder_id_elders"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_medication_plans")),
    )
    with op.batch_alter_table("medication_plans", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_medication_plans_elder_id"), ["elder_id"], unique=False)
    with op.batch_alter_table("call_jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_call_jobs_kind"), type_="check")
        batch_op.create_check_constraint("kind", NEW)


def downgrade() -> None:
    op.execute("DELETE FROM call_jobs WHERE kind = 'medication'")
    with op.batch_alter_table("call_jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_call_jobs_kind"), type_="check")
        batch_op.create_check_constraint("kind", OLD)
    op.drop_table("medication_plans")
