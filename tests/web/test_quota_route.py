"""GET /quota returns the quota scheduler's windows as JSON to an operator's key
(tests/web/test_admin_routes.py covers the key)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.testclient import TestClient
from support import ADMIN, FakeClock

from service.config import Settings
from service.models import Activity, Athlete
from service.strava.quota import QuotaConfig, Tier
from service.strava.quota.memory import MemoryQuotaScheduler
from service.web.app import create_app

NOON = 1780272000 + 12 * 3600  # 2026-06-01T12:00:00Z


def test_get_quota_returns_the_windows_of_the_scheduler_passed_in(
    make_settings: Callable[..., Settings], engine: Engine
) -> None:
    scheduler = MemoryQuotaScheduler(QuotaConfig(), FakeClock(NOON + 60))
    scheduler.reserve(Tier.WEBHOOK, "read")

    with TestClient(create_app(make_settings(), quota=scheduler)) as client:
        response = client.get("/quota", headers=ADMIN)

    assert response.status_code == 200
    assert response.json() == scheduler.status().as_json() | {"backlog": {}}
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


def test_get_quota_shows_the_backlog_per_tier_with_its_estimate(
    make_settings: Callable[..., Settings], engine: Engine
) -> None:
    old = datetime.now(UTC) - timedelta(days=400)
    with Session(engine) as session:
        session.add(Athlete(id=7))
        session.flush()
        for activity_id in range(1, 22):
            status = "pending" if activity_id <= 19 else "complete"
            session.add(
                Activity(id=activity_id, athlete_id=7, start_date=old, hydration_status=status)
            )
        session.commit()
    scheduler = MemoryQuotaScheduler(QuotaConfig(), FakeClock(NOON))

    with TestClient(create_app(make_settings(), quota=scheduler)) as client:
        response = client.get("/quota", headers=ADMIN)

    backfill = response.json()["backlog"]["backfill"]
    # Every tier may fill 95 reads of this window and 950 of the day: 19 hydrations take a
    # fifth of the window, and a day gives 950 / 24 an hour.
    assert backfill == {
        "waiting": 19,
        "done": 2,
        "sync_jobs": 0,
        "rate_per_hour": round(950 / 24, 1),
        "finishes_at": "2026-06-01T12:03:00Z",
        "estimate": "2 of 21 hydrated; at today's budget about 2026-06-01 12:03 UTC",
    }
