"""elder_pins: the elder's keypad PIN (argon2 hash) and its attempt counter / lock-out (issue #15).

Revision ID: core_0002 (branch "core"). Model: ``assistant.platform.models_fraud.ElderPin``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "core_0002"
down_revision: str | Sequence[str] | None = "core_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "elder_pins",
        sa.Column("elder_id", sa.Integer(), nullable=False),
        sa.Column("pin_hash", sa.String(length=255), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["elder_id"], ["elders.id"], name=op.f("fk_elder_pins_elder_id_elders"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("elder_id", name=op.f("pk_elder_pins")),
    )


def downgrade() -> None:
    op.drop_table("elder_pins")
