"""The service's Strava clients: built from settings, every call passing through the quota."""

from __future__ import annotations

from service.config import Settings
from service.strava.client import AsyncStravaClient, StravaClient
from service.strava.quota import AsyncQuotaHooks, QuotaHooks, QuotaScheduler


def sync_client(settings: Settings, quota: QuotaScheduler) -> StravaClient:
    return StravaClient(
        api_url=settings.strava_api_url,
        oauth_url=settings.strava_oauth_url,
        client_id=settings.strava_client_id,
        client_secret=settings.strava_client_secret.get_secret_value(),
        timeout=settings.strava_timeout_seconds,
        hooks=QuotaHooks(quota),
    )


def async_client(settings: Settings, quota: QuotaScheduler) -> AsyncStravaClient:
    return AsyncStravaClient(
        api_url=settings.strava_api_url,
        oauth_url=settings.strava_oauth_url,
        client_id=settings.strava_client_id,
        client_secret=settings.strava_client_secret.get_secret_value(),
        timeout=settings.strava_timeout_seconds,
        hooks=AsyncQuotaHooks(quota),
    )
