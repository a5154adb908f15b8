"""Migration 0003 (sync jobs) upgrades and downgrades on SQLite; the partial unique index
holds there too."""

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from service.db import alembic_config, create_db_engine, upgrade_schema

INSERT_JOB = (
    "INSERT INTO sync_jobs (athlete_id, kind, status, cursor, cancel_requested, pages, listed, "
    "new, updated, deleted, hydrations_queued, failed, created_at, updated_at) VALUES "
    "(1, 'backfill', :status, '{}', 0, 0, 0, 0, 0, 0, 0, 0, '2026-01-01', '2026-01-01')"
)
INSERT_ATHLETE = (
    "INSERT INTO athletes (id, scopes, status, connected_at, created_at, updated_at) "
    "VALUES (1, '', 'connected', '2026-01-01', '2026-01-01', '2026-01-01')"
)


def test_sqlite_allows_one_active_job_per_athlete_and_any_number_of_finished(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade_schema(url)
    engine = create_db_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(INSERT_ATHLETE))
        for status in ("completed", "cancelled", "queued"):
            connection.execute(sa.text(INSERT_JOB), {"status": status})

    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(sa.text(INSERT_JOB), {"status": "running"})
    engine.dispose()


def test_the_migration_downgrades_and_upgrades_again_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade_schema(url, "0003")

    command.downgrade(alembic_config(url), "0002")
    engine = create_db_engine(url)
    assert not {"sync_jobs", "oauth_states"} & set(sa.inspect(engine).get_table_names())
    upgrade_schema(url, "0003")
    assert {"sync_jobs", "oauth_states"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()
