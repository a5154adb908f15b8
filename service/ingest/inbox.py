"""The webhook inbox: durable storage of events before they are acknowledged."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
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
    return _assemble(keys, inserted, existing)


# The PostgreSQL inbox path of the web process (service/web/batching.py), on a raw psycopg
# connection in autocommit mode, on the event loop. Profiled under load, the SQLAlchemy path
# above spent most of its time compiling a multi-row VALUES whose row count changes with every
# batch (and psycopg re-parsing that new text each time), plus a pool checkout and pre-ping per
# batch. These texts are the same for every batch size (one array per column), so psycopg
# prepares each once per connection, and the INSERT commits by itself: one round trip per batch.
_PG_INSERT = """
INSERT INTO webhook_inbox (subscription_id, object_type, object_id, aspect_type, owner_id,
                           event_time, updates, dedupe_key, status, attempts, received_at,
                           updated_at)
SELECT e.subscription_id, e.object_type, e.object_id, e.aspect_type, e.owner_id,
       e.event_time, e.updates::jsonb, e.dedupe_key, %(status)s, 0,
       %(now)s, %(now)s
FROM unnest(%(subscription_id)s::bigint[], %(object_type)s::text[], %(object_id)s::bigint[],
            %(aspect_type)s::text[], %(owner_id)s::bigint[], %(event_time)s::bigint[],
            %(updates)s::text[], %(dedupe_key)s::text[])
     WITH ORDINALITY AS e(subscription_id, object_type, object_id, aspect_type, owner_id,
                          event_time, updates, dedupe_key, position)
ORDER BY e.position
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING id, dedupe_key
"""
_PG_EXISTING = "SELECT dedupe_key, id, status FROM webhook_inbox WHERE dedupe_key = ANY(%s)"
_PG_MARK_ENQUEUED = """
UPDATE webhook_inbox SET status = %(enqueued)s, updated_at = %(now)s
WHERE id = ANY(%(ids)s) AND status = %(received)s
"""


async def store_events_pg(
    connection: psycopg.AsyncConnection[Any], events: Sequence[WebhookEvent]
) -> list[StoredEvent]:
    """`store_events` on a raw psycopg connection in autocommit mode: the same rows, the same
    answers, in one statement (plus a lookup only when some events were stored already)."""
    if not events:
        return []
    keys = [dedupe_key(event) for event in events]
    unique = dict(zip(keys, events, strict=True))  # a key's events are identical
    # Sorted, so that two processes inserting overlapping batches lock in the same order.
    ordered = sorted(unique)
    batch = [unique[key] for key in ordered]
    params = {
        "now": utcnow(),
        "status": InboxStatus.RECEIVED.value,
        "subscription_id": [e.subscription_id for e in batch],
        "object_type": [e.object_type for e in batch],
        "object_id": [e.object_id for e in batch],
        "aspect_type": [e.aspect_type for e in batch],
        "owner_id": [e.owner_id for e in batch],
        "event_time": [e.event_time for e in batch],
        "updates": [json.dumps(e.updates) for e in batch],
        "dedupe_key": ordered,
    }
    cursor = await connection.execute(_PG_INSERT, params)
    inserted: dict[str, int] = {key: id_ for id_, key in await cursor.fetchall()}
    existing: dict[str, tuple[int, str]] = {}
    missing = [key for key in ordered if key not in inserted]
    if missing:
        cursor = await connection.execute(_PG_EXISTING, [missing])
        for key, id_, status in await cursor.fetchall():
            existing[key] = (id_, status)
    return _assemble(keys, inserted, existing)


async def mark_enqueued_pg(connection: psycopg.AsyncConnection[Any], inbox_ids: list[int]) -> None:
    """`mark_enqueued` on a raw psycopg connection in autocommit mode."""
    if inbox_ids:
        await connection.execute(
            _PG_MARK_ENQUEUED,
            {
                "enqueued": InboxStatus.ENQUEUED.value,
                "received": InboxStatus.RECEIVED.value,
                "now": utcnow(),
                "ids": inbox_ids,
            },
        )


def _assemble(
    keys: list[str], inserted: dict[str, int], existing: dict[str, tuple[int, str]]
) -> list[StoredEvent]:
    """One StoredEvent per key, in order; a key repeated is `created` only the first time."""
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


def send_until_refused(
    inbox_ids: Iterable[int], send: Callable[[int], None], purpose: str
) -> list[int]:
    """Hand events to the broker in order; stop at the first refusal (logged under
    ``purpose``), since the broker is then down: the relay sends the rest later."""
    sent: list[int] = []
    for inbox_id in inbox_ids:
        try:
            send(inbox_id)
        except Exception:
            log.exception(
                "%s: broker refused inbox_id=%s; the relay will re-send", purpose, inbox_id
            )
            break
        sent.append(inbox_id)
    return sent


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
    sent = send_until_refused(stranded_events(engine, now() - older_than), send, "relay")
    _mark_resent(engine, sent)
    if sent:
        log.info("relay: re-sent %d stranded events", len(sent))
    return len(sent)
