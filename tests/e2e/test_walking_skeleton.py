"""A Strava event travels from the webhook to a hydrated row, through real processes.

The service is started exactly as the Procfile does (`strava-ingest serve`, and in production
mode `strava-ingest worker`), speaking real HTTP on loopback to the Strava emulator.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy.engine import Engine
from sqlmodel import Session
from support import CLIENT_ID, CLIENT_SECRET, TOKEN_KEY, VERIFY_TOKEN, FakeStrava

from service.db import create_db_engine, upgrade_schema
from service.launch import answers, command, free_port, running, wait_until
from service.models import Activity, Athlete, HydrationStatus

pytestmark = pytest.mark.e2e

DEADLINE = 30.0


@dataclass
class Service:
    url: str
    engine: Engine
    env: dict[str, str]

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/webhooks/strava"


def service_env(strava: FakeStrava, database_url: str, broker_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "STRAVA_CLIENT_ID": str(CLIENT_ID),
        "STRAVA_CLIENT_SECRET": CLIENT_SECRET,
        "STRAVA_VERIFY_TOKEN": VERIFY_TOKEN,
        "TOKEN_KEY": TOKEN_KEY,
        "STRAVA_API_URL": strava.server.api_url,
        "STRAVA_OAUTH_URL": strava.server.oauth_url,
    }


@contextmanager
def start_web(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        command("serve", "--port", str(port)),
        env=env,
        cwd=tmp_path,
        log_file=tmp_path / "web.log",
        ready=lambda: answers(f"{url}/readyz"),
    ):
        yield url


@pytest.fixture
def production(
    strava: FakeStrava, engine: Engine, database_url: str, redis_url: str, tmp_path: Path
) -> Iterator[Service]:
    """PostgreSQL, Redis, and the web and worker processes of the Procfile."""
    env = service_env(strava, database_url, redis_url)
    worker = command("worker", "--processes", "1", "--threads", "2")
    heartbeats = redis.Redis.from_url(redis_url)
    with (
        running(
            worker,
            env=env,
            cwd=tmp_path,
            log_file=tmp_path / "worker.log",
            # A consumer that started listening has written dramatiq's heartbeat.
            ready=lambda: heartbeats.zcard("dramatiq:__heartbeats__") > 0,
        ),
        start_web(env, tmp_path) as url,
    ):
        yield Service(url, engine, env)
    heartbeats.close()


@pytest.fixture
def embedded(strava: FakeStrava, tmp_path: Path) -> Iterator[Service]:
    """SQLite and the in-process broker: one `strava-ingest serve` process."""
    database_url = f"sqlite:///{tmp_path / 'strava_ingest.db'}"
    upgrade_schema(database_url)
    engine = create_db_engine(database_url)
    env = service_env(strava, database_url, "memory://")
    with start_web(env, tmp_path) as url:
        yield Service(url, engine, env)
    engine.dispose()


@pytest.fixture(params=["production", "embedded"])
def service(request: pytest.FixtureRequest) -> Service:
    deployed: Service = request.getfixturevalue(request.param)
    return deployed


def connect(service: Service) -> int:
    """An athlete goes through /auth/strava/connect, Strava's authorize page and back."""
    response = httpx.get(f"{service.url}/auth/strava/connect", follow_redirects=True)
    assert response.status_code == 200, response.text
    athlete_id: int = response.json()["athlete_id"]
    return athlete_id


def subscribe(service: Service) -> None:
    subprocess.run(
        command("subscription", "create", "--callback-url", service.webhook_url),
        env={**service.env},
        check=True,
        capture_output=True,
    )


def activity_when(
    service: Service, activity_id: int, condition: Callable[[Activity], bool]
) -> Activity:
    def check() -> Activity | None:
        with Session(service.engine) as session:
            row = session.get(Activity, activity_id)
        return row if row is not None and condition(row) else None

    found = wait_until(check, timeout=DEADLINE, what=f"activity {activity_id}")
    assert isinstance(found, Activity)
    return found


def test_a_created_activity_lands_hydrated_with_stravas_values(
    service: Service, strava: FakeStrava
) -> None:
    athlete_id = connect(service)
    subscribe(service)

    created = strava.emulator.create_activity(athlete_id)

    row = activity_when(
        service, created["id"], lambda a: a.hydration_status == HydrationStatus.COMPLETE
    )
    detail = strava.emulator.activity(created["id"])
    assert row.athlete_id == athlete_id
    assert (row.name, row.sport_type, row.distance, row.moving_time) == (
        detail["name"],
        detail["sport_type"],
        detail["distance"],
        detail["moving_time"],
    )
    assert row.raw_detail == detail
    with Session(service.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
    assert athlete.access_token_enc
    assert TOKEN_KEY not in athlete.access_token_enc


def test_an_update_and_a_delete_follow_the_create(service: Service, strava: FakeStrava) -> None:
    athlete_id = connect(service)
    subscribe(service)
    created = strava.emulator.create_activity(athlete_id)
    activity_when(service, created["id"], lambda a: a.hydration_status == "complete")

    strava.emulator.update_activity(created["id"], title="Renamed on Strava")
    activity_when(service, created["id"], lambda a: a.name == "Renamed on Strava")
    strava.emulator.delete_activity(created["id"])

    def gone() -> bool:
        with Session(service.engine) as session:
            return session.get(Activity, created["id"]) is None

    wait_until(gone, timeout=DEADLINE, what="the deletion")
