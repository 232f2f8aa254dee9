"""The first schema: cameras, frames, tracks, windows and their links, detections, enrichments
(without embeddings) and events (without summaries).

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id(name: str = "id") -> sa.Column[str]:
    return sa.Column(name, sa.String(128), nullable=False)


def _time(name: str, nullable: bool = False) -> sa.Column[float]:
    return sa.Column(name, sa.Double(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "cameras",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("origin", sa.String(8), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_cameras"),
        sa.CheckConstraint("origin IN ('file', 'api')", name="ck_cameras_origin"),
    )
    op.create_table(
        "frames",
        sa.Column("id", ROW_ID, nullable=False),
        _id("camera_id"),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        _time("captured_at"),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(8), nullable=False),
        sa.Column("image_path", sa.String(1024), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_frames"),
        sa.UniqueConstraint("camera_id", "seq", name="uq_frames_camera_id_seq"),
        sa.CheckConstraint("origin IN ('stream', 'push', 'folder')", name="ck_frames_origin"),
    )
    op.create_index("ix_frames_captured_at", "frames", ["captured_at"])
    op.create_table(
        "tracks",
        _id(),
        _id("camera_id"),
        sa.Column("label", sa.String(64), nullable=False),
        _time("first_seen"),
        _time("last_seen"),
        sa.Column("best_detection_id", ROW_ID, nullable=True),
        sa.Column("best_score", sa.Double(), nullable=False),
        sa.Column("zones_entered", sa.JSON(), nullable=False),
        sa.Column("stationary", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tracks"),
    )
    op.create_table(
        "windows",
        _id(),
        _id("camera_id"),
        _time("opened_at"),
        _time("last_detection_at"),
        _time("closes_by"),
        _time("closed_at", nullable=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_windows"),
        sa.CheckConstraint("status IN ('open', 'closed', 'analysed')", name="ck_windows_status"),
    )
    op.create_index("ix_windows_status_opened_at", "windows", ["status", "opened_at"])
    op.create_table(
        "window_links",
        _id("window_id"),
        _id("linked_window_id"),
        _id("track_id"),
        sa.PrimaryKeyConstraint(
            "window_id", "linked_window_id", "track_id", name="pk_window_links"
        ),
        sa.ForeignKeyConstraint(
            ["window_id"], ["windows.id"], name="fk_window_links_window_id_windows"
        ),
        sa.ForeignKeyConstraint(
            ["linked_window_id"], ["windows.id"], name="fk_window_links_linked_window_id_windows"
        ),
        sa.ForeignKeyConstraint(
            ["track_id"], ["tracks.id"], name="fk_window_links_track_id_tracks"
        ),
    )
    op.create_index("ix_window_links_linked_window_id", "window_links", ["linked_window_id"])
    op.create_index("ix_window_links_track_id", "window_links", ["track_id"])
    op.create_table(
        "detections",
        sa.Column("id", ROW_ID, nullable=False),
        sa.Column("frame_id", ROW_ID, nullable=False),
        _id("camera_id"),
        _id("track_id"),
        _id("window_id"),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        *(sa.Column(name, sa.Double(), nullable=False) for name in ("x1", "y1", "x2", "y2")),
        sa.Column("zones", sa.JSON(), nullable=False),
        _time("captured_at"),
        sa.PrimaryKeyConstraint("id", name="pk_detections"),
        sa.ForeignKeyConstraint(["frame_id"], ["frames.id"], name="fk_detections_frame_id_frames"),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"], name="fk_detections_track_id_tracks"),
        sa.ForeignKeyConstraint(
            ["window_id"], ["windows.id"], name="fk_detections_window_id_windows"
        ),
    )
    op.create_index("ix_detections_frame_id", "detections", ["frame_id"])
    op.create_index("ix_detections_track_id", "detections", ["track_id"])
    op.create_index(
        "ix_detections_window_id_captured_at", "detections", ["window_id", "captured_at"]
    )
    op.create_table(
        "enrichments",
        sa.Column("id", ROW_ID, nullable=False),
        _id("track_id"),
        sa.Column("detection_id", ROW_ID, nullable=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        _time("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_enrichments"),
        sa.ForeignKeyConstraint(
            ["track_id"], ["tracks.id"], name="fk_enrichments_track_id_tracks", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["detection_id"],
            ["detections.id"],
            name="fk_enrichments_detection_id_detections",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_enrichments_track_id_created_at", "enrichments", ["track_id", "created_at"])
    op.create_index("ix_enrichments_detection_id", "enrichments", ["detection_id"])
    op.create_table(
        "events",
        _id(),
        sa.Column("kind", sa.String(8), nullable=False),
        _id("camera_id"),
        sa.Column("window_id", sa.String(128), nullable=True),
        _time("started_at"),
        _time("ended_at"),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("analyser", sa.String(128), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("zones", sa.JSON(), nullable=False),
        sa.Column("snapshot_path", sa.String(1024), nullable=True),
        sa.Column("clip_path", sa.String(1024), nullable=True),
        _time("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("window_id", name="uq_events_window_id"),
        sa.ForeignKeyConstraint(["window_id"], ["windows.id"], name="fk_events_window_id_windows"),
        sa.CheckConstraint("kind IN ('window', 'health')", name="ck_events_kind"),
        sa.CheckConstraint(
            "level IN ('none', 'low', 'medium', 'high', 'critical')", name="ck_events_level"
        ),
    )
    op.create_index("ix_events_started_at_id", "events", ["started_at", "id"])
    op.create_index(
        "ix_events_camera_id_started_at_id", "events", ["camera_id", "started_at", "id"]
    )
    op.create_index("ix_events_level_started_at_id", "events", ["level", "started_at", "id"])


def downgrade() -> None:
    for table in (
        "events",
        "enrichments",
        "detections",
        "window_links",
        "windows",
        "tracks",
        "frames",
        "cameras",
    ):
        op.drop_table(table)
