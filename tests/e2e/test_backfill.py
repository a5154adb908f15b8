"""A new athlete connects and the whole history lands, through real processes.

The Procfile's web, worker and scheduler processes on PostgreSQL and Redis: the athlete goes
through /auth/strava/connect and the emulator's authorize page; the callback starts the
backfill; the worker lists the 450-activity history in pages of 100 and hydrates the recent
window with its streams as the scheduler releases them, while older activities stay summaries
(HYDRATE_OLDER=on_demand).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from e2e.processes import connect, scheduler, worker
from e2e.processes import web as start_web
from launch import command, wait_until
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from support import CLIENT_ID, CLIENT_SECRET, FakeStrava, service_env

from service.emulator import Emulator, EmulatorConfig, RateLimits
from service.emulator.server import EmulatorServer
from service.models import Activity, ActivityStream, SyncJob, SyncStatus

pytestmark = pytest.mark.e2e

HISTORY = 450
RECENT_WEEKS = 12
DEADLINE = 90.0
HIGH = 1_000_000  # quota is not what this test is about (tests/strava/quota is)


@pytest.fixture
def strava() -> Iterator[FakeStrava]:
    """An athlete with a long history. Short tracks: a summary's figures are derived from
    its track, and full-size ones cost the emulator ~15 ms each on first listing."""
    emulator = Emulator(
        EmulatorConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            athletes=1,
            activities_per_athlete=HISTORY,
            max_stream_points=30,
            limits=RateLimits(HIGH, HIGH, HIGH, HIGH),
        )
    )
    with EmulatorServer(emulator) as server:
        yield FakeStrava(emulator, server)
    emulator.close()


@pytest.fixture
def env(strava: FakeStrava, database_url: str, redis_url: str, engine: Engine) -> dict[str, str]:
    return service_env(
        database_url,
        strava,
        redis_url,
        SYNC_PAGE_SIZE="100",
        HYDRATE_RECENT_WEEKS=str(RECENT_WEEKS),
        HYDRATE_OLDER="on_demand",
        QUOTA_LIMIT_SHORT=str(HIGH),
        QUOTA_LIMIT_DAILY=str(HIGH),
        QUOTA_READ_LIMIT_SHORT=str(HIGH),
        QUOTA_READ_LIMIT_DAILY=str(HIGH),
    )


@pytest.fixture
def web(env: dict[str, str], redis_url: str, tmp_path: Path) -> Iterator[str]:
    """`strava-ingest worker`, `strava-ingest scheduler` and `strava-ingest serve`, as the
    Procfile starts them."""
    with (
        worker(env, tmp_path, redis_url),
        scheduler(env, tmp_path, redis_url),
        start_web(env, tmp_path) as url,
    ):
        yield url


def finished_job(engine: Engine, athlete_id: int) -> SyncJob | None:
    with Session(engine) as session:
        job = session.exec(select(SyncJob).where(SyncJob.athlete_id == athlete_id)).first()
    return job if job is not None and job.status not in ("queued", "running") else None


def stored(engine: Engine, athlete_id: int) -> dict[int, Activity]:
    with Session(engine) as session:
        rows = session.exec(select(Activity).where(Activity.athlete_id == athlete_id)).all()
    return {row.id: row for row in rows}


def test_a_connected_athletes_whole_history_lands_and_the_recent_window_is_hydrated(
    web: str, strava: FakeStrava, engine: Engine, env: dict[str, str]
) -> None:
    athlete_id = connect(web)

    found = wait_until(
        lambda: finished_job(engine, athlete_id), timeout=DEADLINE, what="the backfill"
    )

    assert isinstance(found, SyncJob)
    assert found.status == SyncStatus.COMPLETED
    listing = strava.emulator.activities_of(athlete_id)
    assert len(listing) == HISTORY
    rows = stored(engine, athlete_id)
    assert set(rows) == {item["id"] for item in listing}
    since = datetime.now(UTC) - timedelta(weeks=RECENT_WEEKS)
    recent = {i for i, row in rows.items() if row.start_date and row.start_date >= since}
    assert 0 < len(recent) < HISTORY

    def recent_hydrated() -> bool:
        now = stored(engine, athlete_id)
        return all(now[i].hydration_status == "complete" for i in recent)

    wait_until(recent_hydrated, timeout=DEADLINE, what="the recent window hydrated")
    with Session(engine) as session:
        query = sa.select(col(ActivityStream.activity_id)).distinct()
        with_streams = set(session.execute(query).scalars())
    assert with_streams == recent
    older = stored(engine, athlete_id)
    assert {older[i].hydration_status for i in set(rows) - recent} == {"none"}

    status = subprocess.run(
        command("sync", "status", str(athlete_id), "--once"),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "completed" in status.stdout
    assert f"{len(recent)} complete" in status.stdout
