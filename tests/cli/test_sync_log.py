"""`strava-ingest sync log ATHLETE [--job ID] [--level LEVEL]` against PostgreSQL and the
emulator: it prints what GET /athletes/{id}/sync/log reads."""

from __future__ import annotations

from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine
from support import FakeStrava, service_env

from service.cli import main
from service.ingest.job_log import read_log


def run(database_url: str, strava: FakeStrava, *args: str) -> Result:
    env = service_env(database_url, strava, "memory://", SYNC_PAGE_SIZE="2")
    return CliRunner().invoke(main, list(args), env=env)


def test_the_log_of_a_backfill_lists_its_start_pages_and_totals_in_order(
    engine: Engine, database_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    assert run(database_url, strava, "sync", str(athlete_id)).exit_code == 0

    result = run(database_url, strava, "sync", "log", str(athlete_id))

    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()
    page = read_log(engine, athlete_id)
    assert header == f"job {page.job.id} (backfill, completed) of athlete {athlete_id}"
    assert len(lines) == len(page.entries)
    assert "backfill started" in lines[0]
    assert "page 1: 2 listed, 2 new, 0 updated" in lines[1]
    assert '"page":1' in lines[1]
    assert "completed:" in lines[-1]


def test_a_level_prints_only_that_level_and_above(
    engine: Engine, database_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    strava.emulator.fail_next(1, status=503)
    assert run(database_url, strava, "sync", str(athlete_id)).exit_code == 0

    result = run(database_url, strava, "sync", "log", str(athlete_id), "--level", "warning")

    assert result.exit_code == 0, result.output
    _header, *lines = result.output.splitlines()
    assert len(lines) == 1
    assert "warning" in lines[0]
    assert "page failed, retrying" in lines[0]
    assert '"status_code":503' in lines[0]


def test_an_earlier_job_is_printed_by_its_id(
    engine: Engine, database_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    run(database_url, strava, "sync", str(athlete_id))
    first = read_log(engine, athlete_id).job.id
    run(database_url, strava, "sync", str(athlete_id))

    latest = run(database_url, strava, "sync", "log", str(athlete_id))
    earlier = run(database_url, strava, "sync", "log", str(athlete_id), "--job", str(first))

    assert "(reconcile, completed)" in latest.output.splitlines()[0]
    assert earlier.output.splitlines()[0].startswith(f"job {first} (backfill, completed)")


def test_an_unknown_athlete_or_job_is_an_error_naming_it(
    database_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    unknown = run(database_url, strava, "sync", "log", "123456")
    no_job = run(database_url, strava, "sync", "log", str(athlete_id), "--job", "77")

    assert unknown.exit_code != 0
    assert "athlete 123456 is unknown" in unknown.output
    assert no_job.exit_code != 0
    assert f"athlete {athlete_id} has no job 77" in no_job.output
