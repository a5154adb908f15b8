"""Hand a batch of stored webhook events to the workers in one round trip to Redis, on the
event loop.

dramatiq's RedisBroker enqueues one message per call, each a round trip running dramatiq's own
`dispatch` Lua script; for a batch of group-committed events that cost dominated the ingest
path (measured: docs/benchmarks/ingest.md). Here the same script runs for every message of the
batch in one Redis pipeline, with the same arguments dramatiq passes and its enqueue middleware
hooks, so consumers see exactly what `broker.enqueue` would have written. The pipeline goes
through an asyncio client to the broker's server (`async_twin`), so the web process never waits
for the GIL to hand a batch over. Other brokers (the in-process one of embedded mode) get one
`enqueue` per message.

The script is called by its SHA alone: redis-py's own script calls in a pipeline first ask
Redis whether the script is loaded (`SCRIPT EXISTS`), a second round trip per batch. Only when
Redis answers NOSCRIPT (its script cache was flushed, e.g. by a restart; nothing of the batch
was enqueued then) is the script loaded and the batch sent again.

If the pipeline fails, none of the batch counts as sent: the rows stay `received` and the relay
re-sends them (a message that did reach Redis is then processed twice, which processing
tolerates).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from redis.exceptions import NoScriptError

from service.messaging import EVENTS_QUEUE, PROCESS_EVENT, async_twin


def _message(inbox_id: int, **options: Any) -> dramatiq.Message[None]:
    # The same message as service.messaging.Dispatcher.send_event.
    return dramatiq.Message(
        queue_name=EVENTS_QUEUE,
        actor_name=PROCESS_EVENT,
        args=(inbox_id,),
        kwargs={},
        options=options,
    )


class Handoff:
    """Enqueues a `process_event` message per inbox id.

    Parameters:
      broker: where the workers consume; a RedisBroker is written to through an asyncio
        client of its own (closed by ``aclose``).
    """

    def __init__(self, broker: dramatiq.Broker) -> None:
        self._broker = broker
        self._redis = async_twin(broker.client) if isinstance(broker, RedisBroker) else None

    async def send(self, inbox_ids: Sequence[int]) -> None:
        """Enqueue them all; raises when the broker fails."""
        broker = self._broker
        if self._redis is None or not isinstance(broker, RedisBroker):
            for inbox_id in inbox_ids:
                broker.enqueue(_message(inbox_id))
            return
        messages = []
        for inbox_id in inbox_ids:
            # As RedisBroker.enqueue: a unique id per enqueue (only a key, so no need for the
            # system's entropy pool), the middleware told before and after.
            message = _message(
                inbox_id, redis_message_id=str(uuid.UUID(int=random.getrandbits(128), version=4))
            )
            broker.emit_before("enqueue", message, None)
            messages.append(message)
        try:
            await self._dispatch(broker, messages)
        except NoScriptError:
            await self._redis.script_load(broker.scripts["dispatch"].script)
            await self._dispatch(broker, messages)
        for message in messages:
            broker.emit_after("enqueue", message, None)

    async def _dispatch(self, broker: RedisBroker, messages: list[dramatiq.Message[Any]]) -> None:
        assert self._redis is not None
        pipeline = self._redis.pipeline(transaction=False)
        sha = broker.scripts["dispatch"].sha
        max_unpack_size = broker._max_unpack_size()  # type: ignore[no-untyped-call]
        for message in messages:
            # dramatiq's own arguments to its dispatch script (RedisBroker.do_dispatch).
            args = [
                "enqueue",
                current_millis(),
                EVENTS_QUEUE,
                broker.broker_id,
                broker.heartbeat_timeout,
                broker.dead_message_ttl,
                0,  # no maintenance from a pipelined enqueue; consumers do it
                max_unpack_size,
                message.options["redis_message_id"],
                message.encode(),
            ]
            pipeline.evalsha(sha, 1, broker.namespace, *args)
        await pipeline.execute()

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
