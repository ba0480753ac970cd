"""outbox status ``no_report``: a message the SMS gateway accepted with no delivery report after
``sms.no_report_after_s`` (the sweeper in ``OutboxDispatcher``; issue #16).

Revision ID: core_0005 (branch "core"). Model: ``assistant.platform.models.Outbox``.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "core_0005"
down_revision: str | Sequence[str] | None = "core_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "status IN ('queued', 'sent', 'delivered', 'failed', 'undeliverable')"
NEW = "status IN ('queued', 'sent', 'delivered', 'failed', 'undeliverable', 'no_report')"


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_outbox_status"), type_="check")
        batch_op.create_check_constraint("status", NEW)


def downgrade() -> None:
    op.execute("UPDATE outbox SET status = 'sent' WHERE status = 'no_report'")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_outbox_status"), type_="check")
        batch_op.create_check_constraint("status", OLD)
