"""Disconnecting an athlete: the grant is revoked at Strava (the emulator) with the athlete's
token, refreshed when it ran out, and only then is the athlete purged, exactly as a confirmed
deauthorization event purges them. On real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import Session, func, select
from support import CLIENT_ID, CLIENT_SECRET, TOKEN_KEY, FakeStrava, connect_emulator_athlete
from support import stored_event as stored

from service.ingest.context import IngestContext
from service.ingest.crypto import TokenCipher
from service.ingest.disconnect import StravaDeauthorize, disconnect_athlete
from service.ingest.process import process_event
from service.ingest.sync import start_job
from service.models import (
    Activity,
    ActivityRemoval,
    Athlete,
    AthleteStatus,
    InboxEvent,
    PendingHydration,
    SyncJob,
    SyncKind,
    utcnow,
)
from service.strava.client import StravaClient
from service.strava.errors import Transient
from service.strava.quota import Tier, using_tier


def with_data(ctx: IngestContext, strava: FakeStrava, athlete_id: int) -> int:
    """The athlete with a hydrated and titled activity, a tombstone, a pending fetch and an
    active sync job, all arrived through webhook events."""
    ctx.coalesce_window = timedelta(0)
    with using_tier(Tier.WEBHOOK):
        kept = strava.emulator.create_activity(athlete_id)
        process_event(ctx, stored(ctx, kept["id"], athlete_id, "create"))
        process_event(ctx, stored(ctx, kept["id"], athlete_id, "update", updates={"title": "M"}))
        removed = strava.emulator.create_activity(athlete_id)
        strava.emulator.delete_activity(removed["id"])
        process_event(ctx, stored(ctx, removed["id"], athlete_id, "delete"))
        ctx.coalesce_window = timedelta(minutes=5)
        pending = strava.emulator.create_activity(athlete_id)
        process_event(ctx, stored(ctx, pending["id"], athlete_id, "create"))
        ctx.coalesce_window = timedelta(0)
    start_job(ctx.engine, athlete_id, SyncKind.BACKFILL, utcnow())
    return athlete_id


def what_is_left(ctx: IngestContext, athlete_id: int) -> dict[str, Any]:
    """Everything of the athlete's that a purge touches, without ids and times."""
    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
        left: dict[str, Any] = {
            table.__name__: session.exec(
                select(func.count()).select_from(table).where(table.athlete_id == athlete_id)
            ).one()
            for table in (Activity, ActivityRemoval, PendingHydration)
        }
        left["activity event payloads"] = sorted(
            str(updates)
            for updates in session.exec(
                select(InboxEvent.updates)
                .where(InboxEvent.owner_id == athlete_id)
                .where(InboxEvent.object_type == "activity")
            ).all()
        )
        left["jobs"] = sorted(
            session.exec(select(SyncJob.status).where(SyncJob.athlete_id == athlete_id)).all()
        )
    left["athlete"] = {
        "status": athlete.status,
        "tokens": (athlete.access_token_enc, athlete.refresh_token_enc, athlete.expires_at),
        "profile": (athlete.username, athlete.firstname, athlete.lastname, athlete.raw),
        "deauthorized": athlete.deauthorized_at is not None,
    }
    return left


def token_of(ctx: IngestContext, athlete_id: int) -> str:
    with Session(ctx.engine) as session:
        return TokenCipher(TOKEN_KEY).decrypt(
            session.get_one(Athlete, athlete_id).access_token_enc or ""
        )


def token_works(strava: FakeStrava, token: str) -> bool:
    answer = httpx.get(
        f"{strava.server.api_url}/athlete", headers={"authorization": f"Bearer {token}"}
    )
    return answer.status_code == 200


def test_disconnect_leaves_exactly_what_a_confirmed_deauthorization_event_leaves(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    disconnected = with_data(ctx, strava, athlete_id)
    revoking = with_data(
        ctx, strava, connect_emulator_athlete(ctx.engine, strava, strava.emulator.add_athlete())
    )
    strava.emulator.deauthorize(revoking, send_event=False)
    with using_tier(Tier.WEBHOOK):
        process_event(
            ctx,
            stored(
                ctx,
                revoking,
                revoking,
                "update",
                object_type="athlete",
                updates={"authorized": "false"},
            ),
        )

    state = disconnect_athlete(ctx, disconnected)

    assert state.status == AthleteStatus.DEAUTHORIZED
    assert what_is_left(ctx, disconnected) == what_is_left(ctx, revoking)
    assert what_is_left(ctx, disconnected)["Activity"] == 0
    assert what_is_left(ctx, disconnected)["jobs"] == ["cancelled"]


def test_disconnect_refreshes_a_run_out_token_before_revoking_with_it(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
        athlete.expires_at = utcnow() - timedelta(minutes=1)
        session.add(athlete)
        session.commit()
    strava.emulator.reset_calls()

    disconnect_athlete(ctx, athlete_id)

    assert strava.emulator.calls["POST /oauth/token"] == 1
    assert strava.emulator.calls["POST /oauth/deauthorize"] == 1
    assert athlete_id not in strava.emulator.tokens.authorized


def test_disconnect_purges_without_a_revoke_when_strava_already_rejects_the_refresh_token(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
        athlete.expires_at = utcnow() - timedelta(minutes=1)
        session.add(athlete)
        session.commit()
    strava.emulator.deauthorize(athlete_id, send_event=False)
    strava.emulator.reset_calls()

    state = disconnect_athlete(ctx, athlete_id)

    assert state.status == AthleteStatus.DEAUTHORIZED
    assert strava.emulator.calls["POST /oauth/token"] == 1
    assert strava.emulator.calls["POST /oauth/deauthorize"] == 0


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_at_strava_purges_nothing(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int, status: int
) -> None:
    with_data(ctx, strava, athlete_id)
    before = what_is_left(ctx, athlete_id)
    strava.emulator.fail_next(1, status)

    with pytest.raises(Transient):
        disconnect_athlete(ctx, athlete_id)

    assert what_is_left(ctx, athlete_id) == before
    assert token_works(strava, token_of(ctx, athlete_id))


def test_no_answer_from_strava_purges_nothing(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    before = what_is_left(ctx, athlete_id)
    # Nothing listens on the discard port: the connection is refused.
    unreachable = StravaClient(
        api_url="http://127.0.0.1:9/api/v3",
        oauth_url="http://127.0.0.1:9/oauth",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        timeout=2.0,
    )

    with unreachable, pytest.raises(Transient):
        disconnect_athlete(ctx, athlete_id, StravaDeauthorize(unreachable))

    assert what_is_left(ctx, athlete_id) == before
    assert token_works(strava, token_of(ctx, athlete_id))
