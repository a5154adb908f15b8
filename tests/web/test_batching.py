"""Concurrent webhook events share commits, and each is answered only once committed
(service/web/batching.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from support import LoopbackProxy

from service.db import create_db_engine
from service.ingest.events import WebhookEvent
from service.ingest.inbox import StoredEvent
from service.messaging import EVENTS_QUEUE, build_broker
from service.models import InboxEvent, InboxStatus
from service.web.batching import WATCHDOG_TICK_SECONDS, InboxBatcher, is_data_error
from service.web.errors import InvalidRequest, Unavailable
from service.web.metrics import WebhookCounters

UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/x"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def event(object_id: int) -> WebhookEvent:
    return WebhookEvent(
        object_type="activity",
        object_id=object_id,
        aspect_type="create",
        owner_id=134815,
        subscription_id=120475,
        event_time=1516126040,
    )


@pytest.fixture(params=["postgresql", "sqlite"])
def any_engine(request: pytest.FixtureRequest) -> Engine:
    name = "engine" if request.param == "postgresql" else "sqlite_engine"
    engine: Engine = request.getfixturevalue(name)
    return engine


def stub_broker() -> StubBroker:
    broker = StubBroker()
    broker.declare_queue(EVENTS_QUEUE)
    return broker


def with_batcher(
    engine: Engine,
    broker: Any,
    work: Callable[[InboxBatcher], Coroutine[Any, Any, Any]],
) -> tuple[Any, WebhookCounters]:
    """Run `work` against a started batcher, closing (draining) it afterwards."""
    counters = WebhookCounters()

    async def main() -> Any:
        batcher = InboxBatcher(engine, broker, counters, max_batch=64)
        batcher.start()
        try:
            return await work(batcher)
        finally:
            await batcher.aclose()

    return asyncio.run(main()), counters


def statuses(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return [row.status for row in session.exec(select(InboxEvent)).all()]


async def store_all(batcher: InboxBatcher, events: list[WebhookEvent]) -> list[StoredEvent]:
    return list(await asyncio.gather(*(batcher.store(e) for e in events)))


def test_concurrent_events_share_commits(any_engine: Engine) -> None:
    events = [event(i) for i in range(200)]

    stored, counters = with_batcher(any_engine, stub_broker(), lambda b: store_all(b, events))

    assert len({s.id for s in stored}) == 200
    assert all(s.created for s in stored)
    assert counters.batched_events == 200
    assert counters.batches < 200
    assert len(statuses(any_engine)) == 200


def test_each_event_gets_its_own_row_id_in_order(any_engine: Engine) -> None:
    events = [event(i) for i in range(20)]

    stored, _ = with_batcher(any_engine, stub_broker(), lambda b: store_all(b, events))

    with Session(any_engine) as session:
        object_ids = {row.id: row.object_id for row in session.exec(select(InboxEvent)).all()}
    assert [object_ids[s.id] for s in stored] == list(range(20))


def test_a_retry_in_the_same_batch_is_stored_once_and_acknowledged_twice(
    any_engine: Engine,
) -> None:
    stored, _ = with_batcher(
        any_engine, stub_broker(), lambda b: store_all(b, [event(1), event(1)])
    )

    first, again = stored
    assert first.id == again.id
    assert (first.created, again.created) == (True, False)
    assert len(statuses(any_engine)) == 1


def test_a_retry_in_a_later_batch_is_recognised_by_its_dedupe_key(any_engine: Engine) -> None:
    async def twice(batcher: InboxBatcher) -> tuple[StoredEvent, StoredEvent]:
        return await batcher.store(event(1)), await batcher.store(event(1))

    (first, again), _ = with_batcher(any_engine, stub_broker(), twice)

    assert again.id == first.id
    assert not again.created


def test_every_event_is_handed_to_the_broker_once_and_marked_enqueued(
    any_engine: Engine,
) -> None:
    broker = stub_broker()
    events = [event(i) for i in range(50)] + [event(7)]

    with_batcher(any_engine, broker, lambda b: store_all(b, events))

    assert broker.queues[EVENTS_QUEUE].qsize() == 50
    assert statuses(any_engine) == [InboxStatus.ENQUEUED.value] * 50


def test_a_database_failure_answers_every_waiting_request_unavailable() -> None:
    down = create_db_engine(UNREACHABLE_DATABASE)

    async def attempt(batcher: InboxBatcher) -> list[Any]:
        return list(
            await asyncio.gather(
                *(batcher.store(event(i)) for i in range(5)), return_exceptions=True
            )
        )

    results, _ = with_batcher(down, stub_broker(), attempt)

    down.dispose()
    assert [type(r) for r in results] == [Unavailable] * 5
    assert {r.status_code for r in results} == {503}


def test_a_broker_failure_still_stores_and_leaves_rows_for_the_relay(engine: Engine) -> None:
    broker = build_broker(UNREACHABLE_REDIS)
    events = [event(i) for i in range(10)]

    stored, counters = with_batcher(engine, broker, lambda b: store_all(b, events))

    assert len(stored) == 10
    assert statuses(engine) == [InboxStatus.RECEIVED.value] * 10
    assert counters.handoff_failures >= 1


def test_closing_finishes_the_events_already_waiting(engine: Engine) -> None:
    async def close_while_waiting(batcher: InboxBatcher) -> list[StoredEvent]:
        pending = [asyncio.ensure_future(batcher.store(event(i))) for i in range(30)]
        await asyncio.sleep(0)  # let them queue up
        await batcher.aclose()
        return [await p for p in pending]

    stored, _ = with_batcher(engine, stub_broker(), close_while_waiting)

    assert len(stored) == 30
    assert len(statuses(engine)) == 30


def with_deadline(
    engine: Engine, deadline: float, work: Callable[[InboxBatcher], Coroutine[Any, Any, Any]]
) -> Any:
    async def main() -> Any:
        batcher = InboxBatcher(
            engine, stub_broker(), WebhookCounters(), max_batch=64, deadline=deadline
        )
        batcher.start()
        try:
            return await work(batcher)
        finally:
            await batcher.aclose()

    return asyncio.run(main())


async def timed_attempt(batcher: InboxBatcher, ids: range) -> tuple[float, list[Any]]:
    started = time.monotonic()
    results = await asyncio.gather(*(batcher.store(event(i)) for i in ids), return_exceptions=True)
    return time.monotonic() - started, list(results)


def test_a_database_that_never_answers_gets_503_well_within_two_seconds() -> None:
    # Accepts the connection, never says a word: connecting alone would take its timeout.
    silent = socket.create_server(("127.0.0.1", 0))
    down = create_db_engine(f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/x")

    elapsed, results = with_deadline(down, 0.5, lambda b: timed_attempt(b, range(5)))

    down.dispose()
    silent.close()
    assert [type(r) for r in results] == [Unavailable] * 5
    assert {(r.status_code, r.reason) for r in results} == {(503, "database_timeout")}
    assert elapsed < 0.5 + WATCHDOG_TICK_SECONDS + 0.3


def test_a_connection_that_stops_answering_is_cut_and_the_next_batch_reconnects(
    stalling_engine: tuple[Engine, LoopbackProxy], engine: Engine
) -> None:
    proxied, proxy = stalling_engine

    async def stall_then_recover(
        batcher: InboxBatcher,
    ) -> tuple[StoredEvent, float, list[Any], StoredEvent]:
        before = await batcher.store(event(1))  # the connection is open and in use
        proxy.flowing.clear()
        elapsed, results = await timed_attempt(batcher, range(10, 15))
        proxy.flowing.set()
        # The stalled batch's connection was cut, so this one needs a new connection.
        after = await batcher.store(event(2))
        return before, elapsed, results, after

    before, elapsed, results, after = with_deadline(proxied, 0.5, stall_then_recover)

    assert {(r.status_code, r.reason) for r in results} == {(503, "database_timeout")}
    assert elapsed < 0.5 + WATCHDOG_TICK_SECONDS + 0.3
    assert before.created
    assert after.created
    # Whatever the stalled INSERT did, nothing answered 200 is missing and nothing is doubled.
    with Session(engine) as session:
        stored = [row.object_id for row in session.exec(select(InboxEvent)).all()]
    assert {1, 2} <= set(stored)
    assert len(stored) == len(set(stored))


def test_the_handoff_reloads_the_dispatch_script_after_redis_lost_it(
    engine: Engine, redis_url: str
) -> None:
    broker = build_broker(redis_url)
    broker.client.script_flush()  # as after a Redis restart

    with_batcher(engine, broker, lambda b: store_all(b, [event(i) for i in range(5)]))

    broker.close()
    assert statuses(engine) == [InboxStatus.ENQUEUED.value] * 5
    assert redis.Redis.from_url(redis_url).llen(f"dramatiq:{EVENTS_QUEUE}") == 5


# What only the database refuses: events built without validation (model_construct), as if a
# value slipped past it. PostgreSQL's jsonb refuses NUL; psycopg and sqlite3 cannot encode a
# lone surrogate; SQLite's integers hold 64 bits.
DATABASE_ONLY_POISON = {
    "postgresql": [{"updates": {"title": "Mor\x00ning"}}, {"object_type": "activ\ud800ity"}],
    "sqlite": [{"object_id": 2**64}, {"aspect_type": "upd\udfffate"}],
}


def test_a_batch_the_database_refuses_for_its_data_is_stored_one_by_one(
    any_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="service.web.batching")
    good = [event(i) for i in range(20)]
    bad = [
        WebhookEvent.model_construct(**{**event(100 + n).model_dump(), **poison})
        for n, poison in enumerate(DATABASE_ONLY_POISON[any_engine.dialect.name])
    ]
    mixed = [*good[:7], bad[0], *good[7:14], bad[1], *good[14:]]

    async def burst(batcher: InboxBatcher) -> list[StoredEvent | BaseException]:
        return list(
            await asyncio.gather(*(batcher.store(e) for e in mixed), return_exceptions=True)
        )

    outcomes, counters = with_batcher(any_engine, stub_broker(), burst)

    by_event = dict(zip(map(id, mixed), outcomes, strict=True))
    assert all(isinstance(by_event[id(e)], StoredEvent) for e in good)
    for poisoned in bad:
        refused = by_event[id(poisoned)]
        assert isinstance(refused, InvalidRequest)
        assert (refused.status_code, refused.reason) == (400, "unstorable_value")
    with Session(any_engine) as session:
        stored = sorted(session.exec(select(InboxEvent.object_id)).all())
    assert stored == list(range(20))
    assert counters.batched_events == 20
    assert "refused for its data, storing its events one by one" in caplog.text
    assert "database unavailable" not in caplog.text


def test_a_data_error_is_never_taken_for_an_unavailable_database() -> None:
    data = psycopg.errors.UntranslatableCharacter("unsupported Unicode escape sequence")
    down = psycopg.OperationalError("connection refused")

    assert is_data_error(data)
    assert is_data_error(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))
    assert not is_data_error(down)
    assert not is_data_error(TimeoutError())
