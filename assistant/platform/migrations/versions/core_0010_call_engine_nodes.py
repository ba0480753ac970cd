"""call_engine_nodes: each call-engine node's heartbeat (its lines, dial rate, tick), from which the engine
reports the platform's calling capacity (issue #17 item 2, ``telephony.capacity``).

Revision ID: core_0010 (branch "core"). Model: ``telephony.models.CallEngineNode``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "core_0010"
down_revision: str | Sequence[str] | None = "core_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_engine_nodes",
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("dials_per_s", sa.Float(), nullable=False),
        sa.Column("tick_s", sa.Float(), nullable=False),
        sa.Column("lease_s", sa.Float(), nullable=False),
        sa.Column("in_progress", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_call_engine_nodes")),
    )


def downgrade() -> None:
    op.drop_table("call_engine_nodes")
