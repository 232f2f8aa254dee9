"""Enrichments keep their embedding (float32 bytes, optional) and events their analyser's
summary (empty for events stored before).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("enrichments", sa.Column("embedding", sa.LargeBinary(), nullable=True))
    op.add_column("events", sa.Column("summary", sa.Text(), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("events") as events:
        events.drop_column("summary")
    with op.batch_alter_table("enrichments") as enrichments:
        enrichments.drop_column("embedding")
