"""Webhook trust: the stored push subscription id

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # One row at most: Strava allows one subscription per app (docs/strava.md §1.1).
    op.create_table(
        "push_subscription",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=True),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("push_subscription")
