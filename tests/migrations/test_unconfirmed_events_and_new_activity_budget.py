"""Migration 0007 (unconfirmed events, pending-fetch tiers, per-athlete budget) upgrades over
existing rows and downgrades again, on SQLite and on PostgreSQL."""

import pytest
import sqlalchemy as sa
from alembic import command

from service.db import (
    alembic_config,
    create_db_engine,
    upgrade_schema,
)

INSERT_ATHLETE = (
    "INSERT INTO athletes (id, scopes, status, connected_at, created_at, updated_at) "
    "VALUES (1, '', 'connected', '2026-01-01', '2026-01-01', '2026-01-01')"
)
INSERT_PENDING = (
    "INSERT INTO pending_hydrations (activity_id, athlete_id, inbox_id, due_at, "
    "requested_event_time, created_at) VALUES (5, 1, 1, '2026-01-01', 1, '2026-01-01')"
)
INSERT_EVENT = (
    "INSERT INTO webhook_inbox (subscription_id, object_type, object_id, aspect_type, owner_id, "
    "event_time, updates, dedupe_key, status, attempts, received_at, updated_at) VALUES "
    "(1, 'activity', 5, 'delete', 1, 1, '{}', :key, :status, 0, '2026-01-01', '2026-01-01')"
)


def test_existing_rows_get_the_defaults_and_unconfirmed_becomes_a_status(url: str) -> None:
    upgrade_schema(url, "0006")
    engine = create_db_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(INSERT_ATHLETE))
        connection.execute(sa.text(INSERT_PENDING))

    upgrade_schema(url, "0007")

    with engine.begin() as connection:
        athlete = connection.execute(
            sa.text("SELECT forged_creates, new_fetch_count, flagged_at FROM athletes")
        ).one()
        pending = connection.execute(
            sa.text("SELECT tier, unseen, delete_event_time FROM pending_hydrations")
        ).one()
        connection.execute(sa.text(INSERT_EVENT), {"key": "a", "status": "unconfirmed"})
    assert tuple(athlete) == (0, 0, None)
    assert (pending.tier, bool(pending.unseen), pending.delete_event_time) == (
        "webhook",
        False,
        None,
    )
    engine.dispose()


def test_the_migration_downgrades_unconfirmed_events_to_ignored(url: str) -> None:
    upgrade_schema(url, "0007")
    engine = create_db_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(INSERT_EVENT), {"key": "a", "status": "unconfirmed"})

    command.downgrade(alembic_config(url), "0006")

    with engine.begin() as connection:
        assert connection.execute(sa.text("SELECT status FROM webhook_inbox")).scalar() == (
            "ignored"
        )
        with pytest.raises(sa.exc.IntegrityError):
            connection.execute(sa.text(INSERT_EVENT), {"key": "b", "status": "unconfirmed"})
    assert "forged_creates" not in {c["name"] for c in sa.inspect(engine).get_columns("athletes")}
    upgrade_schema(url, "0007")
    engine.dispose()
