"""A sync job's log through real processes, in both deployments: an athlete connects, the
backfill runs against a slow emulator, and GET /athletes/{id}/sync/log shows its pages while
it runs, then its totals and the end of its hydrations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.processes import Service, connect, scheduler, web, worker
from launch import wait_until
from sqlalchemy.engine import Engine
from support import CLIENT_ID, CLIENT_SECRET, READ, FakeStrava, service_env

from service.db import create_db_engine, upgrade_schema
from service.emulator import Emulator, EmulatorConfig
from service.emulator.server import EmulatorServer
from service.ingest.sync import latest_job
from service.models import ACTIVE_SYNC_STATUSES

pytestmark = pytest.mark.e2e

HISTORY = 40
RECENT = 3
PAGE = 5
DEADLINE = 90.0
# Every Strava call takes this long: the listing of ~10 pages lasts seconds, long enough
# to read its log while it runs.
LATENCY = 0.4


@pytest.fixture
def strava() -> Iterator[FakeStrava]:
    emulator = Emulator(
        EmulatorConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            athletes=1,
            activities_per_athlete=HISTORY,
            max_stream_points=30,
            latency=LATENCY,
        )
    )
    athlete_id = emulator.athlete_ids[0]
    yesterday = int((datetime.now(UTC) - timedelta(days=1)).timestamp())
    for n in range(RECENT):
        emulator.create_activity(athlete_id, start_date=yesterday - n * 3600)
    with EmulatorServer(emulator) as server:
        yield FakeStrava(emulator, server)
    emulator.close()


def settings() -> dict[str, str]:
    # Only the few recent activities hydrate, so the hydrations end soon after the listing.
    return {"SYNC_PAGE_SIZE": str(PAGE), "HYDRATE_RECENT_WEEKS": "1", "HYDRATE_OLDER": "on_demand"}


@pytest.fixture(params=["production", "embedded"])
def service(
    request: pytest.FixtureRequest, strava: FakeStrava, tmp_path: Path
) -> Iterator[Service]:
    if request.param == "production":
        engine: Engine = request.getfixturevalue("engine")
        database_url: str = request.getfixturevalue("database_url")
        redis_url: str = request.getfixturevalue("redis_url")
        env = service_env(database_url, strava, redis_url, **settings())
        with (
            worker(env, tmp_path, redis_url),
            scheduler(env, tmp_path, redis_url),
            web(env, tmp_path) as url,
        ):
            yield Service(url, engine, env)
        return
    database_url = f"sqlite:///{tmp_path / 'strava_ingest.db'}"
    upgrade_schema(database_url)
    engine = create_db_engine(database_url)
    env = service_env(database_url, strava, "memory://", **settings())
    with web(env, tmp_path) as url:
        yield Service(url, engine, env)
    engine.dispose()


def read(service: Service, athlete_id: int) -> dict[str, Any]:
    response = httpx.get(f"{service.url}/athletes/{athlete_id}/sync/log", headers=READ)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def messages(body: dict[str, Any]) -> list[str]:
    return [entry["message"] for entry in body["entries"]]


def test_the_log_of_a_backfill_is_readable_while_it_runs_and_after(service: Service) -> None:
    athlete_id = connect(service.url)

    def pages_while_running() -> dict[str, Any] | None:
        body = read(service, athlete_id)
        pages = [m for m in messages(body) if m.startswith("page ")]
        job = latest_job(service.engine, athlete_id)
        # Read before the job is seen still active: the entries were there before its end.
        running = job is not None and job.status in ACTIVE_SYNC_STATUSES
        return body if pages and running else None

    during = wait_until(pages_while_running, timeout=DEADLINE, what="a page logged mid-job")
    assert isinstance(during, dict)
    assert messages(during)[0] == "backfill started"

    def hydration_finished() -> dict[str, Any] | None:
        body = read(service, athlete_id)
        return body if "hydration finished" in messages(body) else None

    after = wait_until(hydration_finished, timeout=DEADLINE, what="the hydrations logged")
    assert isinstance(after, dict)
    assert after["job"]["status"] == "completed"
    logged = messages(after)
    assert logged[: len(messages(during))] == messages(during)  # the same entries, in order
    completed = next(e for e in after["entries"] if e["message"].startswith("completed:"))
    assert completed["fields"]["listed"] >= HISTORY + RECENT
    assert completed["fields"]["new"] == HISTORY + RECENT
    pages = [e for e in after["entries"] if e["message"].startswith("page ")]
    assert len(pages) == completed["fields"]["pages"]
    assert sum(e["fields"]["new"] for e in pages) == HISTORY + RECENT
    finished = next(e for e in after["entries"] if e["message"] == "hydration finished")
    assert finished["fields"]["hydration"]["complete"] >= RECENT
