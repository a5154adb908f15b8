"""Access tokens for API calls on an athlete's behalf, refreshed when they run out.

Strava rotates refresh tokens and invalidates the old one at once (docs/strava.md §3.3), so a
refresh is single-flight per athlete: a row lock on PostgreSQL (and a process lock, which is
all SQLite offers), a re-read after acquiring it, and the new refresh token committed before
the access token is used. A refresh token Strava rejects is re-read once (a sibling may have
rotated it), and then the athlete needs to reconnect; so does one whose token Strava says
lacks activity:read. `grant_revoked` asks Strava whether a grant still stands, before a
deauthorization event may purge anything.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, select

from service.db import session_scope
from service.ingest.context import IngestContext
from service.models import Athlete, AthleteStatus
from service.strava.errors import BadRequest, StravaError, Unauthorized

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


@dataclass(frozen=True)
class AccessToken:
    """An access token, and whether Strava issued or confirmed it just now (a refresh, ours
    or a sibling's): then a 401 with it is about the request, not about the token."""

    value: str
    refreshed: bool


def access_token_for(ctx: IngestContext, athlete_id: int) -> str:
    """A valid access token for the athlete, refreshing it first when it expires soon."""
    return current_access_token(ctx, athlete_id).value


def current_access_token(ctx: IngestContext, athlete_id: int) -> AccessToken:
    """`access_token_for`, also telling whether the token was refreshed for this call."""
    with session_scope(ctx.engine) as session:
        athlete = _usable(session.get(Athlete, athlete_id), athlete_id)
        if _fresh(athlete, ctx):
            return AccessToken(ctx.cipher.decrypt(athlete.access_token_enc or ""), False)
    # dict.setdefault is atomic, so two threads cannot end up with two locks.
    with ctx.refresh_locks.setdefault(athlete_id, threading.Lock()):
        return AccessToken(_refresh(ctx, athlete_id, retry_rejected=True), True)


def lacks_activity_read(error: StravaError) -> bool:
    """Whether Strava's 401 says the token lacks the activity:read permission (the athlete
    took it away, or never granted it): docs/strava.md §3.3."""
    fault = error.fault
    return fault is not None and any(
        e.field == "activity:read_permission" and e.code == "missing" for e in fault.errors
    )


def mark_if_activity_read_missing(ctx: IngestContext, athlete_id: int, error: StravaError) -> bool:
    """A 401 for lack of activity:read: the athlete `needs_reauth`, with that reason, and no
    more of their work is scheduled until they reconnect. Returns whether it was that 401."""
    if not lacks_activity_read(error):
        return False
    reason = f"Strava says the token lacks a permission ({_fault_codes(error)})"
    with session_scope(ctx.engine) as session:
        athlete = session.get(Athlete, athlete_id, with_for_update=True)
        if athlete is None or athlete.status != AthleteStatus.CONNECTED:
            return True
        athlete.status = AthleteStatus.NEEDS_REAUTH.value
        athlete.status_reason = reason
        athlete.updated_at = ctx.clock()
        session.add(athlete)
    log.warning("athlete needs to reconnect athlete_id=%s reason=%s", athlete_id, reason)
    return True


def grant_revoked(ctx: IngestContext, athlete_id: int) -> str | None:
    """Ask Strava whether the athlete's grant is gone, with one call: why it is gone, or None
    while it stands. Gone means the refresh token is rejected, or the API answers 401 for
    the athlete's current access token (docs/strava.md §3.3, §3.4).

    Raises what the call raises otherwise (quota, Strava's faults): never a verdict then.
    """
    with session_scope(ctx.engine) as session:
        athlete = session.get(Athlete, athlete_id)
        if athlete is None or athlete.refresh_token_enc is None:
            return "no grant held"
        status = athlete.status
    if status == AthleteStatus.NEEDS_REAUTH:
        return _refresh_rejected(ctx, athlete_id)
    try:
        token = access_token_for(ctx, athlete_id)
    except AthleteNotConnected as error:
        return str(error)
    try:
        ctx.strava.get_athlete(token)
    except Unauthorized as error:
        if lacks_activity_read(error):
            return None  # the token is valid; it only lacks a scope
        return f"Strava rejected the access token ({_fault_codes(error)})"
    return None


def revoking_token(ctx: IngestContext, athlete_id: int) -> str | None:
    """An access token that can revoke the athlete's grant, refreshed first when it runs
    out; None when Strava already rejects the refresh token (the grant is gone) or we hold
    none. Unlike `access_token_for` it serves an athlete who needs to reconnect too: their
    grant may stand (a missing scope), and disconnecting must still revoke it.

    Raises what a refresh raises otherwise (quota, Strava's faults)."""
    with session_scope(ctx.engine) as session:
        athlete = session.get(Athlete, athlete_id)
        if athlete is None or athlete.access_token_enc is None or athlete.refresh_token_enc is None:
            return None
        status = athlete.status
        if status == AthleteStatus.NEEDS_REAUTH and _fresh(athlete, ctx):
            return ctx.cipher.decrypt(athlete.access_token_enc)
    if status == AthleteStatus.NEEDS_REAUTH:
        if _refresh_rejected(ctx, athlete_id) is not None:
            return None
        with session_scope(ctx.engine) as session:
            refreshed = session.get_one(Athlete, athlete_id)
            return ctx.cipher.decrypt(refreshed.access_token_enc or "")
    try:
        return access_token_for(ctx, athlete_id)
    except AthleteNotConnected:  # a rejected refresh token, or tokens purged meanwhile
        return None


def _refresh_rejected(ctx: IngestContext, athlete_id: int) -> str | None:
    """For an athlete in need of reconnecting: whether Strava still accepts the refresh token
    (a token call). An accepted one is stored, rotated, and the status stays as it is."""
    lock = ctx.refresh_locks.setdefault(athlete_id, threading.Lock())
    with lock, session_scope(ctx.engine) as session:
        athlete = session.get_one(Athlete, athlete_id, with_for_update=True)
        if athlete.refresh_token_enc is None:
            return "no grant held"
        try:
            token = ctx.strava.refresh_token(ctx.cipher.decrypt(athlete.refresh_token_enc)).data
        except (BadRequest, Unauthorized) as error:
            return f"Strava rejected the refresh token ({_fault_codes(error)})"
        athlete.access_token_enc = ctx.cipher.encrypt(token.access_token)
        athlete.refresh_token_enc = ctx.cipher.encrypt(token.refresh_token)
        athlete.expires_at = datetime.fromtimestamp(token.expires_at, UTC)
        athlete.updated_at = ctx.clock()
        session.add(athlete)
    return None


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


def _fault_codes(error: StravaError) -> str:
    if error.fault is None or not error.fault.errors:
        return f"HTTP {error.status_code}"
    return ", ".join(f"{e.resource}.{e.field}: {e.code}" for e in error.fault.errors)
