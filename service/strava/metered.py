"""The service's Strava clients, metered: every call they make passes through the quota,
and, given an `EventMetrics`, is timed and counted (service/metrics/strava_calls.py)."""

from __future__ import annotations

from typing import Any

from service.config import Settings
from service.metrics.events import EventMetrics
from service.metrics.strava_calls import AsyncTimedHooks, TimedHooks
from service.strava.client import AsyncRequestHooks, AsyncStravaClient, RequestHooks, StravaClient
from service.strava.quota import AsyncQuotaHooks, QuotaHooks, QuotaScheduler


def _options(settings: Settings) -> dict[str, Any]:
    return {
        "api_url": settings.strava_api_url,
        "oauth_url": settings.strava_oauth_url,
        "client_id": settings.strava_client_id,
        "client_secret": settings.strava_client_secret.get_secret_value(),
        "timeout": settings.strava_timeout_seconds,
    }


def metered_client(
    settings: Settings, quota: QuotaScheduler, metrics: EventMetrics | None = None
) -> StravaClient:
    hooks: RequestHooks = QuotaHooks(quota)
    if metrics is not None:
        hooks = TimedHooks(hooks, metrics)
    return StravaClient(**_options(settings), hooks=hooks)


def metered_async_client(
    settings: Settings, quota: QuotaScheduler, metrics: EventMetrics | None = None
) -> AsyncStravaClient:
    hooks: AsyncRequestHooks = AsyncQuotaHooks(quota)
    if metrics is not None:
        hooks = AsyncTimedHooks(hooks, metrics)
    return AsyncStravaClient(**_options(settings), hooks=hooks)
