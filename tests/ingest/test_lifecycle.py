"""The inbox lifecycle: dead events listed and replayed, finished rows pruned, on PostgreSQL."""

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from dramatiq.brokers.stub import StubBroker
from sqlalchemy.engine import Engine
from sqlmodel import Session
from support import service_env

from service.cli import main
from service.cli.events import parse_since
from service.cli.run import DutyDeps, periodic_duties
from service.config import Settings
from service.ingest.events import WebhookEvent
from service.ingest.inbox import store_event
from service.ingest.lifecycle import (
    counts_by_status,
    events_with_status,
    prune,
    replay,
    reset_for_replay,
)
from service.messaging import Dispatcher
from service.models import ActivityRemoval, Athlete, InboxEvent, InboxStatus, utcnow

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=utcnow().tzinfo)
RETENTION = timedelta(days=14)
_serial = iter(range(1, 1_000_000))


def row(engine: Engine, status: InboxStatus, *, age: timedelta = timedelta(0), **kw: Any) -> int:
    """An inbox row in `status`, received and finished `age` before NOW; `kw` may give
    `owner_id` (default 1, an athlete never known), `attempts`, `last_error`, `reason`."""
    event = WebhookEvent(
        object_type="activity",
        object_id=next(_serial),
        aspect_type="create",
        owner_id=kw.get("owner_id", 1),
        subscription_id=1,
        event_time=1_700_000_000,
    )
    inbox_id = store_event(engine, event).id
    with Session(engine) as session:
        stored = session.get_one(InboxEvent, inbox_id)
        stored.status = status.value
        stored.received_at = NOW - age
        stored.processed_at = NOW - age if status != InboxStatus.FAILED else None
        stored.attempts = kw.get("attempts", 1)
        stored.last_error = kw.get("last_error")
        stored.reason = kw.get("reason")
        session.add(stored)
        session.commit()
    return inbox_id


def statuses(engine: Engine, *ids: int) -> list[str | None]:
    with Session(engine) as session:
        return [(r.status if (r := session.get(InboxEvent, i)) else None) for i in ids]


def test_failed_events_lists_only_dead_ones(engine: Engine) -> None:
    dead = row(engine, InboxStatus.FAILED, last_error="Transient: 503")
    row(engine, InboxStatus.PROCESSED)

    listed = events_with_status(engine)

    assert [r.id for r in listed] == [dead]
    assert listed[0].last_error == "Transient: 503"


def test_failed_events_since_leaves_out_older_ones(engine: Engine) -> None:
    row(engine, InboxStatus.FAILED, age=timedelta(days=2))
    recent = row(engine, InboxStatus.FAILED, age=timedelta(hours=1))

    listed = events_with_status(engine, since=NOW - timedelta(days=1))

    assert [r.id for r in listed] == [recent]


def test_reset_for_replay_gives_a_fresh_retry_budget_and_keeps_the_error(engine: Engine) -> None:
    dead = row(engine, InboxStatus.FAILED, attempts=8, last_error="Transient: 503")

    assert reset_for_replay(engine, now=NOW) == [dead]

    with Session(engine) as session:
        reset = session.get_one(InboxEvent, dead)
    assert (reset.status, reset.attempts, reset.last_error) == ("received", 0, "Transient: 503")


@pytest.mark.parametrize("status", [InboxStatus.RECEIVED, InboxStatus.ENQUEUED])
def test_rows_still_waiting_are_not_replayable(engine: Engine, status: InboxStatus) -> None:
    with pytest.raises(ValueError, match="relay"):
        reset_for_replay(engine, status, now=NOW)


def test_replay_sends_the_dead_events_through_the_broker(engine: Engine) -> None:
    dead = [row(engine, InboxStatus.FAILED), row(engine, InboxStatus.FAILED)]
    sent: list[int] = []

    count = replay(engine, sent.append, now=NOW)

    assert count == 2
    assert sent == dead
    assert statuses(engine, *dead) == ["enqueued", "enqueued"]


def test_a_replay_the_broker_refuses_leaves_the_rest_for_the_relay(engine: Engine) -> None:
    dead = [row(engine, InboxStatus.FAILED), row(engine, InboxStatus.FAILED)]

    def refuse(_: int) -> None:
        raise ConnectionError("broker down")

    assert replay(engine, refuse, now=NOW) == 0
    assert statuses(engine, *dead) == ["received", "received"]


