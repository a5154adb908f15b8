"""Hydrations held out of the broker until their place in the quota queue is near
(`activities.hydration_held_until`), so a backlog of a million does not sit in Redis

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        batch.add_column(
            sa.Column("hydration_held_until", sa.DateTime(timezone=True), nullable=True)
        )
    # The release duty reads only held rows, the first due first.
    op.create_index(
        "ix_activities_hydration_held_until",
        "activities",
        ["hydration_held_until"],
        postgresql_where=sa.text("hydration_held_until IS NOT NULL"),
        sqlite_where=sa.text("hydration_held_until IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_activities_hydration_held_until", table_name="activities")
    with op.batch_alter_table("activities") as batch:
        batch.drop_column("hydration_held_until")
