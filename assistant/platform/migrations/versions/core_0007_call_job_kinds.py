"""call_jobs.kind: ``warning`` (one elder's call of a warning broadcast) and ``order_followup`` (the call
after a work order is done) on the call engine's rows (issue #17 item 3).

Revision ID: core_0007 (branch "core"). Model: ``telephony.models.CallJob``.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "core_0007"
down_revision: str | Sequence[str] | None = "core_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "kind IN ('care_call', 'family_escalation', 'alert')"
NEW = "kind IN ('care_call', 'family_escalation', 'alert', 'warning', 'order_followup')"


def upgrade() -> None:
    with op.batch_alter_table("call_jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_call_jobs_kind"), type_="check")
        batch_op.create_check_constraint("kind", NEW)


def downgrade() -> None:
    op.execute("DELETE FROM call_jobs WHERE kind IN ('warning', 'order_followup')")
    with op.batch_alter_table("call_jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_call_jobs_kind"), type_="check")
        batch_op.create_check_constraint("kind", OLD)
