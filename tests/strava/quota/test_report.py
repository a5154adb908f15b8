"""The quota table that `strava-ingest quota` prints (the command: tests/cli/test_quota.py)."""

from __future__ import annotations

from support import TIER_SHARES, FakeClock

from service.strava.quota import QuotaConfig, Tier
from service.strava.quota.memory import MemoryQuotaScheduler
from service.strava.quota.report import format_status
from service.strava.ratelimit import RateLimitSnapshot, WindowPair

NOON = 1780272000 + 12 * 3600  # 2026-06-01T12:00:00Z


def test_the_table_shows_each_window_with_usage_per_tier_and_time_to_reset() -> None:
    scheduler = MemoryQuotaScheduler(QuotaConfig(shares=TIER_SHARES), FakeClock(NOON + 450))
    scheduler.reserve(Tier.BACKFILL, "read")
    scheduler.reserve(Tier.WEBHOOK, "write")

    lines = format_status(scheduler.status()).splitlines()

    assert lines[0] == (
        "quota (memory) at 2026-06-01T12:07:30+00:00, safety margin 5%; tiers show used/allowed; "
        "held: left free by the lower tiers for the rest of the window (forecast real-time and "
        "other use)"
    )
    assert lines[1].split() == [
        "bucket", "window", "used/limit", "resets", "in",
        "on_demand", "webhook", "recent", "backfill", "reconcile", "other", "held",
    ]  # fmt: skip
    # Held: one webhook call in the first half of the window forecasts one in the second.
    assert lines[2].split() == [
        "overall", "short", "2/200", "7m30s", "0/190", "1/190", "0/161", "1/133", "0/95", "0", "1",
    ]  # fmt: skip
    assert lines[5].split()[:4] == ["read", "daily", "2/1000", "11h52m30s"]
    assert lines[6] == "429s: 0"


def test_the_table_shows_usage_by_other_clients_and_429s() -> None:
    scheduler = MemoryQuotaScheduler(QuotaConfig(), FakeClock(NOON))
    usage = WindowPair(12, 120)
    scheduler.observe("read", 429, RateLimitSnapshot(None, usage, None, usage))

    text = format_status(scheduler.status())

    assert "429s: 1" in text
    assert text.splitlines()[4].split()[-2] == "100"  # read short: full, none of it ours
