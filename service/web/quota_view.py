"""GET /quota: the quota scheduler's current windows as JSON (docs/strava.md §2), for the
operator: it needs an admin key (ADMIN_API_KEYS; service/web/api_keys.py).

The same view as `strava-ingest quota`: per bucket and window the usage, the limit, what each
tier may use and has used, and when the window resets; plus 429s seen and denials per tier.
The scheduler's ``as_json`` (also what `strava-ingest quota --json` prints) gives the shape;
the models below type it for the OpenAPI document.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.strava.quota import Tier
from service.strava.quota.scheduler import Bucket
from service.strava.ratelimit import Window
from service.web.api_spec import Access, ApiRoute, Operation, json_response
from service.web.state import web_state


class TierUse(BaseModel):
    """What one priority tier used of a window, and what it may use."""

    used: int = Field(description="Calls this tier reserved in the window.")
    allowed: int = Field(description="The most this tier may use of the window.")


class WindowReport(BaseModel):
    """One of Strava's counters (a bucket in a window) now."""

    used: int = Field(description="Calls counted in the window, ours and reported by Strava.")
    limit: int = Field(description="The window's limit, as Strava's headers last gave it.")
    started_at: datetime = Field(description="When the window started (UTC).")
    resets_at: datetime = Field(description="When the window resets (UTC).")
    seconds_to_reset: float = Field(description="Seconds until it resets.")
    other: int = Field(description="Usage beyond our own reservations: other clients of the app.")
    held_for_realtime: int = Field(
        description="Left free by the lower tiers for real-time work (short window only)."
    )
    tiers: dict[Tier, TierUse] = Field(description="Use and allowance of each tier.")


class QuotaReport(BaseModel):
    """The quota scheduler's view of every window now."""

    at: datetime = Field(description="When the view was taken (UTC).")
    backend: str = Field(description="Where the counters live: memory or redis.")
    safety_margin: float = Field(description="The share of every window never spent.")
    buckets: dict[Bucket, dict[Window, WindowReport]] = Field(
        description="Per bucket (overall, read), its short and daily windows."
    )
    throttled: int = Field(description="429 answers seen since the counters were created.")
    denials: dict[Tier, int] = Field(description="Reservations refused, per tier.")


async def quota(request: Request) -> Response:
    """Counts are shared by every process using the same Redis (or, embedded, this one)."""
    # The Redis backend does network I/O; keep it off the event loop.
    status = await run_in_threadpool(web_state(request).quota.status)
    return json_response(QuotaReport.model_validate(status.as_json()))


def routes() -> list[Route]:
    return [
        ApiRoute(
            "/quota",
            quota,
            method="GET",
            operation=Operation(
                summary="Strava quota windows, per bucket and tier",
                access=Access.ADMIN,
                responses={200: QuotaReport},
                tags=("operator",),
            ),
        )
    ]
