"""Reconciliation: a periodic listing per athlete that catches what the webhooks missed.

Strava makes at most three delivery attempts per event (docs/strava.md §1.3, §1.7), so missed
events are certain. A reconciliation job lists the athlete's activities after (newest known
start - overlap) and upserts them, which finds late creates, uploads with an old start date
inside the overlap, and edits to listed fields; activities stored in that window that the
listing no longer shows were deleted on Strava (service/ingest/sync.py removes them, with a
safety abort when that would be all of them).

The scheduler spreads athletes over the period (a fixed slot per athlete) and keeps the
day's reconciliation list calls within the `reconcile` tier's daily share of the read limit:
the same share the quota scheduler applies to every reconcile call, so the two agree by
construction.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from service.config import Settings
from service.ingest.backfill import Cursor
from service.ingest.sync import Started, start_job
from service.models import Activity, Athlete, AthleteStatus, SyncJob, SyncKind, SyncStatus
from service.strava.quota import QuotaConfig, Tier
from service.strava.quota.scheduler import allowance

log = logging.getLogger(__name__)


def reconcile_after(newest_start: datetime | None, overlap: timedelta) -> int | None:
    """The listing's lower bound (epoch seconds, exclusive), or None to list everything."""
    if newest_start is None:
        return None
    return int((newest_start - overlap).timestamp())


def start_reconcile(engine: Engine, athlete_id: int, overlap: timedelta, now: datetime) -> Started:
    """Create the athlete's reconciliation job (or return the active job)."""
    with Session(engine) as session:
        newest = session.exec(
            select(sa.func.max(Activity.start_date)).where(Activity.athlete_id == athlete_id)
        ).one()
    cursor = Cursor(after=reconcile_after(newest, overlap))
    return start_job(engine, athlete_id, SyncKind.RECONCILE, now, cursor=cursor)


# A listing that reached the end of the athlete's history: from then on, passes reconcile.
_HISTORY_LISTED = (
    col(SyncJob.kind).in_((SyncKind.BACKFILL.value, SyncKind.FULL_REFRESH.value)),
    col(SyncJob.status) == SyncStatus.COMPLETED.value,
)


def history_listed(engine: Engine, athlete_id: int) -> bool:
    with Session(engine) as session:
        found = session.exec(
            select(SyncJob.id).where(SyncJob.athlete_id == athlete_id, *_HISTORY_LISTED)
        ).first()
    return found is not None


def start_incremental(
    engine: Engine, athlete_id: int, overlap: timedelta, now: datetime, *, listed: bool
) -> Started:
    """An incremental sync: a reconciliation pass once the athlete's history has been
    listed to its end (`listed`, see history_listed), else the backfill, continued from its
    cursor."""
    if listed:
        return start_reconcile(engine, athlete_id, overlap, now)
    return start_job(engine, athlete_id, SyncKind.BACKFILL, now)


# -- the periodic scheduler -------------------------------------------------------------------


def slot(athlete_id: int, period: timedelta) -> timedelta:
    """The athlete's fixed offset within each period: a hash, so athletes spread evenly."""
    seconds = int(period.total_seconds())
    return timedelta(seconds=zlib.crc32(athlete_id.to_bytes(8, "big")) % seconds)


def due(athlete_id: int, last_pass: datetime | None, now: datetime, period: timedelta) -> bool:
    """Whether the athlete's slot in the current period has come and no pass ran since."""
    epoch = datetime.fromtimestamp(0, UTC)
    length = period.total_seconds()
    period_start = epoch + timedelta(seconds=(now - epoch).total_seconds() // length * length)
    slot_time = period_start + slot(athlete_id, period)
    if slot_time > now:
        slot_time -= period  # this period's slot is still ahead: the previous one counts
    return last_pass is None or last_pass < slot_time


def daily_budget(config: QuotaConfig, read_daily_limit: int) -> int:
    """List calls reconciliation may spend per day: the reconcile tier's daily allowance."""
    return allowance(read_daily_limit, config.factor(Tier.RECONCILE, "daily"))


@dataclass(frozen=True)
class Candidate:
    athlete_id: int
    last_pass: datetime | None
    backfilled: bool


def choose(
    candidates: Iterable[Candidate],
    now: datetime,
    period: timedelta,
    spent_today: int,
    budget: int,
) -> list[Candidate]:
    """The due athletes, longest-waiting first, while the day's budget lasts (each pass
    costs at least one list call)."""
    ready = [c for c in candidates if due(c.athlete_id, c.last_pass, now, period)]
    epoch = datetime.fromtimestamp(0, UTC)
    ready.sort(key=lambda c: c.last_pass or epoch)
    room = max(0, budget - spent_today)
    return ready[:room]


def schedule_reconciliations(
    engine: Engine, settings: Settings, now: datetime, send: Callable[[int], object]
) -> int:
    """The periodic duty: start a pass for every athlete that is due, within the budget.
    An athlete whose backfill never completed gets the backfill (continued) instead."""
    period = timedelta(seconds=settings.reconcile_period_seconds)
    overlap = timedelta(days=settings.reconcile_overlap_days)
    budget = daily_budget(QuotaConfig.from_settings(settings), settings.quota_read_limit_daily)
    chosen = choose(_candidates(engine), now, period, _spent_today(engine, now), budget)
    started = 0
    for candidate in chosen:
        result = start_incremental(
            engine, candidate.athlete_id, overlap, now, listed=candidate.backfilled
        )
        if result.created and result.job.id is not None:
            send(result.job.id)
            started += 1
    if started:
        log.info("reconciliation passes started count=%s budget=%s", started, budget)
    return started


def _candidates(engine: Engine) -> Sequence[Candidate]:
    with Session(engine) as session:
        athletes = session.exec(
            select(Athlete.id).where(Athlete.status == AthleteStatus.CONNECTED.value)
        ).all()
        # Pairs unpacked row by row: a Result has keys(), so dict() would take it for a
        # mapping and fail.
        last = {
            athlete_id: created_at
            for athlete_id, created_at in session.execute(
                sa.select(col(SyncJob.athlete_id), sa.func.max(SyncJob.created_at)).group_by(
                    col(SyncJob.athlete_id)
                )
            )
        }
        backfilled = set(session.exec(select(SyncJob.athlete_id).where(*_HISTORY_LISTED)).all())
    return [Candidate(a, last.get(a), a in backfilled) for a in athletes]


def _spent_today(engine: Engine, now: datetime) -> int:
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with Session(engine) as session:
        pages, jobs = session.execute(
            sa.select(sa.func.coalesce(sa.func.sum(SyncJob.pages), 0), sa.func.count()).where(
                col(SyncJob.kind) == SyncKind.RECONCILE.value,
                col(SyncJob.created_at) >= midnight,
            )
        ).one()
    # A job that has not listed yet will cost at least one call.
    return max(int(pages), int(jobs))
