"""The progress log, in Redis (a real Redis db) and in memory: the same behaviour from both."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from service.ingest.progress import (
    START,
    STREAM_KEY,
    MemoryProgressLog,
    ProgressLog,
    RedisProgressLog,
    id_key,
)


@pytest.fixture(params=["redis", "memory"])
def progress(request: pytest.FixtureRequest) -> Iterator[ProgressLog]:
    if request.param == "redis":
        log: ProgressLog = RedisProgressLog.from_url(request.getfixturevalue("redis_url"), 100)
    else:
        log = MemoryProgressLog(100)
    yield log
    log.close()


def test_events_are_read_back_in_order_with_rising_ids(progress: ProgressLog) -> None:
    ids = [progress.append(athlete, f'{{"n": {athlete}}}') for athlete in (7, 8, 7)]

    events = progress.read(START, timeout=1)

    assert [e.id for e in events] == ids
    assert sorted(ids, key=id_key) == ids
    assert [(e.athlete_id, e.state["n"]) for e in events] == [(7, 7), (8, 8), (7, 7)]
    assert progress.read(ids[-1], timeout=0.05) == []


def test_a_blocked_read_returns_as_soon_as_an_event_is_appended(progress: ProgressLog) -> None:
    first = progress.append(1, '{"phase": "listing"}')
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.extend(e.id for e in progress.read(first, 10)))
    reader.start()

    second = progress.append(1, '{"phase": "done"}')
    reader.join(5)

    assert found == [second]


def test_resuming_reads_what_followed_an_id_up_to_a_bound(progress: ProgressLog) -> None:
    ids = [progress.append(1, "{}") for _ in range(5)]

    events, complete = progress.after(ids[1], ids[3])

    assert [e.id for e in events] == ids[2:4]
    assert complete


def test_resuming_from_an_id_the_log_has_trimmed_since_says_so(redis_url: str) -> None:
    for log in (RedisProgressLog.from_url(redis_url, 100), MemoryProgressLog(100)):
        first = log.append(1, "{}")
        ids = [log.append(1, "{}") for _ in range(400)]
        if isinstance(log, RedisProgressLog):  # approximate trimming: make it exact here
            client = redis.Redis.from_url(redis_url)
            client.xtrim(STREAM_KEY, maxlen=100, approximate=False)
            client.close()

        events, complete = log.after(first, ids[-1])

        assert not complete
        assert events[-1].id == ids[-1]
        recent, kept = log.after(ids[-3], ids[-1])
        assert kept
        assert [e.id for e in recent] == ids[-2:]
        log.close()


def test_a_state_that_ends_the_sync_is_recognised(progress: ProgressLog) -> None:
    progress.append(1, '{"phase": "hydrating"}')
    progress.append(1, '{"phase": "done"}')

    events = progress.read(START, timeout=1)

    assert [e.ends_sync for e in events] == [False, True]
