"""elders.tts_voice (the voice that speaks to the elder) and elders.end_of_turn_max_silence_s (a slow
speaker's longest silence before an unfinished turn ends), issue #19: chosen in the family portal and the
console. NULL = the default (the dialect's voice chain; ``audio.turn_incomplete_max_silence_s``).

Revision ID: core_0009 (branch "core"). Model: ``assistant.platform.models.Elder``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "core_0009"
down_revision: str | Sequence[str] | None = "core_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("elders") as batch:
        batch.add_column(sa.Column("tts_voice", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("end_of_turn_max_silence_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("elders") as batch:
        batch.drop_column("end_of_turn_max_silence_s")
        batch.drop_column("tts_voice")
