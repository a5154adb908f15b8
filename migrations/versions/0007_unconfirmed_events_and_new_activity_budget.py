"""Destructive events confirmed with Strava: inbox status `unconfirmed` and a `reason`;
pending fetches that confirm a delete or are charged to a lower tier; per-athlete budget of
new-activity fetches and the count of forged creates

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "'received', 'enqueued', 'rate_limited', 'processed', 'ignored', 'failed'"
NEW_STATUSES = (
    "'received', 'enqueued', 'rate_limited', 'processed', 'ignored', 'unconfirmed', 'failed'"
)


def upgrade() -> None:
    with op.batch_alter_table("webhook_inbox") as batch:
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch.drop_constraint("ck_webhook_inbox_status", type_="check")
        batch.create_check_constraint("ck_webhook_inbox_status", f"status IN ({NEW_STATUSES})")
    with op.batch_alter_table("pending_hydrations") as batch:
        batch.add_column(
            sa.Column("tier", sa.String(length=16), nullable=False, server_default="webhook")
        )
        batch.add_column(
            sa.Column("unseen", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("delete_event_time", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("delete_reason", sa.String(length=16), nullable=True))
    with op.batch_alter_table("athletes") as batch:
        batch.add_column(sa.Column("new_fetch_window", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("new_fetch_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("forged_creates", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("flag_reason", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("athletes") as batch:
        for column in (
            "flag_reason",
            "flagged_at",
            "forged_creates",
            "new_fetch_count",
            "new_fetch_window",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("pending_hydrations") as batch:
        for column in ("delete_reason", "delete_event_time", "unseen", "tier"):
            batch.drop_column(column)
    # An unconfirmed event removed nothing: `ignored` is the nearest older status.
    op.execute("UPDATE webhook_inbox SET status = 'ignored' WHERE status = 'unconfirmed'")
    with op.batch_alter_table("webhook_inbox") as batch:
        batch.drop_constraint("ck_webhook_inbox_status", type_="check")
        batch.create_check_constraint("ck_webhook_inbox_status", f"status IN ({OLD_STATUSES})")
        batch.drop_column("reason")
