"""GET /quota: the quota scheduler's current windows as JSON (docs/strava.md §2), for the
operator: it needs an admin key (ADMIN_API_KEYS; service/web/api_keys.py).

The same view as `strava-ingest quota`: per bucket and window the usage, the limit, what each
tier may use and has used, and when the window resets; plus 429s seen and denials per tier,
and per tier with work waiting (``backlog``) its counts, rate and when it should finish.
`report_json` (also what `strava-ingest quota --json` prints) gives the shape; the models
below type it for the OpenAPI document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.ingest.backlog import backlog, quota_now
from service.ingest.policy import HydrationPolicy
from service.strava.quota import Tier
from service.strava.quota.report import report_json
from service.strava.quota.scheduler import Bucket
from service.strava.ratelimit import Window
from service.web.api_spec import Access, ApiRoute, Operation, json_response
from service.web.state import WebState, web_state


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


class TierBacklogReport(BaseModel):
    """Work one tier has waiting, the rate it can expect and when it should be done."""

    waiting: int = Field(description="Units of work (hydrations, list calls) waiting.")
    done: int = Field(description="Units already done, for the jobs still running.")
    sync_jobs: int = Field(description="Active sync jobs listing at this tier.")
    rate_per_hour: float = Field(description="Requests an hour the tier can expect today.")
    finishes_at: datetime | None = Field(
        description="When the waiting work should be done (UTC); null if never at this rate."
    )
    estimate: str = Field(description="The same in words.")


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
    backlog: dict[Tier, TierBacklogReport] = Field(
        description="Per tier with work waiting: its counts, rate and finish estimate."
    )


async def quota(request: Request) -> Response:
    """Counts are shared by every process using the same Redis (or, embedded, this one)."""
    # The Redis backend and the database do network I/O; keep them off the event loop.
    report = await run_in_threadpool(_report, web_state(request))
    return json_response(QuotaReport.model_validate(report))


def _report(state: WebState) -> dict[str, Any]:
    policy = HydrationPolicy.from_settings(state.settings)
    waiting = backlog(state.quota, state.engine, policy, quota_now(state.quota))
    return report_json(state.quota.status(), waiting)


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
