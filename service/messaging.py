"""The broker seam shared by the web app (which sends) and the workers (which consume).

Messages are addressed by queue and actor name, so the web app enqueues work without
importing the actors; both sides agree on the names below.
"""

from __future__ import annotations

import inspect
from typing import Any

import dramatiq
import redis
import redis.asyncio
import redis.asyncio.retry
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from redis.backoff import NoBackoff
from redis.retry import Retry

EVENTS_QUEUE = "events"
PROCESS_EVENT = "process_event"
HYDRATE_QUEUE = "hydrations"
HYDRATE_ACTIVITY = "hydrate_activity"
# Hydrations a reader waits on (the `on_demand` tier) have a queue of their own, so that one
# never waits behind a backfill's thousands of queued hydrations; the same function consumes
# both (workers/actors.py).
ON_DEMAND_QUEUE = "hydrations_on_demand"
HYDRATE_ON_DEMAND = "hydrate_activity_on_demand"
ON_DEMAND_TIER = "on_demand"
SYNC_QUEUE = "sync"
RUN_SYNC_JOB = "run_sync_job"


def build_broker(broker_url: str) -> dramatiq.Broker:
    """A Redis broker for production, an in-process one for `memory://` (embedded mode)."""
    broker: dramatiq.Broker
    if broker_url == "memory://":
        broker = StubBroker()
    else:
        # Fail fast when Redis is down: the webhook must still answer Strava within 2 s
        # (docs/strava.md §1.3), leaving the row for the relay.
        client = redis.Redis.from_url(
            broker_url, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )
        broker = RedisBroker(client=client)  # type: ignore[no-untyped-call]
    broker.declare_queue(EVENTS_QUEUE)
    broker.declare_queue(HYDRATE_QUEUE)
    broker.declare_queue(ON_DEMAND_QUEUE)
    broker.declare_queue(SYNC_QUEUE)
    return broker


# What an asyncio client needs to reach the same server and db as a blocking one.
_PORTABLE_OPTIONS = (
    "host",
    "port",
    "db",
    "username",
    "password",
    "socket_timeout",
    "socket_connect_timeout",
)


def async_twin(client: redis.Redis) -> redis.asyncio.Redis:
    """An asyncio client for the server, db, credentials and timeouts of ``client``, failing
    fast like it (the web process's hand-off runs on the event loop; dramatiq needs the
    blocking client)."""
    pool = client.connection_pool
    given = pool.connection_kwargs
    options: dict[str, Any] = {key: given[key] for key in _PORTABLE_OPTIONS if key in given}
    if issubclass(pool.connection_class, redis.SSLConnection):
        options["ssl"] = True
        accepted = inspect.signature(redis.asyncio.Redis).parameters
        options.update(
            {
                key: value
                for key, value in given.items()
                if key.startswith("ssl_") and key in accepted
            }
        )
    if issubclass(pool.connection_class, redis.UnixDomainSocketConnection):
        options["unix_socket_path"] = given["path"]
    return redis.asyncio.Redis(**options, retry=redis.asyncio.retry.Retry(NoBackoff(), 0))


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

    def send_event(self, inbox_id: int, delay_ms: int | None = None) -> None:
        self._send(EVENTS_QUEUE, PROCESS_EVENT, (inbox_id,), delay_ms)

    def send_hydration(
        self,
        activity_id: int,
        tier: str,
        delay_ms: int | None = None,
        prepaid: tuple[int, int] | None = None,
    ) -> None:
        """Queue the activity's hydration at `tier`: on-demand ones on their own queue.
        `prepaid` (short window, requests): admission reserved that many of its requests in
        that window (service/strava/quota/admission.py)."""
        on_demand = tier == ON_DEMAND_TIER
        self._send(
            ON_DEMAND_QUEUE if on_demand else HYDRATE_QUEUE,
            HYDRATE_ON_DEMAND if on_demand else HYDRATE_ACTIVITY,
            (activity_id, tier),
            delay_ms,
            {} if prepaid is None else {"prepaid": list(prepaid)},
        )

    def send_sync(self, job_id: int, delay_ms: int | None = None) -> None:
        self._send(SYNC_QUEUE, RUN_SYNC_JOB, (job_id,), delay_ms)

    def _send(
        self,
        queue: str,
        actor: str,
        args: tuple[object, ...],
        delay_ms: int | None,
        kwargs: dict[str, object] | None = None,
    ) -> None:
        message: dramatiq.Message[object] = dramatiq.Message(
            queue_name=queue, actor_name=actor, args=args, kwargs=kwargs or {}, options={}
        )
        # dramatiq's Redis broker routes any delay, 0 included, through its delay queue,
        # which a worker moves to the queue proper only on its next poll: work due now
        # skips it.
        self.broker.enqueue(message, delay=delay_ms or None)
