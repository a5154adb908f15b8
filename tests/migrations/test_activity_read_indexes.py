"""Migration 0008 (the listing's index on athlete, start and id; the on-demand claim)
upgrades over existing rows and downgrades again, on SQLite and on PostgreSQL."""

import sqlalchemy as sa
from alembic import command

from service.db import alembic_config, create_db_engine, upgrade_schema

INSERT_ATHLETE = (
    "INSERT INTO athletes (id, scopes, status, connected_at, created_at, updated_at) "
    "VALUES (1, '', 'connected', '2026-01-01', '2026-01-01', '2026-01-01')"
)
INSERT_ACTIVITY = (
    "INSERT INTO activities (id, athlete_id, start_date, hydration_status, hydrate_attempts, "
    "created_at, updated_at) VALUES (7, 1, '2026-01-01', 'none', 0, '2026-01-01', '2026-01-01')"
)


def activity_indexes(engine: sa.Engine) -> dict[str, list[str | None]]:
    return {
        index["name"]: index["column_names"]
        for index in sa.inspect(engine).get_indexes("activities")
        if index["name"] is not None
    }


def test_the_listing_index_replaces_the_old_one_and_rows_are_unclaimed(url: str) -> None:
    upgrade_schema(url, "0007")
    engine = create_db_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(INSERT_ATHLETE))
        connection.execute(sa.text(INSERT_ACTIVITY))

    upgrade_schema(url, "0008")

    with engine.begin() as connection:
        claimed = connection.execute(sa.text("SELECT on_demand_requested_at FROM activities"))
        assert claimed.scalar_one() is None
    indexes = activity_indexes(engine)
    assert indexes["ix_activities_athlete_start_id"] == ["athlete_id", "start_date", "id"]
    assert indexes["ix_activities_athlete_races"] == ["athlete_id", "start_date", "id"]
    assert "ix_activities_athlete_start" not in indexes
    engine.dispose()


def test_the_migration_downgrades_to_the_old_index(url: str) -> None:
    upgrade_schema(url, "0008")
    engine = create_db_engine(url)

    command.downgrade(alembic_config(url), "0007")

    indexes = activity_indexes(engine)
    assert indexes["ix_activities_athlete_start"] == ["athlete_id", "start_date"]
    assert "ix_activities_athlete_start_id" not in indexes
    assert "ix_activities_athlete_races" not in indexes
    columns = {c["name"] for c in sa.inspect(engine).get_columns("activities")}
    assert "on_demand_requested_at" not in columns
    upgrade_schema(url, "0008")
    engine.dispose()
