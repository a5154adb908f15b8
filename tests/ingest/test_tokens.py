"""Single-flight token refresh against the emulator's rotating refresh tokens."""

import threading
from collections.abc import Callable

import pytest
from sqlmodel import Session
from support import FakeStrava

from service.ingest.context import IngestContext
from service.ingest.tokens import AthleteNeedsReauth, access_token_for
from service.models import Athlete, AthleteStatus, utcnow
from service.strava.quota import Tier, using_tier


def expire_token(ctx: IngestContext, athlete_id: int) -> None:
    with Session(ctx.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
        athlete.expires_at = utcnow()
        session.add(athlete)
        session.commit()


def stored(ctx: IngestContext, athlete_id: int) -> Athlete:
    with Session(ctx.engine) as session:
        return session.get_one(Athlete, athlete_id)


def test_a_fresh_token_is_used_without_calling_strava(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    token = access_token_for(ctx, athlete_id)

    assert token
    assert strava.emulator.calls["POST /oauth/token"] == 0


def test_two_workers_refreshing_at_once_call_the_token_endpoint_once(
    make_ctx: Callable[[], IngestContext], strava: FakeStrava, athlete_id: int
) -> None:
    workers = [make_ctx(), make_ctx()]  # separate clients, locks and connections
    expire_token(workers[0], athlete_id)
    start = threading.Barrier(len(workers))
    tokens: list[str] = []

    def refresh(ctx: IngestContext) -> None:
        start.wait()
        with using_tier(Tier.WEBHOOK):
            tokens.append(access_token_for(ctx, athlete_id))

    threads = [threading.Thread(target=refresh, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert strava.emulator.calls["POST /oauth/token"] == 1
    assert len(tokens) == 2
    assert tokens[0] == tokens[1]
    athlete = stored(workers[0], athlete_id)
    assert athlete.expires_at is not None
    assert athlete.expires_at > utcnow()


def test_a_rejected_refresh_token_marks_the_athlete_needs_reauth(
    ctx: IngestContext, strava: FakeStrava, athlete_id: int
) -> None:
    expire_token(ctx, athlete_id)
    strava.emulator.deauthorize(athlete_id, send_event=False)  # Strava forgets its tokens

    with pytest.raises(AthleteNeedsReauth):
        access_token_for(ctx, athlete_id)

    athlete = stored(ctx, athlete_id)
    assert athlete.status == AthleteStatus.NEEDS_REAUTH
    assert athlete.status_reason is not None
    assert "refresh_token" in athlete.status_reason
    assert strava.emulator.calls["POST /oauth/token"] == 1
