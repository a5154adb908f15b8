"""The sync job log migration on both kinds of database: entries go with their job, and the
migration downgrades and upgrades again."""

import pytest
import sqlalchemy as sa
from alembic import command

from service.db import alembic_config, create_db_engine, upgrade_schema

INSERT_ATHLETE = (
    "INSERT INTO athletes (id, scopes, status, connected_at, created_at, updated_at) "
    "VALUES (1, '', 'connected', '2026-01-01', '2026-01-01', '2026-01-01')"
)
INSERT_JOB = (
    "INSERT INTO sync_jobs (id, athlete_id, kind, status, cursor, cancel_requested, pages, "
    "listed, new, updated, deleted, hydrations_queued, failed, created_at, updated_at) VALUES "
    "(1, 1, 'backfill', 'completed', '{}', false, 0, 0, 0, 0, 0, 0, 0, '2026-01-01', "
    "'2026-01-01')"
)
INSERT_ENTRY = (
    "INSERT INTO sync_job_log (job_id, athlete_id, at, level, message, fields) "
    "VALUES (1, 1, '2026-01-01', :level, 'page 1', '{}')"
)


def tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_entries_go_with_their_job_and_only_known_levels_are_stored(url: str) -> None:
    upgrade_schema(url, "0009")
    engine = create_db_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(INSERT_ATHLETE))
        connection.execute(sa.text(INSERT_JOB))
        connection.execute(sa.text(INSERT_ENTRY), {"level": "info"})
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(sa.text(INSERT_ENTRY), {"level": "loud"})

    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM sync_jobs WHERE id = 1"))
        left = connection.execute(sa.text("SELECT count(*) FROM sync_job_log")).scalar_one()
    assert left == 0
    engine.dispose()


def test_the_migration_downgrades_and_upgrades_again(url: str) -> None:
    upgrade_schema(url, "0009")
    engine = create_db_engine(url)

    command.downgrade(alembic_config(url), "-1")
    assert "sync_job_log" not in tables(engine)
    indexes = {index["name"] for index in sa.inspect(engine).get_indexes("activities")}
    assert "ix_activities_athlete_hydrating" not in indexes
    upgrade_schema(url, "0009")
    assert "sync_job_log" in tables(engine)
    engine.dispose()
