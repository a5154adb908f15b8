"""The web process's listener and its subscribers, on the in-memory progress log (the Redis
log behaves the same: tests/ingest/test_progress.py)."""

from __future__ import annotations

import asyncio

from launch import wait_until

from service.ingest.progress import MemoryProgressLog, ProgressEvent
from service.web.progress_fanout import ProgressFanout


async def drain(fanout: ProgressFanout, count: int) -> None:
    """Wait until the listener has handed `count` events to the loop."""
    for _ in range(400):
        if fanout.events_read >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {fanout.events_read} of {count} events arrived")


def test_a_slow_subscriber_is_folded_to_the_latest_state_and_holds_up_no_one() -> None:
    async def scenario() -> tuple[list[ProgressEvent], list[ProgressEvent], int, list[str]]:
        log = MemoryProgressLog()
        fanout = ProgressFanout(log, capacity=4)
        fanout.start()
        fast, slow = fanout.subscribe(None), fanout.subscribe(None)
        ids: list[str] = []
        received: list[ProgressEvent] = []
        for athlete in [1, 2] * 10:  # the fast one reads each event as it comes
            ids.append(log.append(athlete, "{}"))
            while len(received) < len(ids):
                received.extend(await fast.next_batch(5))
        await drain(fanout, len(ids))
        late = await slow.next_batch(1)  # the slow one reads only now
        await fanout.aclose()
        return received, late, slow.dropped, ids

    received, late, dropped, ids = asyncio.run(scenario())

    assert [e.id for e in received] == ids
    assert late[-2:] == received[-2:]  # ends on each athlete's latest state
    assert len(late) <= 4
    assert dropped + len(late) == len(ids)


def test_an_athletes_subscriber_gets_only_that_athletes_events() -> None:
    async def scenario() -> list[int]:
        log = MemoryProgressLog()
        fanout = ProgressFanout(log, capacity=16)
        fanout.start()
        mine = fanout.subscribe(2)
        for athlete in (1, 2, 3, 2):
            log.append(athlete, "{}")
        await drain(fanout, 4)
        batch = await mine.next_batch(1)
        await fanout.aclose()
        return [e.athlete_id for e in batch]

    assert asyncio.run(scenario()) == [2, 2]


def test_a_new_subscriber_starts_from_what_the_log_held_before_the_process_started() -> None:
    log = MemoryProgressLog()
    earlier = [log.append(athlete, "{}") for athlete in (1, 2, 1)]

    async def scenario() -> tuple[str, dict[int, str]]:
        fanout = ProgressFanout(log, capacity=16)
        fanout.start()
        await drain(fanout, 3)
        await fanout.aclose()
        return fanout.last_id, {a: e.id for a, e in fanout.latest.items()}

    last_id, latest = asyncio.run(scenario())

    assert last_id == earlier[-1]
    assert latest == {1: earlier[2], 2: earlier[1]}


def test_closing_ends_every_subscriber_and_stops_the_listener() -> None:
    async def scenario() -> tuple[bool, list[ProgressEvent], ProgressFanout]:
        fanout = ProgressFanout(MemoryProgressLog(), capacity=16)
        fanout.start()
        subscriber = fanout.subscribe(None)
        await fanout.aclose()
        return subscriber.closed, await subscriber.next_batch(10), fanout

    closed, batch, fanout = asyncio.run(scenario())

    assert closed
    assert batch == []
    wait_until(
        lambda: fanout._thread is not None and not fanout._thread.is_alive(),
        timeout=5,
        what="the listener to stop",
    )
