"""The product API's activity reads: an index whose ranges are the pages of an athlete's
activities newest first (ties broken by id), replacing the one without the id; a partial one
of the same shape for races (workout_type 1); and when a reader last queued an on-demand
hydration of an activity

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RACES = "workout_type = 1"


def upgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        batch.add_column(
            sa.Column("on_demand_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
    # The new index leads with the old one's columns, so it serves every query the old one did.
    op.create_index(
        "ix_activities_athlete_start_id", "activities", ["athlete_id", "start_date", "id"]
    )
    op.drop_index("ix_activities_athlete_start", table_name="activities")
    op.create_index(
        "ix_activities_athlete_races",
        "activities",
        ["athlete_id", "start_date", "id"],
        postgresql_where=sa.text(RACES),
        sqlite_where=sa.text(RACES),
    )


def downgrade() -> None:
    op.drop_index("ix_activities_athlete_races", table_name="activities")
    op.create_index("ix_activities_athlete_start", "activities", ["athlete_id", "start_date"])
    op.drop_index("ix_activities_athlete_start_id", table_name="activities")
    with op.batch_alter_table("activities") as batch:
        batch.drop_column("on_demand_requested_at")
