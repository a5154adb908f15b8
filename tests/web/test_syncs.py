"""The sync routes in each mode: who may call them, what they start, refuse and cancel.

The web app runs with its lifespan (TestClient) on PostgreSQL or SQLite, the in-process
broker (nothing consumes the jobs it queues, so a job stays queued while a test looks at
it) and the emulator's athlete connected. The streams themselves are tested against real
processes (tests/e2e/test_sync_events.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.applications import Starlette
from starlette.testclient import TestClient
from support import ADMIN, READ, Deployed, FakeStrava, connect_emulator_athlete

from service.config import Settings
from service.ingest.sync import claim
from service.models import SyncJob, SyncKind, SyncStatus, utcnow
from service.web.app import create_app
from service.web.state import WEB_STATE_KEY, WebState

UNKNOWN = 987654321
WRONG = {"authorization": "Bearer not-a-key-of-this-service-0000"}


@pytest.fixture
def athlete_id(deployed: Deployed, strava: FakeStrava) -> int:
    return connect_emulator_athlete(deployed.engine, strava)


def routes(athlete_id: int) -> list[tuple[str, str]]:
    return [
        ("POST", f"/athletes/{athlete_id}/sync"),
        ("POST", f"/athletes/{athlete_id}/sync/cancel"),
        ("GET", f"/athletes/{athlete_id}/sync"),
        ("GET", f"/athletes/{athlete_id}/sync/events"),
        ("GET", "/sync/events"),
    ]


def test_every_sync_route_wants_a_key_and_refuses_a_wrong_one(
    deployed: Deployed, athlete_id: int
) -> None:
    for method, path in routes(athlete_id):
        missing = deployed.client.request(method, path)
        wrong = deployed.client.request(method, path, headers=WRONG)

        assert missing.status_code == 401, (method, path)
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["reason"] == "api_key_missing"
        assert wrong.status_code == 403, (method, path)
        assert wrong.json()["reason"] == "api_key_wrong"


def test_a_read_key_never_reaches_the_operators_stream(deployed: Deployed, athlete_id: int) -> None:
    response = deployed.client.get("/sync/events", headers=READ)

    assert response.status_code == 403
    assert response.json()["reason"] == "api_key_wrong"


@pytest.mark.parametrize("key", [READ, ADMIN], ids=["read", "admin"])
def test_a_sync_starts_with_202_and_its_state(
    deployed: Deployed, athlete_id: int, key: dict[str, str]
) -> None:
    response = deployed.client.post(f"/athletes/{athlete_id}/sync", json={}, headers=key)

    assert response.status_code == 202, response.text
    state = response.json()
    assert state["athlete_id"] == athlete_id
    assert state["job"]["kind"] == "backfill"
    assert state["job"]["status"] == "queued"
    assert state["phase"] == "listing"
    assert state["counters"]["listed"] == 0
    assert state["rate_limited"] is False
    shown = deployed.client.get(f"/athletes/{athlete_id}/sync", headers=key)
    assert shown.status_code == 200
    assert shown.json()["job"] == state["job"]


def test_a_full_sync_is_a_full_refresh(deployed: Deployed, athlete_id: int) -> None:
    response = deployed.client.post(
        f"/athletes/{athlete_id}/sync", json={"kind": "full"}, headers=READ
    )

    assert response.status_code == 202
    assert response.json()["job"]["kind"] == SyncKind.FULL_REFRESH.value


def test_a_second_sync_while_one_runs_is_409_with_the_active_job(
    deployed: Deployed, athlete_id: int
) -> None:
    first = deployed.client.post(f"/athletes/{athlete_id}/sync", json={}, headers=READ)

    second = deployed.client.post(
        f"/athletes/{athlete_id}/sync", json={"kind": "full"}, headers=READ
    )

    assert second.status_code == 409
    assert second.json()["reason"] == "conflict"
    assert second.json()["job"]["id"] == first.json()["job"]["id"]
    assert second.json()["job"]["kind"] == "backfill"


def test_cancelling_a_job_nobody_holds_cancels_it_at_once(
    deployed: Deployed, athlete_id: int
) -> None:
    deployed.client.post(f"/athletes/{athlete_id}/sync", json={}, headers=READ)

    response = deployed.client.post(f"/athletes/{athlete_id}/sync/cancel", headers=ADMIN)

    assert response.status_code == 200
    assert response.json()["job"]["status"] == "cancelled"
    assert response.json()["phase"] == "done"
    again = deployed.client.post(f"/athletes/{athlete_id}/sync", json={}, headers=READ)
    assert again.status_code == 202


def test_cancelling_a_job_a_worker_holds_asks_it_to_stop_at_its_next_page(
    deployed: Deployed, athlete_id: int
) -> None:
    started = deployed.client.post(f"/athletes/{athlete_id}/sync", json={}, headers=READ)
    job_id = started.json()["job"]["id"]
    assert claim(deployed.engine, job_id, "a-worker", utcnow(), lease=timedelta(minutes=1))

    response = deployed.client.post(f"/athletes/{athlete_id}/sync/cancel", headers=READ)

    assert response.status_code == 202
    assert response.json()["job"]["cancel_requested"] is True
    assert response.json()["message"] == "cancelling at the next page"
    with Session(deployed.engine) as session:
        assert session.get_one(SyncJob, job_id).status == SyncStatus.RUNNING


def test_cancelling_when_nothing_runs_is_404(deployed: Deployed, athlete_id: int) -> None:
    response = deployed.client.post(f"/athletes/{athlete_id}/sync/cancel", headers=READ)

    assert response.status_code == 404
    assert response.json()["reason"] == "no_active_job"


def test_an_athlete_without_jobs_has_a_done_state_with_no_job(
    deployed: Deployed, athlete_id: int
) -> None:
    response = deployed.client.get(f"/athletes/{athlete_id}/sync", headers=READ)

    assert response.status_code == 200
    assert response.json()["job"] is None
    assert response.json()["phase"] == "done"
    assert response.json()["estimate"] is None


def test_an_unknown_athlete_is_404_on_every_athlete_route(deployed: Deployed) -> None:
    for method, path in routes(UNKNOWN)[:4]:
        response = deployed.client.request(method, path, headers=READ)

        assert response.status_code == 404, (method, path)
        assert response.json()["reason"] == "not_found"
    assert jobs(deployed) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [({"kind": "everything"}, "kind"), ({"kind": "full", "extra": 1}, "extra")],
)
def test_a_malformed_body_is_400_naming_the_field(
    deployed: Deployed, athlete_id: int, body: dict[str, object], field: str
) -> None:
    response = deployed.client.post(f"/athletes/{athlete_id}/sync", json=body, headers=READ)

    assert response.status_code == 400
    assert [item["name"] for item in response.json()["fields"]] == [field]
    assert jobs(deployed) == []


def test_a_malformed_last_event_id_is_400(deployed: Deployed, athlete_id: int) -> None:
    headers = {**READ, "last-event-id": "1-2; DROP"}

    response = deployed.client.get(f"/athletes/{athlete_id}/sync/events", headers=headers)

    assert response.status_code == 400
    assert response.json()["reason"] == "last_event_id"


def test_the_stream_of_an_athlete_with_nothing_under_way_sends_the_state_and_ends(
    deployed: Deployed, athlete_id: int
) -> None:
    response = deployed.client.get(f"/athletes/{athlete_id}/sync/events", headers=READ)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: sync" in response.text
    assert '"phase":"done"' in response.text


def jobs(deployed: Deployed) -> list[SyncJob]:
    with Session(deployed.engine) as session:
        return list(session.exec(select(SyncJob)).all())


def test_the_web_apps_listener_starts_with_it_and_stops_at_shutdown(
    make_settings: Callable[..., Settings], redis_url: str, engine: Engine
) -> None:
    app = create_app(make_settings(broker_url=redis_url), engine=engine)

    with TestClient(app):
        fanout = web_state_of(app).progress_fanout
        listener = fanout._thread
        assert listener is not None
        assert listener.is_alive()

    assert not listener.is_alive()


def web_state_of(app: Starlette) -> WebState:
    state = getattr(app.state, WEB_STATE_KEY)
    assert isinstance(state, WebState)
    return state
