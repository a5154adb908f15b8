"""The backlog per tier, counted from the rows, with when each tier should finish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session
from support import FakeClock

from service.ingest.backlog import backlog, count_backlog
from service.ingest.policy import HydrationPolicy
from service.models import Activity, Athlete, PendingHydration, SyncJob
from service.strava.quota import QuotaConfig, Tier
from service.strava.quota.memory import MemoryQuotaScheduler

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
POLICY = HydrationPolicy(recent=timedelta(weeks=12), streams="recent")


def seed(engine: Engine) -> None:
    """Athlete 7: 3 recent and 5 old hydrations waiting, 2 old done, one held webhook fetch,
    a running backfill. Athlete 8: a finished backfill."""
    recent, old = NOW - timedelta(days=3), NOW - timedelta(days=400)
    rows: list[tuple[int, datetime, str]] = [
        *((n, recent, "pending") for n in range(1, 3)),
        (3, recent, "partial"),
        *((n, old, "pending") for n in range(4, 9)),
        *((n, old, "complete") for n in range(9, 11)),
        (11, old, "none"),
    ]
    with Session(engine) as session:
        session.add(Athlete(id=7))
        session.add(Athlete(id=8))
        session.flush()
        for activity_id, start, status in rows:
            session.add(
                Activity(id=activity_id, athlete_id=7, start_date=start, hydration_status=status)
            )
        session.add(
            PendingHydration(
                activity_id=99, athlete_id=7, inbox_id=1, due_at=NOW, requested_event_time=1
            )
        )
        session.add(SyncJob(athlete_id=7, kind="backfill", status="running"))
        session.add(SyncJob(athlete_id=8, kind="backfill", status="completed"))
        session.commit()


def test_hydrations_are_counted_at_the_tier_their_start_date_gives(engine: Engine) -> None:
    seed(engine)

    counts = count_backlog(engine, POLICY, NOW)

    assert dict(counts.waiting) == {Tier.RECENT: 3, Tier.BACKFILL: 5, Tier.WEBHOOK: 1}
    assert dict(counts.done) == {Tier.BACKFILL: 2}
    # A backfill lists at `recent` (service/ingest/sync.py LIST_TIERS); finished ones don't count.
    assert dict(counts.sync_jobs) == {Tier.RECENT: 1}


def test_each_tier_with_work_waiting_gets_an_estimate(engine: Engine) -> None:
    seed(engine)
    scheduler = MemoryQuotaScheduler(QuotaConfig(), FakeClock(NOW.timestamp()))

    rows = {row.tier: row for row in backlog(scheduler, engine, POLICY, NOW)}

    assert list(rows) == [Tier.WEBHOOK, Tier.RECENT, Tier.BACKFILL]
    assert rows[Tier.BACKFILL].estimate.sentence.startswith("2 of 7 hydrated; at today's budget")
    assert rows[Tier.RECENT].sync_jobs == 1
    # Recent hydrations fetch streams too (two calls each), backfill ones only the detail.
    recent = rows[Tier.RECENT].estimate.finishes_at
    assert recent == NOW + timedelta(
        seconds=900 * 6 / scheduler.tier_capacity(Tier.RECENT).room_now
    )
    assert rows[Tier.BACKFILL].as_json()["waiting"] == 5
