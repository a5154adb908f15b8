"""Event semantics through the real processes (`serve`, `worker`) and the emulator's pushes."""

from __future__ import annotations

import pytest

# The walking skeleton's fixtures start the processes; they are registered here by name.
from e2e.test_walking_skeleton import (
    DEADLINE,
    Service,
    activity_when,
    connect,
    subscribe,
)
from e2e.test_walking_skeleton import embedded as embedded
from e2e.test_walking_skeleton import production as production
from sqlmodel import Session
from support import FakeStrava

from service.launch import wait_until
from service.models import Activity, Athlete, AthleteStatus

pytestmark = pytest.mark.e2e

FETCH = "GET /activities/{id}"


@pytest.fixture(params=["production", "embedded"])
def deployed(request: pytest.FixtureRequest) -> Service:
    found: Service = request.getfixturevalue(request.param)
    return found


def test_a_title_change_on_strava_lands_without_a_fetch(
    deployed: Service, strava: FakeStrava
) -> None:
    athlete_id = connect(deployed)
    subscribe(deployed)
    created = strava.emulator.create_activity(athlete_id)
    activity_when(deployed, created["id"], lambda a: a.hydration_status == "complete")
    fetches = strava.emulator.calls[FETCH]

    strava.emulator.update_activity(created["id"], title="Renamed", private=True)

    row = activity_when(deployed, created["id"], lambda a: a.name == "Renamed")
    assert (row.private, row.visibility) == (True, "only_me")
    assert strava.emulator.calls[FETCH] == fetches


def test_revoking_access_on_strava_purges_the_athlete(
    deployed: Service, strava: FakeStrava
) -> None:
    athlete_id = connect(deployed)
    subscribe(deployed)
    created = strava.emulator.create_activity(athlete_id)
    activity_when(deployed, created["id"], lambda a: a.hydration_status == "complete")

    strava.emulator.deauthorize(athlete_id)

    def purged() -> bool:
        with Session(deployed.engine) as session:
            athlete = session.get_one(Athlete, athlete_id)
            return athlete.status == AthleteStatus.DEAUTHORIZED and (
                session.get(Activity, created["id"]) is None
            )

    wait_until(purged, timeout=DEADLINE, what="the purge")
    with Session(deployed.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
    assert athlete.access_token_enc is None
    assert athlete.deauthorized_at is not None
