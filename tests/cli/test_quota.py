"""`strava-ingest quota` prints the current windows (the table itself: test_report.py)."""

from __future__ import annotations

import json
from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy.engine import Engine
from sqlmodel import Session
from support import CLIENT_ID, CLIENT_SECRET, TOKEN_KEY, VERIFY_TOKEN

from service.cli import main
from service.models import Activity, Athlete, utcnow
from service.strava.quota import QuotaConfig, Tier
from service.strava.quota.redis import RedisQuotaScheduler


def cli_env(broker_url: str, database_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "STRAVA_CLIENT_ID": str(CLIENT_ID),
        "STRAVA_CLIENT_SECRET": CLIENT_SECRET,
        "STRAVA_VERIFY_TOKEN": VERIFY_TOKEN,
        "TOKEN_KEY": TOKEN_KEY,
    }


def test_quota_command_prints_the_shared_windows(redis_url: str, database_url: str) -> None:
    worker = RedisQuotaScheduler.from_url(redis_url, QuotaConfig())
    worker.reserve(Tier.RECENT, "read")
    worker.close()

    result = CliRunner().invoke(main, ["quota"], env=cli_env(redis_url, database_url))

    assert result.exit_code == 0, result.output
    assert "quota (redis)" in result.output
    read_short = next(line for line in result.output.splitlines() if line.startswith("read "))
    assert read_short.split()[2] == "1/100"


def test_quota_command_prints_json_like_get_quota(redis_url: str, database_url: str) -> None:
    result = CliRunner().invoke(main, ["quota", "--json"], env=cli_env(redis_url, database_url))

    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["backend"] == "redis"
    assert body["buckets"]["overall"]["daily"]["limit"] == 2000


def test_quota_command_in_embedded_mode_says_usage_lives_in_the_server(database_url: str) -> None:
    result = CliRunner().invoke(main, ["quota"], env=cli_env("memory://", database_url))

    assert result.exit_code == 0, result.output
    assert "GET /quota shows usage" in result.output
    assert "quota (memory)" in result.output


def test_quota_command_reports_an_unreachable_redis_plainly(database_url: str) -> None:
    result = CliRunner().invoke(main, ["quota"], env=cli_env("redis://127.0.0.1:1/0", database_url))

    assert result.exit_code == 1
    assert "quota backend unreachable" in result.output


def test_quota_command_shows_the_backlog_and_when_it_finishes(
    redis_url: str, engine: Engine, database_url: str
) -> None:
    old = utcnow() - timedelta(days=400)
    with Session(engine) as session:
        session.add(Athlete(id=7))
        session.flush()
        for activity_id in range(1, 4):
            session.add(
                Activity(id=activity_id, athlete_id=7, start_date=old, hydration_status="pending")
            )
        session.add(Activity(id=4, athlete_id=7, start_date=old, hydration_status="complete"))
        session.commit()

    text = CliRunner().invoke(main, ["quota"], env=cli_env(redis_url, database_url))
    body = CliRunner().invoke(main, ["quota", "--json"], env=cli_env(redis_url, database_url))

    assert text.exit_code == 0, text.output
    assert "  backfill: 1 of 4 hydrated; at today's budget about " in text.output
    backfill = json.loads(body.output)["backlog"]["backfill"]
    assert (backfill["waiting"], backfill["done"], backfill["sync_jobs"]) == (3, 1, 0)
    assert backfill["finishes_at"] is not None
