"""A Strava event travels from the webhook to a hydrated row, through real processes.

The service is started exactly as the Procfile does (`strava-ingest serve`, and in production
mode `strava-ingest worker` and `strava-ingest scheduler`), speaking real HTTP on loopback to
the Strava emulator; every test runs once per deployment (tests/e2e/conftest.py).
"""

from __future__ import annotations

import pytest
from e2e.processes import Service, activity_when, connect, subscribe
from launch import wait_until
from sqlmodel import Session
from support import TOKEN_KEY, FakeStrava

from service.models import Activity, Athlete, HydrationStatus

pytestmark = pytest.mark.e2e

DEADLINE = 30.0


def test_a_created_activity_lands_hydrated_with_stravas_values(
    service: Service, strava: FakeStrava
) -> None:
    athlete_id = connect(service.url)
    subscribe(service.url, service.env)

    created = strava.emulator.create_activity(athlete_id)

    row = activity_when(
        service, created["id"], lambda a: a.hydration_status == HydrationStatus.COMPLETE, DEADLINE
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
    athlete_id = connect(service.url)
    subscribe(service.url, service.env)
    created = strava.emulator.create_activity(athlete_id)
    activity_when(service, created["id"], lambda a: a.hydration_status == "complete", DEADLINE)

    strava.emulator.update_activity(created["id"], title="Renamed on Strava")
    activity_when(service, created["id"], lambda a: a.name == "Renamed on Strava", DEADLINE)
    strava.emulator.delete_activity(created["id"])

    def gone() -> bool:
        with Session(service.engine) as session:
            return session.get(Activity, created["id"]) is None

    wait_until(gone, timeout=DEADLINE, what="the deletion")
