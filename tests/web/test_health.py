from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from service.config import Settings
from service.db import SchemaBehind, create_db_engine
from service.heartbeats import SCHEDULER, WEB, WORKER, Heartbeat, MemoryHeartbeats
from service.messaging import build_broker
from service.web.app import create_app

UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/x"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def settings(make_settings: Callable[..., Settings], redis_url: str) -> Settings:
    return make_settings(broker_url=redis_url)


@pytest.fixture
def unreachable_engine() -> Iterator[Engine]:
    engine = create_db_engine(UNREACHABLE_DATABASE)
    yield engine
    engine.dispose()


def test_healthz_says_the_process_is_alive(settings: Settings, engine: Engine) -> None:
    with TestClient(create_app(settings, engine=engine)) as client:
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def beating(store: MemoryHeartbeats, *roles: str) -> None:
    for role in roles:
        Heartbeat(store, role, interval=60, ttl=120).beat_once()


def test_readyz_is_ok_when_database_broker_workers_and_scheduler_answer(
    settings: Settings, engine: Engine
) -> None:
    store = MemoryHeartbeats()
    beating(store, WORKER, WORKER, SCHEDULER)

    with TestClient(create_app(settings, engine=engine, heartbeats=store)) as client:
        response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"], body["broker"], body["missing"]) == (
        "ok",
        "ok",
        "ok",
        [],
    )
    assert body["processes"]["worker"]["processes"] == 2
    assert body["processes"]["scheduler"]["status"] == "ok"
    assert body["processes"]["scheduler"]["last_beat_seconds_ago"] < 60


def test_readyz_stays_ready_but_names_missing_workers_and_scheduler(
    settings: Settings, engine: Engine
) -> None:
    store = MemoryHeartbeats()
    beating(store, WORKER)

    with TestClient(create_app(settings, engine=engine, heartbeats=store)) as client:
        response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["missing"]) == ("degraded", ["scheduler"])
    assert body["processes"]["scheduler"] == {
        "status": "missing",
        "processes": 0,
        "last_beat_seconds_ago": None,
    }


def test_the_web_process_beats_while_it_runs_and_drops_its_beat_when_it_stops(
    settings: Settings, engine: Engine
) -> None:
    store = MemoryHeartbeats()

    with TestClient(create_app(settings, engine=engine, heartbeats=store)):
        running = [b.role for b in store.alive()]

    assert running == [WEB]
    assert store.alive() == []


def test_readyz_names_the_database_when_it_is_down(
    settings: Settings, unreachable_engine: Engine
) -> None:
    app = create_app(settings, engine=unreachable_engine, check_schema=False)

    with TestClient(app) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"], body["broker"]) == ("unavailable", "down", "ok")
    assert "database" in body["error"]


def test_readyz_names_the_broker_when_it_is_down(settings: Settings, engine: Engine) -> None:
    app = create_app(settings, engine=engine, broker=build_broker(UNREACHABLE_REDIS))

    with TestClient(app) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"], body["broker"]) == ("unavailable", "ok", "down")
    assert "broker" in body["error"]


def test_the_app_refuses_to_start_on_a_schema_that_is_behind(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'unmigrated.db'}")

    with (
        pytest.raises(SchemaBehind, match="strava-ingest db upgrade"),
        TestClient(create_app(settings)),
    ):
        pass


def test_the_app_opens_its_own_resources_from_settings(
    make_settings: Callable[..., Settings], sqlite_engine: Engine
) -> None:
    settings = make_settings(database_url=sqlite_engine.url.render_as_string())

    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")

    assert response.status_code == 200
