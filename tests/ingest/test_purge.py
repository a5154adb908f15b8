"""Deauthorization purges the athlete's data and keeps a tombstone, on real PostgreSQL."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, func, select
from support import EVENT_TIME, FakeStrava
from support import stored_event as stored

from service.ingest.context import IngestContext
from service.ingest.process import process_event
from service.ingest.purge import purge_athlete
from service.ingest.sync import get_job, start_job
from service.models import (
    Activity,
    ActivityRemoval,
    Athlete,
    AthleteStatus,
    InboxEvent,
    InboxStatus,
    PendingHydration,
    SyncKind,
    SyncStatus,
    utcnow,
)
from service.strava.quota import Tier, using_tier

T = EVENT_TIME


@pytest.fixture(autouse=True)
def webhook_tier(ctx: IngestContext) -> Iterator[None]:
    ctx.coalesce_window = timedelta(0)
    with using_tier(Tier.WEBHOOK):
        yield


def deauthorization(
    ctx: IngestContext, athlete_id: int, event_time: int = T + 100, **kw: Any
) -> int:
    updates = {"authorized": kw.pop("authorized", "false")}
    return stored(
        ctx,
        athlete_id,
        athlete_id,
        "update",
        object_type="athlete",
        event_time=event_time,
        updates=updates,
    )


def count(ctx: IngestContext, table: Any, athlete_id: int) -> int:
    with Session(ctx.engine) as session:
        return session.exec(
            select(func.count()).select_from(table).where(table.athlete_id == athlete_id)
        ).one()


@pytest.fixture
def athlete_with_data(ctx: IngestContext, strava: FakeStrava, athlete_id: int) -> int:
    """The athlete with a hydrated activity, a tombstone, a pending fetch and a titled event."""
    kept = strava.emulator.create_activity(athlete_id)
    process_event(ctx, stored(ctx, kept["id"], athlete_id, "create"))
    process_event(ctx, stored(ctx, kept["id"], athlete_id, "update", updates={"title": "Mine"}))
    removed = strava.emulator.create_activity(athlete_id)
    process_event(ctx, stored(ctx, removed["id"], athlete_id, "delete"))
    ctx.coalesce_window = timedelta(minutes=5)
    pending = strava.emulator.create_activity(athlete_id)
    process_event(ctx, stored(ctx, pending["id"], athlete_id, "create"))
    ctx.coalesce_window = timedelta(0)
    return athlete_id


def test_deauthorization_purges_tokens_activities_and_inbox_payloads_in_one_go(
    ctx: IngestContext, athlete_with_data: int
) -> None:
    athlete_id = athlete_with_data

    status = process_event(ctx, deauthorization(ctx, athlete_id))

    assert status == InboxStatus.PROCESSED
    for table in (Activity, ActivityRemoval, PendingHydration):
        assert count(ctx, table, athlete_id) == 0
    with Session(ctx.engine) as session:
        payloads = session.exec(
            select(InboxEvent.updates)
            .where(InboxEvent.owner_id == athlete_id)
            .where(InboxEvent.object_type == "activity")
        ).all()
    assert payloads
    assert all(p == {} for p in payloads)


def test_the_athlete_row_stays_as_a_tombstone_without_tokens_or_profile(
    ctx: IngestContext, athlete_with_data: int
) -> None:
    process_event(ctx, deauthorization(ctx, athlete_with_data))

    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, athlete_with_data)
    assert athlete.status == AthleteStatus.DEAUTHORIZED
    assert athlete.deauthorized_at is not None
    assert (athlete.access_token_enc, athlete.refresh_token_enc, athlete.expires_at) == (
        None,
        None,
        None,
    )
    assert (athlete.username, athlete.firstname, athlete.lastname, athlete.raw) == (
        None,
        None,
        None,
        None,
    )


def test_a_boolean_false_deauthorizes_too(ctx: IngestContext, athlete_with_data: int) -> None:
    process_event(ctx, deauthorization(ctx, athlete_with_data, authorized=False))

    with Session(ctx.engine) as session:
        assert session.get_one(Athlete, athlete_with_data).status == AthleteStatus.DEAUTHORIZED


def test_a_second_purge_changes_nothing_and_keeps_the_first_deauthorization_time(
    ctx: IngestContext, athlete_with_data: int
) -> None:
    process_event(ctx, deauthorization(ctx, athlete_with_data, event_time=T + 100))
    with Session(ctx.engine) as session:
        first = session.get_one(Athlete, athlete_with_data).deauthorized_at

    status = process_event(ctx, deauthorization(ctx, athlete_with_data, event_time=T + 200))
    again = purge_athlete(ctx.engine, athlete_with_data, utcnow() + timedelta(hours=1))

    assert status == InboxStatus.PROCESSED
    assert again is True
    with Session(ctx.engine) as session:
        assert session.get_one(Athlete, athlete_with_data).deauthorized_at == first


def test_purging_an_athlete_never_known_is_ignored(ctx: IngestContext, strava: FakeStrava) -> None:
    status = process_event(ctx, deauthorization(ctx, 424242))

    assert status == InboxStatus.IGNORED
    assert sum(strava.emulator.calls.values()) == 0


def test_events_after_the_purge_are_ignored_without_calling_strava(
    ctx: IngestContext, strava: FakeStrava, athlete_with_data: int
) -> None:
    process_event(ctx, deauthorization(ctx, athlete_with_data))
    strava.emulator.reset_calls()
    created = strava.emulator.create_activity(athlete_with_data)

    status = process_event(
        ctx, stored(ctx, created["id"], athlete_with_data, "create", event_time=T + 300)
    )

    assert status == InboxStatus.IGNORED
    assert sum(strava.emulator.calls.values()) == 0


def test_deauthorization_cancels_the_athletes_active_sync_job(
    ctx: IngestContext, athlete_with_data: int
) -> None:
    started = start_job(ctx.engine, athlete_with_data, SyncKind.BACKFILL, utcnow())

    process_event(ctx, deauthorization(ctx, athlete_with_data))

    cancelled = get_job(ctx.engine, started.job.id or 0)
    assert cancelled is not None
    assert cancelled.status == SyncStatus.CANCELLED
