"""Processing of one inbox event: decide (events.plan_event), then carry it out.

The decision and its effect on storage happen in one transaction under the owner's lock,
together with finishing the inbox row, so an event takes effect exactly once. A fetch never
runs inside that transaction: an event that needs one holds the activity's pending fetch
(service/ingest/coalesce.py) and is run again when the coalescing window has passed.

Streams: when the stream policy wants them for a webhook fetch (`stream_keys`), the detail is
stored `partial` with `hydration_missing = ["streams"]` and, once the event is finished, the
streams alone are fetched as a hydration does (hydrate.py::hydrate_missing_streams). Their
failure is the hydration's, not the event's: the row stays `partial` and the hydration's
retry fetches them.

Destructive events act only on Strava's word (docs/events.md): a delete holds its activity's
pending fetch, which confirms it (coalesce.py); a deauthorization asks Strava whether the
grant is gone (tokens.grant_revoked) before the purge. Unconfirmed, they end `unconfirmed`
with the reason, and nothing is removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from service.db import session_scope
from service.ingest import budget, coalesce, hydrate
from service.ingest.context import IngestContext
from service.ingest.events import (
    NOTHING_STORED,
    UNKNOWN_OWNER,
    Action,
    ApplyUpdates,
    Deauthorize,
    DeleteActivity,
    Hydrate,
    Ignore,
    Unconfirmed,
    WebhookEvent,
    plan_event,
)
from service.ingest.purge import purge_athlete_in
from service.ingest.tokens import AthleteNotConnected, grant_revoked
from service.log_ids import add_log_ids
from service.models import Athlete, AthleteStatus, InboxEvent, InboxStatus
from service.strava.quota import Tier, using_tier

log = logging.getLogger(__name__)

# Fetches the streams of an activity whose detail is stored `partial` (see the module's doc),
# charged to the tier its detail was (`recent` past the owner's budget, budget.py).
FetchStreams = Callable[[int, Tier], object]

# Finished rows are not processed again: a redelivered message is a no-op.
_FINISHED = (
    InboxStatus.PROCESSED.value,
    InboxStatus.IGNORED.value,
    InboxStatus.UNCONFIRMED.value,
)
GRANT_STANDS = "the grant is still valid"


@dataclass(frozen=True)
class Deferred:
    """The event holds its activity's pending fetch, due at `until`: run it again then.
    Waiting out the coalescing window is not a failed attempt."""

    until: datetime


@dataclass(frozen=True)
class _Fetch:
    activity_id: int


@dataclass(frozen=True)
class _ConfirmGrant:
    """A deauthorization of a known athlete: ask Strava before the purge, at `tier` (the
    athlete's budget of unverified calls, service/ingest/budget.py)."""

    athlete_id: int
    tier: Tier


@dataclass(frozen=True)
class _Ended:
    """A final status with its reason (ignored, unconfirmed)."""

    status: InboxStatus
    reason: str


def _event_of(row: InboxEvent) -> WebhookEvent:
    return WebhookEvent(
        object_type=row.object_type,
        object_id=row.object_id,
        aspect_type=row.aspect_type,
        owner_id=row.owner_id,
        subscription_id=row.subscription_id,
        event_time=row.event_time,
        updates=row.updates,
    )


def _execute(
    ctx: IngestContext, session: Session, row: InboxEvent, action: Action, now: datetime
) -> InboxStatus | _Ended | Deferred | _Fetch | _ConfirmGrant:
    assert row.id is not None
    match action:
        case Hydrate(activity_id) | DeleteActivity(activity_id):
            due = coalesce.request_fetch(
                ctx,
                session,
                activity_id=activity_id,
                owner_id=row.owner_id,
                inbox_id=row.id,
                event_time=row.event_time,
                now=now,
                delete=action if isinstance(action, DeleteActivity) else None,
            )
            if due is None:
                log.info("event coalesced inbox_id=%s activity_id=%s", row.id, activity_id)
                return InboxStatus.PROCESSED
            return Deferred(due) if due > now else _Fetch(activity_id)
        case ApplyUpdates():
            coalesce.apply_updates(session, action, now)
        case Deauthorize(athlete_id):
            athlete = session.get(Athlete, athlete_id)
            if athlete is None:
                return _Ended(InboxStatus.IGNORED, UNKNOWN_OWNER)
            if athlete.status != AthleteStatus.DEAUTHORIZED:
                tier = budget.tier_for_unverified_call(ctx, session, athlete_id)
                return _ConfirmGrant(athlete_id, tier)
            purge_athlete_in(session, athlete_id, now)  # a repeat: idempotent, no call
        case Ignore(reason):
            log.info(
                "event ignored inbox_id=%s owner_id=%s reason=%s", row.id, row.owner_id, reason
            )
            return _Ended(InboxStatus.IGNORED, reason)
        case Unconfirmed(reason):
            log.warning(
                "event not confirmed inbox_id=%s owner_id=%s reason=%s",
                row.id,
                row.owner_id,
                reason,
            )
            return _Ended(InboxStatus.UNCONFIRMED, reason)
    return InboxStatus.PROCESSED


def _plan_and_apply(
    ctx: IngestContext, inbox_id: int
) -> InboxStatus | Deferred | _Fetch | _ConfirmGrant | None:
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        row = session.get(InboxEvent, inbox_id)
        if row is None:
            log.warning("event not in inbox inbox_id=%s", inbox_id)
            return None
        add_log_ids(
            athlete_id=row.owner_id,
            activity_id=row.object_id if row.object_type == "activity" else None,
        )
        coalesce.lock_owner(session, row.owner_id)
        session.refresh(row)  # a sibling may have finished it while we waited for the lock
        if row.status in _FINISHED:
            return InboxStatus(row.status)
        event = _event_of(row)
        state = (
            coalesce.activity_state(session, row.object_id)
            if row.object_type == "activity"
            else NOTHING_STORED
        )
        action = plan_event(event, coalesce.owner_of(session, row.owner_id), state)
        outcome = _execute(ctx, session, row, action, now)
        if isinstance(outcome, _Ended):
            _finish(row, outcome.status, now, outcome.reason)
            outcome = outcome.status
        elif isinstance(outcome, InboxStatus):
            _finish(row, outcome, now)
        elif isinstance(outcome, Deferred):
            _defer(row, outcome, now)
        session.add(row)
        return outcome


def process_event(
    ctx: IngestContext,
    inbox_id: int,
    stream_keys: Sequence[str] = (),
    fetch_streams: FetchStreams | None = None,
) -> InboxStatus | Deferred | None:
    """Carry out one stored event. Returns the row's final status, Deferred when the event
    waits for its activity's coalescing window, or None when the row does not exist.

    `stream_keys`: the streams the policy wants after a webhook fetch (none: the detail alone
    is complete). `fetch_streams` fetches them once the detail is stored and the event is
    finished; by default `hydrate_missing_streams`, raising what it raises (the worker passes
    one that retries as a hydration).

    Raises what the fetch raised (quota, Strava's faults): the actor decides the retry.
    """
    outcome = _plan_and_apply(ctx, inbox_id)
    if isinstance(outcome, _ConfirmGrant):
        outcome = _confirm_deauthorization(ctx, inbox_id, outcome)
    if isinstance(outcome, _Fetch):
        activity_id = outcome.activity_id
        outcome, stored_at = _fetch(ctx, inbox_id, activity_id, stream_keys)
        if stored_at is not None and stream_keys:
            if fetch_streams is None:
                with using_tier(stored_at):
                    hydrate.hydrate_missing_streams(ctx, activity_id, stream_keys)
            else:
                fetch_streams(activity_id, stored_at)
    if outcome is not None:
        log.info("event done inbox_id=%s outcome=%s", inbox_id, outcome)
    return outcome


def _confirm_deauthorization(
    ctx: IngestContext, inbox_id: int, confirm: _ConfirmGrant
) -> InboxStatus | None:
    """Purge only once Strava confirms the grant is gone (one call); otherwise the event is
    `unconfirmed` and nothing is removed. Quota denials and Strava's faults propagate: the
    actor re-sends the event, and no purge happens by default."""
    athlete_id = confirm.athlete_id
    with using_tier(confirm.tier):
        gone = grant_revoked(ctx, athlete_id)
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        row = session.get(InboxEvent, inbox_id)
        if row is None:
            return None
        coalesce.lock_owner(session, athlete_id)
        session.refresh(row)
        if row.status in _FINISHED:
            return InboxStatus(row.status)
        if gone is None:
            log.warning(
                "deauthorization not confirmed inbox_id=%s athlete_id=%s reason=%s",
                inbox_id,
                athlete_id,
                GRANT_STANDS,
            )
            _finish(row, InboxStatus.UNCONFIRMED, now, GRANT_STANDS)
        else:
            log.info("deauthorization confirmed athlete_id=%s reason=%s", athlete_id, gone)
            purge_athlete_in(session, athlete_id, now)
            _finish(row, InboxStatus.PROCESSED, now)
        session.add(row)
        return InboxStatus(row.status)


def _fetch(
    ctx: IngestContext, inbox_id: int, activity_id: int, stream_keys: Sequence[str]
) -> tuple[InboxStatus | Deferred, Tier | None]:
    """Run the event's pending fetch. Returns the event's status, and the tier the fetch was
    charged to when the detail was stored (None when it was not)."""
    result: list[InboxStatus | Deferred] = []

    def settle(session: Session, fetched: coalesce.Fetched | coalesce.Covered) -> None:
        now = ctx.clock()
        row = session.get_one(InboxEvent, inbox_id)
        if isinstance(fetched, coalesce.Fetched) and fetched.again_at is not None:
            deferred = Deferred(fetched.again_at)
            _defer(row, deferred, now)
            result.append(deferred)
        elif isinstance(fetched, coalesce.Fetched) and fetched.unconfirmed is not None:
            _finish(row, InboxStatus.UNCONFIRMED, now, fetched.unconfirmed)
            result.append(InboxStatus.UNCONFIRMED)
        else:
            _finish(row, InboxStatus.PROCESSED, now)
            result.append(InboxStatus.PROCESSED)
        session.add(row)

    try:
        fetched = coalesce.hydrate_pending(ctx, activity_id, inbox_id, settle, stream_keys)
    except AthleteNotConnected as error:
        # Deauthorized or in need of a new authorization since the event was planned: a
        # delete cannot be confirmed now, anything else has nothing to fetch with.
        with session_scope(ctx.engine) as session:
            row = session.get_one(InboxEvent, inbox_id)
            status = InboxStatus.IGNORED
            if row.aspect_type == "delete":
                status = InboxStatus.UNCONFIRMED
            log.info("event %s inbox_id=%s reason=%s", status.value, inbox_id, error)
            _finish(row, status, ctx.clock(), str(error))
            session.add(row)
        return status, None
    if isinstance(fetched, coalesce.Fetched) and fetched.stored:
        return result[0], fetched.tier
    return result[0], None


def _finish(row: InboxEvent, status: InboxStatus, now: datetime, reason: str | None = None) -> None:
    row.status = status.value
    row.reason = reason
    row.attempts += 1
    row.last_error = None
    row.retry_after = None
    row.updated_at = now
    row.processed_at = now


def _defer(row: InboxEvent, deferred: Deferred, now: datetime) -> None:
    # `enqueued` with `retry_after`: the relay re-sends it if the delayed message is lost.
    row.status = InboxStatus.ENQUEUED.value
    row.retry_after = deferred.until
    row.updated_at = now
