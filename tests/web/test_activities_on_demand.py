"""On-demand hydration through the web app and real workers, in each mode: PostgreSQL with
Redis and dramatiq workers, and SQLite with the in-process broker and worker threads
(embedded mode). Strava is the emulator, which counts the requests it serves."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dramatiq
import httpx
import pytest
from activity_support import stored_activity
from launch import wait_until
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.testclient import TestClient
from support import READ, FakeStrava, connect_emulator_athlete

from service.config import Settings
from service.ingest.context import build_context
from service.ingest.retry import Backoff
from service.messaging import build_broker
from service.models import Activity
from service.web.app import create_app
from workers.actors import setup_workers

FETCH = "GET /activities/{id}"
STREAMS = "GET /activities/{id}/streams"
DEADLINE = 20.0


@dataclass
class Running:
    """The web app with workers consuming its broker, and the emulator's connected athlete."""

    client: TestClient
    engine: Engine
    athlete_id: int


@pytest.fixture(params=["production", "embedded"])
def running(
    request: pytest.FixtureRequest,
    make_settings: Callable[..., Settings],
    strava: FakeStrava,
) -> Iterator[Running]:
    overrides: dict[str, Any]
    if request.param == "production":
        engine: Engine = request.getfixturevalue("engine")
        overrides = {"broker_url": request.getfixturevalue("redis_url")}
    else:
        engine = request.getfixturevalue("sqlite_engine")
        overrides = {"database_url": engine.url.render_as_string(), "webhook_secret": None}
    settings = make_settings(**strava.urls, **overrides)
    assert settings.mode.value == request.param
    broker = build_broker(settings.broker_url)
    ctx = build_context(settings, engine=engine)
    setup_workers(broker, ctx, Backoff(base=timedelta(milliseconds=100), max_attempts=2))
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    athlete_id = connect_emulator_athlete(engine, strava)
    try:
        with TestClient(create_app(settings, engine=engine, broker=broker)) as client:
            yield Running(client, engine, athlete_id)
    finally:
        worker.stop()
        broker.close()
        ctx.strava.close()


def summary_only(running: Running, strava: FakeStrava) -> int:
    """An activity Strava has and we hold only as a listed summary."""
    created = strava.emulator.create_activity(running.athlete_id)
    return stored_activity(running.engine, running.athlete_id, None, activity_id=created["id"])


def status(engine: Engine, activity_id: int) -> str:
    with Session(engine) as session:
        return session.get_one(Activity, activity_id).hydration_status


def test_ten_concurrent_readers_get_pending_at_once_and_cause_one_fetch(
    running: Running, strava: FakeStrava
) -> None:
    activity_id = summary_only(running, strava)
    strava.emulator.reset_calls()
    start = threading.Barrier(10)
    answers: list[httpx.Response] = []

    def read() -> None:
        start.wait()
        answers.append(running.client.get(f"/activities/{activity_id}", headers=READ))

    readers = [threading.Thread(target=read) for _ in range(10)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()

    bodies = [answer.json() for answer in answers]
    assert [answer.status_code for answer in answers] == [200] * 10
    assert all(body["hydration_status"] in ("pending", "complete") for body in bodies)
    assert sum(body["hydration_queued"] for body in bodies) == 1
    wait_until(
        lambda: status(running.engine, activity_id) == "complete",
        timeout=DEADLINE,
        what="the on-demand hydration",
    )
    after = running.client.get(f"/activities/{activity_id}", headers=READ).json()
    assert (after["hydration_status"], after["missing"]) == ("complete", [])
    assert after["detail"]["id"] == activity_id
    assert after["stream_types"]
    assert (strava.emulator.calls[FETCH], strava.emulator.calls[STREAMS]) == (1, 1)


def test_wait_answers_the_complete_activity(running: Running, strava: FakeStrava) -> None:
    activity_id = summary_only(running, strava)
    strava.emulator.reset_calls()

    body = running.client.get(
        f"/activities/{activity_id}", params={"wait": 10}, headers=READ
    ).json()

    assert (body["hydration_status"], body["hydration_queued"]) == ("complete", True)
    assert body["detail"] is not None
    assert body["stream_types"]
    streams = running.client.get(f"/activities/{activity_id}/streams", headers=READ).json()
    assert {stream["type"] for stream in streams["streams"]} == set(body["stream_types"])
    assert (strava.emulator.calls[FETCH], strava.emulator.calls[STREAMS]) == (1, 1)


def test_the_streams_route_hydrates_on_demand_too(running: Running, strava: FakeStrava) -> None:
    activity_id = summary_only(running, strava)

    body = running.client.get(
        f"/activities/{activity_id}/streams", params={"wait": 10}, headers=READ
    ).json()

    assert body["hydration_status"] == "complete"
    assert body["streams"]
    assert all(len(stream["data"]) > 0 for stream in body["streams"])
