"""The service's Strava clients, metered: every call they make passes through the quota."""

from __future__ import annotations

from typing import Any

from service.config import Settings
from service.strava.client import AsyncStravaClient, StravaClient
from service.strava.quota import AsyncQuotaHooks, QuotaHooks, QuotaScheduler


def _options(settings: Settings) -> dict[str, Any]:
    return {
        "api_url": settings.strava_api_url,
        "oauth_url": settings.strava_oauth_url,
        "client_id": settings.strava_client_id,
        "client_secret": settings.strava_client_secret.get_secret_value(),
        "timeout": settings.strava_timeout_seconds,
    }


def metered_client(settings: Settings, quota: QuotaScheduler) -> StravaClient:
    return StravaClient(**_options(settings), hooks=QuotaHooks(quota))


def metered_async_client(settings: Settings, quota: QuotaScheduler) -> AsyncStravaClient:
    return AsyncStravaClient(**_options(settings), hooks=AsyncQuotaHooks(quota))
