"""Access tokens for API calls on an athlete's behalf, refreshed when they run out.

Strava rotates refresh tokens and invalidates the old one at once (docs/strava.md §3.3), so a
refresh is single-flight per athlete: a row lock on PostgreSQL (and a process lock, which is
all SQLite offers), a re-read after acquiring it, and the new refresh token committed before
the access token is used. A refresh token Strava rejects is re-read once (a sibling may have
rotated it), and then the athlete needs to reconnect.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from sqlmodel import Session, select

from service.db import session_scope
from service.ingest.context import IngestContext
from service.models import Athlete, AthleteStatus
from service.strava.errors import BadRequest, Unauthorized

log = logging.getLogger(__name__)


class AthleteNotConnected(Exception):
    """The athlete has no usable tokens (never connected, deauthorized, or needs re-auth)."""


class AthleteNeedsReauth(AthleteNotConnected):
    """Strava rejected the athlete's refresh token: only a new authorization helps."""


def _usable(athlete: Athlete | None, athlete_id: int) -> Athlete:
    if athlete is None or athlete.status != AthleteStatus.CONNECTED:
        raise AthleteNotConnected(f"athlete {athlete_id} is not connected")
    if athlete.access_token_enc is None or athlete.refresh_token_enc is None:
        raise AthleteNotConnected(f"athlete {athlete_id} has no tokens")
    return athlete


def _fresh(athlete: Athlete, ctx: IngestContext) -> bool:
    return athlete.expires_at is not None and athlete.expires_at - ctx.clock() > ctx.refresh_margin


def _locked(session: Session, athlete_id: int) -> Athlete:
    statement = select(Athlete).where(Athlete.id == athlete_id).with_for_update()
    return _usable(session.exec(statement).one_or_none(), athlete_id)


def access_token_for(ctx: IngestContext, athlete_id: int) -> str:
    """A valid access token for the athlete, refreshing it first when it expires soon."""
    with session_scope(ctx.engine) as session:
        athlete = _usable(session.get(Athlete, athlete_id), athlete_id)
        if _fresh(athlete, ctx):
            return ctx.cipher.decrypt(athlete.access_token_enc or "")
    # dict.setdefault is atomic, so two threads cannot end up with two locks.
    with ctx.refresh_locks.setdefault(athlete_id, threading.Lock()):
        return _refresh(ctx, athlete_id, retry_rejected=True)


def _refresh(ctx: IngestContext, athlete_id: int, *, retry_rejected: bool) -> str:
    with session_scope(ctx.engine) as session:
        athlete = _locked(session, athlete_id)
        if _fresh(athlete, ctx):  # a sibling refreshed while we waited for the lock
            return ctx.cipher.decrypt(athlete.access_token_enc or "")
        used = athlete.refresh_token_enc
        try:
            token = ctx.strava.refresh_token(ctx.cipher.decrypt(used or "")).data
        except (BadRequest, Unauthorized) as error:
            rejected = error
        else:
            athlete.access_token_enc = ctx.cipher.encrypt(token.access_token)
            athlete.refresh_token_enc = ctx.cipher.encrypt(token.refresh_token)
            athlete.expires_at = datetime.fromtimestamp(token.expires_at, UTC)
            athlete.updated_at = ctx.clock()
            session.add(athlete)
            log.info("token refreshed athlete_id=%s expires_at=%s", athlete_id, athlete.expires_at)
            # Returning from the block commits the rotated refresh token before it is used.
            return token.access_token

    with session_scope(ctx.engine) as session:
        athlete = _locked(session, athlete_id)
        rotated_meanwhile = athlete.refresh_token_enc != used
        if not (rotated_meanwhile and retry_rejected):
            reason = f"Strava rejected the refresh token ({_fault_codes(rejected)})"
            athlete.status = AthleteStatus.NEEDS_REAUTH.value
            athlete.status_reason = reason
            athlete.updated_at = ctx.clock()
            session.add(athlete)
    if not (rotated_meanwhile and retry_rejected):
        # Raised only now, after the block committed the new status.
        log.warning("athlete needs to reconnect athlete_id=%s reason=%s", athlete_id, reason)
        raise AthleteNeedsReauth(f"athlete {athlete_id}: {reason}")
    log.info("refresh token was rotated by a sibling; trying it athlete_id=%s", athlete_id)
    return _refresh(ctx, athlete_id, retry_rejected=False)


def _fault_codes(error: BadRequest | Unauthorized) -> str:
    if error.fault is None or not error.fault.errors:
        return f"HTTP {error.status_code}"
    return ", ".join(f"{e.resource}.{e.field}: {e.code}" for e in error.fault.errors)
