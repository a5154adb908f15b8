"""Migration 0011 (waiting hydrations by start date, `ix_activities_waiting_start`) upgrades
and downgrades on SQLite and on PostgreSQL."""

import sqlalchemy as sa
from alembic import command

from service.db import alembic_config, create_db_engine, upgrade_schema

INDEX = "ix_activities_waiting_start"


def waiting_index(engine: sa.Engine) -> dict[str, object] | None:
    indexes = sa.inspect(engine).get_indexes("activities")
    return next((dict(index) for index in indexes if index["name"] == INDEX), None)


def partial_clause(engine: sa.Engine) -> str:
    # SQLite's inspector does not report the WHERE clause: read each index's own definition.
    query = (
        "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
        if engine.dialect.name == "postgresql"
        else "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"
    )
    with engine.connect() as connection:
        return str(connection.execute(sa.text(query), {"name": INDEX}).scalar_one())


def test_waiting_hydrations_are_indexed_by_start_date_only_while_they_wait(url: str) -> None:
    upgrade_schema(url, "0011")
    engine = create_db_engine(url)

    index = waiting_index(engine)

    assert index is not None
    assert index["column_names"] == ["start_date"]
    assert "hydration_held_until IS NOT NULL" in partial_clause(engine)
    engine.dispose()


def test_the_migration_downgrades_without_the_index(url: str) -> None:
    upgrade_schema(url, "0011")
    engine = create_db_engine(url)

    command.downgrade(alembic_config(url), "0010")

    assert waiting_index(engine) is None
    upgrade_schema(url, "0011")
    assert waiting_index(engine) is not None
    engine.dispose()
