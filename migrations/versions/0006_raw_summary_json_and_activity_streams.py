"""Backfill: raw_summary as json (fast bulk upserts), activity_streams,
sync_jobs.hydrated renamed hydrations_queued (what it counts)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # An archive column, never queried inside (the listed values have their own columns):
    # `json` keeps the validated text, where `jsonb`'s binary conversion was most of a bulk
    # page's cost (docs/benchmarks/backfill.md). SQLite stores both as text: nothing to do.
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "activities",
            "raw_summary",
            type_=sa.JSON(),
            existing_type=postgresql.JSONB(),
            postgresql_using="raw_summary::json",
        )
    op.create_table(
        "activity_streams",
        sa.Column("activity_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("series_type", sa.String(length=16), nullable=True),
        sa.Column("original_size", sa.Integer(), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        # Deleting or purging an activity removes its streams with it.
        sa.ForeignKeyConstraint(["activity_id"], ["activities.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("activity_id", "type"),
    )
    # The counter counts hydrations a job queued; they complete later, in other workers.
    # RENAME COLUMN: PostgreSQL, and SQLite since 3.25 (no table rebuild either way).
    op.execute("ALTER TABLE sync_jobs RENAME COLUMN hydrated TO hydrations_queued")


def downgrade() -> None:
    op.execute("ALTER TABLE sync_jobs RENAME COLUMN hydrations_queued TO hydrated")
    op.drop_table("activity_streams")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "activities",
            "raw_summary",
            type_=postgresql.JSONB(),
            existing_type=sa.JSON(),
            postgresql_using="raw_summary::jsonb",
        )
