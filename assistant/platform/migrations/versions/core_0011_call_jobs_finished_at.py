"""call_jobs.finished_at index: the platform view (``/console/outbound``, ``telephony.outbound_report``) and
``/metrics`` (the last 24 hours' steps) read the rows that ended in a window; without the index each read scans
every row the engine ever wrote (a year at 25,000 elders: millions), with it the window's rows only.

Revision ID: core_0011 (branch "core"). Model: ``telephony.models.CallJob``.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "core_0011"
down_revision: str | Sequence[str] | None = "core_0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_call_jobs_finished_at", "call_jobs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_call_jobs_finished_at", table_name="call_jobs")
