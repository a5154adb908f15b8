"""Migration 0006 (raw_summary as json, activity_streams) upgrades and downgrades on
PostgreSQL and SQLite, keeping the stored summaries; streams go with their activity."""

from __future__ import annotations

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
INSERT_ACTIVITY = (
    "INSERT INTO activities (id, athlete_id, raw_summary, hydration_status, hydrate_attempts, "
    "created_at, updated_at) VALUES (7, 1, :raw, 'none', 0, '2026-01-01', '2026-01-01')"
)
INSERT_STREAM = (
    "INSERT INTO activity_streams (activity_id, type, data, fetched_at) "
    "VALUES (7, 'time', '[0, 1, 2]', '2026-01-01')"
)


def tables(url: str) -> set[str]:
    engine = create_db_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_the_migration_keeps_stored_summaries_both_ways(url: str) -> None:
    upgrade_schema(url, "0005")
    engine = create_db_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(INSERT_ATHLETE))
        connection.execute(sa.text(INSERT_ACTIVITY), {"raw": '{"id": 7, "name": "Ride"}'})

    upgrade_schema(url, "0006")
    assert "activity_streams" in tables(url)
    command.downgrade(alembic_config(url), "0005")
    assert "activity_streams" not in tables(url)
    upgrade_schema(url, "0006")

    with engine.connect() as connection:
        raw = connection.execute(sa.text("SELECT raw_summary FROM activities")).scalar()
    engine.dispose()
    assert raw in ({"id": 7, "name": "Ride"}, '{"id": 7, "name": "Ride"}')


def test_deleting_an_activity_removes_its_streams(url: str) -> None:
    upgrade_schema(url, "0006")
    engine = create_db_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(INSERT_ATHLETE))
        connection.execute(sa.text(INSERT_ACTIVITY), {"raw": "{}"})
        connection.execute(sa.text(INSERT_STREAM))

    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM activities WHERE id = 7"))

    with engine.connect() as connection:
        left = connection.execute(sa.text("SELECT count(*) FROM activity_streams")).scalar()
    engine.dispose()
    assert left == 0


def columns(url: str, table: str) -> set[str]:
    engine = create_db_engine(url)
    try:
        return {column["name"] for column in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_the_job_counter_of_queued_hydrations_is_named_for_what_it_counts(url: str) -> None:
    upgrade_schema(url, "0006")
    assert {"hydrations_queued"} <= columns(url, "sync_jobs") - {"hydrated"}

    command.downgrade(alembic_config(url), "0005")

    assert {"hydrated"} <= columns(url, "sync_jobs") - {"hydrations_queued"}
