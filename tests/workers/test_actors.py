"""The actors on a real Redis broker, with a dramatiq worker running in this process."""

import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import redis
from launch import wait_until
from sqlmodel import Session
from support import FakeStrava, Workers, exhaust_quota

from service.ingest.events import WebhookEvent
from service.ingest.inbox import store_event
from service.models import Activity, InboxEvent, InboxStatus, utcnow

DEADLINE = 20.0
# Sped-up windows, so that "wait for the next window" takes seconds.
WINDOW_SECONDS = 2


@pytest.fixture
def workers(start_workers: Callable[..., Workers]) -> Workers:
    return start_workers(
        quota_window_seconds=WINDOW_SECONDS,
        quota_day_seconds=96 * WINDOW_SECONDS,
        # No coalescing delay: the event must meet the exhausted window it was sent in.
        event_coalesce_seconds=0,
    )


@pytest.fixture
def broker_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def push(workers: Workers, activity_id: int) -> int:
    event = WebhookEvent(
        object_type="activity",
        object_id=activity_id,
        aspect_type="create",
        owner_id=workers.athlete_id,
        subscription_id=1,
        event_time=1_700_000_000,
    )
    inbox_id = store_event(workers.ctx.engine, event).id
    workers.dispatcher.send_event(inbox_id)
    return inbox_id


def inbox_row(workers: Workers, inbox_id: int) -> InboxEvent:
    with Session(workers.ctx.engine) as session:
        return session.get_one(InboxEvent, inbox_id)


def hydrated(workers: Workers, activity_id: int) -> bool:
    with Session(workers.ctx.engine) as session:
        row = session.get(Activity, activity_id)
    return row is not None and row.hydration_status == "complete"


def dead_letters(broker_redis: redis.Redis) -> int:
    return int(broker_redis.zcard("dramatiq:events.XQ"))


def test_an_event_denied_quota_waits_for_the_next_window_and_is_not_dead_lettered(
    workers: Workers, strava: FakeStrava, broker_redis: redis.Redis
) -> None:
    created = strava.emulator.create_activity(workers.athlete_id)
    # Begin at the start of a window, so that it cannot roll over between exhausting the
    # quota and the worker's attempt (which would then rightly succeed at once).
    wait_until(
        lambda: time.time() % WINDOW_SECONDS < 0.2,
        timeout=2 * WINDOW_SECONDS,
        what="the start of a quota window",
        interval=0.01,
    )
    exhaust_quota(workers.ctx)

    inbox_id = push(workers, created["id"])

    waiting = wait_until(
        lambda: (row := inbox_row(workers, inbox_id)).status == "rate_limited" and row,
        timeout=DEADLINE,
        what="the event to wait for quota",
    )
    assert isinstance(waiting, InboxEvent)
    assert waiting.retry_after is not None
    assert waiting.retry_after > utcnow() - timedelta(seconds=WINDOW_SECONDS)
    wait_until(lambda: hydrated(workers, created["id"]), timeout=DEADLINE, what="hydration")
    assert strava.emulator.calls["GET /activities/{id}"] == 1
    assert inbox_row(workers, inbox_id).status == InboxStatus.PROCESSED
    assert dead_letters(broker_redis) == 0


def test_a_transient_fault_is_retried_after_a_backoff(
    workers: Workers, strava: FakeStrava, broker_redis: redis.Redis
) -> None:
    created = strava.emulator.create_activity(workers.athlete_id)
    strava.emulator.fail_next(1, status=503)

    inbox_id = push(workers, created["id"])

    wait_until(lambda: hydrated(workers, created["id"]), timeout=DEADLINE, what="hydration")
    row = inbox_row(workers, inbox_id)
    assert row.status == InboxStatus.PROCESSED
    assert strava.emulator.calls["GET /activities/{id}"] == 2
    assert dead_letters(broker_redis) == 0


def test_an_event_that_keeps_failing_ends_failed_with_the_error_kept(
    workers: Workers, strava: FakeStrava
) -> None:
    created = strava.emulator.create_activity(workers.athlete_id)
    strava.emulator.fail_next(10, status=503)

    inbox_id = push(workers, created["id"])

    failed = wait_until(
        lambda: (row := inbox_row(workers, inbox_id)).status == "failed" and row,
        timeout=DEADLINE,
        what="the event to fail",
    )
    assert isinstance(failed, InboxEvent)
    assert failed.attempts == 2
    assert failed.last_error is not None
    assert "Transient" in failed.last_error
    assert strava.emulator.calls["GET /activities/{id}"] == 2
