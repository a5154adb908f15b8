"""The broker seam (service/messaging.py)."""

from __future__ import annotations

import asyncio

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from redis.exceptions import ConnectionError as RedisConnectionError

from service.messaging import (
    EVENTS_QUEUE,
    HYDRATE_ACTIVITY,
    HYDRATE_QUEUE,
    Dispatcher,
    async_twin,
    build_broker,
)


def redis_broker(url: str) -> RedisBroker:
    """The broker a Redis URL builds, with the Redis client it owns."""
    broker = build_broker(url)
    assert isinstance(broker, RedisBroker)
    return broker


def test_the_async_twin_reaches_the_brokers_server_and_database(redis_url: str) -> None:
    broker = redis_broker(redis_url)

    async def write() -> None:
        client = async_twin(broker.client)
        try:
            await client.set("twin-probe", "written by the asyncio client")
        finally:
            await client.aclose()

    asyncio.run(write())

    # Read back through the broker's own client: the same server and numbered database.
    assert broker.client.get("twin-probe") == b"written by the asyncio client"
    broker.close()


def test_the_async_twin_fails_fast_like_the_broker_when_redis_is_down() -> None:
    broker = redis_broker("redis://127.0.0.1:1/0")

    async def ping() -> None:
        client = async_twin(broker.client)
        try:
            await client.ping()
        finally:
            await client.aclose()

    with pytest.raises(RedisConnectionError):
        asyncio.run(ping())
    broker.close()


def test_work_due_now_goes_to_the_queue_itself_not_the_delay_queue(redis_url: str) -> None:
    broker = redis_broker(redis_url)
    client = broker.client
    client.flushdb()
    try:
        dispatcher = Dispatcher(broker)
        dispatcher.send_event(1, 0)
        dispatcher.send_event(2, 60_000)

        assert client.llen(f"dramatiq:{EVENTS_QUEUE}") == 1
        assert client.llen(f"dramatiq:{EVENTS_QUEUE}.DQ") == 1
    finally:
        client.flushdb()
        broker.close()


def queued(broker: RedisBroker, queue: str) -> list[dramatiq.Message[object]]:
    """The messages waiting in `queue`, as a worker would decode them."""
    messages = []
    for message_id in broker.client.lrange(f"dramatiq:{queue}", 0, -1):
        encoded = broker.client.hget(f"dramatiq:{queue}.msgs", message_id)
        assert isinstance(encoded, bytes)
        messages.append(dramatiq.Message[object].decode(encoded))
    return messages


def test_a_prepaid_hydration_carries_its_window_and_requests_to_the_actor(
    redis_url: str,
) -> None:
    broker = redis_broker(redis_url)
    try:
        dispatcher = Dispatcher(broker)
        dispatcher.send_hydration(7, "backfill", prepaid=(1_978_123, 2))
        dispatcher.send_hydration(8, "recent")

        by_activity = {message.args[0]: message for message in queued(broker, HYDRATE_QUEUE)}
        assert by_activity[7].actor_name == HYDRATE_ACTIVITY
        assert by_activity[7].args == (7, "backfill")
        assert by_activity[7].kwargs == {"prepaid": [1_978_123, 2]}
        assert by_activity[8].kwargs == {}
    finally:
        broker.close()
