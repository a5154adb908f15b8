"""The work waiting for Strava quota, per tier, counted from the rows: hydrations of stored
activities, webhook fetches held for coalescing, and unfinished sync jobs.

A stored activity does not keep the tier its hydration was queued at; the hydration policy
decides it again from its start date, as the listing did (service/ingest/policy.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col

from service.db import session_scope
from service.ingest.policy import HydrationPolicy, hydration_cost
from service.ingest.sync import ACTIVE, LIST_TIERS
from service.models import Activity, HydrationStatus, PendingHydration, SyncJob, SyncKind
from service.strava.quota.eta import TierBacklog, finish_estimate
from service.strava.quota.scheduler import QuotaScheduler
from service.strava.quota.tiers import TIERS_BY_PRIORITY, Tier

WAITING = (HydrationStatus.PENDING.value, HydrationStatus.PARTIAL.value)
DONE = (HydrationStatus.COMPLETE.value, HydrationStatus.NOT_AVAILABLE.value)


@dataclass(frozen=True)
class Counts:
    """Per tier: hydrations waiting and done, and unfinished sync jobs listing at it."""

    waiting: Mapping[Tier, int]
    done: Mapping[Tier, int]
    sync_jobs: Mapping[Tier, int]


def count_backlog(engine: Engine, policy: HydrationPolicy, now: datetime) -> Counts:
    """Three grouped counts; none reads a row's JSON."""
    recent = col(Activity.start_date) >= now - policy.recent
    waiting: Counter[Tier] = Counter()
    done: Counter[Tier] = Counter()
    sync_jobs: Counter[Tier] = Counter()
    with session_scope(engine) as session:
        rows = session.execute(
            sa.select(col(Activity.hydration_status), recent, sa.func.count())
            .where(col(Activity.hydration_status).in_(WAITING + DONE))
            .group_by(col(Activity.hydration_status), recent)
        ).all()
        for status, is_recent, count in rows:
            tier = Tier.RECENT if is_recent else Tier.BACKFILL
            (waiting if status in WAITING else done)[tier] += count
        held = session.execute(
            sa.select(col(PendingHydration.tier), sa.func.count()).group_by(
                col(PendingHydration.tier)
            )
        ).all()
        for tier_name, count in held:
            waiting[Tier(tier_name)] += count
        jobs = session.execute(
            sa.select(col(SyncJob.kind), sa.func.count())
            .where(col(SyncJob.status).in_(ACTIVE))
            .group_by(col(SyncJob.kind))
        ).all()
        for kind, count in jobs:
            sync_jobs[LIST_TIERS[SyncKind(kind)]] += count
    return Counts(waiting=waiting, done=done, sync_jobs=sync_jobs)


def quota_now(scheduler: QuotaScheduler) -> datetime:
    """The scheduler's time (a simulation's or a test's clock), as an aware UTC datetime."""
    return datetime.fromtimestamp(scheduler.now(), UTC)


def backlog(
    scheduler: QuotaScheduler, engine: Engine, policy: HydrationPolicy, now: datetime
) -> tuple[TierBacklog, ...]:
    """Every tier with work waiting, highest first, with when it should finish."""
    counts = count_backlog(engine, policy, now)
    rows = []
    for tier in TIERS_BY_PRIORITY:
        waiting, jobs = counts.waiting.get(tier, 0), counts.sync_jobs.get(tier, 0)
        if not waiting and not jobs:
            continue
        estimate = finish_estimate(
            scheduler,
            tier,
            waiting,
            counts.done.get(tier, 0),
            now,
            calls_per_item=hydration_cost(policy, tier),
        )
        rows.append(TierBacklog(tier=tier, waiting=waiting, sync_jobs=jobs, estimate=estimate))
    return tuple(rows)
