"""Athletes connecting the app: the result of an OAuth token exchange, stored durably."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from service.db import session_scope, upsert_insert
from service.ingest.crypto import TokenCipher
from service.models import Athlete, AthleteStatus
from service.strava.schemas import TokenResponse

log = logging.getLogger(__name__)


class TokenWithoutAthlete(Exception):
    """The token response names no athlete, so there is nobody to connect.

    Strava includes the athlete only in the first exchange of an authorization code
    (docs/strava.md §3.2); a refresh response never carries one (§3.3).
    """


# Columns a reconnect overwrites; `created_at` is kept from the first connection.
_RECONNECT_COLUMNS = (
    "username",
    "firstname",
    "lastname",
    "scopes",
    "status",
    "status_reason",
    "access_token_enc",
    "refresh_token_enc",
    "expires_at",
    "raw",
    "connected_at",
    "deauthorized_at",
    "updated_at",
)


def connect_athlete(
    engine: Engine, cipher: TokenCipher, token: TokenResponse, scopes: str, now: datetime
) -> Athlete:
    """Store the athlete of a token exchange as connected, with the tokens encrypted.

    A reconnect (also after a deauthorization) updates the same row: new tokens, the scopes
    granted this time, `connected` again. `scopes` is what the `scope` parameter of Strava's
    redirect names, the scopes the athlete accepted (docs/strava.md §3.1), not what we asked
    for. That parameter passes through the athlete's browser: it is a record, never a grant,
    and Strava itself refuses calls the real grant does not cover.
    """
    if token.athlete is None:
        raise TokenWithoutAthlete("the token response carries no athlete")
    summary = token.athlete
    values: dict[str, Any] = {
        "id": summary.id,
        "username": summary.username,
        "firstname": summary.firstname,
        "lastname": summary.lastname,
        "scopes": scopes,
        "status": AthleteStatus.CONNECTED.value,
        "status_reason": None,
        "access_token_enc": cipher.encrypt(token.access_token),
        "refresh_token_enc": cipher.encrypt(token.refresh_token),
        "expires_at": datetime.fromtimestamp(token.expires_at, UTC),
        "raw": summary.model_dump(mode="json"),
        "connected_at": now,
        "deauthorized_at": None,
        "created_at": now,
        "updated_at": now,
    }
    # One statement, so two callbacks racing for the same athlete cannot both insert.
    statement = upsert_insert(engine, Athlete).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["id"],
        set_={name: statement.excluded[name] for name in _RECONNECT_COLUMNS},
    )
    with session_scope(engine) as session:
        session.execute(statement)
        athlete = session.get_one(Athlete, summary.id, populate_existing=True)
    log.info("athlete connected athlete_id=%s scopes=%s", athlete.id, scopes)
    return athlete
