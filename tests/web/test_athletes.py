"""GET /athletes, GET /athletes/{id} and POST /athletes/{id}/disconnect, in production mode
(PostgreSQL) and embedded mode (SQLite), with the emulator as Strava."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select
from support import ADMIN, READ, TOKEN_KEY, Deployed, FakeStrava, connect_emulator_athlete

from service.ingest.crypto import TokenCipher
from service.ingest.purge import purge_athlete
from service.ingest.sync import start_job
from service.models import Activity, Athlete, AthleteStatus, HydrationStatus, SyncKind, utcnow

WRONG = {"authorization": "Bearer not-a-key-of-ours"}
_activity_ids = itertools.count(9_000_000_001)


def add_activities(engine: Engine, athlete_id: int, *statuses: HydrationStatus) -> None:
    with Session(engine) as session:
        for status in statuses:
            session.add(
                Activity(id=next(_activity_ids), athlete_id=athlete_id, hydration_status=status)
            )
        session.commit()


def needs_reauth(engine: Engine, athlete_id: int, reason: str) -> None:
    """As service/ingest/tokens.py marks an athlete whose refresh token Strava rejected."""
    with Session(engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
        athlete.status = AthleteStatus.NEEDS_REAUTH.value
        athlete.status_reason = reason
        session.add(athlete)
        session.commit()


def new_athlete(deployed: Deployed, strava: FakeStrava) -> int:
    return connect_emulator_athlete(deployed.engine, strava, strava.emulator.add_athlete())


def access_token(engine: Engine, athlete_id: int) -> str:
    with Session(engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
        return TokenCipher(TOKEN_KEY).decrypt(athlete.access_token_enc or "")


def token_works(strava: FakeStrava, token: str) -> bool:
    answer = httpx.get(
        f"{strava.server.api_url}/athlete", headers={"authorization": f"Bearer {token}"}
    )
    return answer.status_code == 200


def activity_count(engine: Engine, athlete_id: int) -> int:
    with Session(engine) as session:
        return session.exec(
            select(func.count()).select_from(Activity).where(Activity.athlete_id == athlete_id)
        ).one()


def walk(deployed: Deployed, **params: Any) -> list[list[int]]:
    """Every page of GET /athletes, as lists of ids."""
    pages: list[list[int]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        answer = deployed.client.get("/athletes", params=query, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages.append([athlete["id"] for athlete in body["athletes"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


# -- keys ----------------------------------------------------------------------------------


@pytest.fixture
def athlete_id(deployed: Deployed, strava: FakeStrava) -> int:
    return connect_emulator_athlete(deployed.engine, strava)


ROUTES = [
    ("GET", "/athletes"),
    ("GET", "/athletes/{id}"),
    ("POST", "/athletes/{id}/disconnect"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_athletes_route_wants_a_key_and_refuses_a_wrong_one(
    deployed: Deployed, athlete_id: int, method: str, path: str
) -> None:
    url = path.format(id=athlete_id)

    missing = deployed.client.request(method, url)
    wrong = deployed.client.request(method, url, headers=WRONG)

    assert missing.status_code == 401
    assert missing.json()["reason"] == "api_key_missing"
    assert wrong.status_code == 403
    assert wrong.json()["reason"] == "api_key_wrong"
    assert activity_count(deployed.engine, athlete_id) == 0
    with Session(deployed.engine) as session:
        assert session.get_one(Athlete, athlete_id).status == AthleteStatus.CONNECTED


def test_a_read_key_reaches_one_athlete_and_disconnect_but_not_the_list(
    deployed: Deployed, athlete_id: int
) -> None:
    assert deployed.client.get("/athletes", headers=READ).status_code == 403
    assert deployed.client.get(f"/athletes/{athlete_id}", headers=READ).status_code == 200
    disconnected = deployed.client.post(f"/athletes/{athlete_id}/disconnect", headers=READ)
    assert disconnected.status_code == 200
    assert disconnected.json()["status"] == "deauthorized"


def test_an_admin_key_reaches_every_athletes_route(deployed: Deployed, athlete_id: int) -> None:
    assert deployed.client.get("/athletes", headers=ADMIN).status_code == 200
    assert deployed.client.get(f"/athletes/{athlete_id}", headers=ADMIN).status_code == 200
    disconnected = deployed.client.post(f"/athletes/{athlete_id}/disconnect", headers=ADMIN)
    assert disconnected.status_code == 200


# -- state ---------------------------------------------------------------------------------


def test_an_athlete_shows_status_scopes_counts_by_hydration_status_and_the_last_job(
    deployed: Deployed, athlete_id: int
) -> None:
    add_activities(
        deployed.engine,
        athlete_id,
        HydrationStatus.COMPLETE,
        HydrationStatus.COMPLETE,
        HydrationStatus.NONE,
        HydrationStatus.FAILED,
    )
    job = start_job(deployed.engine, athlete_id, SyncKind.BACKFILL, utcnow()).job

    answer = deployed.client.get(f"/athletes/{athlete_id}", headers=READ)

    assert answer.status_code == 200
    body = answer.json()
    assert body["id"] == athlete_id
    assert body["status"] == "connected"
    assert body["status_reason"] is None
    assert body["scopes"] == ["read", "activity:read_all"]
    assert body["connected_at"].endswith(("Z", "+00:00"))
    assert body["activities"] == {
        "none": 1,
        "pending": 0,
        "partial": 0,
        "complete": 2,
        "not_available": 0,
        "failed": 1,
        "total": 4,
    }
    assert body["sync_job"] == {
        "id": job.id,
        "kind": "backfill",
        "status": "queued",
        "cancel_requested": False,
        "created_at": body["sync_job"]["created_at"],
        "started_at": None,
        "finished_at": None,
        "last_error": None,
    }


def test_the_list_shows_each_status_with_the_reason_a_reconnect_is_needed(
    deployed: Deployed, strava: FakeStrava, athlete_id: int
) -> None:
    stale = new_athlete(deployed, strava)
    needs_reauth(deployed.engine, stale, "Strava rejected the refresh token (HTTP 400)")
    gone = new_athlete(deployed, strava)
    purge_athlete(deployed.engine, gone, utcnow())

    answer = deployed.client.get("/athletes", headers=ADMIN)

    assert answer.status_code == 200
    by_id = {athlete["id"]: athlete for athlete in answer.json()["athletes"]}
    assert by_id[athlete_id]["status"] == "connected"
    assert by_id[stale]["status"] == "needs_reauth"
    assert by_id[stale]["status_reason"] == "Strava rejected the refresh token (HTTP 400)"
    assert by_id[gone]["status"] == "deauthorized"
    assert by_id[gone]["deauthorized_at"] is not None
    assert by_id[gone]["sync_job"] is None


def test_the_list_filters_by_one_or_more_statuses(
    deployed: Deployed, strava: FakeStrava, athlete_id: int
) -> None:
    stale = new_athlete(deployed, strava)
    needs_reauth(deployed.engine, stale, "Strava says the token lacks a permission")
    gone = new_athlete(deployed, strava)
    purge_athlete(deployed.engine, gone, utcnow())

    only_gone = walk(deployed, status="deauthorized")
    both = walk(deployed, status=["needs_reauth", "deauthorized"])

    assert only_gone == [[gone]]
    assert sorted(both[0]) == sorted([stale, gone])


def test_an_unknown_status_filter_is_refused_naming_the_parameter(deployed: Deployed) -> None:
    answer = deployed.client.get("/athletes", params={"status": "sleeping"}, headers=ADMIN)

    assert answer.status_code == 400
    assert answer.json()["fields"][0]["name"].startswith("status")


@pytest.mark.parametrize("unknown", ["424242", "0", str(2**63), "9" * 40])
def test_an_unknown_athlete_is_404_on_read_and_on_disconnect(
    deployed: Deployed, unknown: str
) -> None:
    read = deployed.client.get(f"/athletes/{unknown}", headers=READ)
    disconnect = deployed.client.post(f"/athletes/{unknown}/disconnect", headers=READ)

    for answer in (read, disconnect):
        assert answer.status_code == 404
        assert answer.json()["reason"] == "not_found"


# -- pagination ----------------------------------------------------------------------------


def test_pages_cover_every_athlete_once_in_id_order(
    deployed: Deployed, strava: FakeStrava, athlete_id: int
) -> None:
    ids = sorted([athlete_id, *(new_athlete(deployed, strava) for _ in range(6))])

    pages = walk(deployed, limit=3)

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [i for page in pages for i in page] == ids


def test_athletes_connecting_and_leaving_between_pages_shift_nothing(
    deployed: Deployed, strava: FakeStrava, athlete_id: int
) -> None:
    ids = sorted([athlete_id, *(new_athlete(deployed, strava) for _ in range(4))])
    first = deployed.client.get("/athletes", params={"limit": 2}, headers=ADMIN).json()
    purge_athlete(deployed.engine, ids[0], utcnow())  # on the page already read
    late = new_athlete(deployed, strava)

    rest = walk(deployed, limit=2, cursor=first["next_cursor"])

    seen = [a["id"] for a in first["athletes"]] + [i for page in rest for i in page]
    assert seen == [*ids, late]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda cursor: cursor[:-1] + ("A" if cursor[-1] != "A" else "B"),
        lambda cursor: ("e" if cursor[0] != "e" else "f") + cursor[1:],
        lambda cursor: "not-a-cursor",
        lambda cursor: cursor + "." + cursor,
        lambda cursor: "é" + cursor,
    ],
    ids=["signature", "payload", "garbage", "doubled", "non-ascii"],
)
def test_a_tampered_cursor_is_refused_with_400(
    deployed: Deployed, strava: FakeStrava, athlete_id: int, tamper: Any
) -> None:
    new_athlete(deployed, strava)
    cursor = deployed.client.get("/athletes", params={"limit": 1}, headers=ADMIN).json()[
        "next_cursor"
    ]

    answer = deployed.client.get("/athletes", params={"cursor": tamper(cursor)}, headers=ADMIN)

    assert answer.status_code == 400
    assert answer.json()["reason"] == "cursor"


@pytest.mark.parametrize("limit", ["0", "201", "many"])
def test_a_limit_outside_1_to_200_is_refused(deployed: Deployed, limit: str) -> None:
    answer = deployed.client.get("/athletes", params={"limit": limit}, headers=ADMIN)

    assert answer.status_code == 400
    assert answer.json()["fields"][0]["name"] == "limit"


# -- disconnect ----------------------------------------------------------------------------


def test_disconnect_revokes_at_strava_then_purges_the_athlete(
    deployed: Deployed, strava: FakeStrava, athlete_id: int
) -> None:
    add_activities(deployed.engine, athlete_id, HydrationStatus.COMPLETE, HydrationStatus.NONE)
    token = access_token(deployed.engine, athlete_id)
    assert token_works(strava, token)

    answer = deployed.client.post(f"/athletes/{athlete_id}/disconnect", headers=READ)

    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "deauthorized"
    assert body["activities"]["total"] == 0
    assert strava.emulator.calls["POST /oauth/deauthorize"] == 1
    assert not token_works(strava, token)
    assert activity_count(deployed.engine, athlete_id) == 0
    with Session(deployed.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
    assert (athlete.access_token_enc, athlete.refresh_token_enc) == (None, None)


def test_disconnect_purges_nothing_and_answers_502_when_strava_fails(
    deployed: Deployed, strava: FakeStrava, athlete_id: int
) -> None:
    add_activities(deployed.engine, athlete_id, HydrationStatus.COMPLETE)
    token = access_token(deployed.engine, athlete_id)
    strava.emulator.fail_next(1, 503)

    answer = deployed.client.post(f"/athletes/{athlete_id}/disconnect", headers=READ)

    assert answer.status_code == 502
    assert answer.json()["reason"] == "strava_failed"
    assert "nothing was deleted" in answer.json()["error"]
    assert activity_count(deployed.engine, athlete_id) == 1
    assert token_works(strava, token)
    with Session(deployed.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
    assert athlete.status == AthleteStatus.CONNECTED
    assert athlete.access_token_enc is not None


def test_disconnect_answers_503_and_purges_nothing_when_strava_rate_limits_it(
    deployed: Deployed, strava: FakeStrava, athlete_id: int
) -> None:
    add_activities(deployed.engine, athlete_id, HydrationStatus.COMPLETE)
    strava.emulator.fail_next(1, 429)

    answer = deployed.client.post(f"/athletes/{athlete_id}/disconnect", headers=READ)

    assert answer.status_code == 503
    assert answer.json()["reason"] == "rate_limited"
    assert activity_count(deployed.engine, athlete_id) == 1


def test_disconnect_after_the_athlete_revoked_on_strava_purges_on_its_401(
    deployed: Deployed, strava: FakeStrava, athlete_id: int
) -> None:
    add_activities(deployed.engine, athlete_id, HydrationStatus.COMPLETE)
    strava.emulator.deauthorize(athlete_id, send_event=False)

    answer = deployed.client.post(f"/athletes/{athlete_id}/disconnect", headers=READ)

    assert answer.status_code == 200
    assert answer.json()["status"] == "deauthorized"
    assert activity_count(deployed.engine, athlete_id) == 0


def test_disconnect_of_an_athlete_who_must_reconnect_still_revokes_the_grant(
    deployed: Deployed, strava: FakeStrava, athlete_id: int
) -> None:
    token = access_token(deployed.engine, athlete_id)
    needs_reauth(deployed.engine, athlete_id, "Strava says the token lacks a permission")

    answer = deployed.client.post(f"/athletes/{athlete_id}/disconnect", headers=READ)

    assert answer.status_code == 200
    assert answer.json()["status"] == "deauthorized"
    assert answer.json()["status_reason"] is None
    assert strava.emulator.calls["POST /oauth/deauthorize"] == 1
    assert not token_works(strava, token)


def test_disconnecting_again_answers_the_state_without_calling_strava(
    deployed: Deployed, strava: FakeStrava, athlete_id: int
) -> None:
    first = deployed.client.post(f"/athletes/{athlete_id}/disconnect", headers=READ)

    again = deployed.client.post(f"/athletes/{athlete_id}/disconnect", headers=READ)

    assert again.status_code == 200
    assert again.json() == first.json()
    assert strava.emulator.calls["POST /oauth/deauthorize"] == 1
