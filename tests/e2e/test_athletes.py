"""The athletes routes through the real processes: an athlete connects, their backfill runs,
`GET /athletes/{id}` and `GET /athletes` show it, and the product's disconnect revokes the
grant at the emulator and purges them. Once per deployment (production: PostgreSQL, Redis,
web, worker and scheduler processes; embedded: one `serve` process on SQLite)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from e2e.processes import Service, connect
from launch import wait_until
from sqlmodel import Session, func, select
from support import ADMIN, READ, TOKEN_KEY, FakeStrava

from service.ingest.crypto import TokenCipher
from service.models import Activity, Athlete

pytestmark = pytest.mark.e2e

DEADLINE = 30.0


def backfilled(service: Service, athlete_id: int) -> dict[str, Any]:
    """The athlete's state once their backfill completed and every activity is hydrated."""

    def done() -> dict[str, Any] | None:
        state = httpx.get(f"{service.url}/athletes/{athlete_id}", headers=READ).json()
        job = state["sync_job"]
        counts = state["activities"]
        finished = job is not None and job["status"] == "completed"
        return state if finished and counts["complete"] == counts["total"] > 0 else None

    found = wait_until(done, timeout=DEADLINE, what="the backfill to complete")
    assert isinstance(found, dict)
    return found


def test_an_athlete_is_shown_after_their_backfill_and_disconnect_revokes_and_purges(
    service: Service, strava: FakeStrava
) -> None:
    athlete_id = connect(service.url)
    state = backfilled(service, athlete_id)
    with Session(service.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
        token = TokenCipher(TOKEN_KEY).decrypt(athlete.access_token_enc or "")

    listed = httpx.get(f"{service.url}/athletes", headers=ADMIN).json()
    disconnected = httpx.post(f"{service.url}/athletes/{athlete_id}/disconnect", headers=READ)

    assert state["status"] == "connected"
    assert state["activities"]["total"] == len(strava.emulator.activities_of(athlete_id))
    assert state["sync_job"]["kind"] == "backfill"
    assert listed["athletes"] == [state]
    assert listed["next_cursor"] is None
    assert disconnected.status_code == 200, disconnected.text
    assert disconnected.json()["status"] == "deauthorized"
    assert disconnected.json()["activities"]["total"] == 0
    revoked = httpx.get(
        f"{strava.server.api_url}/athlete", headers={"authorization": f"Bearer {token}"}
    )
    assert revoked.status_code == 401
    with Session(service.engine) as session:
        left = session.exec(
            select(func.count()).select_from(Activity).where(Activity.athlete_id == athlete_id)
        ).one()
    assert left == 0


def test_disconnect_answers_502_and_keeps_everything_while_strava_fails(
    service: Service, strava: FakeStrava
) -> None:
    athlete_id = connect(service.url)
    state = backfilled(service, athlete_id)
    strava.emulator.fail_next(1, 502)

    failed = httpx.post(f"{service.url}/athletes/{athlete_id}/disconnect", headers=READ)

    assert failed.status_code == 502
    assert failed.json()["reason"] == "strava_failed"
    after = httpx.get(f"{service.url}/athletes/{athlete_id}", headers=READ).json()
    assert after == state
