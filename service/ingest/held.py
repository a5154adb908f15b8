"""Hydrations held out of the broker until their place in the quota queue is near.

A ticket (service/strava/quota/admission.py) can be days ahead for a large backlog: a delayed
message for each would keep the whole backlog in Redis, some 400 bytes a unit
(scripts/bench_admission.py). A hydration whose place is beyond the horizon
(ADMISSION_HORIZON_SECONDS) is held in its row instead (`hydration_held_until`, with
`retry_after` saying when), and the release duty sends it, delayed to its place, once the
place is within the horizon. Redis then holds at most a horizon's worth of work.

The row does not keep the tier of its hydration; the hydration policy decides it again from
the activity's start date, as the listing did (service/ingest/policy.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col

from service.db import session_scope
from service.ingest.policy import HydrationPolicy, plan_hydration
from service.ingest.retry import delay_ms
from service.models import Activity
from service.strava.quota.tiers import Tier

log = logging.getLogger(__name__)

# Rows released per statement, so that one release never holds a huge transaction.
RELEASE_BATCH = 1000

SendHydration = Callable[[int, str, int], object]


def hold(engine: Engine, activity_id: int, until: datetime, now: datetime) -> None:
    """Keep the hydration of `activity_id` out of the broker until its place at `until`."""
    hold_many(engine, [(activity_id, until)], now)


def hold_many(engine: Engine, places: list[tuple[int, datetime]], now: datetime) -> None:
    """`hold` for several hydrations, in one transaction."""
    if not places:
        return
    with session_scope(engine) as session:
        for activity_id, until in places:
            session.execute(
                sa.update(Activity)
                .where(col(Activity.id) == activity_id)
                .values(hydration_held_until=until, retry_after=until, updated_at=now)
            )


def release(
    engine: Engine,
    policy: HydrationPolicy,
    now: datetime,
    horizon: timedelta,
    send: SendHydration,
) -> int:
    """Send every held hydration whose place is within `horizon`, delayed to its place.
    Each row is taken (its mark cleared) in the same statement that selects it, so two
    duties never send one twice. Returns how many were sent."""
    sent = 0
    while True:
        with session_scope(engine) as session:
            due = (
                sa.select(col(Activity.id))
                .where(col(Activity.hydration_held_until) <= now + horizon)
                .order_by(col(Activity.hydration_held_until))
                .limit(RELEASE_BATCH)
            )
            if engine.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            rows = session.execute(
                sa.update(Activity)
                .where(col(Activity.id).in_(due.scalar_subquery()))
                .values(hydration_held_until=None, updated_at=now)
                .returning(
                    col(Activity.id),
                    col(Activity.sport_type),
                    col(Activity.start_date),
                    col(Activity.retry_after),
                )
            ).all()
        for activity_id, sport_type, start, place in rows:
            tier = plan_hydration(policy, sport_type, start, now).tier or Tier.BACKFILL
            send(activity_id, tier.value, delay_ms(place or now, now))
        sent += len(rows)
        if len(rows) < RELEASE_BATCH:
            break
    if sent:
        log.info("held hydrations released count=%s", sent)
    return sent
