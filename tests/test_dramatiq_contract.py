"""The webhook hand-off (service/web/handoff.py) writes to Redis what dramatiq's own
`RedisBroker.enqueue` writes, by calling dramatiq's `dispatch` Lua script itself, by its SHA,
with a copy of dramatiq's arguments. These tests fail, naming what moved, when the installed
dramatiq no longer matches that copy: then re-read `RedisBroker._dispatch` and `enqueue` in the
new dramatiq, adjust the hand-off, and update the pins here.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from service.messaging import EVENTS_QUEUE, PROCESS_EVENT, build_broker
from service.web.handoff import Handoff

# The dispatch script the hand-off's argument list was checked against (dramatiq 2.2.1).
VERIFIED_DISPATCH_SHA = "fdacc359c79a5adc3b8eeb53ff5772d7c42144e3"
# What EVALSHA receives, position by position, from RedisBroker._dispatch for "enqueue".
EVALSHA_LAYOUT = (
    "EVALSHA",
    "sha",
    "numkeys",
    "namespace",
    "command",
    "timestamp",
    "queue_name",
    "broker_id",
    "heartbeat_timeout",
    "dead_message_ttl",
    "do_maintenance",
    "max_unpack_size",
    "redis_message_id",
    "message",
)
# Differ between any two enqueues; the message body is compared decoded, below.
PER_CALL = {"timestamp", "redis_message_id", "message"}
MONITOR_DEADLINE = 10.0
MONITOR_LINE = re.compile(r"^\S+ \[(\d+) [^\]]*\] (.*)$")
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _event_message(inbox_id: int) -> dramatiq.Message[Any]:
    return dramatiq.Message(
        queue_name=EVENTS_QUEUE, actor_name=PROCESS_EVENT, args=(inbox_id,), kwargs={}, options={}
    )


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    built = build_broker(redis_url)
    assert isinstance(built, RedisBroker)
    # dramatiq runs queue maintenance on one enqueue in a million-ish, at random; the hand-off
    # never does (consumers do it). Off here so that the two calls compare deterministically.
    built.maintenance_chance = 0
    yield built
    built.close()


def test_dramatiq_ships_the_dispatch_script_the_handoff_was_checked_against(
    broker: RedisBroker,
) -> None:
    sha = broker.scripts["dispatch"].sha
    assert sha == VERIFIED_DISPATCH_SHA, (
        f"dramatiq {dramatiq.__version__} ships another Redis dispatch script (sha {sha}, the "
        f"hand-off was checked against {VERIFIED_DISPATCH_SHA}): its arguments may have changed; "
        "compare RedisBroker._dispatch with service/web/handoff.py, then update this pin"
    )


def test_dramatiq_still_has_the_private_method_the_handoff_calls() -> None:
    assert callable(getattr(RedisBroker, "_max_unpack_size", None)), (
        f"dramatiq {dramatiq.__version__}'s RedisBroker has no _max_unpack_size(): "
        "service/web/handoff.py passes its value to the dispatch script"
    )


def test_the_handoff_message_has_the_fields_of_dramatiqs_message(broker: RedisBroker) -> None:
    ours = Handoff(broker)
    asyncio.run(_send_and_close(ours, [7]))
    stored = redis.Redis.from_url(_url(broker)).hgetall(f"dramatiq:{EVENTS_QUEUE}.msgs")
    assert len(stored) == 1
    (body,) = stored.values()
    decoded = dramatiq.Message.decode(body)
    fields = set(dramatiq.Message.__dataclass_fields__)
    assert set(decoded.asdict()) == fields, (
        f"dramatiq {dramatiq.__version__}'s Message has fields {sorted(fields)}, the hand-off "
        f"wrote {sorted(decoded.asdict())}"
    )
    assert (decoded.queue_name, decoded.actor_name, decoded.args, decoded.kwargs) == (
        EVENTS_QUEUE,
        PROCESS_EVENT,
        (7,),
        {},
    )


def test_the_handoff_calls_the_dispatch_script_with_dramatiqs_own_arguments(
    broker: RedisBroker,
) -> None:
    broker.enqueue(_event_message(1))  # loads the script, so that both calls are one EVALSHA
    db = int(broker.client.connection_pool.connection_kwargs.get("db", 0))
    watcher = redis.Redis.from_url(_url(broker), socket_timeout=MONITOR_DEADLINE)
    with watcher.monitor() as monitor:
        dramatiqs = broker.enqueue(_event_message(2))
        asyncio.run(_send_and_close(Handoff(broker), [3]))
        theirs, ours = _evalsha_calls(monitor, db, broker.namespace, count=2)

    for position, name in enumerate(EVALSHA_LAYOUT):
        if name in PER_CALL:
            continue
        assert ours[position] == theirs[position], (
            f"service/web/handoff.py passes {name}={ours[position]!r} to dramatiq's dispatch "
            f"script where dramatiq {dramatiq.__version__}'s RedisBroker.enqueue passes "
            f"{theirs[position]!r} (argument {position}); all of dramatiq's: {theirs}"
        )
    assert len(ours) == len(theirs) == len(EVALSHA_LAYOUT), (
        f"dramatiq {dramatiq.__version__} calls its dispatch script with {len(theirs)} "
        f"arguments, the hand-off with {len(ours)}: {theirs}"
    )
    assert (
        theirs[EVALSHA_LAYOUT.index("redis_message_id")] == (dramatiqs.options["redis_message_id"])
    ), "dramatiq no longer passes the message's redis_message_id where the hand-off does"

    stored = redis.Redis.from_url(_url(broker)).hgetall(f"dramatiq:{EVENTS_QUEUE}.msgs")
    bodies = {key.decode(): dramatiq.Message.decode(value) for key, value in stored.items()}
    mine = bodies[ours[EVALSHA_LAYOUT.index("redis_message_id")]]
    reference = bodies[dramatiqs.options["redis_message_id"]]
    assert set(mine.options) == set(reference.options), (
        f"dramatiq's enqueue sets the options {sorted(reference.options)}, the hand-off "
        f"{sorted(mine.options)}"
    )


async def _send_and_close(handoff: Handoff, inbox_ids: list[int]) -> None:
    try:
        await handoff.send(inbox_ids)
    finally:
        await handoff.aclose()


def _url(broker: RedisBroker) -> str:
    kwargs = broker.client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def _evalsha_calls(monitor: Any, db: int, namespace: str, count: int) -> list[list[str]]:
    """The next `count` EVALSHA calls on our db and namespace that MONITOR reports, as their
    arguments (other clients of the server are skipped)."""
    calls: list[list[str]] = []
    deadline = time.monotonic() + MONITOR_DEADLINE
    while len(calls) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"MONITOR showed {len(calls)} of {count} dispatch calls")
        line = monitor.connection.read_response()
        text = line.decode() if isinstance(line, bytes) else str(line)
        match = MONITOR_LINE.match(text)
        if match is None or int(match.group(1)) != db:
            continue
        args = QUOTED.findall(match.group(2))
        if args and args[0].upper() == "EVALSHA" and len(args) > 3 and args[3] == namespace:
            calls.append(args)
    return calls
