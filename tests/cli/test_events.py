"""`strava-ingest events failed | replay | prune` against PostgreSQL, and how `--since` reads."""

from datetime import datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine
from support import inbox_row, inbox_statuses, service_env

from service.cli import main
from service.cli.events import parse_since
from service.models import InboxStatus, utcnow

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=utcnow().tzinfo)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("2h", NOW - timedelta(hours=2)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-11-20T08:00:00+00:00", datetime(2026, 11, 20, 8, tzinfo=NOW.tzinfo)),
        ("2026-11-20T08:00:00", datetime(2026, 11, 20, 8, tzinfo=NOW.tzinfo)),
    ],
)
def test_since_takes_a_duration_or_an_iso_time(value: str, expected: datetime) -> None:
    assert parse_since(value, NOW) == expected


def cli(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["events", *args], env=service_env(database_url))


def row(engine: Engine, status: InboxStatus, *, age: timedelta = timedelta(0), **kw: Any) -> int:
    """An inbox row in `status`, received and finished `age` ago (the commands use the clock)."""
    return inbox_row(engine, status, received_at=utcnow() - age, **kw)


def test_the_events_failed_command_prints_each_dead_event_with_its_error(
    engine: Engine, database_url: str
) -> None:
    dead = row(engine, InboxStatus.FAILED, last_error="Transient: 503")

    result = cli(database_url, "failed", "--json")

    assert result.exit_code == 0, result.output
    assert f'"id": {dead}' in result.output
    assert "Transient: 503" in result.output


def test_the_events_replay_command_in_embedded_mode_resets_them_for_the_relay(
    engine: Engine, database_url: str
) -> None:
    dead = row(engine, InboxStatus.FAILED)

    result = cli(database_url, "replay", "--status", "failed", "--since", "30d")

    assert result.exit_code == 0, result.output
    assert inbox_statuses(engine, dead) == ["received"]


def test_the_events_prune_command_applies_the_retention(engine: Engine, database_url: str) -> None:
    old = row(engine, InboxStatus.PROCESSED, age=timedelta(days=400))

    result = cli(database_url, "prune")

    assert result.exit_code == 0, result.output
    assert inbox_statuses(engine, old) == [None]
