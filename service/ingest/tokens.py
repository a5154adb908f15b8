"""Access tokens for API calls on an athlete's behalf, refreshed when they run out.

Strava rotates refresh tokens and invalidates the old one at once (strava-api.md §3.3), so a
refresh happens under a row lock, re-reads the row after acquiring it, and commits the new
refresh token before the access token is used.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlmodel import select

from service.db import session_scope
from service.ingest.context import IngestContext
from service.models import Athlete, AthleteStatus

log = logging.getLogger(__name__)


class AthleteNotConnected(Exception):
    """The athlete has no usable tokens (never connected, deauthorized, or needs re-auth)."""


def _usable(athlete: Athlete | None, athlete_id: int) -> Athlete:
    if (
        athlete is None
        or athlete.status != AthleteStatus.CONNECTED
        or athlete.access_token_enc is None
        or athlete.refresh_token_enc is None
    ):
        raise AthleteNotConnected(f"athlete {athlete_id} is not connected")
    return athlete


def _fresh(athlete: Athlete, ctx: IngestContext) -> bool:
    return athlete.expires_at is not None and athlete.expires_at - ctx.clock() > ctx.refresh_margin


def access_token_for(ctx: IngestContext, athlete_id: int) -> str:
    """A valid access token for the athlete, refreshing it first when it expires soon."""
    with session_scope(ctx.engine) as session:
        athlete = _usable(session.get(Athlete, athlete_id), athlete_id)
        if _fresh(athlete, ctx):
            return ctx.cipher.decrypt(athlete.access_token_enc or "")

    with session_scope(ctx.engine) as session:
        locked = session.exec(
            select(Athlete).where(Athlete.id == athlete_id).with_for_update()
        ).one_or_none()
        athlete = _usable(locked, athlete_id)
        if _fresh(athlete, ctx):  # a sibling refreshed while we waited for the lock
            return ctx.cipher.decrypt(athlete.access_token_enc or "")
        token = ctx.strava.refresh_token(ctx.cipher.decrypt(athlete.refresh_token_enc or "")).data
        athlete.access_token_enc = ctx.cipher.encrypt(token.access_token)
        athlete.refresh_token_enc = ctx.cipher.encrypt(token.refresh_token)
        athlete.expires_at = datetime.fromtimestamp(token.expires_at, UTC)
        athlete.updated_at = ctx.clock()
        session.add(athlete)
        log.info("token refreshed athlete_id=%s expires_at=%s", athlete_id, athlete.expires_at)
    # Leaving the scope committed the rotated refresh token; only now is the token used.
    return token.access_token
