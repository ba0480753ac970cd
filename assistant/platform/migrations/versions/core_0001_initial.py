"""core tables: elders, elder_phones, family_contacts, calls, call_turns, work_orders, alerts, outbox,
care_schedules.

Revision ID: core_0001 (branch "core"). Other areas start their own branch with
``depends_on=("core_0001",)`` — see ../README.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "core_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("core",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "elders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("dialect", sa.String(length=8), nullable=False),
        sa.Column("district", sa.String(length=8), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("safe_phrase", sa.String(length=128), nullable=True),
        sa.Column("tts_rate_wpm", sa.Integer(), nullable=True),
        sa.Column("volume", sa.Float(), nullable=True),
        sa.Column("text_size", sa.String(length=16), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("dialect IN ('cmn', 'yue')", name=op.f("ck_elders_dialect")),
        sa.CheckConstraint(
            "district IN ('蓬江', '江海', '新会', '台山', '开平', '鹤山', '恩平')",
            name=op.f("ck_elders_district"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_elders")),
    )
    op.create_table(
        "calls",
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("caller_number", sa.String(length=32), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dialect", sa.String(length=8), nullable=True),
        sa.Column("verification", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("audio_path", sa.String(length=512), nullable=True),
        sa.CheckConstraint("direction IN ('inbound', 'outbound')", name=op.f("ck_calls_direction")),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_calls_elder_id_elders"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_calls")),
    )
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_index("ix_calls_elder_started", ["elder_id", "started_at"], unique=False)

    op.create_table(
        "care_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=False),
        sa.Column("days", sa.String(length=32), nullable=False),
        sa.Column("window_start", sa.Time(), nullable=False),
        sa.Column("window_end", sa.Time(), nullable=False),
        sa.Column("quiet_start", sa.Time(), nullable=True),
        sa.Column("quiet_end", sa.Time(), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_care_schedules_elder_id_elders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_care_schedules")),
    )
    with op.batch_alter_table("care_schedules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_care_schedules_elder_id"), ["elder_id"], unique=False)

    op.create_table(
        "elder_phones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
        sa.CheckConstraint("kind IN ('landline', 'mobile', 'screen')", name=op.f("ck_elder_phones_kind")),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_elder_phones_elder_id_elders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_elder_phones")),
        sa.UniqueConstraint("number", name=op.f("uq_elder_phones_number")),
    )
    with op.batch_alter_table("elder_phones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_elder_phones_elder_id"), ["elder_id"], unique=False)

    op.create_table(
        "family_contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("relation", sa.String(length=32), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("notify_sms", sa.Boolean(), nullable=False),
        sa.Column("notify_email", sa.Boolean(), nullable=False),
        sa.Column("can_act", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_family_contacts_elder_id_elders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_family_contacts")),
    )
    with op.batch_alter_table("family_contacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_family_contacts_elder_id"), ["elder_id"], unique=False)

    op.create_table(
        "call_turns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("speaker", sa.String(length=8), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_redacted", sa.Text(), nullable=True),
        sa.Column("asr_confidence", sa.Float(), nullable=True),
        sa.Column("intent", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("speaker IN ('elder', 'bot', 'caller')", name=op.f("ck_call_turns_speaker")),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.call_id"], name=op.f("fk_call_turns_call_id_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_turns")),
        sa.UniqueConstraint("call_id", "turn", name="uq_call_turns_call_id_turn"),
    )
    op.create_table(
        "work_orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("placed_by", sa.String(length=16), nullable=False),
        sa.Column("placed_by_contact_id", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_dispatch_alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_answer_alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "placed_by IN ('elder', 'family', 'operator')", name=op.f("ck_work_orders_placed_by")
        ),
        sa.CheckConstraint(
            "status IN ('placed', 'dispatched', 'answered', 'done', 'cancelled')",
            name=op.f("ck_work_orders_status"),
        ),
        sa.CheckConstraint(
            "type IN ('gas', 'meal', 'repair', 'appointment')", name=op.f("ck_work_orders_type")
        ),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_work_orders_elder_id_elders"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["placed_by_contact_id"],
            ["family_contacts.id"],
            name=op.f("fk_work_orders_placed_by_contact_id_family_contacts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_orders")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_work_orders_idempotency_key")),
    )
    with op.batch_alter_table("work_orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_work_orders_call_id"), ["call_id"], unique=False)
        batch_op.create_index("ix_work_orders_elder_created", ["elder_id", "created_at"], unique=False)
        batch_op.create_index("ix_work_orders_status_created", ["status", "created_at"], unique=False)

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=True),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "severity IN ('info', 'warning', 'urgent', 'critical')", name=op.f("ck_alerts_severity")
        ),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'resolved', 'false_alarm')", name=op.f("ck_alerts_status")
        ),
        sa.ForeignKeyConstraint(
            ["elder_id"], ["elders.id"], name=op.f("fk_alerts_elder_id_elders"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["work_orders.id"], name=op.f("fk_alerts_order_id_work_orders"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_call_id"), ["call_id"], unique=False)
        batch_op.create_index("ix_alerts_elder_created", ["elder_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_order_id"), ["order_id"], unique=False)
        batch_op.create_index("ix_alerts_status_created", ["status", "created_at"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("recipient", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.CheckConstraint("channel IN ('log', 'sms', 'email')", name=op.f("ck_outbox_channel")),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_outbox_alert_id_alerts"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_pending", ["sent_at", "id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_pending")

    op.drop_table("outbox")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_status_created")
        batch_op.drop_index(batch_op.f("ix_alerts_order_id"))
        batch_op.drop_index("ix_alerts_elder_created")
        batch_op.drop_index(batch_op.f("ix_alerts_call_id"))

    op.drop_table("alerts")
    with op.batch_alter_table("work_orders", schema=None) as batch_op:
        batch_op.drop_index("ix_work_orders_status_created")
        batch_op.drop_index("ix_work_orders_elder_created")
        batch_op.drop_index(batch_op.f("ix_work_orders_call_id"))

    op.drop_table("work_orders")
    op.drop_table("call_turns")
    with op.batch_alter_table("family_contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_family_contacts_elder_id"))

    op.drop_table("family_contacts")
    with op.batch_alter_table("elder_phones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_elder_phones_elder_id"))

    op.drop_table("elder_phones")
    with op.batch_alter_table("care_schedules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_care_schedules_elder_id"))

    op.drop_table("care_schedules")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_elder_started")

    op.drop_table("calls")
    op.drop_table("elders")
