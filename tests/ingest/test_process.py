"""Processing stored events against the Strava emulator, on real PostgreSQL.

The coalescing window is real here: the test's clock is moved past it, and the event that
holds an activity's pending fetch is processed again, as its delayed message would be.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, select
from support import EVENT_TIME, FakeStrava, FakeUtcClock, exhaust_quota
from support import stored_event as stored

from service.ingest.athletes import connect_athlete
from service.ingest.context import IngestContext
from service.ingest.hydrate import hydrate_missing_streams, hydrate_stored
from service.ingest.policy import HydrationPolicy, streams_for
from service.ingest.process import Deferred, process_event
from service.models import (
    Activity,
    ActivityRemoval,
    ActivityStream,
    Athlete,
    AthleteStatus,
    HydrationStatus,
    InboxEvent,
    InboxStatus,
    PendingHydration,
    utcnow,
)
from service.strava.errors import Transient
from service.strava.quota import QuotaExceeded, Tier, using_tier
from service.strava.ratelimit import RateLimitSnapshot, WindowPair
from service.strava.schemas import TokenResponse

T = EVENT_TIME
WINDOW = timedelta(seconds=3)
FETCH = "GET /activities/{id}"


@pytest.fixture(autouse=True)
def webhook_tier() -> Iterator[None]:
    with using_tier(Tier.WEBHOOK):
        yield


@pytest.fixture
def clock(ctx: IngestContext) -> FakeUtcClock:
    clock = FakeUtcClock()
    ctx.clock = clock
    ctx.coalesce_window = WINDOW
    return clock


def settle(ctx: IngestContext, clock: FakeUtcClock, *inbox_ids: int) -> list[Any]:
    """Process the events in order, then run every deferred one after its window."""
    outcomes = [process_event(ctx, i) for i in inbox_ids]
    while deferred := [
        i for i, o in zip(inbox_ids, outcomes, strict=True) if isinstance(o, Deferred)
    ]:
        clock.advance(WINDOW)
        for inbox_id in deferred:
            outcomes[inbox_ids.index(inbox_id)] = process_event(ctx, inbox_id)
    return outcomes


def activity_row(ctx: IngestContext, activity_id: int) -> Activity | None:
    with Session(ctx.engine) as session:
        return session.get(Activity, activity_id)


def inbox_row(ctx: IngestContext, inbox_id: int) -> InboxEvent:
    with Session(ctx.engine) as session:
        return session.get_one(InboxEvent, inbox_id)


def hydrated(ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int) -> int:
    """An activity created on Strava and hydrated here; Strava's call counters reset."""
    created = strava.emulator.create_activity(athlete_id)
    settle(ctx, clock, stored(ctx, created["id"], athlete_id, "create"))
    strava.emulator.reset_calls()
    return int(created["id"])


def test_a_create_event_hydrates_the_activity_with_stravas_values(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)

    settle(ctx, clock, stored(ctx, created["id"], athlete_id, "create"))

    row = activity_row(ctx, created["id"])
    assert row is not None
    assert row.hydration_status == HydrationStatus.COMPLETE
    assert (row.name, row.distance, row.sport_type) == (
        created["name"],
        created["distance"],
        created["sport_type"],
    )
    assert row.raw_detail is not None
    assert row.raw_detail["laps"]
    assert row.synced_event_time == T


