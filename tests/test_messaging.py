"""The broker seam (service/messaging.py)."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from service.messaging import EVENTS_QUEUE, Dispatcher, async_twin, build_broker


def test_the_async_twin_reaches_the_brokers_server_and_database(redis_url: str) -> None:
    broker = build_broker(redis_url)

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
    broker = build_broker("redis://127.0.0.1:1/0")

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
    broker = build_broker(redis_url)
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
