"""Event semantics through the real processes (`serve`, `worker`, `scheduler`) and the
emulator's pushes."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from e2e.processes import Service, activity_when, connect, subscribe
from launch import wait_until
from sqlmodel import Session, col, select
from support import FakeStrava

from service.models import (
    ACTIVE_SYNC_STATUSES,
    Activity,
    ActivityRemoval,
    Athlete,
    AthleteStatus,
    InboxEvent,
    SyncJob,
)

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


def hydrated_activity(service: Service, strava: FakeStrava) -> tuple[int, dict[str, Any]]:
    """A connected, subscribed athlete with one activity created on Strava and hydrated here,
    once the connect's backfill has settled: its athlete id and the activity."""
    athlete_id = connect(service.url)
    subscribe(service.url, service.env)
    created = strava.emulator.create_activity(athlete_id)
    activity_when(service, created["id"], lambda a: a.hydration_status == "complete", DEADLINE)
    backfill_settled(service, athlete_id)
    return athlete_id, created


def test_a_title_change_on_strava_lands_without_a_fetch(
    service: Service, strava: FakeStrava
) -> None:
    _, created = hydrated_activity(service, strava)
    fetches = strava.emulator.calls[FETCH]

    strava.emulator.update_activity(created["id"], title="Renamed", private=True)

    row = activity_when(service, created["id"], lambda a: a.name == "Renamed", DEADLINE)
    assert (row.private, row.visibility) == (True, "only_me")
    assert strava.emulator.calls[FETCH] == fetches


def test_revoking_access_on_strava_purges_the_athlete_once_strava_confirms(
    service: Service, strava: FakeStrava
) -> None:
    athlete_id, created = hydrated_activity(service, strava)

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
    assert inbox_when(service, "update", "processed").object_type == "athlete"


def forge(service: Service, strava: FakeStrava, **event: Any) -> None:
    """POST an event as an attacker on loopback would: the right subscription id (guessed),
    a known athlete, and nothing Strava ever sent."""
    subscription = strava.emulator.subscription
    assert subscription is not None
    body = {"subscription_id": subscription["id"], "event_time": int(time.time()), **event}
    response = httpx.post(service.webhook_url, json=body, timeout=5)
    assert response.status_code == 200, response.text


def inbox_when(service: Service, aspect: str, status: str) -> InboxEvent:
    def check() -> InboxEvent | None:
        with Session(service.engine) as session:
            return session.exec(
                select(InboxEvent)
                .where(InboxEvent.aspect_type == aspect)
                .where(InboxEvent.status == status)
            ).first()

    found = wait_until(check, timeout=DEADLINE, what=f"a {status} {aspect} event")
    assert isinstance(found, InboxEvent)
    return found


def test_a_forged_deauthorization_removes_nothing_after_one_call(
    service: Service, strava: FakeStrava
) -> None:
    athlete_id, created = hydrated_activity(service, strava)
    strava.emulator.reset_calls()

    forge(
        service,
        strava,
        object_type="athlete",
        object_id=athlete_id,
        aspect_type="update",
        owner_id=athlete_id,
        updates={"authorized": "false"},
    )

    row = inbox_when(service, "update", "unconfirmed")
    assert row.reason == "the grant is still valid"
    assert strava.emulator.calls == {"GET /athlete": 1}
    with Session(service.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
        assert athlete.status == AthleteStatus.CONNECTED
        assert athlete.access_token_enc is not None
        assert session.get(Activity, created["id"]) is not None


def test_a_forged_delete_removes_nothing_and_refreshes_the_activity_from_strava(
    service: Service, strava: FakeStrava
) -> None:
    athlete_id, created = hydrated_activity(service, strava)
    # The title changes on Strava without an event reaching us.
    subscription = strava.emulator.current_subscription()
    strava.emulator.set_subscription(None)
    strava.emulator.update_activity(created["id"], title="Renamed on Strava")
    strava.emulator.set_subscription(subscription)
    strava.emulator.reset_calls()

    forge(
        service,
        strava,
        object_type="activity",
        object_id=created["id"],
        aspect_type="delete",
        owner_id=athlete_id,
        updates={},
    )

    row = inbox_when(service, "delete", "unconfirmed")
    assert row.reason == "Strava still lists the activity"
    assert strava.emulator.calls[FETCH] == 1
    stored = activity_when(service, created["id"], lambda a: True, DEADLINE)
    assert stored.name == "Renamed on Strava"


def test_a_delete_on_strava_removes_the_activity_after_one_confirming_fetch(
    service: Service, strava: FakeStrava
) -> None:
    _, created = hydrated_activity(service, strava)
    strava.emulator.reset_calls()

    strava.emulator.delete_activity(created["id"])

    row = inbox_when(service, "delete", "processed")
    assert row.object_id == created["id"]
    with Session(service.engine) as session:
        assert session.get(Activity, created["id"]) is None
        removal = session.get_one(ActivityRemoval, created["id"])
    assert removal.reason == "deleted"
    assert strava.emulator.calls[FETCH] == 1
