"""The inbox lifecycle after processing: dead events listed and re-driven, old rows pruned.

An event that keeps failing is retried with backoff by the actors (service/ingest/retry.py)
up to `RETRY_MAX_ATTEMPTS` attempts, then left `failed` with its last error: a dead event.
An operator lists them (`strava-ingest events failed`, or the operator page), fixes the
cause, and replays them (`strava-ingest events replay`, or one at a time on the page).
Finished rows are pruned after `INBOX_RETENTION_DAYS`; Strava retries an event only for
minutes (docs/strava.md §1.3), so dedupe needs no more.
Events of owners we never knew cost no call but anyone can post them: they go after
`UNKNOWN_OWNER_RETENTION_HOURS`. `strava-ingest events counts` counts rows by status
(`unconfirmed` ones are destructive events Strava did not confirm) and lists flagged athletes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from service.db import session_scope
from service.ingest.inbox import mark_enqueued, send_until_refused
from service.models import ActivityRemoval, Athlete, InboxEvent, InboxStatus

log = logging.getLogger(__name__)

# What `replay` may re-drive. Rows still waiting (received, enqueued, rate_limited) are the
# relay's business, not an operator's.
REPLAYABLE = (
    InboxStatus.FAILED,
    InboxStatus.IGNORED,
    InboxStatus.PROCESSED,
    InboxStatus.UNCONFIRMED,
)
_PRUNABLE = (
    InboxStatus.PROCESSED.value,
    InboxStatus.IGNORED.value,
    InboxStatus.UNCONFIRMED.value,
)


def events_with_status(
    engine: Engine,
    status: InboxStatus = InboxStatus.FAILED,
    *,
    since: datetime | None = None,
    limit: int = 1000,
) -> list[InboxEvent]:
    """Inbox rows in `status` (dead ones by default), received at or after `since`, oldest
    first."""
    query = select(InboxEvent).where(col(InboxEvent.status) == status.value)
    if since is not None:
        query = query.where(col(InboxEvent.received_at) >= since)
    with session_scope(engine) as session:
        return list(session.exec(query.order_by(col(InboxEvent.id)).limit(limit)).all())


def reset_for_replay(
    engine: Engine,
    status: InboxStatus = InboxStatus.FAILED,
    *,
    since: datetime | None = None,
    now: datetime,
) -> list[int]:
    """Put rows in `status` back to `received` with a fresh retry budget; returns their ids.

    `last_error` is kept until the replay succeeds, so the reason stays visible meanwhile.
    `received` is what the relay re-sends, so a reset row is never stranded.
    """
    if status not in REPLAYABLE:
        raise ValueError(f"cannot replay {status.value} events: the relay re-sends those")
    statement = _reset(now).where(col(InboxEvent.status) == status.value)
    if since is not None:
        statement = statement.where(col(InboxEvent.received_at) >= since)
    ids = _reset_rows(engine, statement)
    log.info("events reset for replay status=%s count=%s", status.value, len(ids))
    return ids


def _reset(now: datetime) -> sa.Update:
    return (
        sa.update(InboxEvent)
        .values(
            status=InboxStatus.RECEIVED.value,
            attempts=0,
            retry_after=None,
            processed_at=None,
            updated_at=now,
        )
        .returning(col(InboxEvent.id))
    )


def _reset_rows(engine: Engine, statement: sa.Update) -> list[int]:
    with session_scope(engine) as session:
        return sorted(int(i) for i in session.execute(statement).scalars())


def send_all(engine: Engine, inbox_ids: Sequence[int], send: Callable[[int], None]) -> int:
    """Hand the rows to the broker; stops at the first refusal (the relay sends the rest)."""
    sent = send_until_refused(inbox_ids, send, "replay")
    mark_enqueued(engine, sent)
    return len(sent)


def replay(
    engine: Engine,
    send: Callable[[int], None],
    status: InboxStatus = InboxStatus.FAILED,
    *,
    since: datetime | None = None,
    now: datetime,
) -> int:
    """Re-drive events: reset them, then send them through the broker. Returns how many
    were handed to the broker."""
    return send_all(engine, reset_for_replay(engine, status, since=since, now=now), send)


class NotReplayable(Exception):
    """The event is not stored, or waits in a status the relay re-sends (received, enqueued,
    rate_limited)."""


def replay_event(
    engine: Engine, inbox_id: int, send: Callable[[int], None], *, now: datetime
) -> bool:
    """Re-drive one event as `replay` does a status's: reset it, then send it. True when the
    broker took it; False when it refused (the row is `received`: the relay sends it).
    NotReplayable when no replayable row has this id."""
    statement = _reset(now).where(
        col(InboxEvent.id) == inbox_id,
        col(InboxEvent.status).in_([status.value for status in REPLAYABLE]),
    )
    ids = _reset_rows(engine, statement)
    if not ids:
        raise NotReplayable(inbox_id)
    log.info("event reset for replay inbox_event_id=%s", inbox_id)
    return send_all(engine, ids, send) == 1


def find_event(engine: Engine, inbox_id: int) -> InboxEvent | None:
    """The inbox row, or None when it is not stored (never was, or pruned)."""
    with session_scope(engine) as session:
        return session.get(InboxEvent, inbox_id)


def prune(
    engine: Engine,
    *,
    older_than: timedelta,
    now: datetime,
    unknown_owner_older_than: timedelta | None = None,
) -> int:
    """Delete processed, ignored and unconfirmed rows finished before `now - older_than`, and
    activity tombstones as old: no event that old arrives any more. Rows of owners we never
    knew go once older than `unknown_owner_older_than` (when given). Failed rows stay until
    replayed. Returns how many inbox rows were deleted."""
    cutoff = now - older_than
    with session_scope(engine) as session:
        deleted = session.execute(
            sa.delete(InboxEvent)
            .where(col(InboxEvent.status).in_(_PRUNABLE))
            .where(col(InboxEvent.processed_at) < cutoff)
        ).rowcount  # type: ignore[attr-defined]
        if unknown_owner_older_than is not None:
            known = sa.select(col(Athlete.id)).where(col(Athlete.id) == col(InboxEvent.owner_id))
            deleted += session.execute(
                sa.delete(InboxEvent)
                .where(col(InboxEvent.status).in_(_PRUNABLE))
                .where(col(InboxEvent.processed_at) < now - unknown_owner_older_than)
                .where(~sa.exists(known))
            ).rowcount  # type: ignore[attr-defined]
        session.execute(sa.delete(ActivityRemoval).where(col(ActivityRemoval.removed_at) < cutoff))
    if deleted:
        log.info("inbox pruned deleted=%s before=%s", deleted, cutoff.isoformat())
    return int(deleted)


def counts_by_status(engine: Engine) -> dict[str, int]:
    """How many inbox rows are in each status (statuses with none are left out)."""
    query = sa.select(col(InboxEvent.status), sa.func.count()).group_by(col(InboxEvent.status))
    with session_scope(engine) as session:
        return {str(status): int(n) for status, n in session.execute(query).all()}


def flagged_athletes(engine: Engine) -> list[Athlete]:
    """Athletes flagged for creates Strava denied (service/ingest/budget.py), newest first."""
    query = (
        select(Athlete)
        .where(col(Athlete.flagged_at).is_not(None))
        .order_by(col(Athlete.flagged_at).desc())
    )
    with session_scope(engine) as session:
        return list(session.exec(query).all())
