"""Event semantics through the real processes (`serve`, `worker`) and the emulator's pushes."""

from __future__ import annotations

import pytest
from e2e.processes import Service, activity_when, connect, subscribe
from launch import wait_until
from sqlmodel import Session, col, select
from support import FakeStrava

from service.models import ACTIVE_SYNC_STATUSES, Activity, Athlete, AthleteStatus, SyncJob

pytestmark = pytest.mark.e2e

FETCH = "GET /activities/{id}"


DEADLINE = 30.0


def backfill_settled(service: Service, athlete_id: int) -> None:
    """Wait until the connect's backfill has listed and hydrated everything it queued, so
    that its fetches cannot be counted as the event's."""
    active = [status.value for status in ACTIVE_SYNC_STATUSES]

    def settled() -> bool:
        with Session(service.engine) as session:
            jobs = session.exec(select(SyncJob).where(SyncJob.athlete_id == athlete_id)).all()
            pending = session.exec(
                select(Activity).where(
                    Activity.athlete_id == athlete_id,
                    col(Activity.hydration_status).in_(("pending", "partial")),
                )
            ).all()
        return bool(jobs) and all(job.status not in active for job in jobs) and not pending

    wait_until(settled, timeout=DEADLINE, what="the backfill to settle")


def test_a_title_change_on_strava_lands_without_a_fetch(
    service: Service, strava: FakeStrava
) -> None:
    athlete_id = connect(service.url)
    subscribe(service.url, service.env)
    created = strava.emulator.create_activity(athlete_id)
    activity_when(service, created["id"], lambda a: a.hydration_status == "complete", DEADLINE)
    backfill_settled(service, athlete_id)
    fetches = strava.emulator.calls[FETCH]

    strava.emulator.update_activity(created["id"], title="Renamed", private=True)

    row = activity_when(service, created["id"], lambda a: a.name == "Renamed", DEADLINE)
    assert (row.private, row.visibility) == (True, "only_me")
    assert strava.emulator.calls[FETCH] == fetches


def test_revoking_access_on_strava_purges_the_athlete(service: Service, strava: FakeStrava) -> None:
    athlete_id = connect(service.url)
    subscribe(service.url, service.env)
    created = strava.emulator.create_activity(athlete_id)
    activity_when(service, created["id"], lambda a: a.hydration_status == "complete", DEADLINE)

    strava.emulator.deauthorize(athlete_id)

    def purged() -> bool:
        with Session(service.engine) as session:
            athlete = session.get_one(Athlete, athlete_id)
            return athlete.status == AthleteStatus.DEAUTHORIZED and (
                session.get(Activity, created["id"]) is None
            )

    wait_until(purged, timeout=DEADLINE, what="the purge")
    with Session(service.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
    assert athlete.access_token_enc is None
    assert athlete.deauthorized_at is not None
