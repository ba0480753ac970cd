"""calls.started_at index: the care page (``/console/care``, ``assistant.console.queries.care_dashboard``) counts
today's outbound calls; with only ``(elder_id, started_at)`` PostgreSQL read every call ever made (a seq scan
of the whole ledger, 0.4-0.8 s at 25,000 elders and a week of calls, growing every day), with this index today's.

Revision ID: core_0012 (branch "core"). Model: ``assistant.platform.models.Call``.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "core_0012"
down_revision: str | Sequence[str] | None = "core_0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_calls_started_at", "calls", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_calls_started_at", table_name="calls")
