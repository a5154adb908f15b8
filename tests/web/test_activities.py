"""The product API's activity routes in each mode: keys, pages and their cursors, filters,
bounds, one activity with what hydration stored, on-demand queueing, and CORS."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from activity_support import BASE, hydrated_activity, minutes, stored_activity, stored_athlete
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker
from starlette.testclient import TestClient
from support import ADMIN, READ, Deployed

from service.config import Settings
from service.ingest.activity_reads import SUMMARY_COLUMNS
from service.messaging import HYDRATE_QUEUE, ON_DEMAND_QUEUE
from service.models import AthleteStatus
from service.web.activities import ActivitiesPage, ActivitySummary
from service.web.app import create_app
from service.web.state import WEB_STATE_KEY, WebState

ATHLETE = 701
OTHER = 702


def state_of(client: TestClient) -> WebState:
    state: WebState = getattr(client.app.state, WEB_STATE_KEY)  # type: ignore[attr-defined]
    return state


def on_demand_messages(deployed: Deployed) -> list[tuple[int, str]]:
    broker = state_of(deployed.client).broker
    assert isinstance(broker, StubBroker)
    assert broker.queues[HYDRATE_QUEUE].qsize() == 0
    encoded = list(broker.queues[ON_DEMAND_QUEUE].queue)
    return [tuple(Message.decode(data).args) for data in encoded]  # type: ignore[misc]


@pytest.fixture
def athlete(deployed: Deployed) -> int:
    stored_athlete(deployed.engine, OTHER)
    return stored_athlete(deployed.engine, ATHLETE)


def walk(client: TestClient, path: str, params: dict[str, object]) -> list[int]:
    ids: list[int] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=query, headers=READ)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        body = response.json()
        ids.extend(item["id"] for item in body["activities"])
        cursor = body["next_cursor"]
        if cursor is None:
            return ids


# -- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"/athletes/{ATHLETE}/activities",
        f"/athletes/{ATHLETE}/activities/latest",
        "/activities/{activity}",
        "/activities/{activity}/streams",
    ],
)
def test_every_route_wants_a_read_or_admin_key(deployed: Deployed, athlete: int, path: str) -> None:
    activity = hydrated_activity(deployed.engine, athlete, BASE)
    url = path.format(activity=activity)
    client = deployed.client

    missing = client.get(url)
    assert missing.status_code == 401
    assert missing.json()["reason"] == "api_key_missing"
    wrong = client.get(url, headers={"authorization": "Bearer not-a-key-of-ours-000"})
    assert wrong.status_code == 403
    assert wrong.json()["reason"] == "api_key_wrong"
    assert client.get(url, headers=READ).status_code == 200
    assert client.get(url, headers=ADMIN).status_code == 200


# -- listing ------------------------------------------------------------------------------


def test_the_listing_pages_newest_first_with_an_opaque_cursor(
    deployed: Deployed, athlete: int
) -> None:
    ids = [stored_activity(deployed.engine, athlete, BASE - minutes(i // 2)) for i in range(7)]
    stored_activity(deployed.engine, OTHER, BASE + minutes(1))
    # Newest first (the smallest offset back), ties by the larger id.
    expected = sorted(ids, key=lambda i: (ids.index(i) // 2, -i))

    assert walk(deployed.client, f"/athletes/{athlete}/activities", {"limit": 3}) == expected
    first = deployed.client.get(f"/athletes/{athlete}/activities", headers=READ).json()
    assert first["next_cursor"] is None
    item = first["activities"][0]
    assert item["hydration_status"] == "none"
    assert item["start_date"].endswith("Z") or item["start_date"].endswith("+00:00")
    assert "raw_summary" not in item


def test_a_listed_activity_is_exactly_the_documented_summary(
    deployed: Deployed, athlete: int
) -> None:
    hydrated_activity(deployed.engine, athlete, BASE)
    page = deployed.client.get(f"/athletes/{athlete}/activities", headers=READ).json()
    # The listing serialises its rows as they are read, so the columns read must be the
    # model's fields: the OpenAPI document describes the page with that model.
    assert tuple(ActivitySummary.model_fields) == SUMMARY_COLUMNS
    ActivitiesPage.model_validate(page)
    assert set(page["activities"][0]) == set(ActivitySummary.model_fields)


def test_latest_is_the_newest_activity(deployed: Deployed, athlete: int) -> None:
    hydrated_activity(deployed.engine, athlete, BASE - minutes(5))
    newest = hydrated_activity(deployed.engine, athlete, BASE)
    body = deployed.client.get(f"/athletes/{athlete}/activities/latest", headers=READ).json()
    assert body["id"] == newest
    assert body["hydration_status"] == "complete"


def test_unknown_athletes_and_activities_are_404(deployed: Deployed, athlete: int) -> None:
    client = deployed.client
    for path in (
        "/athletes/999/activities",
        "/athletes/999/activities/latest",
        "/activities/999",
        "/activities/999/streams",
        f"/activities/{2**64}",
        f"/athletes/{2**64}/activities",
    ):
        response = client.get(path, headers=READ)
        assert response.status_code == 404, path
        assert response.json()["reason"] == "not_found"
    # A known athlete without activities: an empty page, and no latest.
    assert client.get(f"/athletes/{athlete}/activities", headers=READ).json() == {
        "activities": [],
        "next_cursor": None,
    }
    assert client.get(f"/athletes/{athlete}/activities/latest", headers=READ).status_code == 404


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"after": str(int((BASE - minutes(2)).timestamp()))}, ["now", "soon_before"]),
        ({"after": (BASE - minutes(2)).isoformat()}, ["now", "soon_before"]),
        ({"before": (BASE - minutes(2)).isoformat().replace("+00:00", "Z")}, ["race", "ride"]),
        ({"sport_type": ["Ride", "Swim"]}, ["ride"]),
        ({"sport_type": "Run"}, ["now", "soon_before", "race"]),
        ({"workout_type": 1}, ["race"]),
        ({"hydration_status": "complete"}, ["soon_before"]),
        ({"hydration_status": ["complete", "failed"]}, ["soon_before", "ride"]),
    ],
)
def test_each_filter(
    deployed: Deployed, athlete: int, params: dict[str, object], names: list[str]
) -> None:
    engine = deployed.engine
    stored = {
        "now": stored_activity(engine, athlete, BASE),
        "soon_before": stored_activity(
            engine, athlete, BASE - minutes(1), hydration_status="complete"
        ),
        "race": stored_activity(engine, athlete, BASE - minutes(3), workout_type=1),
        "ride": stored_activity(
            engine, athlete, BASE - minutes(4), sport_type="Ride", hydration_status="failed"
        ),
    }
    found = walk(deployed.client, f"/athletes/{athlete}/activities", {**params, "limit": 1})
    assert found == [stored[name] for name in names]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"after": "yesterday"}, "after"),
        ({"after": "2026-06-01T12:00:00"}, "after"),
        ({"before": "99999999999999999999"}, "before"),
        ({"workout_type": -1}, "workout_type"),
        ({"hydration_status": "done"}, "hydration_status.0"),
        ({"sort": "asc"}, "sort"),
    ],
)
def test_bad_query_parameters_are_400_naming_them(
    deployed: Deployed, athlete: int, params: dict[str, object], field: str
) -> None:
    response = deployed.client.get(
        f"/athletes/{athlete}/activities",
        params=params,  # type: ignore[arg-type]
        headers=READ,
    )
    assert response.status_code == 400
    assert field in [problem["name"] for problem in response.json()["fields"]]


def test_the_largest_page_is_200(deployed: Deployed, athlete: int) -> None:
    for i in range(201):
        stored_activity(deployed.engine, athlete, BASE - timedelta(seconds=i))
    body = deployed.client.get(
        f"/athletes/{athlete}/activities", params={"limit": 200}, headers=READ
    ).json()
    assert len(body["activities"]) == 200
    assert body["next_cursor"] is not None
    default = deployed.client.get(f"/athletes/{athlete}/activities", headers=READ).json()
    assert len(default["activities"]) == 50


def test_a_tampered_or_foreign_cursor_is_400_naming_cursor(
    deployed: Deployed, athlete: int
) -> None:
    for i in range(3):
        stored_activity(deployed.engine, athlete, BASE - minutes(i))
        stored_activity(deployed.engine, OTHER, BASE - minutes(i))
    client = deployed.client
    cursor = client.get(
        f"/athletes/{athlete}/activities", params={"limit": 1}, headers=READ
    ).json()["next_cursor"]
    payload, _, signature = cursor.partition(".")
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    for bad in (
        f"{flipped}.{signature}",
        f"{payload}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        "not-a-cursor",
        "é" * 10,
        cursor * 20,
    ):
        response = client.get(
            f"/athletes/{athlete}/activities", params={"cursor": bad}, headers=READ
        )
        assert response.status_code == 400, bad
        assert response.json()["reason"] == "cursor"
        assert [problem["name"] for problem in response.json()["fields"]] == ["cursor"]
    # Another athlete's listing does not take it.
    foreign = client.get(f"/athletes/{OTHER}/activities", params={"cursor": cursor}, headers=READ)
    assert foreign.status_code == 400
    assert foreign.json()["reason"] == "cursor"
    # Each refusal is counted under its reason.
    stats = client.get("/stats/webhooks", headers=ADMIN).json()
    assert stats["rejected"]["cursor"] == 6


# -- one activity -------------------------------------------------------------------------


def test_a_complete_activity_shows_its_raw_json_detail_laps_and_streams(
    deployed: Deployed, athlete: int
) -> None:
    activity = hydrated_activity(deployed.engine, athlete, BASE)
    body = deployed.client.get(f"/activities/{activity}", headers=READ).json()
    assert body["hydration_status"] == "complete"
    assert body["missing"] == []
    assert body["hydration_queued"] is False
    assert body["raw_summary"] == {"id": activity, "name": f"Activity {activity}"}
    assert body["detail"]["laps"] == body["laps"] == [{"lap_index": 1, "distance": 1000.0}]
    assert body["stream_types"] == ["heartrate"]

    streams = deployed.client.get(f"/activities/{activity}/streams", headers=READ).json()
    assert streams["hydration_status"] == "complete"
    assert streams["streams"] == [
        {
            "type": "heartrate",
            "data": [120, 121, 125],
            "series_type": "distance",
            "original_size": 3,
            "resolution": "high",
        }
    ]
    assert on_demand_messages(deployed) == []


def test_a_summary_only_activity_answers_pending_and_queues_one_hydration(
    deployed: Deployed, athlete: int
) -> None:
    activity = stored_activity(deployed.engine, athlete, BASE)
    client = deployed.client

    first = client.get(f"/activities/{activity}", headers=READ).json()
    assert first["hydration_status"] == "pending"
    assert first["hydration_queued"] is True
    assert first["missing"] == ["detail", "streams"]
    assert first["raw_summary"]["id"] == activity
    assert first["detail"] is None
    assert first["stream_types"] == []
    again = client.get(f"/activities/{activity}/streams", headers=READ).json()
    assert (again["hydration_status"], again["hydration_queued"]) == ("pending", False)
    assert again["streams"] == []
    assert (
        client.get(f"/athletes/{athlete}/activities/latest", headers=READ).json()[
            "hydration_queued"
        ]
        is False
    )

    assert on_demand_messages(deployed) == [(activity, "on_demand")]


def test_an_activity_of_a_disconnected_athlete_is_not_hydrated(deployed: Deployed) -> None:
    athlete = stored_athlete(deployed.engine, 703, AthleteStatus.DEAUTHORIZED)
    activity = stored_activity(deployed.engine, athlete, BASE)
    body = deployed.client.get(f"/activities/{activity}", params={"wait": 5}, headers=READ).json()
    assert (body["hydration_status"], body["hydration_queued"]) == ("none", False)
    assert on_demand_messages(deployed) == []


def test_wait_answers_what_we_have_when_the_hydration_does_not_finish_in_time(
    deployed: Deployed, athlete: int
) -> None:
    # Nothing consumes the queue here: the wait runs out.
    activity = stored_activity(deployed.engine, athlete, BASE)
    body = deployed.client.get(f"/activities/{activity}", params={"wait": 0.3}, headers=READ).json()
    assert (body["hydration_status"], body["hydration_queued"]) == ("pending", True)


@pytest.mark.parametrize("wait", ["0", "10.5", "-1", "soon"])
def test_wait_is_more_than_zero_and_at_most_ten_seconds(
    deployed: Deployed, athlete: int, wait: str
) -> None:
    activity = stored_activity(deployed.engine, athlete, BASE)
    response = deployed.client.get(f"/activities/{activity}", params={"wait": wait}, headers=READ)
    assert response.status_code == 400
    assert [problem["name"] for problem in response.json()["fields"]] == ["wait"]
    assert on_demand_messages(deployed) == []


# -- CORS ---------------------------------------------------------------------------------


PREFLIGHT = {
    "origin": "https://app.example.com",
    "access-control-request-method": "GET",
    "access-control-request-headers": "authorization",
}


def test_no_cors_headers_unless_cors_origins_is_set(deployed: Deployed, athlete: int) -> None:
    client = deployed.client
    preflight = client.options(f"/athletes/{athlete}/activities", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in preflight.headers
    response = client.get(
        f"/athletes/{athlete}/activities", headers={**READ, "origin": PREFLIGHT["origin"]}
    )
    assert "access-control-allow-origin" not in response.headers


def test_cors_origins_are_allowed_and_others_are_not(
    make_settings: Callable[..., Settings], engine: object
) -> None:
    settings = make_settings(cors_origins="https://app.example.com, https://admin.example.com")
    with TestClient(create_app(settings, engine=engine)) as client:  # type: ignore[arg-type]
        stored_athlete(state_of(client).engine, ATHLETE)
        path = f"/athletes/{ATHLETE}/activities"
        preflight = client.options(path, headers=PREFLIGHT)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        allowed = client.get(path, headers={**READ, "origin": "https://admin.example.com"})
        assert allowed.headers["access-control-allow-origin"] == "https://admin.example.com"
        other = client.get(path, headers={**READ, "origin": "https://evil.example.com"})
        assert other.status_code == 200
        assert "access-control-allow-origin" not in other.headers
        refused = client.options(path, headers={**PREFLIGHT, "origin": "https://evil.example.com"})
        assert refused.status_code == 400
