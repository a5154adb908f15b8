"""Hand a batch of stored webhook events to the workers in one round trip to Redis.

dramatiq's RedisBroker enqueues one message per call, each a round trip running dramatiq's own
`dispatch` Lua script; for a batch of group-committed events that cost dominated the ingest
path (measured: docs/benchmarks/ingest.md). Here the same script runs for every message of the
batch in one Redis pipeline, with the same arguments dramatiq passes and its enqueue middleware
hooks, so consumers see exactly what `broker.enqueue` would have written. Other brokers (the
in-process one of embedded mode) get one `enqueue` per message.

The script is called by its SHA alone: redis-py's own script calls in a pipeline first ask
Redis whether the script is loaded (`SCRIPT EXISTS`), a second round trip per batch. Only when
Redis answers NOSCRIPT (its script cache was flushed, e.g. by a restart; nothing of the batch
was enqueued then) is the batch sent again through the call that loads it.

If the pipeline fails, none of the batch counts as sent: the rows stay `received` and the relay
re-sends them (a message that did reach Redis is then processed twice, which processing
tolerates).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from redis.exceptions import NoScriptError

from service.messaging import EVENTS_QUEUE, PROCESS_EVENT


def _message(inbox_id: int) -> dramatiq.Message[None]:
    # The same message as service.messaging.Dispatcher.send_event.
    return dramatiq.Message(
        queue_name=EVENTS_QUEUE,
        actor_name=PROCESS_EVENT,
        args=(inbox_id,),
        kwargs={},
        options={},
    )


def enqueue_events(broker: dramatiq.Broker, inbox_ids: Sequence[int]) -> None:
    """Enqueue a `process_event` message per id; raises when the broker fails."""
    if not isinstance(broker, RedisBroker):
        for inbox_id in inbox_ids:
            broker.enqueue(_message(inbox_id))
        return
    messages = []
    for inbox_id in inbox_ids:
        # As RedisBroker.enqueue: a unique id per enqueue, the middleware told before and after.
        message = _message(inbox_id).copy(options={"redis_message_id": str(uuid.uuid4())})
        broker.emit_before("enqueue", message, None)
        messages.append(message)
    try:
        _dispatch(broker, messages, by_sha=True)
    except NoScriptError:
        _dispatch(broker, messages, by_sha=False)
    for message in messages:
        broker.emit_after("enqueue", message, None)


def _dispatch(broker: RedisBroker, messages: list[dramatiq.Message[Any]], *, by_sha: bool) -> None:
    pipeline = broker.client.pipeline(transaction=False)
    dispatch = broker.scripts["dispatch"]
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
        if by_sha:
            pipeline.evalsha(dispatch.sha, 1, broker.namespace, *args)
        else:
            dispatch(keys=[broker.namespace], args=args, client=pipeline)
    pipeline.execute()
