"""Hydrations held in their rows until their place in the quota queue is within the horizon,
then sent once, delayed to their place, at the tier the policy gives them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from service.ingest.held import hold, release
from service.ingest.policy import HydrationPolicy
from service.models import Activity, Athlete

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HORIZON = timedelta(hours=1)
POLICY = HydrationPolicy(recent=timedelta(weeks=12))


def seed(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Athlete(id=7))
        session.flush()
        for activity_id, days in ((1, 400), (2, 2), (3, 500)):
            start = NOW - timedelta(days=days)
            session.add(
                Activity(id=activity_id, athlete_id=7, start_date=start, hydration_status="pending")
            )
        session.commit()


def row(engine: Engine, activity_id: int) -> Activity:
    with Session(engine) as session:
        return session.get_one(Activity, activity_id)


def test_held_hydrations_within_the_horizon_are_sent_once_delayed_to_their_place(
    engine: Engine,
) -> None:
    seed(engine)
    hold(engine, 1, NOW + timedelta(minutes=50), NOW)
    hold(engine, 2, NOW + timedelta(minutes=10), NOW)
    hold(engine, 3, NOW + timedelta(days=3), NOW)
    sent: list[tuple[int, str, int]] = []

    first = release(engine, POLICY, NOW, HORIZON, lambda *message: sent.append(message))
    again = release(engine, POLICY, NOW, HORIZON, lambda *message: sent.append(message))

    assert (first, again) == (2, 0)
    assert sorted(sent) == [(1, "backfill", 50 * 60 * 1000), (2, "recent", 10 * 60 * 1000)]
    assert row(engine, 1).hydration_held_until is None
    held = row(engine, 3)
    assert held.hydration_held_until == NOW + timedelta(days=3)
    assert held.retry_after == NOW + timedelta(days=3)
    assert held.hydration_status == "pending"


def test_a_held_hydration_is_sent_when_the_clock_brings_its_place_near(engine: Engine) -> None:
    seed(engine)
    hold(engine, 3, NOW + timedelta(days=3), NOW)
    sent: list[tuple[int, str, int]] = []

    later = NOW + timedelta(days=3) - timedelta(minutes=30)
    release(engine, POLICY, later, HORIZON, lambda *message: sent.append(message))

    assert sent == [(3, "backfill", 30 * 60 * 1000)]
