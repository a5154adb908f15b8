"""Retention: how long Strava's data is kept, enforced by the scheduler (README "Retention").

Three independent limits, each off (keep for ever) unless configured:

- raw JSON (`RAW_JSON_RETENTION_DAYS`): an activity's `raw_summary` and `raw_detail` are
  cleared once the row was last written longer ago than the limit. Strava's caching rules
  are about how long we keep what we got from it (docs/strava.md §5.2), so the clock is the
  time we got it, not the activity's start: `updated_at`, which every write of Strava's data
  sets (a listing that changed the summary, a detail fetch, stored streams, an update pushed
  by a webhook). A listing that finds a summary unchanged does not rewrite the row, so that
  write never postpones the clearing. The row's other writes move the clock too: the
  bookkeeping of each hydration attempt that fails or waits for quota, and marking it not
  available; so the raw summary of an activity whose hydration is still waiting is kept
  until the limit has passed since its last attempt. A column of its own for the fetch
  time would remove that slack; the schema has none today. Only the two raw columns
  change; nothing else of the row, not even `updated_at`.
- streams (`STREAMS_RETENTION_DAYS`): stored streams are deleted once fetched
  (`activity_streams.fetched_at`) longer ago than the limit. The activity row is left as it
  is (still `complete`), so no hydration fetches them again.
- activities (`ACTIVITY_RETENTION_DAYS`): activities that started (`start_date`) longer ago
  than the limit are removed with what derives from them (`remove_activities`, the one
  removal path). By start date, not fetch time, for two reasons: Strava's listing filters
  by start date (`after`, §4.1), so reconciliation can leave out exactly what retention
  removes (`within_retention`, applied to every listing by service/ingest/sync.py) and a
  pruned activity is never listed again; and an activity is fetched after it starts, so
  removing by start date removes at least everything first fetched longer ago than the
  limit.
  Activities without a start date are kept.

Work is bounded: `batch` rows per transaction, at most `max_batches` transactions per limit
per run, so a first run on a large table never holds locks for long; the next run goes on
where this one stopped.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col

from service.config import Settings, default
from service.db import session_scope
from service.ingest.activities import remove_activities
from service.ingest.backfill import Cursor
from service.models import Activity, ActivityStream

log = logging.getLogger(__name__)


def _days(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(days=value)


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of data is kept (None: for ever), and how much one run may do."""

    raw_json: timedelta | None = None
    streams: timedelta | None = None
    activities: timedelta | None = None
    batch: int = default("retention_batch_size")
    max_batches: int = default("retention_batches_per_run")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            raw_json=_days(settings.raw_json_retention_days),
            streams=_days(settings.streams_retention_days),
            activities=_days(settings.activity_retention_days),
            batch=settings.retention_batch_size,
            max_batches=settings.retention_batches_per_run,
        )


def within_retention(cursor: Cursor, keep: timedelta | None, now: datetime) -> Cursor:
    """The listing's cursor raised to activity retention's bound: a backfill, a full
    refresh or a reconciliation lists only activities that started after `now - keep`.
    Without it, a reconciliation whose overlap reaches past the bound would list pruned
    activities back on every pass, and one for an athlete whose activities were all pruned
    (no newest start) would list their whole history. The bound is stored with the cursor,
    so the range the listing removes vanished activities from stays above it too."""
    if keep is None:
        return cursor
    floor = int((now - keep).timestamp())
    if cursor.after is not None and cursor.after >= floor:
        return cursor
    return replace(cursor, after=floor)


@dataclass(frozen=True)
class RetentionRun:
    """What one run did: activities whose raw JSON was cleared, streams and activities
    deleted."""

    raw_json_cleared: int = 0
    streams_deleted: int = 0
    activities_deleted: int = 0


def enforce(engine: Engine, policy: RetentionPolicy, now: datetime) -> RetentionRun:
    """The scheduler's duty: apply every configured limit, each within its bound.
    Activities go first, so that the other two do not spend their batches on rows about to
    be removed anyway."""
    activities = streams = raw = 0
    if policy.activities is not None:
        activities = delete_activities(
            engine, now - policy.activities, policy.batch, policy.max_batches, now
        )
    if policy.streams is not None:
        streams = delete_streams(engine, now - policy.streams, policy.batch, policy.max_batches)
    if policy.raw_json is not None:
        raw = clear_raw_json(engine, now - policy.raw_json, policy.batch, policy.max_batches)
    run = RetentionRun(raw, streams, activities)
    if raw or streams or activities:
        log.info(
            "retention applied raw_json_cleared=%s streams_deleted=%s activities_deleted=%s",
            raw,
            streams,
            activities,
        )
    return run


def _in_batches(max_batches: int, batch: int, one: Callable[[], int]) -> int:
    """Run `one` (a transaction of at most `batch` rows) until it does less than a full
    batch, at most `max_batches` times; the rows done in all."""
    done = 0
    for _ in range(max_batches):
        count = one()
        done += count
        if count < batch:
            break
    return done


def clear_raw_json(engine: Engine, before: datetime, batch: int, max_batches: int) -> int:
    """Clear `raw_summary` and `raw_detail` of activities last written from Strava before
    `before`; no other column changes (not even `updated_at`). Returns the rows cleared."""
    has_raw = sa.or_(col(Activity.raw_summary).is_not(None), col(Activity.raw_detail).is_not(None))

    def one() -> int:
        chosen = (
            sa.select(col(Activity.id))
            .where(col(Activity.updated_at) < before, has_raw)
            .limit(batch)
            .scalar_subquery()
        )
        with session_scope(engine) as session:
            result = session.execute(
                sa.update(Activity)
                .where(col(Activity.id).in_(chosen))
                # sa.null(): a Python None in a JSON column would store JSON's `null`.
                .values(raw_summary=sa.null(), raw_detail=sa.null())
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    return _in_batches(max_batches, batch, one)


def delete_streams(engine: Engine, before: datetime, batch: int, max_batches: int) -> int:
    """Delete stored streams fetched before `before`. Returns the stream rows deleted."""
    key = sa.tuple_(col(ActivityStream.activity_id), col(ActivityStream.type))

    def one() -> int:
        chosen = (
            sa.select(col(ActivityStream.activity_id), col(ActivityStream.type))
            .where(col(ActivityStream.fetched_at) < before)
            .limit(batch)
        )
        with session_scope(engine) as session:
            result = session.execute(sa.delete(ActivityStream).where(key.in_(chosen)))
        return int(result.rowcount)  # type: ignore[attr-defined]

    return _in_batches(max_batches, batch, one)


def delete_activities(
    engine: Engine, started_before: datetime, batch: int, max_batches: int, now: datetime
) -> int:
    """Remove activities that started before `started_before`, with what derives from them,
    through `remove_activities`. No tombstone: a tombstone orders webhook events, and a
    pruned activity was neither deleted nor hidden on Strava. Returns the activities
    removed."""

    def one() -> int:
        with session_scope(engine) as session:
            rows = session.execute(
                sa.select(col(Activity.id), col(Activity.athlete_id))
                .where(col(Activity.start_date) < started_before)
                .limit(batch)
            ).all()
            by_athlete: dict[int, list[int]] = defaultdict(list)
            for activity_id, athlete_id in rows:
                by_athlete[athlete_id].append(activity_id)
            return sum(
                remove_activities(session, athlete_id, ids, now)
                for athlete_id, ids in by_athlete.items()
            )

    return _in_batches(max_batches, batch, one)
