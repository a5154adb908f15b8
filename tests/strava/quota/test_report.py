"""`strava-ingest quota` prints the current windows; the table is built by report.py."""

from __future__ import annotations

import json

from click.testing import CliRunner
from support import CLIENT_ID, CLIENT_SECRET, TIER_SHARES, TOKEN_KEY, VERIFY_TOKEN, FakeClock

from service.cli import main
from service.strava.quota import QuotaConfig, Tier
from service.strava.quota.memory import MemoryQuotaScheduler
from service.strava.quota.redis import RedisQuotaScheduler
from service.strava.quota.report import format_status
from service.strava.ratelimit import RateLimitSnapshot, WindowPair

NOON = 1780272000 + 12 * 3600  # 2026-06-01T12:00:00Z


def cli_env(broker_url: str) -> dict[str, str]:
    return {
        "BROKER_URL": broker_url,
        "STRAVA_CLIENT_ID": str(CLIENT_ID),
        "STRAVA_CLIENT_SECRET": CLIENT_SECRET,
        "STRAVA_VERIFY_TOKEN": VERIFY_TOKEN,
        "TOKEN_KEY": TOKEN_KEY,
    }


def test_the_table_shows_each_window_with_usage_per_tier_and_time_to_reset() -> None:
    scheduler = MemoryQuotaScheduler(QuotaConfig(shares=TIER_SHARES), FakeClock(NOON + 450))
    scheduler.reserve(Tier.BACKFILL, "read")
    scheduler.reserve(Tier.WEBHOOK, "write")

    lines = format_status(scheduler.status()).splitlines()

    assert lines[0] == (
        "quota (memory) at 2026-06-01T12:07:30+00:00, safety margin 5%; tiers show used/allowed; "
        "held: left free for real-time work by the lower tiers"
    )
    assert lines[1].split() == [
        "bucket", "window", "used/limit", "resets", "in",
        "on_demand", "webhook", "recent", "backfill", "reconcile", "other", "held",
    ]  # fmt: skip
    assert lines[2].split() == [
        "overall", "short", "2/200", "7m30s", "0/190", "1/190", "0/161", "1/133", "0/95", "0", "0",
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


def test_quota_command_prints_the_shared_windows(redis_url: str) -> None:
    worker = RedisQuotaScheduler.from_url(redis_url, QuotaConfig())
    worker.reserve(Tier.RECENT, "read")
    worker.close()

    result = CliRunner().invoke(main, ["quota"], env=cli_env(redis_url))

    assert result.exit_code == 0, result.output
    assert "quota (redis)" in result.output
    read_short = next(line for line in result.output.splitlines() if line.startswith("read "))
    assert read_short.split()[2] == "1/100"


def test_quota_command_prints_json_like_get_quota(redis_url: str) -> None:
    result = CliRunner().invoke(main, ["quota", "--json"], env=cli_env(redis_url))

    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["backend"] == "redis"
    assert body["buckets"]["overall"]["daily"]["limit"] == 2000


def test_quota_command_in_embedded_mode_says_usage_lives_in_the_server() -> None:
    result = CliRunner().invoke(main, ["quota"], env=cli_env("memory://"))

    assert result.exit_code == 0, result.output
    assert "GET /quota shows usage" in result.output
    assert "quota (memory)" in result.output


def test_quota_command_reports_an_unreachable_redis_plainly() -> None:
    result = CliRunner().invoke(main, ["quota"], env=cli_env("redis://127.0.0.1:1/0"))

    assert result.exit_code == 1
    assert "quota backend unreachable" in result.output
