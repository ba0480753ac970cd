"""console tables: users, user↔elder links, sessions, login attempts, audit log, notes

Revision ID: console_0001
Branch "console", depends on core_0001. Models: assistant/platform/models_console.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "console_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("console",)
depends_on: str | Sequence[str] | None = ("core_0001",)


def upgrade() -> None:
    op.create_table(
        "console_login_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_login_attempts")),
    )
    with op.batch_alter_table("console_login_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_console_login_attempts_username_at", ["username", "at"], unique=False)
        batch_op.create_index("ix_console_login_attempts_ip_at", ["ip", "at"], unique=False)

    op.create_table(
        "console_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('operator', 'supervisor', 'admin', 'family')", name=op.f("ck_console_users_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_users")),
        sa.UniqueConstraint("username", name=op.f("uq_console_users_username")),
    )
    op.create_table(
        "console_audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=48), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["console_users.id"],
            name=op.f("fk_console_audit_log_user_id_console_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_audit_log")),
    )
    with op.batch_alter_table("console_audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_console_audit_log_at", ["at"], unique=False)
        batch_op.create_index("ix_console_audit_log_target", ["target_type", "target_id"], unique=False)

    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["console_users.id"],
            name=op.f("fk_console_sessions_user_id_console_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_console_sessions")),
    )
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_console_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "console_user_elders",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["family_contacts.id"],
            name=op.f("fk_console_user_elders_contact_id_family_contacts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["elder_id"],
            ["elders.id"],
            name=op.f("fk_console_user_elders_elder_id_elders"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["console_users.id"],
            name=op.f("fk_console_user_elders_user_id_console_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "elder_id", name=op.f("pk_console_user_elders")),
    )
    op.create_table(
        "console_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_console_notes_alert_id_alerts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["console_users.id"],
            name=op.f("fk_console_notes_author_id_console_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_notes")),
    )
    with op.batch_alter_table("console_notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_console_notes_alert_id"), ["alert_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_console_notes_call_id"), ["call_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("console_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_notes_call_id"))
        batch_op.drop_index(batch_op.f("ix_console_notes_alert_id"))

    op.drop_table("console_notes")
    op.drop_table("console_user_elders")
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_sessions_user_id"))

    op.drop_table("console_sessions")
    with op.batch_alter_table("console_audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_console_audit_log_target")
        batch_op.drop_index("ix_console_audit_log_at")

    op.drop_table("console_audit_log")
    op.drop_table("console_users")
    with op.batch_alter_table("console_login_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_console_login_attempts_ip_at")
        batch_op.drop_index("ix_console_login_attempts_username_at")

    op.drop_table("console_login_attempts")
