"""What the web app's routes share, typed in one place: `WebState`, built once by the app's
lifespan (service/web/app.py) and read by every route through `web_state`.

The lifespan keeps it on ``app.state``, which every request reaches whatever runs the app
(a lifespan run by hand and a transport without lifespan state included), and yields it as
the lifespan state too, which uvicorn gives to its connections: the protocol
(service/web/http_protocol.py) counts the requests it refuses before the app sees them on the
same `webhook_counters`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

# For the annotations only: metrics.py, which holds WebhookCounters, reads the state through
# this module (so do api_keys.py and rejections.py, which it imports).
if TYPE_CHECKING:
    import dramatiq
    from prometheus_client import CollectorRegistry
    from sqlalchemy.engine import Engine

    from service.config import Settings
    from service.heartbeats import HeartbeatStore
    from service.ingest.context import IngestContext
    from service.ingest.crypto import TokenCipher
    from service.messaging import Dispatcher
    from service.metrics.events import EventMetrics
    from service.strava.client import AsyncStravaClient
    from service.strava.quota import QuotaScheduler
    from service.web.batching import InboxBatcher
    from service.web.metrics import WebhookCounters
    from service.web.progress_fanout import ProgressFanout
    from service.web.trust import SubscriptionGate

# The name under which the app keeps its WebState, on app.state and in the lifespan state.
WEB_STATE_KEY = "web"


@dataclass(frozen=True)
class WebState:
    """The resources and settings of one running web app.

    Parameters:
      settings: the app's settings.
      engine, broker, strava, quota: the database engine, the broker, the Strava client and
        its quota scheduler (the caller's when given to ``create_app``, else the app's own).
      dispatcher: sends sync jobs to the workers through ``broker``.
      cipher: encrypts the athletes' tokens.
      webhook_counters: what the webhook endpoint and the guarded routes did
        (``GET /stats/webhooks``).
      subscription_gate: checks an event's subscription id.
      inbox_batcher: commits webhook events to the inbox in shared transactions.
      ingest: the domain's dependencies for the work a route runs in a worker thread (token
        refresh and revoke on disconnect), with a synchronous Strava client through ``quota``.
      heartbeats: the processes' heartbeats (``GET /readyz`` reports the workers and the
        scheduler seen alive).
      progress_fanout: the process's listener on the sync progress log and its subscribers.
      metrics: this process's event counters (service/metrics/events.py); routes that open
        or close a progress stream report it with ``metrics.sse_subscribers_changed``.
      metrics_registry: every Prometheus series of the deployment (``GET /metrics``).
    """

    settings: Settings
    engine: Engine
    broker: dramatiq.Broker
    dispatcher: Dispatcher
    strava: AsyncStravaClient
    quota: QuotaScheduler
    cipher: TokenCipher
    webhook_counters: WebhookCounters
    subscription_gate: SubscriptionGate
    inbox_batcher: InboxBatcher
    ingest: IngestContext
    heartbeats: HeartbeatStore
    progress_fanout: ProgressFanout
    metrics: EventMetrics
    metrics_registry: CollectorRegistry


def web_state(connection: HTTPConnection) -> WebState:
    """The running app's WebState (RuntimeError before its lifespan has started)."""
    state = getattr(connection.app.state, WEB_STATE_KEY, None)
    if not isinstance(state, WebState):
        raise RuntimeError("the web app's lifespan has not started: it holds no WebState")
    return state


def find_web_state(lifespan_state: Mapping[str, Any]) -> WebState | None:
    """The WebState a lifespan state holds, or None (another app's)."""
    state = lifespan_state.get(WEB_STATE_KEY)
    return state if isinstance(state, WebState) else None
