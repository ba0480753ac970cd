"""handover_events: each step of a live hand-over (ringing which phones, connected, no answer → family,
acknowledged), appended by the phone gateway; the console's event watcher pops the call on the operator
whose phone rings (issue #16).

Revision ID: core_0006 (branch "core"). Model: ``assistant.platform.models.HandoverEvent``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "core_0006"
down_revision: str | Sequence[str] | None = "core_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "handover_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("ringing", sa.JSON(), nullable=False),
        sa.Column("operator", sa.String(length=255), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_handover_events_alert_id_alerts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handover_events")),
    )
    with op.batch_alter_table("handover_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_handover_events_alert_id"), ["alert_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("handover_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_handover_events_alert_id"))
    op.drop_table("handover_events")
