"""Event semantics and purge: event ordering columns on activities,
activity removals (tombstones), pending coalesced hydrations, inbox pruning index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        batch.add_column(sa.Column("event_time", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("synced_event_time", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("update_times", JSON, nullable=True))

    op.create_table(
        "activity_removals",
        sa.Column("activity_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("athlete_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("event_time", sa.BigInteger(), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("reason IN ('deleted', 'hidden')", name="ck_activity_removals_reason"),
        sa.ForeignKeyConstraint(["athlete_id"], ["athletes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("activity_id"),
    )
    op.create_index(
        "ix_activity_removals_athlete_id", "activity_removals", ["athlete_id"], unique=False
    )

    op.create_table(
        "pending_hydrations",
        sa.Column("activity_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("athlete_id", sa.BigInteger(), nullable=False),
        sa.Column("inbox_id", sa.BigInteger(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_event_time", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["athlete_id"], ["athletes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("activity_id"),
    )
    op.create_index(
        "ix_pending_hydrations_athlete_id", "pending_hydrations", ["athlete_id"], unique=False
    )

    op.create_index(
        "ix_webhook_inbox_processed_at", "webhook_inbox", ["processed_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_inbox_processed_at", table_name="webhook_inbox")
    op.drop_index("ix_pending_hydrations_athlete_id", table_name="pending_hydrations")
    op.drop_table("pending_hydrations")
    op.drop_index("ix_activity_removals_athlete_id", table_name="activity_removals")
    op.drop_table("activity_removals")
    with op.batch_alter_table("activities") as batch:
        batch.drop_column("update_times")
        batch.drop_column("synced_event_time")
        batch.drop_column("event_time")
