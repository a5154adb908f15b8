"""Work items that wait for Strava quota: inbox status rate_limited, retry_after columns

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "'received', 'enqueued', 'processed', 'ignored', 'failed'"
NEW_STATUSES = "'received', 'enqueued', 'rate_limited', 'processed', 'ignored', 'failed'"


def upgrade() -> None:
    with op.batch_alter_table("webhook_inbox") as batch:
        batch.add_column(sa.Column("retry_after", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint("ck_webhook_inbox_status", type_="check")
        batch.create_check_constraint("ck_webhook_inbox_status", f"status IN ({NEW_STATUSES})")
    with op.batch_alter_table("activities") as batch:
        batch.add_column(sa.Column("retry_after", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        batch.drop_column("retry_after")
    op.execute("UPDATE webhook_inbox SET status = 'enqueued' WHERE status = 'rate_limited'")
    with op.batch_alter_table("webhook_inbox") as batch:
        batch.drop_constraint("ck_webhook_inbox_status", type_="check")
        batch.create_check_constraint("ck_webhook_inbox_status", f"status IN ({OLD_STATUSES})")
        batch.drop_column("retry_after")