def test_a_create_waits_out_the_coalescing_window_before_fetching(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    inbox_id = stored(ctx, created["id"], athlete_id, "create")

    first = process_event(ctx, inbox_id)

    assert first == Deferred(clock.now + WINDOW)
    assert strava.emulator.calls[FETCH] == 0
    assert inbox_row(ctx, inbox_id).status == InboxStatus.ENQUEUED
    clock.advance(WINDOW)
    assert process_event(ctx, inbox_id) == InboxStatus.PROCESSED
    assert strava.emulator.calls[FETCH] == 1


def test_with_no_window_a_create_fetches_at_once(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    ctx.coalesce_window = timedelta(0)
    created = strava.emulator.create_activity(athlete_id)

    status = process_event(ctx, stored(ctx, created["id"], athlete_id, "create"))

    assert status == InboxStatus.PROCESSED
    assert strava.emulator.calls[FETCH] == 1


def test_processing_the_same_event_twice_leaves_the_same_row(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    first = stored(ctx, created["id"], athlete_id, "create")
    settle(ctx, clock, first)
    before = activity_row(ctx, created["id"])
    with Session(ctx.engine) as session:
        session.get_one(InboxEvent, first).status = "received"
        session.commit()

    settle(ctx, clock, first)

    after = activity_row(ctx, created["id"])
    assert before is not None
    assert after is not None
    ignore = {"hydrated_at", "updated_at", "created_at"}
    assert before.model_dump(exclude=ignore) == after.model_dump(exclude=ignore)


def test_a_redelivered_message_for_a_finished_event_costs_no_call(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    inbox_id = stored(ctx, created["id"], athlete_id, "create")
    settle(ctx, clock, inbox_id)
    strava.emulator.reset_calls()

    process_event(ctx, inbox_id)

    assert sum(strava.emulator.calls.values()) == 0


def test_a_title_only_update_costs_no_strava_call(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    activity_id = hydrated(ctx, clock, strava, athlete_id)

    status = process_event(
        ctx,
        stored(
            ctx, activity_id, athlete_id, "update", event_time=T + 1, updates={"title": "Messy"}
        ),
    )

    assert status == InboxStatus.PROCESSED
    assert sum(strava.emulator.calls.values()) == 0
    row = activity_row(ctx, activity_id)
    assert row is not None
    assert row.name == "Messy"
    assert row.update_times == {"title": T + 1}


def test_type_and_private_updates_are_applied_without_a_strava_call(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    activity_id = hydrated(ctx, clock, strava, athlete_id)
    updates = {"type": "Walk", "private": "true"}

    process_event(
        ctx, stored(ctx, activity_id, athlete_id, "update", event_time=T + 1, updates=updates)
    )

    assert sum(strava.emulator.calls.values()) == 0
    row = activity_row(ctx, activity_id)
    assert row is not None
    assert (row.type, row.sport_type, row.private, row.visibility) == (
        "Walk",
        "Walk",
        True,
        "only_me",
    )


def test_an_update_with_other_keys_fetches_the_activity(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    activity_id = hydrated(ctx, clock, strava, athlete_id)

    settle(
        ctx,
        clock,
        stored(
            ctx, activity_id, athlete_id, "update", event_time=T + 1, updates={"sport_type": "Walk"}
        ),
    )

    assert strava.emulator.calls[FETCH] == 1


def test_an_update_for_an_activity_we_do_not_have_fetches_it(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)

    settle(ctx, clock, stored(ctx, created["id"], athlete_id, "update", updates={"title": "x"}))

    assert strava.emulator.calls[FETCH] == 1
    row = activity_row(ctx, created["id"])
    assert row is not None
    assert row.name == created["name"]


def test_a_delete_strava_confirms_removes_the_activity_and_leaves_a_deleted_tombstone(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    activity_id = hydrated(ctx, clock, strava, athlete_id)
    strava.emulator.delete_activity(activity_id)

    outcomes = settle(ctx, clock, stored(ctx, activity_id, athlete_id, "delete", event_time=T + 1))

    assert outcomes == [InboxStatus.PROCESSED]
    assert activity_row(ctx, activity_id) is None
    with Session(ctx.engine) as session:
        removal = session.get_one(ActivityRemoval, activity_id)
    assert (removal.reason, removal.event_time) == ("deleted", T + 1)
    assert strava.emulator.calls[FETCH] == 1  # the confirmation: Strava answered 404


def test_with_only_activity_read_a_delete_is_recorded_as_hidden_and_a_later_create_restores(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    token = TokenResponse.model_validate(
        strava.emulator.issue_tokens(athlete_id, "read,activity:read")
    )
    connect_athlete(ctx.engine, ctx.cipher, token, "read,activity:read", utcnow())
    activity_id = hydrated(ctx, clock, strava, athlete_id)
    # Made "Only You": a token without activity:read_all no longer sees it (§1.4).
    strava.emulator.update_activity(activity_id, private=True)
    settle(ctx, clock, stored(ctx, activity_id, athlete_id, "delete", event_time=T + 1))
    with Session(ctx.engine) as session:
        assert session.get_one(ActivityRemoval, activity_id).reason == "hidden"

    strava.emulator.update_activity(activity_id, private=False)
    settle(ctx, clock, stored(ctx, activity_id, athlete_id, "create", event_time=T + 2))

    row = activity_row(ctx, activity_id)
    assert row is not None
    assert row.hydration_status == HydrationStatus.COMPLETE
    with Session(ctx.engine) as session:
        assert session.get(ActivityRemoval, activity_id) is None


def test_a_burst_of_create_three_updates_and_delete_ends_deleted_with_one_fetch(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    strava.emulator.delete_activity(created["id"])
    burst = [
        stored(ctx, created["id"], athlete_id, "create", event_time=T),
        stored(ctx, created["id"], athlete_id, "update", event_time=T + 1, updates={"title": "a"}),
        stored(ctx, created["id"], athlete_id, "update", event_time=T + 2, updates={"type": "Run"}),
        stored(ctx, created["id"], athlete_id, "update", event_time=T + 3, updates={"title": "b"}),
        stored(ctx, created["id"], athlete_id, "delete", event_time=T + 4),
    ]

    outcomes = settle(ctx, clock, *burst)

    assert activity_row(ctx, created["id"]) is None
    # The burst's one fetch is the delete's confirmation.
    assert strava.emulator.calls[FETCH] == 1
    assert all(o in (InboxStatus.PROCESSED, InboxStatus.IGNORED) for o in outcomes)


def test_a_burst_of_create_and_updates_costs_one_fetch_and_ends_in_the_last_state(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    burst = [stored(ctx, created["id"], athlete_id, "create", event_time=T)]
    for n, title in enumerate(["one", "two", "three"], start=1):
        strava.emulator.update_activity(created["id"], title=title)
        burst.append(
            stored(
                ctx, created["id"], athlete_id, "update", event_time=T + n, updates={"title": title}
            )
        )

    settle(ctx, clock, *burst)

    assert strava.emulator.calls[FETCH] == 1
    row = activity_row(ctx, created["id"])
    assert row is not None
    assert row.name == "three"
    with Session(ctx.engine) as session:
        assert session.exec(select(PendingHydration)).all() == []


def test_an_older_title_update_arriving_late_never_overwrites_a_newer_one(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    activity_id = hydrated(ctx, clock, strava, athlete_id)
    newer = stored(
        ctx, activity_id, athlete_id, "update", event_time=T + 20, updates={"title": "new"}
    )
    older = stored(
        ctx, activity_id, athlete_id, "update", event_time=T + 10, updates={"title": "old"}
    )

    outcomes = settle(ctx, clock, newer, older)

    assert outcomes == [InboxStatus.PROCESSED, InboxStatus.IGNORED]
    row = activity_row(ctx, activity_id)
    assert row is not None
    assert row.name == "new"


def test_a_create_arriving_after_its_delete_does_not_bring_the_activity_back(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    strava.emulator.delete_activity(created["id"])
    delete = stored(ctx, created["id"], athlete_id, "delete", event_time=T + 5)
    create = stored(ctx, created["id"], athlete_id, "create", event_time=T)

    settle(ctx, clock, delete, create)

    assert activity_row(ctx, created["id"]) is None
    assert strava.emulator.calls[FETCH] == 1  # the delete's confirmation, shared by the create
    late = stored(ctx, created["id"], athlete_id, "create", event_time=T + 1)
    assert settle(ctx, clock, late) == [InboxStatus.IGNORED]
    assert strava.emulator.calls[FETCH] == 1


def test_a_delete_older_than_a_later_create_is_ignored(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    create = stored(ctx, created["id"], athlete_id, "create", event_time=T + 5)
    delete = stored(ctx, created["id"], athlete_id, "delete", event_time=T)

    outcomes = settle(ctx, clock, create, delete)

    assert outcomes[1] == InboxStatus.IGNORED
    assert activity_row(ctx, created["id"]) is not None


def test_an_event_of_an_unknown_owner_is_ignored_without_calling_strava(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava
) -> None:
    inbox_id = stored(ctx, 16181809559, 999_999, "create")

    status = process_event(ctx, inbox_id)

    assert status == "ignored"
    assert sum(strava.emulator.calls.values()) == 0


def test_a_token_about_to_expire_is_refreshed_and_the_rotated_one_stored_first(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
        old_refresh = ctx.cipher.decrypt(athlete.refresh_token_enc or "")
        # Strava only rotates when the access token has under an hour left (§3.3).
        athlete.expires_at = utcnow()
        session.add(athlete)
        session.commit()
    created = strava.emulator.create_activity(athlete_id)

    settle(ctx, clock, stored(ctx, created["id"], athlete_id, "create"))

    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
        new_refresh = ctx.cipher.decrypt(athlete.refresh_token_enc or "")
    assert new_refresh != old_refresh
    row = activity_row(ctx, created["id"])
    assert row is not None
    assert row.hydration_status == HydrationStatus.COMPLETE


def test_an_activity_strava_no_longer_has_is_marked_not_available(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    activity_id = hydrated(ctx, clock, strava, athlete_id)
    strava.emulator.delete_activity(activity_id)

    settle(
        ctx,
        clock,
        stored(ctx, activity_id, athlete_id, "update", event_time=T + 1, updates={"x": 1}),
    )

    row = activity_row(ctx, activity_id)
    assert row is not None
    assert row.hydration_status == HydrationStatus.NOT_AVAILABLE


def test_a_strava_outage_raises_transient_and_the_retry_fetches(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    inbox_id = stored(ctx, created["id"], athlete_id, "create")
    process_event(ctx, inbox_id)
    clock.advance(WINDOW)
    strava.emulator.fail_next(1, status=503)

    with pytest.raises(Transient):
        process_event(ctx, inbox_id)

    assert activity_row(ctx, created["id"]) is None
    assert process_event(ctx, inbox_id) == InboxStatus.PROCESSED
    assert activity_row(ctx, created["id"]) is not None


def test_an_event_covered_by_a_pending_fetch_is_processed_without_a_call(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    process_event(ctx, stored(ctx, created["id"], athlete_id, "create"))

    status = process_event(
        ctx, stored(ctx, created["id"], athlete_id, "update", event_time=T + 1, updates={"x": 1})
    )

    assert status == InboxStatus.PROCESSED
    assert sum(strava.emulator.calls.values()) == 0


def test_a_pending_fetch_whose_holder_failed_for_good_is_taken_over_by_the_next_event(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    holder = stored(ctx, created["id"], athlete_id, "create")
    process_event(ctx, holder)
    with Session(ctx.engine) as session:
        session.get_one(InboxEvent, holder).status = "failed"
        session.commit()

    status = process_event(
        ctx, stored(ctx, created["id"], athlete_id, "update", event_time=T + 1, updates={"x": 1})
    )

    assert status == InboxStatus.PROCESSED
    assert strava.emulator.calls[FETCH] == 1


# Streams by policy on the webhook path (docs/benchmarks/backfill.md, "Streams policy").
STREAMS = "GET /activities/{id}/streams"
STREAM_KEYS = streams_for(HydrationPolicy(streams="recent"), Tier.WEBHOOK)


def stream_types(ctx: IngestContext, activity_id: int) -> set[str]:
    with Session(ctx.engine) as session:
        found = session.exec(
            select(ActivityStream).where(ActivityStream.activity_id == activity_id)
        ).all()
    return {stream.type for stream in found}


def test_a_webhook_create_fetches_the_streams_the_policy_wants_and_ends_complete(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    inbox_id = stored(ctx, created["id"], athlete_id, "create")

    assert process_event(ctx, inbox_id, STREAM_KEYS) == Deferred(clock.now + WINDOW)
    clock.advance(WINDOW)
    assert process_event(ctx, inbox_id, STREAM_KEYS) == InboxStatus.PROCESSED

    row = activity_row(ctx, created["id"])
    assert row is not None
    assert (row.hydration_status, row.hydration_missing) == ("complete", None)
    assert row.raw_detail is not None
    types = stream_types(ctx, created["id"])
    assert {"time", "latlng"} <= types <= set(STREAM_KEYS)
    assert (strava.emulator.calls[FETCH], strava.emulator.calls[STREAMS]) == (1, 1)


def test_with_hydrate_streams_none_a_webhook_fetch_makes_no_streams_call(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    keys = streams_for(HydrationPolicy(streams="none"), Tier.WEBHOOK)
    created = strava.emulator.create_activity(athlete_id)
    inbox_id = stored(ctx, created["id"], athlete_id, "create")

    process_event(ctx, inbox_id, keys)
    clock.advance(WINDOW)
    assert process_event(ctx, inbox_id, keys) == InboxStatus.PROCESSED

    row = activity_row(ctx, created["id"])
    assert row is not None
    assert (row.hydration_status, row.hydration_missing) == ("complete", None)
    assert stream_types(ctx, created["id"]) == set()
    assert (strava.emulator.calls[FETCH], strava.emulator.calls[STREAMS]) == (1, 0)


def test_streams_strava_does_not_have_leave_a_webhook_fetch_partial(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    inbox_id = stored(ctx, created["id"], athlete_id, "create")
    process_event(ctx, inbox_id, STREAM_KEYS)
    clock.advance(WINDOW)

    def streams_fail(activity_id: int, tier: Tier) -> None:
        strava.emulator.fail_next(1, status=404)  # the streams call, after the detail
        hydrate_missing_streams(ctx, activity_id, STREAM_KEYS)

    assert process_event(ctx, inbox_id, STREAM_KEYS, streams_fail) == InboxStatus.PROCESSED

    row = activity_row(ctx, created["id"])
    assert row is not None
    assert (row.hydration_status, row.hydration_missing) == ("partial", ["streams"])
    assert row.raw_detail is not None
    assert row.last_hydrate_error == "streams: NotFound"
    assert stream_types(ctx, created["id"]) == set()
    assert (strava.emulator.calls[FETCH], strava.emulator.calls[STREAMS]) == (1, 1)


def test_a_streams_call_failing_after_a_webhook_fetch_leaves_it_partial_for_the_retry(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    inbox_id = stored(ctx, created["id"], athlete_id, "create")
    process_event(ctx, inbox_id, STREAM_KEYS)
    clock.advance(WINDOW)

    def streams_fail(activity_id: int, tier: Tier) -> None:
        assert tier == Tier.WEBHOOK  # the tier the detail was fetched at
        strava.emulator.fail_next(1, status=503)  # the streams call, after the detail
        hydrate_missing_streams(ctx, activity_id, STREAM_KEYS)

    with pytest.raises(Transient):
        process_event(ctx, inbox_id, STREAM_KEYS, streams_fail)

    # The event is done; the activity waits for its streams, detail stored.
    assert inbox_row(ctx, inbox_id).status == InboxStatus.PROCESSED
    row = activity_row(ctx, created["id"])
    assert row is not None
    assert (row.hydration_status, row.hydration_missing) == ("partial", ["streams"])
    assert row.raw_detail is not None
    # The hydration's retry (hydrate_activity at the webhook tier) fetches the streams alone.
    assert hydrate_stored(ctx, created["id"], STREAM_KEYS)
    done = activity_row(ctx, created["id"])
    assert done is not None
    assert (done.hydration_status, done.hydration_missing) == ("complete", None)
    assert stream_types(ctx, created["id"])
    assert (strava.emulator.calls[FETCH], strava.emulator.calls[STREAMS]) == (1, 2)


# Destructive events act only on Strava's word (docs/events.md, "Confirmation").


def test_a_forged_delete_removes_nothing_and_refreshes_the_activity_from_strava(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    activity_id = hydrated(ctx, clock, strava, athlete_id)
    strava.emulator.update_activity(activity_id, title="Renamed on Strava")
    inbox_id = stored(ctx, activity_id, athlete_id, "delete", event_time=T + 1)

    outcomes = settle(ctx, clock, inbox_id)

    assert outcomes == [InboxStatus.UNCONFIRMED]
    assert inbox_row(ctx, inbox_id).reason == "Strava still lists the activity"
    assert strava.emulator.calls[FETCH] == 1
    row = activity_row(ctx, activity_id)
    assert row is not None
    assert row.name == "Renamed on Strava"
    with Session(ctx.engine) as session:
        assert session.get(ActivityRemoval, activity_id) is None


def test_a_forged_delete_in_a_burst_still_costs_one_fetch(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    created = strava.emulator.create_activity(athlete_id)
    burst = [
        stored(ctx, created["id"], athlete_id, "create", event_time=T),
        stored(ctx, created["id"], athlete_id, "update", event_time=T + 1, updates={"x": 1}),
        stored(ctx, created["id"], athlete_id, "delete", event_time=T + 2),
    ]

    outcomes = settle(ctx, clock, *burst)

    assert outcomes == [InboxStatus.PROCESSED, InboxStatus.PROCESSED, InboxStatus.UNCONFIRMED]
    assert strava.emulator.calls[FETCH] == 1
    assert activity_row(ctx, created["id"]) is not None


def test_a_delete_strava_cannot_answer_now_is_sent_again_and_removes_nothing(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    activity_id = hydrated(ctx, clock, strava, athlete_id)
    inbox_id = stored(ctx, activity_id, athlete_id, "delete", event_time=T + 1)
    process_event(ctx, inbox_id)
    clock.advance(WINDOW)
    exhaust_quota(ctx)

    with pytest.raises(QuotaExceeded):
        process_event(ctx, inbox_id)

    assert activity_row(ctx, activity_id) is not None
    assert inbox_row(ctx, inbox_id).status == InboxStatus.ENQUEUED


def test_a_delete_with_a_token_strava_rejects_removes_nothing(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    """A 401 with the token we held says nothing about the activity: only a 404 does, or a
    401 for a token Strava has just issued."""
    activity_id = hydrated(ctx, clock, strava, athlete_id)
    # Revoked on Strava; its deauthorization event is still to come.
    strava.emulator.deauthorize(athlete_id, send_event=False)
    inbox_id = stored(ctx, activity_id, athlete_id, "delete", event_time=T + 1)

    outcomes = settle(ctx, clock, inbox_id)

    assert outcomes == [InboxStatus.UNCONFIRMED]
    assert "rejected the athlete's token" in (inbox_row(ctx, inbox_id).reason or "")
    assert activity_row(ctx, activity_id) is not None


def test_a_401_for_missing_activity_read_makes_the_athlete_reconnect_and_stops_their_work(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    # Strava holds a grant without activity:read; we believed it had it.
    token = TokenResponse.model_validate(strava.emulator.issue_tokens(athlete_id, "read"))
    connect_athlete(ctx.engine, ctx.cipher, token, "read,activity:read_all", utcnow())
    created = strava.emulator.create_activity(athlete_id)

    settle(ctx, clock, stored(ctx, created["id"], athlete_id, "create"))

    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
    assert athlete.status == AthleteStatus.NEEDS_REAUTH
    assert "activity:read_permission" in (athlete.status_reason or "")
    strava.emulator.reset_calls()
    later = strava.emulator.create_activity(athlete_id)
    assert settle(ctx, clock, stored(ctx, later["id"], athlete_id, "create")) == [
        InboxStatus.IGNORED
    ]
    assert sum(strava.emulator.calls.values()) == 0


def test_a_forged_event_from_the_future_does_not_make_later_genuine_events_look_old(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    activity_id = hydrated(ctx, clock, strava, athlete_id)
    future = int(clock.now.timestamp()) + 86_400
    settle(ctx, clock, stored(ctx, activity_id, athlete_id, "delete", event_time=future))
    strava.emulator.update_activity(activity_id, title="Later", type="Walk")
    genuine = int(clock.now.timestamp()) + 60

    outcomes = settle(
        ctx,
        clock,
        stored(ctx, activity_id, athlete_id, "update", event_time=genuine, updates={"x": 1}),
    )

    assert outcomes == [InboxStatus.PROCESSED]
    row = activity_row(ctx, activity_id)
    assert row is not None
    assert (row.name, row.sport_type) == ("Later", "Walk")


def test_a_confirmed_delete_with_a_future_event_time_does_not_outrank_a_later_create(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    token = TokenResponse.model_validate(
        strava.emulator.issue_tokens(athlete_id, "read,activity:read")
    )
    connect_athlete(ctx.engine, ctx.cipher, token, "read,activity:read", utcnow())
    activity_id = hydrated(ctx, clock, strava, athlete_id)
    strava.emulator.update_activity(activity_id, private=True)
    future = int(clock.now.timestamp()) + 86_400
    settle(ctx, clock, stored(ctx, activity_id, athlete_id, "delete", event_time=future))
    assert activity_row(ctx, activity_id) is None
    strava.emulator.update_activity(activity_id, private=False)
    clock.advance(timedelta(seconds=60))

    created = stored(ctx, activity_id, athlete_id, "create", event_time=int(clock.now.timestamp()))

    assert settle(ctx, clock, created) == [InboxStatus.PROCESSED]
    assert activity_row(ctx, activity_id) is not None


def test_a_create_naming_another_athletes_public_activity_stores_nothing_and_counts(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    strava.emulator.show_public_activities_to_others()
    stranger = strava.emulator.add_athlete()
    theirs = strava.emulator.create_activity(stranger, visibility="everyone")

    outcomes = settle(ctx, clock, stored(ctx, theirs["id"], athlete_id, "create"))

    assert outcomes == [InboxStatus.PROCESSED]
    assert strava.emulator.calls[FETCH] == 1
    assert activity_row(ctx, theirs["id"]) is None
    with Session(ctx.engine) as session:
        assert session.get_one(Athlete, athlete_id).forged_creates == 1


def test_creates_strava_answers_404_for_are_counted_and_flag_the_athlete(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    ctx.forged_creates_to_flag = 3
    made_up = [90_000_000_000 + n for n in range(3)]

    settle(ctx, clock, *[stored(ctx, i, athlete_id, "create") for i in made_up])

    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
    assert athlete.forged_creates == 3
    assert athlete.flagged_at is not None
    assert (athlete.flag_reason or "").startswith("3 creates of activities Strava answered 404")
    assert strava.emulator.calls[FETCH] == 3


def test_past_the_athletes_budget_a_new_activity_is_fetched_at_the_recent_tier(
    ctx: IngestContext, clock: FakeUtcClock, strava: FakeStrava, athlete_id: int
) -> None:
    ctx.webhook_fetches_per_window = 1
    first, second = (strava.emulator.create_activity(athlete_id)["id"] for _ in range(2))
    assert settle(ctx, clock, stored(ctx, first, athlete_id, "create")) == [InboxStatus.PROCESSED]
    # All of Strava's 100 reads used: the fetch is refused, and the refusal names the tier
    # it asked at.
    ctx.quota.observe(
        "read",
        200,
        RateLimitSnapshot(
            limit=WindowPair(200, 2000),
            usage=WindowPair(200, 200),
            read_limit=WindowPair(100, 1000),
            read_usage=WindowPair(100, 100),
        ),
    )
    inbox_id = stored(ctx, second, athlete_id, "create")
    process_event(ctx, inbox_id)
    clock.advance(WINDOW)

    with pytest.raises(QuotaExceeded) as refused:
        process_event(ctx, inbox_id)

    assert refused.value.tier == Tier.RECENT
    assert activity_row(ctx, second) is None


def pending_tiers(ctx: IngestContext, activity_ids: list[int]) -> dict[str, int]:
    tiers: dict[str, int] = {}
    with Session(ctx.engine) as session:
        for activity_id in activity_ids:
            tier = session.get_one(PendingHydration, activity_id).tier
            tiers[tier] = tiers.get(tier, 0) + 1
    return tiers


@pytest.mark.parametrize(
    ("aspect", "updates"), [("update", {"x": "1"}), ("delete", {})], ids=["update", "delete"]
)
def test_forged_events_fetching_stored_activities_spend_only_the_athletes_budget(
    ctx: IngestContext,
    clock: FakeUtcClock,
    quota_clock: FakeUtcClock,
    strava: FakeStrava,
    athlete_id: int,
    aspect: str,
    updates: dict[str, str],
) -> None:
    ctx.webhook_fetches_per_window = 2
    held = [hydrated(ctx, clock, strava, athlete_id) for _ in range(5)]
    quota_clock.advance(timedelta(seconds=ctx.quota.config.window_seconds))  # a fresh budget
    forged = [stored(ctx, i, athlete_id, aspect, updates=updates, event_time=T + 10) for i in held]

    assert all(isinstance(process_event(ctx, i), Deferred) for i in forged)

    assert pending_tiers(ctx, held) == {Tier.WEBHOOK.value: 2, Tier.RECENT.value: 3}
    other = strava.emulator.add_athlete()
    token = TokenResponse.model_validate(strava.emulator.issue_tokens(other))
    connect_athlete(ctx.engine, ctx.cipher, token, "read,activity:read_all", utcnow())
    genuine = strava.emulator.create_activity(other)["id"]
    assert isinstance(process_event(ctx, stored(ctx, genuine, other, "create")), Deferred)
    assert pending_tiers(ctx, [genuine]) == {Tier.WEBHOOK.value: 1}
    with Session(ctx.engine) as session:
        assert session.get_one(Athlete, athlete_id).new_fetch_count == len(held)
        assert session.get_one(Athlete, other).new_fetch_count == 1
