"""Hand a batch of stored webhook events to the workers in one round trip to Redis.

dramatiq's RedisBroker enqueues one message per call, each a round trip running dramatiq's own
`dispatch` Lua script; for a batch of group-committed events that cost dominated the ingest
path (measured: docs/benchmarks/ingest.md). Here the same script runs for every message of the
batch in one Redis pipeline, with the same arguments dramatiq passes and its enqueue middleware
hooks, so consumers see exactly what `broker.enqueue` would have written. Other brokers (the
in-process one of embedded mode) get one `enqueue` per message.

If the pipeline fails, none of the batch counts as sent: the rows stay `received` and the relay
re-sends them (a message that did reach Redis is then processed twice, which processing
tolerates).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

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
    pipeline = broker.client.pipeline(transaction=False)
    dispatch = broker.scripts["dispatch"]
    messages = []
    for inbox_id in inbox_ids:
        # As RedisBroker.enqueue: a unique id per enqueue, the middleware told before and after.
        message = _message(inbox_id).copy(options={"redis_message_id": str(uuid.uuid4())})
        broker.emit_before("enqueue", message, None)
        dispatch(
            keys=[broker.namespace],
            args=[
                "enqueue",
                current_millis(),
                EVENTS_QUEUE,
                broker.broker_id,
                broker.heartbeat_timeout,
                broker.dead_message_ttl,
                0,  # no maintenance from a pipelined enqueue; consumers do it
                broker._max_unpack_size(),  # type: ignore[no-untyped-call]
                message.options["redis_message_id"],
                message.encode(),
            ],
            client=pipeline,
        )
        messages.append(message)
    pipeline.execute()
    for message in messages:
        broker.emit_after("enqueue", message, None)
