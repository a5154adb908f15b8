"""Waiting hydrations by start date (`ix_activities_waiting_start`): the release admits
`recent` ones first, found among a large backlog of old ones without scanning it

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_activities_waiting_start",
        "activities",
        ["start_date"],
        postgresql_where=sa.text("hydration_held_until IS NOT NULL"),
        sqlite_where=sa.text("hydration_held_until IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_activities_waiting_start", table_name="activities")
