"""Incidents: events linked because the same individual (re-identified by appearance) was seen
in them, on different cameras.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("descriptor", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_incidents"),
    )
    op.create_index("ix_incidents_updated_at", "incidents", ["updated_at"])
    op.create_table(
        "incident_events",
        sa.Column("incident_id", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("track_id", sa.String(128), nullable=False),
        sa.Column("similarity", sa.Double(), nullable=True),
        sa.Column("added_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_incident_events_incident_id_incidents",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name="fk_incident_events_event_id_events",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("incident_id", "event_id", "track_id", name="pk_incident_events"),
    )
    op.create_index("ix_incident_events_event_id", "incident_events", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_incident_events_event_id", table_name="incident_events")
    op.drop_table("incident_events")
    op.drop_index("ix_incidents_updated_at", table_name="incidents")
    op.drop_table("incidents")
