"""The webhook inbox: durable storage of events before they are acknowledged."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from service.db import session_scope, upsert_insert
from service.ingest.events import WebhookEvent
from service.models import InboxEvent, InboxStatus, utcnow

log = logging.getLogger(__name__)


def dedupe_key(event: WebhookEvent) -> str:
    """A hash over every field, so Strava's retries of one event collapse onto one row."""
    canonical = json.dumps(
        [
            event.subscription_id,
            event.object_type,
            event.object_id,
            event.aspect_type,
            event.owner_id,
            event.event_time,
            event.updates,
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class InboxRaced(Exception):
    """A row that blocked an insert was deleted before it could be read; storing again works."""


@dataclass(frozen=True)
class StoredEvent:
    id: int
    created: bool
    status: str


def store_event(engine: Engine, event: WebhookEvent) -> StoredEvent:
    """Insert the event unless an identical one is stored; commit before returning."""
    return store_events(engine, [event])[0]


def store_events(engine: Engine, events: Sequence[WebhookEvent]) -> list[StoredEvent]:
    """Insert the events not stored yet, in one transaction, and commit before returning.

    One multi-row INSERT … ON CONFLICT DO NOTHING RETURNING for the whole batch (a group
    commit: one round trip and one WAL flush for many webhook requests). RETURNING names only
    the rows inserted, so the others — Strava's retries (§1.3) — are looked up by dedupe_key.
    Returns one StoredEvent per input, in order; an event repeated within the batch is
    `created` only at its first position.
    """
    if not events:
        return []
    keys = [dedupe_key(event) for event in events]
    now = utcnow()
    rows: dict[str, dict[str, object]] = {}
    for key, event in zip(keys, events, strict=True):
        rows.setdefault(
            key,
            {
                **event.model_dump(),
                "dedupe_key": key,
                "status": InboxStatus.RECEIVED.value,
                "attempts": 0,
                "received_at": now,
                "updated_at": now,
            },
        )
    # Sorted, so that two processes inserting overlapping batches lock in the same order.
    ordered = [rows[key] for key in sorted(rows)]
    insert = (
        upsert_insert(engine, InboxEvent)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(col(InboxEvent.id), col(InboxEvent.dedupe_key))
    )
    with engine.begin() as connection:
        inserted = {key: id_ for id_, key in connection.execute(insert, ordered)}
        existing: dict[str, tuple[int, str]] = {}
        missing = [key for key in rows if key not in inserted]
        if missing:
            found = connection.execute(
                sa.select(
                    col(InboxEvent.dedupe_key), col(InboxEvent.id), col(InboxEvent.status)
                ).where(col(InboxEvent.dedupe_key).in_(missing))
            )
            for key, id_, status in found:
                assert id_ is not None  # a primary key
                existing[key] = (id_, status)
    stored: list[StoredEvent] = []
    first_seen: set[str] = set()
    for key in keys:
        if key in inserted:
            created = key not in first_seen
            first_seen.add(key)
            stored.append(StoredEvent(inserted[key], created, InboxStatus.RECEIVED.value))
        elif key in existing:
            id_, status = existing[key]
            stored.append(StoredEvent(id_, False, status))
        else:
            # It conflicted, then vanished (a purge in between): let Strava retry it.
            raise InboxRaced(f"inbox row for dedupe_key {key[:12]}… vanished while storing")
    return stored


def mark_enqueued(engine: Engine, inbox_ids: list[int]) -> None:
    """Record the hand-off, unless a fast worker already moved the row past `received`."""
    if not inbox_ids:
        return
    with session_scope(engine) as session:
        session.execute(
            sa.update(InboxEvent)
            .where(col(InboxEvent.id).in_(inbox_ids))
            .where(col(InboxEvent.status) == InboxStatus.RECEIVED.value)
            .values(status=InboxStatus.ENQUEUED.value, updated_at=utcnow())
        )


def _mark_resent(engine: Engine, inbox_ids: list[int]) -> None:
    if not inbox_ids:
        return
    waiting = [
        InboxStatus.RECEIVED.value,
        InboxStatus.RATE_LIMITED.value,
        InboxStatus.ENQUEUED.value,
    ]
    with session_scope(engine) as session:
        session.execute(
            sa.update(InboxEvent)
            .where(col(InboxEvent.id).in_(inbox_ids))
            .where(col(InboxEvent.status).in_(waiting))
            .values(status=InboxStatus.ENQUEUED.value, retry_after=None, updated_at=utcnow())
        )


def stranded_events(engine: Engine, before: datetime, limit: int = 500) -> list[int]:
    """Events stored before `before` that never reached the broker, and events whose delayed
    retry was due before `before` but never came (a broker that lost its delayed messages)."""
    never_sent = (col(InboxEvent.status) == InboxStatus.RECEIVED.value) & (
        col(InboxEvent.received_at) < before
    )
    retry_lost = col(InboxEvent.status).in_(
        [InboxStatus.RATE_LIMITED.value, InboxStatus.ENQUEUED.value]
    ) & (col(InboxEvent.retry_after) < before)
    with session_scope(engine) as session:
        rows = session.exec(
            select(InboxEvent.id)
            .where(never_sent | retry_lost)
            .order_by(col(InboxEvent.id))
            .limit(limit)
        ).all()
    return [row for row in rows if row is not None]


def relay(
    engine: Engine,
    send: Callable[[int], None],
    *,
    older_than: timedelta,
    now: Callable[[], datetime] = utcnow,
) -> int:
    """Re-send events that were stored but never handed to the broker (it was down), or
    whose delayed retry is overdue by more than `older_than`.

    Rows younger than `older_than` are left alone: the web request that stored them may
    still be about to enqueue them. Returns how many were handed over.
    """
    sent: list[int] = []
    for inbox_id in stranded_events(engine, now() - older_than):
        try:
            send(inbox_id)
        except Exception:
            log.exception("relay: broker refused event inbox_id=%s; will retry", inbox_id)
            break
        sent.append(inbox_id)
    _mark_resent(engine, sent)
    if sent:
        log.info("relay: re-sent %d stranded events", len(sent))
    return len(sent)
