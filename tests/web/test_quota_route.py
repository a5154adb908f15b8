"""GET /quota returns the quota scheduler's windows as JSON to an operator's key
(tests/web/test_admin_routes.py covers the key)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.testclient import TestClient
from support import ADMIN, FakeClock

from service.config import Settings
from service.strava.quota import QuotaConfig, Tier
from service.strava.quota.memory import MemoryQuotaScheduler
from service.web.app import create_app

NOON = 1780272000 + 12 * 3600  # 2026-06-01T12:00:00Z


def test_get_quota_returns_the_windows_of_the_scheduler_passed_in(
    make_settings: Callable[..., Settings],
) -> None:
    scheduler = MemoryQuotaScheduler(QuotaConfig(), FakeClock(NOON + 60))
    scheduler.reserve(Tier.WEBHOOK, "read")

    with TestClient(create_app(make_settings(), quota=scheduler)) as client:
        response = client.get("/quota", headers=ADMIN)

    assert response.status_code == 200
    assert response.json() == scheduler.status().as_json()
    read_short = response.json()["buckets"]["read"]["short"]
    assert read_short["used"] == 1
    assert read_short["tiers"]["webhook"] == {"used": 1, "allowed": 95}
    assert read_short["seconds_to_reset"] == 840


def test_get_quota_uses_a_scheduler_built_from_settings_when_none_is_passed(
    make_settings: Callable[..., Settings], redis_url: str
) -> None:
    settings = make_settings(broker_url=redis_url, quota_read_limit_short=300)

    with TestClient(create_app(settings)) as client:
        response = client.get("/quota", headers=ADMIN)

    assert response.status_code == 200
    assert response.json()["backend"] == "redis"
    assert response.json()["buckets"]["read"]["short"]["limit"] == 300
