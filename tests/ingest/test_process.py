"""Processing stored events against the Strava emulator, on real PostgreSQL."""

from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session
from support import FakeStrava

from service.ingest.context import IngestContext
from service.ingest.events import WebhookEvent
from service.ingest.inbox import store_event
from service.ingest.process import process_event
from service.models import Activity, Athlete, AthleteStatus, HydrationStatus, InboxEvent, utcnow
from service.strava.errors import Transient
from service.strava.quota import Tier, using_tier

SUBSCRIPTION = 1


@pytest.fixture(autouse=True)
def webhook_tier() -> Iterator[None]:
    with using_tier(Tier.WEBHOOK):
        yield


def stored(ctx: IngestContext, object_id: int, owner_id: int, aspect: str, **kw: Any) -> int:
    event = WebhookEvent(
        object_type=kw.pop("object_type", "activity"),
        object_id=object_id,
        aspect_type=aspect,
        owner_id=owner_id,
        subscription_id=SUBSCRIPTION,
        event_time=kw.pop("event_time", 1_700_000_000),
        updates=kw.pop("updates", {}),
    )
    return store_event(ctx.engine, event).id


def activity_row(ctx: IngestContext, activity_id: int) -> Activity | None:
    with Session(ctx.engine) as session:
        return session.get(Activity, activity_id)


def test_a_create_event_hydrates_the_activity_with_stravas_values(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    inbox_id = stored(ctx, created["id"], athlete_id, "create")

    process_event(ctx, inbox_id)

    row = activity_row(ctx, created["id"])
    assert row is not None
    assert row.hydration_status == HydrationStatus.COMPLETE
    assert (row.name, row.distance, row.sport_type) == (
        created["name"],
        created["distance"],
        created["sport_type"],
    )
    assert row.raw_detail is not None
    assert row.raw_detail["resource_state"] == 3
    assert row.raw_detail["laps"]


def test_processing_the_same_event_twice_leaves_the_same_row(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    first = stored(ctx, created["id"], athlete_id, "create")
    process_event(ctx, first)
    before = activity_row(ctx, created["id"])
    with Session(ctx.engine) as session:
        session.get_one(InboxEvent, first).status = "received"
        session.commit()

    process_event(ctx, first)

    after = activity_row(ctx, created["id"])
    assert before is not None
    assert after is not None
    ignore = {"hydrated_at", "updated_at", "created_at"}
    assert before.model_dump(exclude=ignore) == after.model_dump(exclude=ignore)


def test_a_redelivered_message_for_a_finished_event_costs_no_call(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    inbox_id = stored(ctx, created["id"], athlete_id, "create")
    process_event(ctx, inbox_id)
    strava.emulator.reset_calls()

    process_event(ctx, inbox_id)

    assert sum(strava.emulator.calls.values()) == 0


def test_a_delete_event_removes_the_activity(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    process_event(ctx, stored(ctx, created["id"], athlete_id, "create"))

    process_event(ctx, stored(ctx, created["id"], athlete_id, "delete"))

    assert activity_row(ctx, created["id"]) is None


def test_an_event_of_an_unknown_owner_is_ignored_without_calling_strava(
    ctx: IngestContext, strava: FakeStrava
) -> None:
    inbox_id = stored(ctx, 16181809559, 999_999, "create")

    status = process_event(ctx, inbox_id)

    assert status == "ignored"
    assert sum(strava.emulator.calls.values()) == 0


def test_a_token_about_to_expire_is_refreshed_and_the_rotated_one_stored_first(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
        old_refresh = ctx.cipher.decrypt(athlete.refresh_token_enc or "")
        # Strava only rotates when the access token has under an hour left (§3.3).
        athlete.expires_at = utcnow()
        session.add(athlete)
        session.commit()
    created = strava.emulator.create_activity(athlete_id)

    process_event(ctx, stored(ctx, created["id"], athlete_id, "create"))

    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
        new_refresh = ctx.cipher.decrypt(athlete.refresh_token_enc or "")
    assert new_refresh != old_refresh
    assert athlete.expires_at is not None
    assert athlete.expires_at > utcnow()
    row = activity_row(ctx, created["id"])
    assert row is not None
    assert row.hydration_status == HydrationStatus.COMPLETE


def test_an_activity_strava_no_longer_has_is_marked_not_available(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    process_event(ctx, stored(ctx, created["id"], athlete_id, "create"))
    strava.emulator.delete_activity(created["id"])

    process_event(ctx, stored(ctx, created["id"], athlete_id, "update", updates={"title": "x"}))

    row = activity_row(ctx, created["id"])
    assert row is not None
    assert row.hydration_status == HydrationStatus.NOT_AVAILABLE


def test_deauthorization_purges_tokens_and_activities_and_keeps_a_tombstone(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    process_event(ctx, stored(ctx, created["id"], athlete_id, "create"))

    inbox_id = stored(
        ctx,
        athlete_id,
        athlete_id,
        "update",
        object_type="athlete",
        updates={"authorized": "false"},
    )
    process_event(ctx, inbox_id)

    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
    assert athlete.status == AthleteStatus.DEAUTHORIZED
    assert athlete.access_token_enc is None
    assert athlete.refresh_token_enc is None
    assert athlete.deauthorized_at is not None
    assert activity_row(ctx, created["id"]) is None


def test_a_strava_outage_raises_transient(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    inbox_id = stored(ctx, created["id"], athlete_id, "create")
    strava.emulator.fail_next(1, status=503)

    with pytest.raises(Transient):
        process_event(ctx, inbox_id)

    assert activity_row(ctx, created["id"]) is None
