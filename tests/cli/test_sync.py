"""`strava-ingest sync ATHLETE`, `sync cancel ATHLETE` and `sync status [ATHLETE]`, against
PostgreSQL and the emulator (and Redis where a broker is named)."""

from __future__ import annotations

from datetime import timedelta

import redis
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine
from support import FakeStrava, service_env
from sync_support import activities, job

from service.cli import main
from service.ingest.sync import claim, start_job
from service.messaging import SYNC_QUEUE
from service.models import SyncKind, SyncStatus, utcnow


def sync(database_url: str, strava: FakeStrava, *args: str, broker: str = "memory://") -> Result:
    env = service_env(database_url, strava, broker, SYNC_PAGE_SIZE="2")
    return CliRunner().invoke(main, ["sync", *args], env=env)


def test_sync_without_workers_runs_the_backfill_here_and_prints_the_finished_job(
    engine: Engine, database_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    result = sync(database_url, strava, str(athlete_id))

    assert result.exit_code == 0, result.output
    assert "backfill" in result.output
    assert "completed" in result.output
    listed = {item["id"] for item in strava.emulator.activities_of(athlete_id)}
    assert set(activities(engine, athlete_id)) == listed


def test_sync_after_a_completed_backfill_starts_a_reconciliation(
    engine: Engine, database_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    sync(database_url, strava, str(athlete_id))

    result = sync(database_url, strava, str(athlete_id))

    assert result.exit_code == 0, result.output
    assert "(reconcile)" in result.output


def test_sync_with_a_broker_queues_the_job_for_the_workers(
    engine: Engine, database_url: str, redis_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    result = sync(database_url, strava, str(athlete_id), broker=redis_url)

    assert result.exit_code == 0, result.output
    assert "queued" in result.output
    queued = redis.Redis.from_url(redis_url)
    assert queued.llen(f"dramatiq:{SYNC_QUEUE}") == 1
    queued.close()


def test_sync_of_an_athlete_who_never_connected_fails_with_a_message(
    database_url: str, strava: FakeStrava, engine: Engine
) -> None:
    result = sync(database_url, strava, "999")

    assert result.exit_code == 1
    assert "athlete 999 is not connected" in result.output


def test_sync_cancel_stops_a_job_a_worker_holds_at_its_next_page(
    engine: Engine, database_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    started = start_job(engine, athlete_id, SyncKind.BACKFILL, utcnow()).job
    assert started.id is not None
    claim(engine, started.id, "worker", utcnow(), timedelta(seconds=60))

    result = sync(database_url, strava, "cancel", str(athlete_id))

    assert result.exit_code == 0, result.output
    assert f"job {started.id}: stops at its next page" in result.output
    assert job(engine, started.id).cancel_requested


def test_sync_cancel_without_an_active_job_fails_with_a_message(
    engine: Engine, database_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    result = sync(database_url, strava, "cancel", str(athlete_id))

    assert result.exit_code == 1
    assert f"athlete {athlete_id} has no active sync job" in result.output


def test_sync_status_shows_the_athletes_latest_job_and_where_hydration_stands(
    engine: Engine, database_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    sync(database_url, strava, str(athlete_id))

    result = sync(database_url, strava, "status", str(athlete_id), "--once")

    assert result.exit_code == 0, result.output
    header, row, hydration = result.output.splitlines()[-3:]
    assert "queued" in header
    assert str(athlete_id) in row
    assert "completed" in row
    assert hydration.startswith("hydration: ")
    # The CLI's job ran here without workers: its hydrations wait in `pending`.
    assert "0 complete" in hydration


def test_sync_status_without_an_athlete_lists_the_latest_job_of_each(
    engine: Engine, database_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    cancelled = start_job(engine, athlete_id, SyncKind.BACKFILL, utcnow()).job
    sync(database_url, strava, "cancel", str(athlete_id))

    result = sync(database_url, strava, "status")

    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if str(athlete_id) in line]
    assert len(rows) == 1
    assert str(cancelled.id) in rows[0]
    assert SyncStatus.CANCELLED.value in rows[0]
