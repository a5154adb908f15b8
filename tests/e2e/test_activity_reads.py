"""Reading activities through the real processes: an athlete connects, the backfill lists
their history without hydrating it, and a product reads it page by page; ten readers opening
one activity at once get its summary at once and cause one fetch at Strava."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e.processes import Service, connect, scheduler, web, worker
from launch import wait_until
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from support import READ, FakeStrava, service_env

from service.db import create_db_engine, upgrade_schema
from service.models import ACTIVE_SYNC_STATUSES, SyncJob

pytestmark = pytest.mark.e2e

FETCH = "GET /activities/{id}"
DEADLINE = 30.0
# No activity has this sport type: the backfill hydrates nothing, every read is on demand.
ON_DEMAND_ONLY = {"HYDRATE_SPORT_TYPES": "Kitesurf", "HYDRATE_OLDER": "on_demand"}


@pytest.fixture(params=["production", "embedded"])
def service(
    request: pytest.FixtureRequest, strava: FakeStrava, tmp_path: Path
) -> Iterator[Service]:
    if request.param == "production":
        database_url: str = request.getfixturevalue("database_url")
        engine: Engine = request.getfixturevalue("engine")
        redis_url: str = request.getfixturevalue("redis_url")
        env = service_env(database_url, strava, redis_url, **ON_DEMAND_ONLY)
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
    env = service_env(database_url, strava, "memory://", **ON_DEMAND_ONLY)
    with web(env, tmp_path) as url:
        yield Service(url, engine, env)
    engine.dispose()


def backfill_done(engine: Engine, athlete_id: int) -> bool:
    active = [status.value for status in ACTIVE_SYNC_STATUSES]
    with Session(engine) as session:
        jobs = session.exec(select(SyncJob).where(SyncJob.athlete_id == athlete_id)).all()
    return bool(jobs) and all(job.status not in active for job in jobs)


def test_a_product_pages_the_history_and_opens_an_activity_hydrated_once(
    service: Service, strava: FakeStrava
) -> None:
    athlete_id = connect(service.url)
    wait_until(lambda: backfill_done(service.engine, athlete_id), timeout=DEADLINE, what="backfill")
    listing = strava.emulator.activities_of(athlete_id)

    ids: list[int] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(
            f"{service.url}/athletes/{athlete_id}/activities", params=params, headers=READ
        ).json()
        ids.extend(item["id"] for item in page["activities"])
        assert {item["hydration_status"] for item in page["activities"]} == {"none"}
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(ids) == sorted(item["id"] for item in listing)

    activity_id = ids[-1]
    fetches = strava.emulator.calls[FETCH]
    start = threading.Barrier(10)
    bodies: list[dict[str, object]] = []

    def read() -> None:
        start.wait()
        answer = httpx.get(f"{service.url}/activities/{activity_id}", headers=READ, timeout=5)
        bodies.append(answer.json())

    readers = [threading.Thread(target=read) for _ in range(10)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert len(bodies) == 10
    assert sum(bool(body["hydration_queued"]) for body in bodies) == 1
    assert all(body["raw_summary"] is not None for body in bodies)

    done = httpx.get(
        f"{service.url}/activities/{activity_id}", params={"wait": "10"}, headers=READ, timeout=15
    ).json()
    assert done["hydration_status"] == "complete"
    assert done["detail"] is not None
    assert strava.emulator.calls[FETCH] == fetches + 1

    latest = httpx.get(
        f"{service.url}/athletes/{athlete_id}/activities/latest",
        params={"wait": "10"},
        headers=READ,
        timeout=15,
    ).json()
    assert latest["id"] == ids[0]
    assert latest["hydration_status"] == "complete"
