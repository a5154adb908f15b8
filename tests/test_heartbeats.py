"""Heartbeats expire unless renewed, in memory (embedded mode) and in Redis (production)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis
from launch import wait_until
from support import FakeClock

from service.heartbeats import (
    SCHEDULER,
    WORKER,
    Beat,
    Heartbeat,
    MemoryHeartbeats,
    RedisHeartbeats,
)
from service.liveness import missing, role_states


def test_a_memory_heartbeat_expires_after_its_ttl_unless_renewed() -> None:
    clock = FakeClock(100.0)
    store = MemoryHeartbeats(clock)
    beat = Heartbeat(store, WORKER, interval=1, ttl=3)

    beat.beat_once()
    clock.now = 102.9
    seen_before = [b.role for b in store.alive()]
    clock.now = 103.0
    seen_at_expiry = store.alive()
    beat.beat_once()
    seen_renewed = [b.role for b in store.alive()]

    assert (seen_before, seen_at_expiry, seen_renewed) == ([WORKER], [], [WORKER])


@pytest.fixture
def heartbeats(redis_url: str) -> Iterator[RedisHeartbeats]:
    store = RedisHeartbeats.from_url(redis_url)
    yield store
    store.close()


def test_a_redis_heartbeat_holds_who_beats_and_expires_with_its_ttl(
    heartbeats: RedisHeartbeats,
) -> None:
    short = Heartbeat(heartbeats, WORKER, interval=0.1, ttl=0.5)
    long = Heartbeat(heartbeats, SCHEDULER, interval=10, ttl=60)
    short.beat_once()
    long.beat_once()

    [first, second] = sorted(heartbeats.alive(), key=lambda b: b.role)
    wait_until(
        lambda: [b.role for b in heartbeats.alive()] == [SCHEDULER],
        timeout=5,
        what="the short heartbeat to expire",
    )

    assert (first.role, second.role) == (SCHEDULER, WORKER)
    assert second == short.beat
    assert second.pid > 0
    assert second.host
    assert second.started_at <= second.last_beat


def test_a_started_heartbeat_is_renewed_until_stopped_and_then_dropped(
    heartbeats: RedisHeartbeats,
) -> None:
    beating = Heartbeat(heartbeats, WORKER, interval=0.05, ttl=0.3)
    beating.start()
    first = beating.beat.last_beat
    wait_until(lambda: beating.beat.last_beat > first, timeout=5, what="a second beat")
    still_alive = [b.instance for b in heartbeats.alive()]

    beating.stop()

    assert still_alive == [beating.beat.instance]
    assert heartbeats.alive() == []


def test_a_beat_that_redis_refuses_is_logged_and_the_process_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unreachable = RedisHeartbeats(redis.Redis(port=1, socket_connect_timeout=0.2))
    beating = Heartbeat(unreachable, WORKER, interval=1, ttl=3)

    with caplog.at_level(logging.WARNING, logger="service.heartbeats"):
        beating.beat_once()
        beating.stop()

    assert [r.getMessage().split(" error=")[0] for r in caplog.records] == [
        "heartbeat not recorded role=worker",
        "heartbeat not dropped role=worker",
    ]


def test_roles_without_a_live_process_are_missing() -> None:
    beats = [Beat(WORKER, "a", 1, "h", 0.0, 1.0), Beat(WORKER, "b", 2, "h", 0.5, 1.0)]

    states = role_states(beats, ("web", WORKER, SCHEDULER))

    assert missing(states) == ["web", SCHEDULER]
    assert [b.instance for b in states[WORKER].beats] == ["a", "b"]
