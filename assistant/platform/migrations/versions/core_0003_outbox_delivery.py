"""outbox delivery states: status (queued/sent/delivered/failed/undeliverable), next_attempt_at (retry
backoff), delivered_at, the delivery-report secret's hash and the last report (issue #16).

Revision ID: core_0003 (branch "core"). Model: ``assistant.platform.models.Outbox``. Log rows already
marked sent keep ``sent``; SMS / email rows "sent" before this revision were only logged: ``undeliverable``;
the others become ``queued``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "core_0003"
down_revision: str | Sequence[str] | None = "core_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=16), server_default="queued", nullable=False))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("dlr_secret_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("dlr_status", sa.String(length=255), nullable=True))
    # before this revision the sms / email channels only wrote to the log and marked the row sent: say so
    op.execute("UPDATE outbox SET status = 'sent' WHERE sent_at IS NOT NULL AND channel = 'log'")
    op.execute(
        "UPDATE outbox SET status = 'undeliverable', "
        "last_error = 'only written to the log (no SMS / email channel before core_0003)' "
        "WHERE sent_at IS NOT NULL AND channel IN ('sms', 'email')"
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_check_constraint(
            "status", "status IN ('queued', 'sent', 'delivered', 'failed', 'undeliverable')"
        )
        batch_op.create_index("ix_outbox_status_next", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_status_next")
        batch_op.drop_constraint(op.f("ck_outbox_status"), type_="check")
        batch_op.drop_column("dlr_status")
        batch_op.drop_column("dlr_secret_hash")
        batch_op.drop_column("delivered_at")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("status")
