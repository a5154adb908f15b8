"""GET /quota: the quota scheduler's current windows as JSON (docs/strava.md §2), for the
operator: it needs an admin key (ADMIN_API_KEYS; service/web/api_keys.py).

The same view as `strava-ingest quota`: per bucket and window the usage, the limit, what each
tier may use and has used, and when the window resets; plus 429s seen and denials per tier.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.web.api_keys import requires_admin_key
from service.web.state import web_state


@requires_admin_key
async def quota(request: Request) -> JSONResponse:
    # The Redis backend does network I/O; keep it off the event loop.
    status = await run_in_threadpool(web_state(request).quota.status)
    return JSONResponse(status.as_json())


def routes() -> list[Route]:
    return [Route("/quota", quota, methods=["GET"])]
