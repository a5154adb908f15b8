"""Deauthorization purges the athlete's data and keeps a tombstone, on real PostgreSQL, once
Strava (the emulator) confirms the grant is gone: each test here revokes it there first."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, func, select
from support import EVENT_TIME, FakeStrava, FakeUtcClock, exhaust_quota
from support import stored_event as stored

from service.ingest.context import IngestContext
from service.ingest.lifecycle import counts_by_status
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
from service.strava.errors import Transient
from service.strava.quota import QuotaExceeded, Tier, using_tier
from service.strava.ratelimit import RateLimitSnapshot, WindowPair

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
    strava.emulator.delete_activity(removed["id"])
    process_event(ctx, stored(ctx, removed["id"], athlete_id, "delete"))
    ctx.coalesce_window = timedelta(minutes=5)
    pending = strava.emulator.create_activity(athlete_id)
    process_event(ctx, stored(ctx, pending["id"], athlete_id, "create"))
    ctx.coalesce_window = timedelta(0)
    return athlete_id


@pytest.fixture
def revoked(strava: FakeStrava, athlete_with_data: int) -> int:
    """The athlete with data here, who revoked the app on Strava: their tokens are dead."""
    strava.emulator.deauthorize(athlete_with_data)
    return athlete_with_data


def test_deauthorization_purges_tokens_activities_and_inbox_payloads_in_one_go(
    ctx: IngestContext, revoked: int
) -> None:
    athlete_id = revoked

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
    ctx: IngestContext, revoked: int
) -> None:
    process_event(ctx, deauthorization(ctx, revoked))

    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, revoked)
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


def test_a_boolean_false_deauthorizes_too(ctx: IngestContext, revoked: int) -> None:
    process_event(ctx, deauthorization(ctx, revoked, authorized=False))

    with Session(ctx.engine) as session:
        assert session.get_one(Athlete, revoked).status == AthleteStatus.DEAUTHORIZED


def test_a_second_purge_changes_nothing_and_keeps_the_first_deauthorization_time(
    ctx: IngestContext, revoked: int
) -> None:
    process_event(ctx, deauthorization(ctx, revoked, event_time=T + 100))
    with Session(ctx.engine) as session:
        first = session.get_one(Athlete, revoked).deauthorized_at

    status = process_event(ctx, deauthorization(ctx, revoked, event_time=T + 200))
    again = purge_athlete(ctx.engine, revoked, utcnow() + timedelta(hours=1))

    assert status == InboxStatus.PROCESSED
    assert again is True
    with Session(ctx.engine) as session:
        assert session.get_one(Athlete, revoked).deauthorized_at == first


def test_purging_an_athlete_never_known_is_ignored(ctx: IngestContext, strava: FakeStrava) -> None:
    status = process_event(ctx, deauthorization(ctx, 424242))

    assert status == InboxStatus.IGNORED
    assert sum(strava.emulator.calls.values()) == 0


def test_events_after_the_purge_are_ignored_without_calling_strava(
    ctx: IngestContext, strava: FakeStrava, revoked: int
) -> None:
    process_event(ctx, deauthorization(ctx, revoked))
    strava.emulator.reset_calls()
    created = strava.emulator.create_activity(revoked)

    status = process_event(ctx, stored(ctx, created["id"], revoked, "create", event_time=T + 300))

    assert status == InboxStatus.IGNORED
    assert sum(strava.emulator.calls.values()) == 0


def test_deauthorization_cancels_the_athletes_active_sync_job(
    ctx: IngestContext, revoked: int
) -> None:
    started = start_job(ctx.engine, revoked, SyncKind.BACKFILL, utcnow())

    process_event(ctx, deauthorization(ctx, revoked))

    cancelled = get_job(ctx.engine, started.job.id or 0)
    assert cancelled is not None
    assert cancelled.status == SyncStatus.CANCELLED


def inbox_row(ctx: IngestContext, inbox_id: int) -> InboxEvent:
    with Session(ctx.engine) as session:
        return session.get_one(InboxEvent, inbox_id)


def test_a_forged_deauthorization_removes_nothing_after_one_call_to_strava(
    ctx: IngestContext, strava: FakeStrava, athlete_with_data: int
) -> None:
    before = count(ctx, Activity, athlete_with_data)
    strava.emulator.reset_calls()

    inbox_id = deauthorization(ctx, athlete_with_data)
    status = process_event(ctx, inbox_id)

    assert status == InboxStatus.UNCONFIRMED
    assert inbox_row(ctx, inbox_id).reason == "the grant is still valid"
    assert strava.emulator.calls == {"GET /athlete": 1}
    assert count(ctx, Activity, athlete_with_data) == before > 0
    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, athlete_with_data)
    assert athlete.status == AthleteStatus.CONNECTED
    assert athlete.refresh_token_enc is not None
    assert counts_by_status(ctx.engine)[InboxStatus.UNCONFIRMED] == 1


def test_a_genuine_deauthorization_is_confirmed_by_the_401_for_the_access_token(
    ctx: IngestContext, strava: FakeStrava, revoked: int
) -> None:
    strava.emulator.reset_calls()

    status = process_event(ctx, deauthorization(ctx, revoked))

    assert status == InboxStatus.PROCESSED
    assert strava.emulator.calls == {"GET /athlete": 1}
    assert count(ctx, Activity, revoked) == 0


def test_a_deauthorization_is_confirmed_by_the_rejected_refresh_token_when_the_token_expires(
    ctx: IngestContext, strava: FakeStrava, revoked: int
) -> None:
    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, revoked)
        athlete.expires_at = utcnow() + timedelta(seconds=30)
        session.add(athlete)
        session.commit()
    strava.emulator.reset_calls()

    status = process_event(ctx, deauthorization(ctx, revoked))

    assert status == InboxStatus.PROCESSED
    assert strava.emulator.calls == {"POST /oauth/token": 1}
    with Session(ctx.engine) as session:
        assert session.get_one(Athlete, revoked).status == AthleteStatus.DEAUTHORIZED


@pytest.mark.parametrize("refusal", ["quota", "outage"])
def test_a_deauthorization_strava_cannot_answer_now_purges_nothing_until_it_can(
    ctx: IngestContext, strava: FakeStrava, revoked: int, refusal: str, quota_clock: FakeUtcClock
) -> None:
    """Quota denied or a 5xx: the actor re-sends the event later; never a purge meanwhile."""
    if refusal == "quota":
        exhaust_quota(ctx)
    else:
        strava.emulator.fail_next(1, status=503)
    inbox_id = deauthorization(ctx, revoked)

    with pytest.raises((QuotaExceeded, Transient)):
        process_event(ctx, inbox_id)

    assert count(ctx, Activity, revoked) > 0
    assert inbox_row(ctx, inbox_id).status == InboxStatus.RECEIVED
    quota_clock.advance(timedelta(seconds=ctx.quota.config.window_seconds))
    assert process_event(ctx, inbox_id) == InboxStatus.PROCESSED
    assert count(ctx, Activity, revoked) == 0


def test_forged_deauthorizations_past_the_athletes_budget_wait_at_a_lower_tier(
    ctx: IngestContext, strava: FakeStrava, athlete_with_data: int, quota_clock: FakeUtcClock
) -> None:
    """Each check of the grant is a call: a flood of forged deauthorizations is bounded by
    the athlete's budget like a flood of creates, and cannot spend the webhook tier's room."""
    with Session(ctx.engine) as session:
        spent = session.get_one(Athlete, athlete_with_data).new_fetch_count
    ctx.webhook_fetches_per_window = spent + 2
    # At the start of a quarter hour, whatever the time of day: late in one, the room the
    # `recent` tier leaves for real-time work has shrunk below what it needs refused.
    now = quota_clock.now
    quota_clock.now = now.replace(minute=now.minute // 15 * 15, second=0, microsecond=0)
    # 85 of Strava's 100 reads used: the `recent` tier's share is spent, the webhook tier's not.
    ctx.quota.observe(
        "read",
        200,
        RateLimitSnapshot(
            limit=WindowPair(200, 2000),
            usage=WindowPair(85, 85),
            read_limit=WindowPair(100, 1000),
            read_usage=WindowPair(85, 85),
        ),
    )
    within = [deauthorization(ctx, athlete_with_data, event_time=T + n) for n in (1, 2)]
    past = deauthorization(ctx, athlete_with_data, event_time=T + 3)

    assert [process_event(ctx, i) for i in within] == [InboxStatus.UNCONFIRMED] * 2
    with pytest.raises(QuotaExceeded) as refused:
        process_event(ctx, past)

    assert refused.value.tier == Tier.RECENT
    assert count(ctx, Activity, athlete_with_data) > 0
