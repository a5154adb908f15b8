"""The broker seam shared by the web app (which sends) and the workers (which consume).

Messages are addressed by queue and actor name, so the web app enqueues work without
importing the actors; both sides agree on the names below.
"""

from __future__ import annotations

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from redis.backoff import NoBackoff
from redis.retry import Retry

EVENTS_QUEUE = "events"
PROCESS_EVENT = "process_event"
HYDRATE_QUEUE = "hydrations"
HYDRATE_ACTIVITY = "hydrate_activity"
SYNC_QUEUE = "sync"
RUN_SYNC_JOB = "run_sync_job"


def build_broker(broker_url: str) -> dramatiq.Broker:
    """A Redis broker for production, an in-process one for `memory://` (embedded mode)."""
    broker: dramatiq.Broker
    if broker_url == "memory://":
        broker = StubBroker()
    else:
        # Fail fast when Redis is down: the webhook must still answer Strava within 2 s
        # (strava-api.md §1.3), leaving the row for the relay.
        client = redis.Redis.from_url(
            broker_url, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )
        broker = RedisBroker(client=client)  # type: ignore[no-untyped-call]
    broker.declare_queue(EVENTS_QUEUE)
    broker.declare_queue(HYDRATE_QUEUE)
    broker.declare_queue(SYNC_QUEUE)
    return broker


def broker_reachable(broker: dramatiq.Broker) -> bool:
    if isinstance(broker, RedisBroker):
        try:
            return bool(broker.client.ping())
        except redis.RedisError:
            return False
    return True


class Dispatcher:
    """Hands work to the workers through the broker.

    Parameters:
      broker: the broker messages are enqueued on.
    """

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def send_event(self, inbox_id: int) -> None:
        self.broker.enqueue(
            dramatiq.Message(
                queue_name=EVENTS_QUEUE,
                actor_name=PROCESS_EVENT,
                args=(inbox_id,),
                kwargs={},
                options={},
            )
        )

    def send_hydration(self, activity_id: int, tier: str, delay_ms: int | None = None) -> None:
        self.broker.enqueue(
            dramatiq.Message(
                queue_name=HYDRATE_QUEUE,
                actor_name=HYDRATE_ACTIVITY,
                args=(activity_id, tier),
                kwargs={},
                options={},
            ),
            delay=delay_ms,
        )

    def send_sync(self, job_id: int, delay_ms: int | None = None) -> None:
        self.broker.enqueue(
            dramatiq.Message(
                queue_name=SYNC_QUEUE,
                actor_name=RUN_SYNC_JOB,
                args=(job_id,),
                kwargs={},
                options={},
            ),
            delay=delay_ms,
        )