def test_prune_deletes_finished_rows_older_than_the_retention(engine: Engine) -> None:
    old = [
        row(engine, InboxStatus.PROCESSED, age=RETENTION + timedelta(hours=1)),
        row(engine, InboxStatus.IGNORED, age=RETENTION + timedelta(hours=1)),
    ]
    young = row(engine, InboxStatus.PROCESSED, age=RETENTION - timedelta(hours=1))
    dead = row(engine, InboxStatus.FAILED, age=RETENTION * 2)

    deleted = prune(engine, older_than=RETENTION, now=NOW)

    assert deleted == 2
    assert statuses(engine, *old, young, dead) == [None, None, "processed", "failed"]


def test_prune_deletes_activity_tombstones_older_than_the_retention(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Athlete(id=7))
        session.flush()
        for activity_id, age in ((1, RETENTION * 2), (2, timedelta(hours=1))):
            session.add(
                ActivityRemoval(
                    activity_id=activity_id,
                    athlete_id=7,
                    reason="deleted",
                    event_time=1,
                    removed_at=NOW - age,
                )
            )
        session.commit()

    prune(engine, older_than=RETENTION, now=NOW)

    with Session(engine) as session:
        assert session.get(ActivityRemoval, 1) is None
        assert session.get(ActivityRemoval, 2) is not None


def test_pruning_is_one_of_the_periodic_duties(
    engine: Engine, make_settings: Callable[..., Settings]
) -> None:
    deps = DutyDeps(make_settings(), engine, Dispatcher(StubBroker()))

    assert "inbox-prune" in [duty.name for duty in periodic_duties(deps)]


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


def cli(database_url: str, *args: str) -> Any:
    return CliRunner().invoke(main, ["events", *args], env=service_env(database_url))


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
    assert statuses(engine, dead) == ["received"]


def test_the_events_prune_command_applies_the_retention(engine: Engine, database_url: str) -> None:
    old = row(engine, InboxStatus.PROCESSED, age=timedelta(days=400))

    result = cli(database_url, "prune")

    assert result.exit_code == 0, result.output
    assert statuses(engine, old) == [None]


KNOWN = 7
UNKNOWN_RETENTION = timedelta(hours=24)


def known_athlete(engine: Engine, **fields: Any) -> None:
    with Session(engine) as session:
        session.add(Athlete(id=KNOWN, **fields))
        session.commit()


def test_events_of_unknown_owners_are_pruned_after_their_own_short_retention(
    engine: Engine,
) -> None:
    known_athlete(engine)
    past = UNKNOWN_RETENTION + timedelta(hours=1)
    stale = row(engine, InboxStatus.IGNORED, age=past)
    fresh = row(engine, InboxStatus.IGNORED, age=UNKNOWN_RETENTION - timedelta(hours=1))
    kept = row(engine, InboxStatus.PROCESSED, age=past, owner_id=KNOWN)
    dead = row(engine, InboxStatus.FAILED, age=past)

    deleted = prune(
        engine, older_than=RETENTION, now=NOW, unknown_owner_older_than=UNKNOWN_RETENTION
    )

    assert deleted == 1
    assert statuses(engine, stale, fresh, kept, dead) == [None, "ignored", "processed", "failed"]


def test_the_prune_duty_applies_the_unknown_owner_retention(
    engine: Engine, make_settings: Callable[..., Settings]
) -> None:
    known_athlete(engine)
    # Finished at NOW: more than a day ago by the wall clock, far less than 14 days.
    unknown = row(engine, InboxStatus.IGNORED)
    known = row(engine, InboxStatus.PROCESSED, owner_id=KNOWN)
    deps = DutyDeps(make_settings(), engine, Dispatcher(StubBroker()))
    duty = next(d for d in periodic_duties(deps) if d.name == "inbox-prune")

    duty.run()

    assert statuses(engine, unknown, known) == [None, "processed"]


def test_unconfirmed_events_are_counted_listed_with_their_reason_and_pruned(
    engine: Engine, database_url: str
) -> None:
    reason = "Strava still lists the activity"
    unconfirmed = row(engine, InboxStatus.UNCONFIRMED, owner_id=KNOWN, reason=reason)
    known_athlete(engine)
    row(engine, InboxStatus.PROCESSED, owner_id=KNOWN)

    assert counts_by_status(engine) == {"unconfirmed": 1, "processed": 1}
    listed = cli(database_url, "failed", "--status", "unconfirmed", "--json")
    assert listed.exit_code == 0, listed.output
    assert f'"id": {unconfirmed}' in listed.output
    assert reason in listed.output
    prune(engine, older_than=timedelta(0), now=NOW + timedelta(seconds=1))
    assert statuses(engine, unconfirmed) == [None]


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
