"""Our push subscription's id, as Strava last reported it (docs/strava.md §1.1).

Strava documents no signature on events (§1.8), so the id an event names is the one thing that
ties it to us. `strava-ingest subscription create` stores the id Strava assigned, `view`
refreshes it from Strava's answer and `delete` clears it; the web app reads it (cached).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from service.db import session_scope
from service.models import PushSubscription, utcnow


def save_subscription(engine: Engine, subscription_id: int, callback_url: str | None) -> None:
    """Make `subscription_id` the one stored subscription (Strava allows one per app)."""
    with session_scope(engine) as session:
        session.execute(
            sa.delete(PushSubscription).where(col(PushSubscription.id) != subscription_id)
        )
        session.merge(
            PushSubscription(id=subscription_id, callback_url=callback_url, stored_at=utcnow())
        )


def clear_subscription(engine: Engine) -> None:
    """Forget the stored subscription (it was deleted, or Strava reports none)."""
    with session_scope(engine) as session:
        session.execute(sa.delete(PushSubscription))


def stored_callback_url(engine: Engine) -> str | None:
    """The callback URL Strava reported for the stored subscription, or None."""
    with session_scope(engine) as session:
        return session.exec(select(PushSubscription.callback_url).limit(1)).first()


def stored_subscription_id(engine: Engine) -> int | None:
    """The stored subscription's id, or None when no subscription is known."""
    with session_scope(engine) as session:
        return session.exec(select(PushSubscription.id).limit(1)).first()


def stored_subscription(engine: Engine) -> PushSubscription | None:
    """The stored subscription (its id, the callback Strava reported, when it was stored), or
    None when no subscription is known."""
    with session_scope(engine) as session:
        return session.exec(select(PushSubscription).limit(1)).first()
