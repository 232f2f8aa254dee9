"""Risk analysis: levels are low/medium/high/critical (a stored ``none`` becomes ``low``);
events say whether they are provisional, what to do and how they were analysed; people's
feedback on events; the system state (the arm mode) kept across restarts.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OLD_LEVELS = "level IN ('none', 'low', 'medium', 'high', 'critical')"
NEW_LEVELS = "level IN ('low', 'medium', 'high', 'critical')"
OLD_NAME = "ck_events_ck_events_level"
"""What 0001 named the check (the naming convention applied to a full name)."""


def upgrade() -> None:
    op.execute("UPDATE events SET level = 'low' WHERE level = 'none'")
    with op.batch_alter_table("events") as events:
        events.drop_constraint(op.f(OLD_NAME), type_="check")
        events.create_check_constraint(op.f("ck_events_level"), NEW_LEVELS)
        events.add_column(
            sa.Column("provisional", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        events.add_column(
            sa.Column("recommended_action", sa.Text(), server_default="", nullable=False)
        )
        events.add_column(sa.Column("details", sa.JSON(), nullable=True))
    op.create_table(
        "feedback",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.CheckConstraint("verdict IN ('false_alarm', 'confirmed')", name="ck_feedback_verdict"),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name="fk_feedback_event_id_events",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
    )
    op.create_index("ix_feedback_event_id_created_at", "feedback", ["event_id", "created_at"])
    op.create_table(
        "system_state",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_system_state"),
    )


def downgrade() -> None:
    op.drop_table("system_state")
    op.drop_index("ix_feedback_event_id_created_at", table_name="feedback")
    op.drop_table("feedback")
    with op.batch_alter_table("events") as events:
        events.drop_column("details")
        events.drop_column("recommended_action")
        events.drop_column("provisional")
        events.drop_constraint(op.f("ck_events_level"), type_="check")
        events.create_check_constraint(op.f(OLD_NAME), OLD_LEVELS)
