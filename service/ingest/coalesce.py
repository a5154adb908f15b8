"""The effects of activity events on storage: bursts coalesced into one fetch, updates
applied locally, deletions with a tombstone, and event order respected.

Concurrency: every decision about an activity is taken under a lock on its owner's athlete
row (`lock_owner`), held only for the short read-decide-write transaction, never across a
call to Strava. Several worker processes may handle events of one activity at once; the
lock serialises them, and the same lock makes a purge exclusive with them.

Coalescing: the first event that needs a fetch inserts a `PendingHydration` row naming
itself; it fetches when the row is due (after the coalescing window). Events arriving in
the meantime only raise the row's `requested_event_time`. If one of them arrived after the
fetch began, the holder fetches once more. A holder that failed for good is replaced by the
next event.

Deletes: a delete removes nothing on its own word (Strava signs nothing, docs/strava.md
§1.8). It joins the activity's pending fetch and holds it, so the burst's one fetch also
confirms it: a 404 (or a 401 with a token Strava just issued) removes the activity and
leaves the tombstone; an activity Strava still returns is stored and the delete is
`unconfirmed`.

Budget: every fetch an event causes (a create, an update that needs one, a delete's
confirmation, and the fetch once more after events that came during one) is charged to the
owner's budget in the quota window (budget.py); past it, the fetch waits at the `recent` tier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from service.db import session_scope
from service.ingest import budget
from service.ingest.activities import Tombstone, remove_activities
from service.ingest.backfill import store_raw_summary
from service.ingest.context import IngestContext
from service.ingest.events import ActivityState, ApplyUpdates, DeleteActivity, LocalKey, Owner
from service.ingest.hydrate import OTHER_OWNER, Absent, Fetch, fetch_detail, store_fetched
from service.ingest.tokens import current_access_token
from service.models import (
    Activity,
    ActivityRemoval,
    Athlete,
    AthleteStatus,
    InboxEvent,
    InboxStatus,
    PendingHydration,
    RemovalReason,
)
from service.strava.errors import NotFound
from service.strava.quota import Tier, using_tier

log = logging.getLogger(__name__)

# The columns each locally applied key writes (events._column_values).
_COLUMNS_OF_KEY: dict[str, tuple[str, ...]] = {
    LocalKey.TITLE: ("name",),
    LocalKey.TYPE: ("type", "sport_type"),
    LocalKey.PRIVATE: ("private", "visibility"),
}
# An inbox event in one of these may still fetch; otherwise its pending fetch is orphaned.
_LIVE = (InboxStatus.RECEIVED.value, InboxStatus.ENQUEUED.value, InboxStatus.RATE_LIMITED.value)


def lock_owner(session: Session, owner_id: int) -> None:
    """Serialise work on this athlete's data until the transaction ends.

    An UPDATE rather than SELECT … FOR UPDATE: it takes the row lock on PostgreSQL and also
    SQLite's write lock at once, so a read-then-write cannot interleave there either.
    """
    session.execute(
        sa.update(Athlete)
        .where(col(Athlete.id) == owner_id)
        .values(updated_at=col(Athlete.updated_at))
    )


def owner_of(session: Session, owner_id: int) -> Owner:
    athlete = session.get(Athlete, owner_id)
    if athlete is None:
        return Owner(status=None)
    scopes = {s.strip() for s in athlete.scopes.split(",")}
    return Owner(status=AthleteStatus(athlete.status), read_all="activity:read_all" in scopes)


def activity_state(session: Session, activity_id: int) -> ActivityState:
    row = session.get(Activity, activity_id)
    removal = session.get(ActivityRemoval, activity_id)
    pending = session.get(PendingHydration, activity_id)
    seen = [t for t in (row and row.event_time, pending and pending.requested_event_time) if t]
    return ActivityState(
        stored=row is not None,
        event_time=max(seen) if seen else None,
        synced_event_time=row.synced_event_time if row else None,
        update_times=dict(row.update_times or {}) if row else {},
        visibility=row.visibility if row else None,
        removed_event_time=removal.event_time if removal else None,
    )


def apply_updates(session: Session, action: ApplyUpdates, now: datetime) -> None:
    """Write title/type/private from the event itself: no call to Strava (§1.3).

    The stored raw summary takes the same values: it is what we now believe Strava lists. A
    listing (reconciliation, full refresh) rewrites a row only when Strava's summary differs
    from it, so a forged update is undone by the next listing, and a genuine one that the
    listing already shows changes nothing there."""
    row = session.get_one(Activity, action.activity_id)
    for column, value in action.values.items():
        setattr(row, column, value)
    row.update_times = {**(row.update_times or {}), **dict.fromkeys(action.keys, action.event_time)}
    row.event_time = max(row.event_time or 0, action.event_time)
    row.updated_at = now
    session.add(row)
    if row.raw_summary is not None:
        # Every column a local key writes bears the name of its key in Strava's summary.
        believed = {**row.raw_summary, **action.values}
        session.flush()
        store_raw_summary(session, action.activity_id, believed)
        session.expire(row, ["raw_summary"])


def request_fetch(
    ctx: IngestContext,
    session: Session,
    *,
    activity_id: int,
    owner_id: int,
    inbox_id: int,
    event_time: int,
    now: datetime,
    delete: DeleteActivity | None = None,
) -> datetime | None:
    """Ask for one fetch of the activity. Returns when this event must fetch (it holds the
    pending fetch), or None when another live event's pending fetch covers it.

    A `delete` always holds the fetch, which confirms it (see the module's doc)."""
    pending = session.get(PendingHydration, activity_id)
    if pending is None:
        removed = session.get(ActivityRemoval, activity_id) is not None
        unseen = not removed and session.get(Activity, activity_id) is None
        if delete is None and removed:
            # A create after a removal (e.g. it left "Only You", §1.4) restores the activity.
            session.execute(
                sa.delete(ActivityRemoval).where(col(ActivityRemoval.activity_id) == activity_id)
            )
        tier = budget.tier_for_unverified_call(ctx, session, owner_id)
        pending = PendingHydration(
            activity_id=activity_id,
            athlete_id=owner_id,
            inbox_id=inbox_id,
            due_at=now + ctx.coalesce_window,
            requested_event_time=event_time,
            tier=tier.value,
            unseen=unseen,
            delete_event_time=delete.event_time if delete else None,
            delete_reason=delete.reason.value if delete else None,
            created_at=now,
        )
        session.add(pending)
        return pending.due_at
    pending.requested_event_time = max(pending.requested_event_time, event_time)
    session.add(pending)
    if delete is not None:
        pending.delete_event_time = max(pending.delete_event_time or 0, delete.event_time)
        pending.delete_reason = delete.reason.value
        # The delete's own status waits on the fetch, so it holds it; the event it takes the
        # fetch from finds itself covered.
        pending.inbox_id = inbox_id
        return pending.due_at
    if pending.inbox_id == inbox_id:
        return pending.due_at
    holder = session.get(InboxEvent, pending.inbox_id)
    if holder is not None and holder.status in _LIVE:
        return None
    # The holder failed for good (or is gone): this event takes the fetch over, at once,
    # since the burst the window was waiting for is long over.
    log.info(
        "pending fetch taken over activity_id=%s from inbox_id=%s to inbox_id=%s",
        activity_id,
        pending.inbox_id,
        inbox_id,
    )
    pending.inbox_id = inbox_id
    pending.due_at = now
    return pending.due_at


@dataclass(frozen=True)
class Fetched:
    """The pending fetch ran; `again_at` is set when events arrived during it and one more
    fetch is due then. `stored` tells the detail was stored (not a 404/401). `unconfirmed`
    says why the delete holding the fetch removed nothing."""

    again_at: datetime | None = None
    stored: bool = False
    unconfirmed: str | None = None
    # The tier the fetch was charged to; the streams that follow it are charged there too.
    tier: Tier = Tier.WEBHOOK


@dataclass(frozen=True)
class Covered:
    """Nothing to fetch: the activity was removed meanwhile, or another event holds it."""


# Finishes the inbox event in the transaction that stores the fetch, so that the activity
# and the event's status change together.
Settle = Callable[[Session, "Fetched | Covered"], None]


def hydrate_pending(
    ctx: IngestContext,
    activity_id: int,
    inbox_id: int,
    settle: Settle,
    stream_keys: Sequence[str] = (),
) -> Fetched | Covered:
    """Fetch the activity once for every event gathered on it (GET /activities/{id},
    docs/strava.md §4.2) and store it without overwriting anything newer: `complete`, or
    `partial` with `hydration_missing = ["streams"]` when `stream_keys` are wanted, which the
    caller then fetches (service/ingest/process.py)."""
    with session_scope(ctx.engine) as session:
        pending = session.get(PendingHydration, activity_id)
        if pending is None or pending.inbox_id != inbox_id:
            settle(session, Covered())
            return Covered()
        row = session.get(Activity, activity_id)
        # Every event up to `as_of` happened before this fetch starts, so it sees them.
        as_of = max(pending.requested_event_time, (row.event_time or 0) if row else 0)
        owner_id = pending.athlete_id
        tier = Tier(pending.tier)
    token = current_access_token(ctx, owner_id)
    # `recent` for an athlete past their budget of webhook calls (budget.py).
    with using_tier(tier):
        fetched = fetch_detail(ctx, owner_id, activity_id, token, stream_keys)
    with session_scope(ctx.engine) as session:
        outcome = _store_under_lock(ctx, session, activity_id, inbox_id, as_of, fetched)
        settle(session, outcome)
    log.info(
        "activity fetched activity_id=%s inbox_id=%s outcome=%s", activity_id, inbox_id, outcome
    )
    return outcome


def _store_under_lock(
    ctx: IngestContext,
    session: Session,
    activity_id: int,
    inbox_id: int,
    as_of: int,
    fetched: Fetch,
) -> Fetched | Covered:
    now = ctx.clock()
    pending = session.get(PendingHydration, activity_id)
    if pending is None:
        return Covered()
    lock_owner(session, pending.athlete_id)
    session.refresh(pending)
    if pending.inbox_id != inbox_id:
        # Removed during the fetch (a delete or a purge): the data must not come back.
        return Covered()
    row = session.get(Activity, activity_id)
    if isinstance(fetched, Absent) and pending.delete_event_time is not None:
        return _settle_delete(session, pending, fetched, now)
    if isinstance(fetched, dict):
        fetched = _in_event_order(row, fetched, as_of, now)
    store_fetched(ctx, session, activity_id, fetched, now)
    forged = isinstance(fetched, Absent) and fetched.error in (NotFound.__name__, OTHER_OWNER)
    if forged and pending.unseen:
        budget.count_forged_create(ctx, session, pending.athlete_id, activity_id, now)
    stored, tier = isinstance(fetched, dict), Tier(pending.tier)
    if pending.requested_event_time > as_of:
        # An event came in after the fetch began: its change may be missing from it. The
        # fetch once more is another call: charged like the first.
        pending.due_at = now + ctx.coalesce_window
        if tier == Tier.WEBHOOK:
            pending.tier = budget.tier_for_unverified_call(ctx, session, pending.athlete_id).value
        session.add(pending)
        return Fetched(again_at=pending.due_at, stored=stored, tier=tier)
    session.delete(pending)
    if pending.delete_event_time is not None:
        log.warning(
            "delete not confirmed activity_id=%s inbox_id=%s: Strava still lists the activity",
            activity_id,
            inbox_id,
        )
        return Fetched(stored=stored, unconfirmed=STILL_LISTED, tier=tier)
    return Fetched(stored=stored, tier=tier)


STILL_LISTED = "Strava still lists the activity"


def _settle_delete(
    session: Session, pending: PendingHydration, fetched: Absent, now: datetime
) -> Fetched:
    """The fetch holding a delete found no activity: remove it if that confirms the delete."""
    activity_id, delete_time = pending.activity_id, pending.delete_event_time or 0
    if not fetched.confirms_removal:
        session.delete(pending)
        log.warning("delete not confirmed activity_id=%s reason=%s", activity_id, fetched.reason)
        return Fetched(unconfirmed=fetched.reason)
    # A delete cannot precede the answer that confirmed it: a forged event time in the
    # future must not make the tombstone outrank a real later create.
    event_time = min(delete_time, int(now.timestamp()))
    reason = RemovalReason(pending.delete_reason or RemovalReason.DELETED.value)
    remove_activities(
        session, pending.athlete_id, [activity_id], now, Tombstone(reason, event_time)
    )
    log.info("delete confirmed activity_id=%s reason=%s", activity_id, reason.value)
    return Fetched()


def _in_event_order(
    row: Activity | None, values: dict[str, Any], as_of: int, now: datetime
) -> dict[str, Any]:
    """The fetched columns to store, without undoing what events newer than the fetch did."""
    values = dict(values)
    if row is not None:
        # A key applied locally from an event newer than the fetch keeps its value.
        for key, time in (row.update_times or {}).items():
            if time > as_of:
                for column in _COLUMNS_OF_KEY.get(key, ()):
                    values.pop(column, None)
    # The fetch reflects Strava as of now at the latest: a forged event time in the future
    # must not make every later genuine event look older than this fetch.
    synced = min(as_of, int(now.timestamp()))
    values["event_time"] = max(synced, (row.event_time or 0) if row else 0)
    values["synced_event_time"] = max(synced, (row.synced_event_time or 0) if row else 0)
    return values
