"""Disconnecting an athlete on the product's request: revoke the grant at Strava, then purge.

The purge is the one a confirmed deauthorization event runs (service/ingest/purge.py), and
it runs only once Strava has confirmed the grant is gone: the revoke answered 200, or 401
(the token is already dead: docs/strava.md §3.4), or Strava already rejects the refresh
token. When Strava fails (5xx, no answer) the error propagates and nothing is purged, so a
request can never destroy data Strava still grants us. Disconnecting an athlete who is
already deauthorized revokes nothing and answers their state.

Revoking goes through `GrantRevoker`: Strava announced a new revoke endpoint to replace
`/oauth/deauthorize` (§3.4), and `grant_revoker` is the one place that picks the
implementation.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Protocol

from service.ingest.athlete_status import AthleteState, UnknownAthlete, athlete_state
from service.ingest.context import IngestContext
from service.ingest.purge import purge_athlete
from service.ingest.tokens import revoking_token
from service.models import AthleteStatus
from service.strava.client import StravaClient
from service.strava.errors import Unauthorized
from service.strava.quota import Tier, using_tier

log = logging.getLogger(__name__)


class Revocation(StrEnum):
    """How Strava confirmed that the grant is gone."""

    REVOKED = "revoked"  # this call revoked it
    ALREADY_REVOKED = "already_revoked"  # Strava refused the token: nothing left to revoke


class GrantRevoker(Protocol):
    """Revokes an athlete's grant at Strava with one of their access tokens. Returns how
    Strava confirmed it; raises StravaError when Strava did not answer either way."""

    def revoke(self, access_token: str) -> Revocation: ...


class StravaDeauthorize:
    """`POST /oauth/deauthorize` (docs/strava.md §3.4): 200 revokes every token of the
    athlete; 401 says the token is already dead."""

    def __init__(self, strava: StravaClient) -> None:
        self.strava = strava

    def revoke(self, access_token: str) -> Revocation:
        try:
            self.strava.deauthorize(access_token)
        except Unauthorized:
            return Revocation.ALREADY_REVOKED
        return Revocation.REVOKED


def grant_revoker(ctx: IngestContext) -> GrantRevoker:
    """The revoker this service uses: the one place to switch to another revoke endpoint."""
    return StravaDeauthorize(ctx.strava)


def disconnect_athlete(
    ctx: IngestContext, athlete_id: int, revoker: GrantRevoker | None = None
) -> AthleteState:
    """Revoke the athlete's grant at Strava (at the `on_demand` tier: someone is waiting),
    then purge their data; the athlete's state after. UnknownAthlete for an athlete never
    known. Raises StravaError or QuotaExceeded, having purged nothing, when Strava could not
    confirm."""
    state = athlete_state(ctx.engine, athlete_id)
    if state.status == AthleteStatus.DEAUTHORIZED:
        return state
    with using_tier(Tier.ON_DEMAND):
        token = revoking_token(ctx, athlete_id)
        if token is None:
            revocation = Revocation.ALREADY_REVOKED
        else:
            revocation = (revoker or grant_revoker(ctx)).revoke(token)
    if not purge_athlete(ctx.engine, athlete_id, ctx.clock()):
        raise UnknownAthlete(f"athlete {athlete_id} is unknown")
    log.info("athlete disconnected athlete_id=%s revocation=%s", athlete_id, revocation.value)
    return athlete_state(ctx.engine, athlete_id)
