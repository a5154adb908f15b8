"""GET /quota: the quota scheduler's current windows as JSON (docs/strava.md §2), for the
operator: it needs an admin key (ADMIN_API_KEYS; service/web/api_keys.py).

The same view as `strava-ingest quota`: per bucket and window the usage, the limit, what each
tier may use and has used, and when the window resets; plus 429s seen and denials per tier,
and per tier with work waiting (``backlog``) its counts, rate and when it should finish.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.ingest.backlog import backlog, quota_now
from service.ingest.policy import HydrationPolicy
from service.strava.quota.report import report_json
from service.web.api_keys import requires_admin_key
from service.web.state import WebState, web_state


@requires_admin_key
async def quota(request: Request) -> JSONResponse:
    # The Redis backend and the database do network I/O; keep them off the event loop.
    report = await run_in_threadpool(_report, web_state(request))
    return JSONResponse(report)


def _report(state: WebState) -> dict[str, Any]:
    policy = HydrationPolicy.from_settings(state.settings)
    waiting = backlog(state.quota, state.engine, policy, quota_now(state.quota))
    return report_json(state.quota.status(), waiting)


def routes() -> list[Route]:
    return [Route("/quota", quota, methods=["GET"])]
