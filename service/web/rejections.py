"""Counting and logging of rejected requests, by the ``reason`` of their error
(``GET /stats/webhooks`` shows the counts)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from service.web.errors import WebError
from service.web.state import web_state

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


def counted(what: str) -> Callable[[Endpoint], Endpoint]:
    """Count every rejection of an endpoint by its reason and log it as a rejection of
    ``what``, then let it propagate to the error handlers."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        async def wrapper(request: Request) -> Response:
            try:
                return await endpoint(request)
            except WebError as error:
                record_rejection(request, what, error)
                raise

        return wrapper

    return decorate


def record_rejection(request: Request, what: str, error: WebError) -> None:
    """Count the rejection by its reason and log it as a rejection of ``what``."""
    reason = error.reason or type(error).__name__
    web_state(request).webhook_counters.count_rejection(reason)
    # Never the body, the path (it may hold a secret) or header values; the method is the
    # request's own text, so it is logged escaped (%r).
    log.warning(
        "%s request rejected method=%r reason=%s status=%d",
        what,
        request.method,
        reason,
        error.status_code,
    )
