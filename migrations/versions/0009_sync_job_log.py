"""Sync job logs: sync_job_log, one row per entry a job writes; an index of the activities
still to hydrate per athlete

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HYDRATING = "hydration_status IN ('pending', 'partial')"


def upgrade() -> None:
    op.create_table(
        "sync_job_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("athlete_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "fields", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.CheckConstraint(
            "level IN ('debug', 'info', 'warning', 'error')", name="ck_sync_job_log_level"
        ),
        sa.ForeignKeyConstraint(["job_id"], ["sync_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sync_job_log_job_id_id", "sync_job_log", ["job_id", "id"])
    op.create_index("ix_sync_job_log_at", "sync_job_log", ["at"])
    op.create_index(
        "ix_activities_athlete_hydrating",
        "activities",
        ["athlete_id"],
        postgresql_where=sa.text(HYDRATING),
        sqlite_where=sa.text(HYDRATING),
    )


def downgrade() -> None:
    op.drop_index("ix_activities_athlete_hydrating", table_name="activities")
    op.drop_index("ix_sync_job_log_at", table_name="sync_job_log")
    op.drop_index("ix_sync_job_log_job_id_id", table_name="sync_job_log")
    op.drop_table("sync_job_log")
