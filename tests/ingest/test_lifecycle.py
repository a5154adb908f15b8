"""The inbox lifecycle: dead events listed and replayed, finished rows pruned, on PostgreSQL."""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from support import duty_deps, inbox_row, inbox_statuses

from service.cli.run import periodic_duties
from service.config import Settings
from service.ingest.lifecycle import (
    NotReplayable,
    counts_by_status,
    events_with_status,
    find_event,
    prune,
    replay,
    replay_event,
    reset_for_replay,
)
from service.models import ActivityRemoval, Athlete, InboxEvent, InboxStatus, utcnow

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=utcnow().tzinfo)
RETENTION = timedelta(days=14)


def row(engine: Engine, status: InboxStatus, *, age: timedelta = timedelta(0), **kw: Any) -> int:
    """An inbox row in `status`, received and finished `age` before NOW."""
    return inbox_row(engine, status, received_at=NOW - age, **kw)


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
    assert inbox_statuses(engine, *dead) == ["enqueued", "enqueued"]


def test_a_replay_the_broker_refuses_leaves_the_rest_for_the_relay(engine: Engine) -> None:
    dead = [row(engine, InboxStatus.FAILED), row(engine, InboxStatus.FAILED)]

    def refuse(_: int) -> None:
        raise ConnectionError("broker down")

    assert replay(engine, refuse, now=NOW) == 0
    assert inbox_statuses(engine, *dead) == ["received", "received"]


@pytest.mark.parametrize("status", [InboxStatus.FAILED, InboxStatus.UNCONFIRMED])
def test_one_event_is_replayed_as_a_status_of_them_would_be(
    engine: Engine, status: InboxStatus
) -> None:
    event = row(engine, status, attempts=8, last_error="Transient: 503")
    other = row(engine, status)
    sent: list[int] = []

    taken = replay_event(engine, event, sent.append, now=NOW)

    assert taken is True
    assert sent == [event]
    assert inbox_statuses(engine, event, other) == ["enqueued", status.value]
    replayed = find_event(engine, event)
    assert replayed is not None
    assert (replayed.attempts, replayed.last_error) == (0, "Transient: 503")


def test_one_event_the_broker_refuses_is_left_received_for_the_relay(engine: Engine) -> None:
    event = row(engine, InboxStatus.FAILED)

    def refuse(_: int) -> None:
        raise ConnectionError("broker down")

    assert replay_event(engine, event, refuse, now=NOW) is False
    assert inbox_statuses(engine, event) == ["received"]


@pytest.mark.parametrize("status", [InboxStatus.RECEIVED, InboxStatus.ENQUEUED])
def test_one_event_still_waiting_or_unknown_is_not_replayed(
    engine: Engine, status: InboxStatus
) -> None:
    waiting = row(engine, status)
    sent: list[int] = []

    for inbox_id in (waiting, waiting + 1000):
        with pytest.raises(NotReplayable):
            replay_event(engine, inbox_id, sent.append, now=NOW)

    assert sent == []
    assert inbox_statuses(engine, waiting) == [status.value]
    assert find_event(engine, waiting + 1000) is None


def test_prune_deletes_finished_rows_older_than_the_retention(engine: Engine) -> None:
    old = [
        row(engine, InboxStatus.PROCESSED, age=RETENTION + timedelta(hours=1)),
        row(engine, InboxStatus.IGNORED, age=RETENTION + timedelta(hours=1)),
    ]
    young = row(engine, InboxStatus.PROCESSED, age=RETENTION - timedelta(hours=1))
    dead = row(engine, InboxStatus.FAILED, age=RETENTION * 2)

    deleted = prune(engine, older_than=RETENTION, now=NOW)

    assert deleted == 2
    assert inbox_statuses(engine, *old, young, dead) == [None, None, "processed", "failed"]


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
    deps = duty_deps(make_settings(), engine)

    assert "inbox-prune" in [duty.name for duty in periodic_duties(deps)]


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
    assert inbox_statuses(engine, stale, fresh, kept, dead) == [
        None,
        "ignored",
        "processed",
        "failed",
    ]


def test_the_prune_duty_applies_the_unknown_owner_retention(
    engine: Engine, make_settings: Callable[..., Settings]
) -> None:
    known_athlete(engine)
    # Finished at NOW: more than a day ago by the wall clock, far less than 14 days.
    unknown = row(engine, InboxStatus.IGNORED)
    known = row(engine, InboxStatus.PROCESSED, owner_id=KNOWN)
    deps = duty_deps(make_settings(), engine)
    duty = next(d for d in periodic_duties(deps) if d.name == "inbox-prune")

    duty.run()

    assert inbox_statuses(engine, unknown, known) == [None, "processed"]


def test_unconfirmed_events_are_counted_by_status_and_pruned(engine: Engine) -> None:
    unconfirmed = row(engine, InboxStatus.UNCONFIRMED, owner_id=KNOWN, reason="still listed")
    known_athlete(engine)
    row(engine, InboxStatus.PROCESSED, owner_id=KNOWN)

    assert counts_by_status(engine) == {"unconfirmed": 1, "processed": 1}
    prune(engine, older_than=timedelta(0), now=NOW + timedelta(seconds=1))
    assert inbox_statuses(engine, unconfirmed) == [None]
