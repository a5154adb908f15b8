"""Per-process event counts meet in Redis: several processes' sums add up, their gauges
are summed while they live and vanish when they stop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from launch import wait_until

from service.metrics.events import (
    REJECTED_REQUESTS,
    SSE_SUBSCRIBERS,
    STRAVA_DURATION,
    STRAVA_ERRORS,
    EventMetrics,
    MemoryEventStore,
    RedisEventStore,
    series,
)

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def stores(redis_url: str) -> Iterator[list[RedisEventStore]]:
    """Stores on one Redis, as separate processes would have."""
    made: list[RedisEventStore] = []

    def store(gauge_ttl: float = 15.0) -> RedisEventStore:
        made.append(RedisEventStore(redis.Redis.from_url(redis_url), gauge_ttl=gauge_ttl))
        return made[-1]

    yield [store(), store(), store(gauge_ttl=0.3)]
    for each in made:
        each.close()


def test_two_processes_counts_add_up(stores: list[RedisEventStore]) -> None:
    first, second = EventMetrics(stores[0]), EventMetrics(stores[1])
    for _ in range(3):
        first.rejection("invalid_json")
    second.rejection("invalid_json")
    second.rejection("api_key_wrong")
    first.strava_call("/activities/{id}", 200, 0.07)
    second.strava_call("/activities/{id}", 503, 0.3)
    second.strava_call("/activities/{id}", None, 10.0)

    first.publish()
    second.publish()

    totals = stores[2].counters()
    assert totals[series(REJECTED_REQUESTS, reason="invalid_json")] == 4
    assert totals[series(REJECTED_REQUESTS, reason="api_key_wrong")] == 1
    endpoint = "/activities/{id}"
    assert totals[series(f"{STRAVA_DURATION}_count", endpoint=endpoint)] == 3
    assert totals[series(f"{STRAVA_DURATION}_sum", endpoint=endpoint)] == pytest.approx(10.37)
    # Cumulative buckets: each call counts in every bucket at or above its duration.
    assert totals[series(f"{STRAVA_DURATION}_bucket", endpoint=endpoint, le="0.1")] == 1
    assert totals[series(f"{STRAVA_DURATION}_bucket", endpoint=endpoint, le="0.5")] == 2
    assert totals[series(f"{STRAVA_DURATION}_bucket", endpoint=endpoint, le="+Inf")] == 3
    assert totals[series(STRAVA_ERRORS, endpoint=endpoint, status="503")] == 1
    assert totals[series(STRAVA_ERRORS, endpoint=endpoint, status="no_response")] == 1
    assert series(STRAVA_ERRORS, endpoint=endpoint, status="200") not in totals


def test_a_publication_sends_only_what_was_counted_since_the_last(
    stores: list[RedisEventStore],
) -> None:
    metrics = EventMetrics(stores[0])
    metrics.rejection("invalid_json")
    metrics.publish()
    metrics.publish()
    metrics.rejection("invalid_json")
    metrics.publish()

    assert stores[1].counters()[series(REJECTED_REQUESTS, reason="invalid_json")] == 2


def test_gauges_are_summed_over_live_processes_and_withdrawn_when_one_stops(
    stores: list[RedisEventStore],
) -> None:
    first, second = EventMetrics(stores[0]), EventMetrics(stores[1])
    first.sse_subscribers_changed(+1)
    first.sse_subscribers_changed(+1)
    second.sse_subscribers_changed(+1)
    first.publish()
    second.publish()
    assert stores[2].gauges()[series(SSE_SUBSCRIBERS)] == 3

    first.close()

    assert stores[2].gauges()[series(SSE_SUBSCRIBERS)] == 1


def test_the_gauges_of_a_process_that_stopped_publishing_expire(
    stores: list[RedisEventStore],
) -> None:
    killed = EventMetrics(stores[2])  # publishes with a 0.3 s lifetime, then never again
    killed.sse_subscribers_changed(+1)
    killed.publish()
    assert stores[0].gauges()[series(SSE_SUBSCRIBERS)] == 1

    wait_until(lambda: not stores[0].gauges(), timeout=5, what="the gauges to expire")


def test_sums_that_could_not_be_published_are_kept_for_the_next_publication(
    stores: list[RedisEventStore],
) -> None:
    down = RedisEventStore(redis.Redis.from_url(UNREACHABLE_REDIS, socket_connect_timeout=0.2))
    metrics = EventMetrics(down)
    metrics.rejection("invalid_json")
    metrics.publish()  # Redis down: logged, kept

    metrics.store = stores[0]  # Redis back
    metrics.publish()

    assert stores[1].counters()[series(REJECTED_REQUESTS, reason="invalid_json")] == 1


def test_the_background_thread_publishes_and_close_publishes_the_rest() -> None:
    store = MemoryEventStore()
    metrics = EventMetrics(store, interval=0.05)
    metrics.start()
    metrics.rejection("invalid_json")
    wait_until(lambda: store.counters(), timeout=5, what="a publication")
    metrics.rejection("invalid_json")

    metrics.close()

    assert store.counters() == {series(REJECTED_REQUESTS, reason="invalid_json"): 2}
