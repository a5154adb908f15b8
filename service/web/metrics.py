"""Webhook counters, and `GET /stats/webhooks` that shows them as JSON; `GET /metrics`, the
deployment's Prometheus metrics (service/metrics/).

Both routes need an admin key. Prometheus sends one with ``authorization: {credentials: …}``
in its scrape config; METRICS_PORT serves the same registry without a key.


The route needs an admin key (ADMIN_API_KEYS; service/web/api_keys.py). Counts live in the
process, on the app's ``WebState.webhook_counters`` (service/web/state.py), like the quota
view at ``/quota``: no extra dependency, and each web process answers for itself (which is
also what a Prometheus client would do without its multiprocess mode). Every update happens
on the event loop's thread, so plain integers need no lock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client.exposition import choose_encoder
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.web.api_keys import requires_admin_key
from service.web.api_spec import Access, ApiRoute, Operation, json_response
from service.web.state import web_state


class WebhookStats(BaseModel):
    """What this web process's webhook endpoint did since it started."""

    accepted: int = Field(description="Events acknowledged with 200, new and duplicate.")
    duplicates: int = Field(description="Of those, Strava's retries of an event already stored.")
    rejected: dict[str, int] = Field(
        description="Refused requests of the webhook and of the key-guarded routes, by reason."
    )
    batches: int = Field(description="Group commits of the inbox.")
    batched_events: int = Field(description="Events in all those commits.")
    largest_batch: int = Field(description="Most events in one commit.")
    handoff_failures: int = Field(
        description="Batches the broker refused; their rows wait for the relay."
    )


@dataclass
class WebhookCounters:
    """What the webhook endpoint did since the process started.

    Parameters:
      accepted: events acknowledged with 200 (new and duplicate).
      duplicates: of those, Strava's retries of an event already stored.
      rejected: non-200 answers, by reason (the ``"reason"`` of the error body), of the
        webhook and of the routes guarded by API keys (service/web/api_keys.py).
      batches: group commits of the inbox; ``batched_events`` events in all,
        ``largest_batch`` at most.
      handoff_failures: batches the broker refused (their rows wait for the relay).
      on_rejection: also told each rejection's reason (the Prometheus counter).
    """

    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    batched_events: int = 0
    largest_batch: int = 0
    handoff_failures: int = 0
    on_rejection: Callable[[str], None] | None = None

    def count_rejection(self, reason: str) -> None:
        self.rejected[reason] += 1
        if self.on_rejection is not None:
            self.on_rejection(reason)

    def count_batch(self, size: int) -> None:
        self.batches += 1
        self.batched_events += size
        self.largest_batch = max(self.largest_batch, size)

    def report(self) -> WebhookStats:
        return WebhookStats(
            accepted=self.accepted,
            duplicates=self.duplicates,
            rejected=dict(sorted(self.rejected.items())),
            batches=self.batches,
            batched_events=self.batched_events,
            largest_batch=self.largest_batch,
            handoff_failures=self.handoff_failures,
        )


async def webhook_stats(request: Request) -> Response:
    """The counts are this process's own: each web process answers for itself."""
    return json_response(web_state(request).webhook_counters.report())


@requires_admin_key
async def prometheus_metrics(request: Request) -> Response:
    # The format the scraper asks for (text 0.0.4 without an Accept header, OpenMetrics on
    # request), as prometheus-client's own server chooses it.
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    # Collecting queries PostgreSQL and Redis: off the event loop.
    body = await run_in_threadpool(encode, web_state(request).metrics_registry)
    return Response(body, headers={"Content-Type": content_type})


def routes() -> list[Route]:
    return [
        ApiRoute(
            "/stats/webhooks",
            webhook_stats,
            method="GET",
            operation=Operation(
                summary="Webhook counters of this web process",
                access=Access.ADMIN,
                responses={200: WebhookStats},
                tags=("operator",),
            ),
        ),
        # Prometheus text, not JSON: outside the product API's document.
        Route("/metrics", prometheus_metrics, methods=["GET"]),
    ]
