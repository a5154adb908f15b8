"""Strava call latency and errors, measured at the clients' one seam (their ``hooks=``).

`TimedHooks` wraps the quota's hooks: the clock starts once the quota has let the call
through (waiting for quota is not Strava's latency) and stops when the answer, or the
failure to get one, is known. Calls are labelled by their endpoint template
(``RequestInfo.endpoint``, e.g. ``/activities/{id}``), never by a URL.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from contextvars import ContextVar

from service.metrics.events import EventMetrics
from service.strava.client import AsyncRequestHooks, RequestHooks, RequestInfo
from service.strava.ratelimit import RateLimitSnapshot

# When this context's request went out (each thread and asyncio task has its own).
_started: ContextVar[float | None] = ContextVar("strava_call_started", default=None)


def _endpoint(request: RequestInfo) -> str:
    return request.endpoint or request.operation


def _record(metrics: EventMetrics, request: RequestInfo, status_code: int | None) -> None:
    started = _started.get()
    if started is None:
        return
    _started.set(None)
    metrics.strava_call(_endpoint(request), status_code, time.perf_counter() - started)


class TimedHooks(RequestHooks):
    """``RequestHooks`` that run ``inner`` and time each call into ``metrics``."""

    def __init__(self, inner: RequestHooks, metrics: EventMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def before_request(self, request: RequestInfo) -> None:
        self.inner.before_request(request)
        _started.set(time.perf_counter())

    def after_response(
        self, request: RequestInfo, status_code: int | None, rate_limit: RateLimitSnapshot
    ) -> None:
        _record(self.metrics, request, status_code)
        self.inner.after_response(request, status_code, rate_limit)


class AsyncTimedHooks(AsyncRequestHooks):
    """``AsyncRequestHooks`` twin of `TimedHooks`."""

    def __init__(self, inner: AsyncRequestHooks, metrics: EventMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def before_request(self, request: RequestInfo) -> None:
        await _settled(self.inner.before_request(request))
        _started.set(time.perf_counter())

    async def after_response(
        self, request: RequestInfo, status_code: int | None, rate_limit: RateLimitSnapshot
    ) -> None:
        _record(self.metrics, request, status_code)
        await _settled(self.inner.after_response(request, status_code, rate_limit))


async def _settled(outcome: Awaitable[None] | None) -> None:
    # The inner hooks' methods may be plain functions or coroutines.
    if outcome is not None:
        await outcome
