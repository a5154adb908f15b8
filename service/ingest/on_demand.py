"""On-demand hydration: a reader asks for an activity that is not complete, and its hydration
is queued at the `on_demand` tier, the highest (service/strava/quota/tiers.py).

However many readers ask at once, one hydration is in flight per activity: a reader queues
it only by claiming the row (`on_demand_requested_at`) in one conditional UPDATE, which one
of them wins. What a reader can make us spend is bounded (docs/security.md): only an
activity we store, of an athlete who is connected, that hydration can still complete, and
none while a claim of the last ON_DEMAND_LEASE stands or the queued hydration waits for quota.
The hydration itself is the workers' (`hydrate_activity`, with its retries and bookkeeping).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col

from service.db import session_scope
from service.ingest.activities import STREAMS, STREAMS_REFUSED
from service.ingest.activity_reads import StoredActivity, stored_activity
from service.models import Activity, Athlete, AthleteStatus, HydrationStatus
from service.strava.quota import Tier

log = logging.getLogger(__name__)

# How long a queued on-demand hydration keeps other readers from queueing another. It only
# matters when the message was lost (the broker lost its data): a hydration waiting for quota
# holds its claim through `retry_after` as well.
ON_DEMAND_LEASE = timedelta(minutes=5)

# Statuses hydration can still complete. `failed` (retries exhausted) and `not_available`
# (Strava will not show it) are final: readers never re-drive them.
HYDRATABLE = (HydrationStatus.NONE, HydrationStatus.PENDING, HydrationStatus.PARTIAL)

SendHydration = Callable[[int, str], None]


def can_complete(row: Activity) -> bool:
    """Whether hydrating the row could still complete it."""
    if row.hydration_status not in HYDRATABLE:
        return False
    refused = (row.last_hydrate_error or "").startswith(STREAMS_REFUSED)
    return not (row.hydration_status == HydrationStatus.PARTIAL and refused)


def claim_stands(row: Activity, now: datetime) -> bool:
    """Whether a reader's earlier claim still holds (`claim` would match nothing): checked
    first, so that readers of an activity whose hydration is in flight write nothing."""
    claimed = row.on_demand_requested_at
    if claimed is None:
        return False
    waiting = row.retry_after is not None and row.retry_after > now
    return claimed >= now - ON_DEMAND_LEASE or waiting


def _can_complete_clause() -> sa.ColumnElement[bool]:
    return sa.and_(
        col(Activity.hydration_status).in_([status.value for status in HYDRATABLE]),
        sa.not_(
            sa.and_(
                col(Activity.hydration_status) == HydrationStatus.PARTIAL.value,
                sa.func.coalesce(col(Activity.last_hydrate_error), "").like(STREAMS_REFUSED + "%"),
            )
        ),
    )


def claim(engine: Engine, activity_id: int, now: datetime) -> bool:
    """Claim the activity's on-demand hydration: True for the one caller that must queue it,
    False when it cannot be hydrated or another caller's claim stands."""
    owner_connected = sa.exists(
        sa.select(col(Athlete.id)).where(
            col(Athlete.id) == col(Activity.athlete_id),
            col(Athlete.status) == AthleteStatus.CONNECTED.value,
        )
    )
    unclaimed = sa.or_(
        col(Activity.on_demand_requested_at).is_(None),
        sa.and_(
            col(Activity.on_demand_requested_at) < now - ON_DEMAND_LEASE,
            sa.or_(col(Activity.retry_after).is_(None), col(Activity.retry_after) <= now),
        ),
    )
    status = col(Activity.hydration_status)
    with session_scope(engine) as session:
        # One statement: PostgreSQL re-checks the conditions on the row it locks, SQLite runs
        # writers one at a time, so of concurrent callers exactly one matches.
        result = session.execute(
            sa.update(Activity)
            .where(col(Activity.id) == activity_id, _can_complete_clause(), owner_connected)
            .where(unclaimed)
            .values(
                on_demand_requested_at=now,
                hydration_status=sa.case(
                    (status == HydrationStatus.NONE.value, HydrationStatus.PENDING.value),
                    else_=status,
                ),
            )
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]


def release(engine: Engine, activity_id: int, claimed_at: datetime) -> None:
    """Give a claim back (its hydration could not be queued), so the next reader tries."""
    with session_scope(engine) as session:
        session.execute(
            sa.update(Activity)
            .where(
                col(Activity.id) == activity_id,
                col(Activity.on_demand_requested_at) == claimed_at,
            )
            .values(on_demand_requested_at=None)
            .execution_options(synchronize_session=False)
        )


def request_hydration(
    engine: Engine, send_hydration: SendHydration, activity_id: int, now: datetime
) -> bool:
    """Queue the activity's on-demand hydration unless one is in flight or it cannot be
    hydrated; True when this call queued it. A broker that refuses the message gives the
    claim back, and the error propagates."""
    if not claim(engine, activity_id, now):
        return False
    try:
        send_hydration(activity_id, Tier.ON_DEMAND.value)
    except Exception:
        release(engine, activity_id, now)
        raise
    log.info("on-demand hydration queued activity_id=%s", activity_id)
    return True


def missing_parts(row: Activity) -> list[str]:
    """What hydration has not stored yet: the detail (laps, splits, segments) and the
    streams."""
    if row.hydration_status == HydrationStatus.COMPLETE:
        return []
    missing = [] if row.raw_detail is not None else ["detail"]
    if row.raw_detail is None or STREAMS in (row.hydration_missing or []):
        missing.append(STREAMS)
    return missing


def reader_status(stored: StoredActivity) -> str:
    """The hydration status a reader is told: `pending` while a hydration can still complete
    the activity (one is queued or in flight), else the stored status."""
    row = stored.row
    if stored.owner_connected and can_complete(row):
        return HydrationStatus.PENDING.value
    return row.hydration_status


def settled(stored: StoredActivity) -> bool:
    """Whether waiting longer could change what a reader is told."""
    return reader_status(stored) != HydrationStatus.PENDING.value


@dataclass(frozen=True)
class Reading:
    """An activity as a reader gets it, and whether this read queued its hydration."""

    stored: StoredActivity
    queued: bool


def read_activity(
    engine: Engine, send_hydration: SendHydration, activity_id: int, now: datetime
) -> Reading | None:
    """The stored activity (None when we hold no such activity), its on-demand hydration
    queued when it is not complete and none is in flight. A broker that refuses the message
    is logged; the reader still gets what we have."""
    stored = stored_activity(engine, activity_id)
    if stored is None or settled(stored) or claim_stands(stored.row, now):
        return None if stored is None else Reading(stored, False)
    try:
        queued = request_hydration(engine, send_hydration, activity_id, now)
    except redis.RedisError as error:
        log.warning(
            "on-demand hydration not queued activity_id=%s error=%s",
            activity_id,
            type(error).__name__,
        )
        queued = False
    return Reading(stored, queued)
