"""`strava-ingest athletes purge ID`, against PostgreSQL and the emulator: without --yes it
deletes nothing and counts what would go; with --yes it leaves what a confirmed
deauthorization leaves; with --revoke the grant is revoked at Strava first, and when Strava
fails nothing is deleted and the command fails."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select
from support import (
    TOKEN_KEY,
    FakeStrava,
    connect_new_emulator_athlete,
    service_env,
)

from service.cli import main
from service.ingest.crypto import TokenCipher
from service.ingest.events import WebhookEvent
from service.ingest.inbox import store_event
from service.ingest.purge import purge_athlete
from service.ingest.sync import start_job
from service.models import (
    Activity,
    ActivityRemoval,
    ActivityStream,
    Athlete,
    AthleteStatus,
    HydrationStatus,
    InboxEvent,
    PendingHydration,
    SyncJob,
    SyncKind,
    utcnow,
)


def purge(database_url: str, strava: FakeStrava, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["athletes", "purge", *args], env=service_env(database_url, strava)
    )


def with_data(engine: Engine, athlete_id: int) -> int:
    """The athlete with 3 activities (one with 2 streams), a tombstone, a pending fetch, an
    activity event with its payload and an active backfill."""
    now = utcnow()
    base = athlete_id * 10
    with Session(engine) as session:
        for n in range(3):
            session.add(
                Activity(
                    id=base + n,
                    athlete_id=athlete_id,
                    start_date=now - timedelta(days=n),
                    raw_summary={"id": base + n},
                    hydration_status=HydrationStatus.COMPLETE.value,
                )
            )
        session.flush()
        for kind in ("time", "distance"):
            session.add(ActivityStream(activity_id=base, type=kind, data=[0, 1]))
        session.add(
            ActivityRemoval(
                activity_id=base + 5, athlete_id=athlete_id, reason="deleted", event_time=1
            )
        )
        session.add(
            PendingHydration(
                activity_id=base + 6,
                athlete_id=athlete_id,
                inbox_id=1,
                due_at=now,
                requested_event_time=1,
            )
        )
        session.commit()
    store_event(
        engine,
        WebhookEvent(
            object_type="activity",
            object_id=base,
            aspect_type="update",
            owner_id=athlete_id,
            subscription_id=1,
            event_time=2,
            updates={"title": "Morning ride"},
        ),
    )
    start_job(engine, athlete_id, SyncKind.BACKFILL, now)
    return athlete_id


def what_is_left(engine: Engine, athlete_id: int) -> dict[str, Any]:
    """Everything of the athlete's that a purge touches, without ids and times."""
    with Session(engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
        left: dict[str, Any] = {
            table.__name__: session.exec(
                select(func.count()).select_from(table).where(table.athlete_id == athlete_id)
            ).one()
            for table in (Activity, ActivityRemoval, PendingHydration)
        }
        left["streams"] = session.exec(
            select(func.count())
            .select_from(ActivityStream)
            .where(ActivityStream.activity_id == athlete_id * 10)
        ).one()
        left["payloads"] = sorted(
            str(u)
            for u in session.exec(
                select(InboxEvent.updates).where(InboxEvent.owner_id == athlete_id)
            ).all()
        )
        left["jobs"] = sorted(
            session.exec(select(SyncJob.status).where(SyncJob.athlete_id == athlete_id)).all()
        )
    left["athlete"] = {
        "status": athlete.status,
        "tokens": (athlete.access_token_enc, athlete.refresh_token_enc, athlete.expires_at),
        "deauthorized": athlete.deauthorized_at is not None,
    }
    return left


def token_works(strava: FakeStrava, token: str) -> bool:
    answer = httpx.get(
        f"{strava.server.api_url}/athlete", headers={"authorization": f"Bearer {token}"}
    )
    return answer.status_code == 200


def access_token(engine: Engine, athlete_id: int) -> str:
    with Session(engine) as session:
        stored = session.get_one(Athlete, athlete_id).access_token_enc
    return TokenCipher(TOKEN_KEY).decrypt(stored or "")


def test_without_yes_it_deletes_nothing_and_counts_what_would_go(
    engine: Engine, database_url: str, strava: FakeStrava
) -> None:
    athlete_id = with_data(engine, connect_new_emulator_athlete(engine, strava))
    before = what_is_left(engine, athlete_id)

    result = purge(database_url, strava, str(athlete_id))

    assert result.exit_code == 1
    lines = {line.split()[0]: line.split()[1:] for line in result.output.splitlines() if line}
    assert lines["activities"] == ["3"]
    assert lines["streams"] == ["2"]
    assert lines["pending"] == ["fetches", "1"]
    assert lines["tombstones"] == ["1"]
    assert lines["event"] == ["payloads", "1"]
    assert lines["tokens"] == ["yes"]
    assert "cancel 1 active sync job(s)" in result.output
    assert "nothing deleted: add --yes" in result.output
    assert what_is_left(engine, athlete_id) == before


def test_with_yes_it_leaves_what_a_deauthorization_purge_leaves_and_calls_no_strava(
    engine: Engine, database_url: str, strava: FakeStrava
) -> None:
    by_command = with_data(engine, connect_new_emulator_athlete(engine, strava))
    by_deauthorization = with_data(engine, connect_new_emulator_athlete(engine, strava))
    purge_athlete(engine, by_deauthorization, utcnow())
    strava.emulator.reset_calls()

    result = purge(database_url, strava, str(by_command), "--yes")

    assert result.exit_code == 0, result.output
    assert f"athlete {by_command} purged: 3 activities deleted" in result.output
    assert what_is_left(engine, by_command) == what_is_left(engine, by_deauthorization)
    assert what_is_left(engine, by_command)["athlete"]["status"] == AthleteStatus.DEAUTHORIZED
    assert what_is_left(engine, by_command)["Activity"] == 0
    assert sum(strava.emulator.calls.values()) == 0


def test_with_revoke_the_grant_is_revoked_at_strava_before_the_purge(
    engine: Engine, database_url: str, strava: FakeStrava
) -> None:
    athlete_id = with_data(engine, connect_new_emulator_athlete(engine, strava))
    token = access_token(engine, athlete_id)
    assert token_works(strava, token)

    result = purge(database_url, strava, str(athlete_id), "--yes", "--revoke")

    assert result.exit_code == 0, result.output
    assert "grant revoked at Strava" in result.output
    assert strava.emulator.calls["POST /oauth/deauthorize"] == 1
    assert not token_works(strava, token)
    left = what_is_left(engine, athlete_id)
    assert (left["Activity"], left["streams"], left["athlete"]["status"]) == (
        0,
        0,
        AthleteStatus.DEAUTHORIZED,
    )


def test_with_revoke_when_strava_fails_nothing_is_deleted_and_the_command_fails(
    engine: Engine, database_url: str, strava: FakeStrava
) -> None:
    athlete_id = with_data(engine, connect_new_emulator_athlete(engine, strava))
    before = what_is_left(engine, athlete_id)
    token = access_token(engine, athlete_id)
    strava.emulator.fail_next(1, 503)

    result = purge(database_url, strava, str(athlete_id), "--yes", "--revoke")

    assert result.exit_code == 1
    assert "nothing deleted: Strava did not confirm the revoke" in result.output
    assert what_is_left(engine, athlete_id) == before
    assert token_works(strava, token)


def test_an_unknown_athlete_is_refused(
    engine: Engine, database_url: str, strava: FakeStrava
) -> None:
    result = purge(database_url, strava, "424242", "--yes")

    assert result.exit_code == 1
    assert "athlete 424242 is unknown" in result.output


def test_with_revoke_an_athlete_already_deauthorized_is_purged_again_without_a_call(
    engine: Engine, database_url: str, strava: FakeStrava
) -> None:
    athlete_id = connect_new_emulator_athlete(engine, strava)
    purge_athlete(engine, athlete_id, utcnow())
    with_data(engine, athlete_id)  # rows that arrived after the purge
    strava.emulator.reset_calls()

    result = purge(database_url, strava, str(athlete_id), "--yes", "--revoke")

    assert result.exit_code == 0, result.output
    assert "already deauthorized, nothing to revoke" in result.output
    assert sum(strava.emulator.calls.values()) == 0
    assert what_is_left(engine, athlete_id)["Activity"] == 0
