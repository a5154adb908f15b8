"""Hydrations that wait for quota in their rows, and the release that admits them.

A backfill's hydrations (the tiers below real time) do not go to the broker when they are
listed: each row is marked waiting (`hydration_held_until`: when it began to wait, its place
in the queue), and the release duty admits, every tick, as many as the quota takes now
(service/strava/quota/admission.py), reserving their requests and sending them prepaid.
Redis then holds only the work of the moment, however long the backlog, and no unit is
refused and re-sent window after window. `recent` rows go before `backfill` rows, and within
a tier the longest waiting first.

The row does not keep the tier of its hydration; it is decided again from the activity's
start date and the hydration policy, as the listing did (service/ingest/policy.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col

from service.db import session_scope
from service.ingest.policy import HydrationPolicy, hydration_cost
from service.models import Activity, HydrationStatus
from service.strava.quota.admission import Admitted
from service.strava.quota.tiers import Tier

log = logging.getLogger(__name__)

# Rows considered per statement, so that one release never holds a huge transaction.
RELEASE_BATCH = 1000

# The tiers of waiting hydrations, in the order they are admitted.
WAITING_TIERS: tuple[Tier, ...] = (Tier.RECENT, Tier.BACKFILL)

# A row hydrated meanwhile (a reader's on-demand hydration) is not admitted: it would spend
# quota on nothing.
UNHYDRATED = (HydrationStatus.PENDING.value, HydrationStatus.PARTIAL.value)

# `admit(tier, count, cost)`: how many units the quota takes now, their requests reserved.
Admit = Callable[[Tier, int, int], Admitted]
# `send(activity_id, tier, delay_ms, prepaid)`, as `Dispatcher.send_hydration`.
SendHydration = Callable[[int, str, int | None, tuple[int, int] | None], object]


def wait_for_place(engine: Engine, activity_ids: Sequence[int], now: datetime) -> None:
    """Put these hydrations in the queue for quota, behind those already waiting."""
    if not activity_ids:
        return
    with session_scope(engine) as session:
        session.execute(
            sa.update(Activity)
            .where(col(Activity.id).in_(list(activity_ids)))
            .values(hydration_held_until=now, updated_at=now)
        )


def release(
    engine: Engine, policy: HydrationPolicy, now: datetime, admit: Admit, send: SendHydration
) -> int:
    """Admit waiting hydrations, `recent` ones first, and send them prepaid. Rows are taken
    (their mark cleared) in the transaction that locks them, so two releases never send one
    twice; a row another release has locked is skipped. Returns how many were sent."""
    postgres = engine.dialect.name == "postgresql"
    sent = 0
    for tier in WAITING_TIERS:
        cost = hydration_cost(policy, tier)
        while True:
            with session_scope(engine) as session:
                if postgres:
                    # The waiting rows' spread of start dates changes as they go: a plan
                    # cached for one range would scan the whole queue for another.
                    session.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
                waiting = (
                    sa.select(col(Activity.id))
                    .where(
                        col(Activity.hydration_held_until).is_not(None),
                        col(Activity.hydration_status).in_(UNHYDRATED),
                        _in(tier, policy, now),
                    )
                    .order_by(col(Activity.hydration_held_until), col(Activity.id))
                    .limit(RELEASE_BATCH)
                )
                if postgres:
                    waiting = waiting.with_for_update(skip_locked=True)
                ids = list(session.execute(waiting).scalars())
                if not ids:
                    break
                admitted = admit(tier, len(ids), cost)
                taken = ids[: admitted.units]
                if taken:
                    session.execute(
                        sa.update(Activity)
                        .where(col(Activity.id).in_(taken))
                        .values(hydration_held_until=None, updated_at=now)
                    )
            _send_all(engine, taken, tier, admitted, send, now)
            sent += len(taken)
            if len(taken) < len(ids) or len(ids) < RELEASE_BATCH:
                break
    if sent:
        log.info("waiting hydrations admitted count=%s", sent)
    return sent


def _in(tier: Tier, policy: HydrationPolicy, now: datetime) -> sa.ColumnElement[bool]:
    start = col(Activity.start_date)
    if tier is Tier.RECENT:
        return start >= now - policy.recent
    return sa.or_(start < now - policy.recent, start.is_(None))


def _send_all(
    engine: Engine,
    ids: list[int],
    tier: Tier,
    admitted: Admitted,
    send: SendHydration,
    now: datetime,
) -> None:
    # A broker that fails midway must not lose the rows already taken: those not sent wait
    # again (their reservations are spent; the quota counts them as used).
    for position, (activity_id, requests) in enumerate(zip(ids, admitted.requests, strict=True)):
        try:
            send(activity_id, tier.value, None, (admitted.window, requests))
        except Exception:
            wait_for_place(engine, ids[position:], now)
            raise
