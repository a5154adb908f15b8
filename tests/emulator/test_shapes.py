"""The emulator's responses have the shapes of real Strava responses.

Each test compares what the emulator serves over HTTP with a real Strava recording in
tests/cassettes/ (recorded by dblock/strava-ruby-client; origin and licence in
tests/cassettes/NOTICE.md): the key sets, and the value types recursively through the nested
objects that clients read.

Type rules, applied per JSON path over *all* recorded samples at that path (e.g. every one of
the 30 recorded summary activities):

* ``null`` in a recording says nothing about the type, so it is compatible with anything; the
  emulator may send ``null`` only where the recording has one or where a documented reason
  exists (see NULLABLE).
* A recorded float admits an emulated int only if the recordings themselves mix int and float at
  that path (lap ``total_elevation_gain`` is ``0`` in one recording and ``270.9`` in another).
  Otherwise a float path must stay float: clients that parse strictly (``float`` columns,
  pydantic ``StrictFloat``) would otherwise be tested against data Strava does not send.
* bool is never accepted as int (Python's ``bool`` subclasses ``int``; JSON does not).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.emulator import BackgroundServer, Emulator, EmulatorConfig, EmulatorServer

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"
CLIENT_ID = 4242
SECRET = "shape-secret"

# Sent by Strava only when a sensor recorded them (absent from the detailed recording, which came
# from a watch without cadence or temperature), so the emulator omits them likewise.
SENSOR_KEYS = {
    "average_cadence",
    "average_temp",
    "average_heartrate",
    "max_heartrate",
    "elev_high",
    "elev_low",
    "upload_id_str",
}
# Power keys of the swagger SummaryActivity (docs/strava.md §4.4), sent for power-meter activities;
# none of the recorded runs had one.
POWER_KEYS = {"average_watts", "max_watts", "weighted_average_watts", "device_watts", "kilojoules"}
# Detail keys the emulator omits when there is nothing to say (no gear, manual entry, no device).
DETAIL_OPTIONAL = {"gear", "device_name", "similar_activities"}
# Paths where the emulator sends null although the recording has a value, and why.
NULLABLE = {
    "suffer_score",  # Strava computes it from heart rate; null without a heart-rate sensor
    "gear_id",  # activities without gear (swims, strength sessions)
    "upload_id",  # manual entries have no upload
    "external_id",  # ditto
    "description",
    "average_grade_adjusted_speed",
    "primary",  # photos.primary: activities without photos send {"primary": null, "count": 0}
}


def recorded_response(path: str, index: int = 0) -> dict[str, Any]:
    cassette = yaml.safe_load((CASSETTES / path).read_text(encoding="utf-8"))
    response: dict[str, Any] = cassette["interactions"][index]["response"]
    return response


def recorded(path: str, index: int = 0) -> Any:
    return json.loads(recorded_response(path, index)["body"]["string"])


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def profile(samples: list[Any]) -> dict[str, Any]:
    """Types seen at one JSON path, and the profiles of its object keys and list items."""
    types = {_type(s) for s in samples}
    keys: dict[str, list[Any]] = {}
    items: list[Any] = []
    for sample in samples:
        if isinstance(sample, dict):
            for key, value in sample.items():
                keys.setdefault(key, []).append(value)
        elif isinstance(sample, list):
            items.extend(sample)
    return {
        "types": types,
        "keys": {k: profile(v) for k, v in keys.items()},
        "items": profile(items) if items else None,
    }


def assert_compatible(value: Any, expected: dict[str, Any], path: str = "$") -> None:
    types: set[str] = expected["types"]
    if types == {"null"}:
        return
    actual = _type(value)
    leaf = path.rsplit(".", 1)[-1]
    if actual == "null":
        assert "null" in types or leaf in NULLABLE, f"{path}: null where recordings have {types}"
        return
    assert actual in types, f"{path}: {actual} where recordings have {sorted(types)}"
    if isinstance(value, dict):
        for key, child in value.items():
            if key in expected["keys"]:
                assert_compatible(child, expected["keys"][key], f"{path}.{key}")
    elif isinstance(value, list) and expected["items"] is not None:
        for item in value:
            assert_compatible(item, expected["items"], f"{path}[]")


def assert_keys(actual: dict[str, Any], recorded_keys: set[str], missing_ok: set[str],
                extra_ok: set[str]) -> None:  # fmt: skip
    keys = set(actual)
    assert recorded_keys - keys <= missing_ok, f"missing {recorded_keys - keys - missing_ok}"
    assert keys - recorded_keys <= extra_ok, f"invented {keys - recorded_keys - extra_ok}"


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    config = EmulatorConfig(
        client_id=CLIENT_ID,
        client_secret=SECRET,
        seed=11,
        athletes=3,
        activities_per_athlete=25,
        data_end=1760788800,
        max_stream_points=300,
    )
    with Emulator(config) as emu:
        yield emu


@pytest.fixture(scope="module")
def server(emulator: Emulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(emulator) as running:
        yield running


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def _tokens(emulator: Emulator, athlete_id: int) -> dict[str, Any]:
    return emulator.issue_tokens(athlete_id, "read,activity:read_all")


def _all_summaries(
    emulator: Emulator, server: EmulatorServer, http: httpx.Client
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for athlete_id in emulator.athlete_ids:
        token = _tokens(emulator, athlete_id)["access_token"]
        response = http.get(
            f"{server.api_url}/athlete/activities",
            params={"per_page": 200},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200
        out.extend(response.json())
    return out


def _get(server: EmulatorServer, http: httpx.Client, token: str, path: str) -> Any:
    response = http.get(f"{server.api_url}{path}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


# -- athlete activities ---------------------------------------------------------------------


def test_summary_activities_have_the_recorded_keys_and_types(
    emulator: Emulator, server: EmulatorServer, http: httpx.Client
) -> None:
    recording = recorded("client/athlete_activities.yaml")
    expected = profile(recording)  # each recorded activity is one sample
    recorded_keys = set(recording[0])
    for activity in _all_summaries(emulator, server, http):
        assert_keys(activity, recorded_keys, SENSOR_KEYS, POWER_KEYS)
        assert_compatible(activity, expected)


def test_some_summary_activity_has_exactly_the_recorded_key_set(
    emulator: Emulator, server: EmulatorServer, http: httpx.Client
) -> None:
    recorded_keys = set(recorded("client/athlete_activities.yaml")[0])
    key_sets = [set(a) for a in _all_summaries(emulator, server, http)]
    assert recorded_keys in key_sets


def test_summary_activity_nested_athlete_and_map_match_the_recording(
    emulator: Emulator, server: EmulatorServer, http: httpx.Client
) -> None:
    recording = recorded("client/athlete_activities.yaml")[0]
    for activity in _all_summaries(emulator, server, http):
        assert set(activity["athlete"]) == set(recording["athlete"])
        assert set(activity["map"]) == set(recording["map"])
        assert activity["map"]["resource_state"] == 2


# -- detailed activity, laps, streams ---------------------------------------------------------


def test_detailed_activity_has_the_recorded_keys_and_nested_types(
    emulator: Emulator, server: EmulatorServer, http: httpx.Client
) -> None:
    detail = recorded("client/activity.yaml")
    summaries = recorded("client/athlete_activities.yaml")
    summary_keys = set(summaries[0])
    # A detail shares its summary fields with the list: type evidence from both recordings.
    expected = profile([detail, *summaries])
    # Nested lists: a detail lap also has the laps endpoint's keys (activity_laps.yaml).
    lap_profile = profile(detail["laps"] + recorded("client/activity_laps.yaml"))
    checked = 0
    for athlete_id in emulator.athlete_ids:
        token = _tokens(emulator, athlete_id)["access_token"]
        for summary in emulator.activities_of(athlete_id)[:8]:
            activity = _get(server, http, token, f"/activities/{summary['id']}")
            assert_keys(
                activity,
                set(detail),
                SENSOR_KEYS | DETAIL_OPTIONAL,
                POWER_KEYS | (summary_keys - set(detail)),
            )
            assert activity["resource_state"] == 3
            assert set(activity["map"]) == set(detail["map"])
            assert_compatible({k: v for k, v in activity.items() if k != "laps"}, expected)
            for lap in activity["laps"]:
                assert_compatible(lap, lap_profile, "$.laps[]")
            for split in activity["splits_metric"] + activity["splits_standard"]:
                assert_keys(split, set(detail["splits_metric"][0]), {"average_heartrate"}, set())
            for effort in activity["best_efforts"]:
                assert set(effort) == set(detail["best_efforts"][0])
            checked += 1
    assert checked == 24


def test_some_detailed_run_has_best_efforts_splits_and_gear(
    emulator: Emulator, server: EmulatorServer, http: httpx.Client
) -> None:
    detail = recorded("client/activity.yaml")
    found = False
    for athlete_id in emulator.athlete_ids:
        token = _tokens(emulator, athlete_id)["access_token"]
        for summary in emulator.activities_of(athlete_id):
            if summary["sport_type"] != "Run" or summary["manual"]:
                continue
            activity = _get(server, http, token, f"/activities/{summary['id']}")
            assert activity["best_efforts"]
            assert activity["splits_metric"]
            assert set(activity["gear"]) == set(detail["gear"])
            assert_compatible(activity["gear"], profile([detail["gear"]]), "$.gear")
            found = True
            break
    assert found


def test_laps_endpoint_matches_the_recorded_lap_shape(
    emulator: Emulator, server: EmulatorServer, http: httpx.Client
) -> None:
    recording = recorded("client/activity_laps.yaml")
    lap_profile = profile(recording + recorded("client/activity.yaml")["laps"])
    athlete_id = emulator.athlete_ids[0]
    token = _tokens(emulator, athlete_id)["access_token"]
    for summary in emulator.activities_of(athlete_id)[:10]:
        laps = _get(server, http, token, f"/activities/{summary['id']}/laps")
        assert laps
        for lap in laps:
            assert_keys(
                lap,
                set(recording[0]),
                {"average_cadence", "average_heartrate", "max_heartrate"},
                {"average_watts"},
            )
            assert set(lap["activity"]) == set(recording[0]["activity"])
            assert_compatible(lap, lap_profile)


def test_streams_keyed_by_type_have_the_recorded_envelope(
    emulator: Emulator, server: EmulatorServer, http: httpx.Client
) -> None:
    recording = recorded("client/activity_streams.yaml")
    athlete_id = emulator.athlete_ids[0]
    token = _tokens(emulator, athlete_id)["access_token"]
    activity = next(a for a in emulator.activities_of(athlete_id) if a["distance"] > 0)
    streams = _get(server, http, token, f"/activities/{activity['id']}/streams?key_by_type=true")
    assert set(streams) == set(recording) == {"distance"}
    assert_compatible(streams, profile([recording]))


def test_every_stream_type_has_the_envelope_and_typed_samples(
    emulator: Emulator, server: EmulatorServer, http: httpx.Client
) -> None:
    envelope = set(recorded("client/activity_streams.yaml")["distance"])
    sample_types = {
        "time": int,
        "distance": float,
        "velocity_smooth": float,
        "altitude": float,
        "grade_smooth": float,
        "heartrate": int,
        "cadence": int,
        "watts": int,
        "temp": int,
        "moving": bool,
    }
    athlete_id = emulator.athlete_ids[0]
    token = _tokens(emulator, athlete_id)["access_token"]
    keys = ",".join([*sample_types, "latlng"])
    for summary in emulator.activities_of(athlete_id)[:6]:
        path = f"/activities/{summary['id']}/streams?keys={keys}&key_by_type=true"
        for key, stream in _get(server, http, token, path).items():
            assert set(stream) == envelope
            if key == "latlng":
                assert all(
                    len(p) == 2 and all(isinstance(c, float) for c in p) for p in stream["data"]
                )
            else:
                assert all(type(v) is sample_types[key] for v in stream["data"]), key


# -- athlete, oauth, subscriptions, errors ----------------------------------------------------


def test_detailed_athlete_has_the_recorded_keys_and_types(
    emulator: Emulator, server: EmulatorServer, http: httpx.Client
) -> None:
    recording = recorded("client/athlete.yaml")
    token = _tokens(emulator, emulator.athlete_ids[0])["access_token"]
    athlete = _get(server, http, token, "/athlete")
    assert set(athlete) == set(recording)
    assert_compatible(athlete, profile([recording]))


def _authorize_code(server: EmulatorServer, http: httpx.Client) -> str:
    response = http.get(
        f"{server.oauth_url}/authorize",
        params={
            "client_id": CLIENT_ID,
            "redirect_uri": "http://127.0.0.1/cb",
            "response_type": "code",
            "scope": "activity:read_all",
        },
    )
    assert response.status_code == 302
    return parse_qs(urlparse(response.headers["location"]).query)["code"][0]


def test_token_exchange_matches_the_recorded_body_and_headers(
    server: EmulatorServer, http: httpx.Client
) -> None:
    recording = recorded("oauth/token_authorization_code.yaml")
    response = http.post(
        f"{server.oauth_url}/token",
        data={
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "code": _authorize_code(server, http),
            "grant_type": "authorization_code",
        },
    )
    body = response.json()
    assert list(body) == list(recording)
    assert set(body["athlete"]) == set(recording["athlete"])
    assert_compatible(body, profile([recording]))
    assert not any("ratelimit" in name.lower() for name in response.headers)


def test_token_refresh_matches_the_recorded_body(
    emulator: Emulator, server: EmulatorServer, http: httpx.Client
) -> None:
    recording = recorded("oauth/token_refresh_token.yaml")
    refresh_token = _tokens(emulator, emulator.athlete_ids[0])["refresh_token"]
    response = http.post(
        f"{server.oauth_url}/token",
        data={
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        },
    )
    assert list(response.json()) == list(recording)
    assert_compatible(response.json(), profile([recording]))


@pytest.mark.parametrize(
    ("cassette", "data"),
    [
        ("oauth/token_invalid_code.yaml", {"client_id": CLIENT_ID, "client_secret": SECRET}),
        ("oauth/token_invalid_client.yaml", {"client_id": "client-id", "client_secret": "x"}),
    ],
)
def test_token_errors_are_the_recorded_bodies(
    server: EmulatorServer, http: httpx.Client, cassette: str, data: dict[str, Any]
) -> None:
    response = http.post(
        f"{server.oauth_url}/token",
        data={**data, "code": "code", "grant_type": "authorization_code"},
    )
    assert response.status_code == 400
    assert response.json() == recorded(cassette)


def test_unauthorized_and_not_found_bodies_are_stravas(
    emulator: Emulator, server: EmulatorServer, http: httpx.Client
) -> None:
    unauthorized = http.get(f"{server.api_url}/athlete", headers={"Authorization": "Bearer x"})
    assert unauthorized.status_code == 401
    assert unauthorized.json() == {
        "message": "Authorization Error",
        "errors": [{"resource": "Athlete", "field": "access_token", "code": "invalid"}],
    }
    token = _tokens(emulator, emulator.athlete_ids[0])["access_token"]
    missing = http.get(
        f"{server.api_url}/activities/1", headers={"Authorization": f"Bearer {token}"}
    )
    assert missing.status_code == 404
    assert missing.json() == {
        "message": "Record Not Found",
        "errors": [{"resource": "Activity", "field": "id", "code": "invalid"}],
    }
    assert missing.headers["content-type"] == "application/json; charset=utf-8"


def test_api_responses_carry_the_four_rate_limit_headers_with_wire_casing(
    emulator: Emulator, server: EmulatorServer, http: httpx.Client
) -> None:
    headers = recorded_response("client/activity.yaml")["headers"]
    recorded_names = {name for name in headers if "atelimit" in name}
    token = _tokens(emulator, emulator.athlete_ids[0])["access_token"]
    response = http.get(f"{server.api_url}/athlete", headers={"Authorization": f"Bearer {token}"})
    names = {name.decode() for name, _ in response.headers.raw if b"atelimit" in name}
    assert names == recorded_names


def _challenge_echo(request: Request) -> Response:
    return JSONResponse({"hub.challenge": request.query_params["hub.challenge"]})


def test_push_subscription_create_and_view_match_the_recordings(
    emulator: Emulator, server: EmulatorServer, http: httpx.Client
) -> None:
    async def echo(request: Request) -> Response:
        return _challenge_echo(request)

    callback = Starlette(routes=[Route("/hook", echo, methods=["GET"])])
    with BackgroundServer(callback) as hook:
        created = http.post(
            f"{server.api_url}/push_subscriptions",
            data={
                "client_id": CLIENT_ID,
                "client_secret": SECRET,
                "callback_url": f"{hook.url}/hook",
                "verify_token": "t",
            },
        )
    view = http.get(
        f"{server.api_url}/push_subscriptions",
        params={"client_id": CLIENT_ID, "client_secret": SECRET},
    )
    try:
        create_recording = recorded("webhooks/create_push_subscription.yaml")
        assert created.status_code == 201
        assert list(created.json()) == list(create_recording)
        assert_compatible(created.json(), profile([create_recording]))
        assert created.json()["created_at"].count(".") == 1  # nanoseconds, as recorded
        view_recording = recorded("webhooks/push_subscriptions.yaml")
        assert [list(v) for v in view.json()] == [list(v) for v in view_recording]
        assert_compatible(view.json(), profile([view_recording]))
        limit_headers = {n.decode() for n, _ in view.headers.raw if b"atelimit" in n}
        assert limit_headers == {"X-Ratelimit-Limit", "X-Ratelimit-Usage"}
        assert view.headers["X-Ratelimit-Usage"] == "0,0"
    finally:
        emulator.set_subscription(None)
