"""console_users.phone_uri: the SIP phone an operator answers hand-overs on (issue #16: their console pops
the call when it rings). Set with ``assistant admin set-phone``.

Revision ID: console_0002 (branch "console"). Model: assistant/platform/models_console.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "console_0002"
down_revision: str | Sequence[str] | None = "console_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("console_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone_uri", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("console_users", schema=None) as batch_op:
        batch_op.drop_column("phone_uri")
