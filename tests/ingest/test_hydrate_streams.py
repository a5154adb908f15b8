"""Hydration with streams against the emulator and PostgreSQL: the detail,
then the streams keyed by type (docs/strava.md §4.3); `partial` while the streams are
missing, retried without fetching the detail again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from support import FakeStrava, FakeUtcClock, exhaust_quota

from service.config import Settings
from service.db import session_scope
from service.ingest.activities import remove_activities
from service.ingest.athletes import connect_athlete
from service.ingest.context import IngestContext
from service.ingest.hydrate import hydrate_stored
from service.ingest.policy import DEFAULT_STREAM_KEYS, HydrationPolicy, streams_for
from service.ingest.retry import WaitForQuota
from service.ingest.workitems import HYDRATIONS
from service.models import Activity, ActivityStream, HydrationStatus, utcnow
from service.strava.quota import Tier, using_tier
from service.strava.quota.scheduler import QuotaExceeded
from service.strava.schemas import TokenResponse

DETAIL = "GET /activities/{id}"
STREAMS = "GET /activities/{id}/streams"
KEYS = ("time", "distance", "latlng", "heartrate")


@pytest.fixture
def activity_id(ctx: IngestContext, strava: FakeStrava) -> int:
    """An activity with a recorded track, of an athlete who connected, listed and pending."""
    athlete_id = strava.emulator.athlete_ids[0]
    token = TokenResponse.model_validate(strava.emulator.issue_tokens(athlete_id))
    connect_athlete(ctx.engine, ctx.cipher, token, "read,activity:read_all", utcnow())
    created: dict[str, Any] = strava.emulator.create_activity(athlete_id)
    with session_scope(ctx.engine) as session:
        session.add(Activity(id=created["id"], athlete_id=athlete_id, hydration_status="pending"))
    return int(created["id"])


def run(ctx: IngestContext, activity_id: int, keys: tuple[str, ...] = KEYS) -> None:
    """Hydrate the activity as the hydration actor would, at the recent tier."""
    with using_tier(Tier.RECENT):
        hydrate_stored(ctx, activity_id, keys)


def row(engine: Engine, activity_id: int) -> Activity | None:
    with Session(engine) as session:
        return session.get(Activity, activity_id)


def streams_of(engine: Engine, activity_id: int) -> dict[str, ActivityStream]:
    with Session(engine) as session:
        found = session.exec(
            select(ActivityStream).where(ActivityStream.activity_id == activity_id)
        ).all()
    return {stream.type: stream for stream in found}


def after_the_detail(
    ctx: IngestContext, monkeypatch: pytest.MonkeyPatch, then: Callable[[], None]
) -> None:
    """Run `then` right after the detail call returns, before the streams call."""
    real = ctx.strava.get_activity

    def get_activity(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        then()
        return result

    monkeypatch.setattr(ctx.strava, "get_activity", get_activity)


def test_a_hydration_with_streams_stores_the_detail_and_each_stream_and_is_complete(
    ctx: IngestContext, strava: FakeStrava, activity_id: int
) -> None:
    run(ctx, activity_id)

    hydrated = row(ctx.engine, activity_id)
    assert hydrated is not None
    assert (hydrated.hydration_status, hydrated.hydration_missing) == ("complete", None)
    assert hydrated.raw_detail == strava.emulator.activity(activity_id)
    stored = streams_of(ctx.engine, activity_id)
    assert set(stored) == set(KEYS)
    assert stored["distance"].series_type == "distance"
    assert stored["latlng"].original_size == len(stored["latlng"].data) > 0


def test_streams_strava_does_not_have_leave_the_activity_partial_saying_what_is_missing(
    ctx: IngestContext, strava: FakeStrava, activity_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    after_the_detail(ctx, monkeypatch, lambda: strava.emulator.fail_next(1, status=404))

    run(ctx, activity_id)

    hydrated = row(ctx.engine, activity_id)
    assert hydrated is not None
    assert (hydrated.hydration_status, hydrated.hydration_missing) == ("partial", ["streams"])
    assert hydrated.raw_detail is not None
    assert hydrated.last_hydrate_error == "streams: NotFound"
    assert streams_of(ctx.engine, activity_id) == {}


def test_quota_running_out_between_the_calls_leaves_it_partial_and_the_retry_fetches_only_streams(
    ctx: IngestContext,
    strava: FakeStrava,
    activity_id: int,
    quota_clock: FakeUtcClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    after_the_detail(ctx, monkeypatch, lambda: exhaust_quota(ctx))
    with pytest.raises(QuotaExceeded) as denied:
        run(ctx, activity_id)
    # What the actor records for an attempt denied quota.
    retry_at = utcnow() + timedelta(minutes=15)
    HYDRATIONS.record(ctx.engine, activity_id, WaitForQuota(retry_at), str(denied.value), utcnow())
    waiting = row(ctx.engine, activity_id)
    assert waiting is not None
    assert (waiting.hydration_status, waiting.hydration_missing) == ("partial", ["streams"])
    assert waiting.retry_after == retry_at
    monkeypatch.undo()
    quota_clock.advance(timedelta(minutes=15))

    with using_tier(Tier.RECENT):
        assert hydrate_stored(ctx, activity_id, KEYS)

    done = row(ctx.engine, activity_id)
    assert done is not None
    assert (done.hydration_status, done.hydration_missing, done.retry_after) == (
        "complete",
        None,
        None,
    )
    assert set(streams_of(ctx.engine, activity_id)) == set(KEYS)
    assert (strava.emulator.calls[DETAIL], strava.emulator.calls[STREAMS]) == (1, 1)


def test_a_hydration_without_stream_keys_is_complete_with_the_detail_alone(
    ctx: IngestContext, strava: FakeStrava, activity_id: int
) -> None:
    run(ctx, activity_id, keys=())

    hydrated = row(ctx.engine, activity_id)
    assert hydrated is not None
    assert hydrated.hydration_status == HydrationStatus.COMPLETE
    assert strava.emulator.calls[STREAMS] == 0


def test_a_stored_row_naming_another_athletes_activity_is_not_hydrated_under_them(
    ctx: IngestContext, strava: FakeStrava, activity_id: int
) -> None:
    # The row names our athlete; Strava shows the activity, but as someone else's (§4.2).
    strava.emulator.show_public_activities_to_others()
    stranger = strava.emulator.add_athlete()
    theirs = int(strava.emulator.create_activity(stranger, visibility="everyone")["id"])
    ours = strava.emulator.athlete_ids[0]
    with session_scope(ctx.engine) as session:
        session.add(Activity(id=theirs, athlete_id=ours, hydration_status="pending"))

    run(ctx, theirs)

    stored = row(ctx.engine, theirs)
    assert stored is not None
    assert (stored.athlete_id, stored.raw_detail) == (ours, None)
    assert (stored.hydration_status, stored.last_hydrate_error) == ("not_available", "OtherOwner")
    assert strava.emulator.calls[STREAMS] == 0


def test_deleting_an_activity_deletes_its_streams(ctx: IngestContext, activity_id: int) -> None:
    run(ctx, activity_id)
    activity = row(ctx.engine, activity_id)
    assert activity is not None

    with session_scope(ctx.engine) as session:
        remove_activities(session, activity.athlete_id, [activity_id], ctx.clock())

    assert streams_of(ctx.engine, activity_id) == {}


@pytest.mark.parametrize(
    ("streams", "tier", "fetched"),
    [
        ("recent", Tier.ON_DEMAND, True),
        ("recent", Tier.RECENT, True),
        ("recent", Tier.BACKFILL, False),
        ("all", Tier.BACKFILL, True),
        ("none", Tier.ON_DEMAND, False),
    ],
)
def test_the_policy_says_which_hydrations_fetch_streams(
    streams: Any, tier: Tier, fetched: bool
) -> None:
    policy = HydrationPolicy(streams=streams)

    assert streams_for(policy, tier) == (DEFAULT_STREAM_KEYS if fetched else ())


def test_a_stream_type_strava_does_not_know_is_refused_at_start_up(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ValidationError, match="hydrate_stream_keys"):
        make_settings(hydrate_stream_keys="time,power")


def test_the_stream_settings_become_the_policy(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(hydrate_streams="all", hydrate_stream_keys=" latlng, time ")

    policy = HydrationPolicy.from_settings(settings)

    assert (policy.streams, policy.stream_keys) == ("all", ("latlng", "time"))


def test_a_hydration_queued_before_the_activity_was_completed_elsewhere_costs_no_call(
    ctx: IngestContext, activity_id: int, strava: FakeStrava
) -> None:
    # An on-demand hydration completed it while a backfill's hydration waited in its queue.
    run(ctx, activity_id)
    calls = (strava.emulator.calls[DETAIL], strava.emulator.calls[STREAMS])

    with using_tier(Tier.BACKFILL):
        assert hydrate_stored(ctx, activity_id, KEYS)

    assert (strava.emulator.calls[DETAIL], strava.emulator.calls[STREAMS]) == calls == (1, 1)
    done = row(ctx.engine, activity_id)
    assert done is not None
    assert done.hydration_status == "complete"
