"""`strava-ingest events failed | replay | prune | counts` against PostgreSQL, and how
`--since` reads."""

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine
from sqlmodel import Session
from support import inbox_row, inbox_statuses, service_env

from service.cli import main
from service.cli.events import parse_since
from service.models import Athlete, InboxStatus, utcnow

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


KNOWN = 7


def known_athlete(engine: Engine, **fields: Any) -> None:
    with Session(engine) as session:
        session.add(Athlete(id=KNOWN, **fields))
        session.commit()


def test_unconfirmed_events_are_listed_with_their_reason(engine: Engine, database_url: str) -> None:
    reason = "Strava still lists the activity"
    unconfirmed = row(engine, InboxStatus.UNCONFIRMED, owner_id=KNOWN, reason=reason)
    known_athlete(engine)
    row(engine, InboxStatus.PROCESSED, owner_id=KNOWN)

    listed = cli(database_url, "failed", "--status", "unconfirmed", "--json")
    assert listed.exit_code == 0, listed.output
    assert f'"id": {unconfirmed}' in listed.output
    assert reason in listed.output


def test_the_events_counts_command_shows_statuses_and_flagged_athletes(
    engine: Engine, database_url: str
) -> None:
    known_athlete(engine, forged_creates=6, flagged_at=NOW, flag_reason="6 creates Strava 404d")
    row(engine, InboxStatus.UNCONFIRMED, owner_id=KNOWN)

    result = cli(database_url, "counts", "--json")

    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["statuses"] == {"unconfirmed": 1}
    assert shown["flagged_athletes"][0]["athlete_id"] == KNOWN
    assert shown["flagged_athletes"][0]["forged_creates"] == 6
