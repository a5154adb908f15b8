"""Behaviour of the Strava emulator over real HTTP (docs/strava.md sections cited per group)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support import FakeClock

from service.emulator import (
    BackgroundServer,
    Emulator,
    EmulatorConfig,
    EmulatorServer,
    RateLimits,
)
from service.emulator.geo import decode_polyline

CLIENT_ID = 777
SECRET = "test-secret"
DATA_END = 1760788800  # 2025-10-18T12:00:00Z
RATE_LIMITED = {
    "message": "Rate Limit Exceeded",
    "errors": [{"resource": "Application", "field": "rate limit", "code": "exceeded"}],
}


class Hook:
    """A webhook receiver: answers the handshake and records events, with scripted answers."""

    def __init__(self) -> None:
        self.echo = True
        self.statuses: list[int] = []
        self.validations: list[dict[str, str]] = []
        self.events: list[dict[str, Any]] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.app = Starlette(
            routes=[
                Route("/hook", self.validate, methods=["GET"]),
                Route("/hook", self.receive, methods=["POST"]),
            ]
        )

    async def validate(self, request: Request) -> Response:
        self.validations.append(dict(request.query_params))
        challenge = request.query_params["hub.challenge"] if self.echo else "wrong"
        return JSONResponse({"hub.challenge": challenge})

    async def receive(self, request: Request) -> Response:
        self.events.append(await request.json())
        self.entered.set()
        if self.gate is not None:
            await run_in_threadpool(self.gate.wait, 10)
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)


@dataclass
class Strava:
    """An emulator on a real port plus an HTTP client aimed at it."""

    emulator: Emulator
    server: EmulatorServer
    http: httpx.Client
    tokens: dict[int, dict[str, Any]] = field(default_factory=dict)

    def token(self, athlete_id: int | None = None, scope: str = "read,activity:read_all") -> str:
        athlete_id = athlete_id or self.emulator.athlete_ids[0]
        self.tokens[athlete_id] = self.emulator.issue_tokens(athlete_id, scope)
        return str(self.tokens[athlete_id]["access_token"])

    def get(self, path: str, token: str, **params: Any) -> httpx.Response:
        return self.http.get(
            f"{self.server.api_url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        )

    def post_token(self, **data: Any) -> httpx.Response:
        data = {"client_id": CLIENT_ID, "client_secret": SECRET, **data}
        return self.http.post(f"{self.server.oauth_url}/token", data=data)

    def subscribe(self, callback_url: str, verify_token: str = "vt") -> httpx.Response:  # noqa: S107
        return self.http.post(
            f"{self.server.api_url}/push_subscriptions",
            data={
                "client_id": CLIENT_ID,
                "client_secret": SECRET,
                "callback_url": callback_url,
                "verify_token": verify_token,
            },
        )


@pytest.fixture
def make_strava() -> Iterator[Callable[..., Strava]]:
    started: list[Strava] = []

    def make(**overrides: Any) -> Strava:
        values: dict[str, Any] = {
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "seed": 5,
            "athletes": 2,
            "activities_per_athlete": 12,
            "data_end": DATA_END,
            "max_stream_points": 200,
            "delivery_retry_delay": 0.05,
        }
        values.update(overrides)
        emulator = Emulator(EmulatorConfig(**values))
        server = EmulatorServer(emulator).start()
        strava = Strava(emulator, server, httpx.Client(timeout=10))
        started.append(strava)
        return strava

    yield make
    for strava in started:
        strava.http.close()
        strava.server.stop()
        strava.emulator.close()


@pytest.fixture
def strava(make_strava: Callable[..., Strava]) -> Strava:
    return make_strava()


@pytest.fixture
def hook() -> Iterator[tuple[Hook, str]]:
    receiver = Hook()
    with BackgroundServer(receiver.app) as server:
        yield receiver, f"{server.url}/hook"
        if receiver.gate is not None:
            receiver.gate.set()


# -- OAuth (docs/strava.md §3) ----------------------------------------------------------------


def _authorize(strava: Strava, **params: Any) -> httpx.Response:
    query = {
        "client_id": CLIENT_ID,
        "redirect_uri": "http://127.0.0.1:9/done",
        "response_type": "code",
        "scope": "activity:read_all",
        "state": "s1",
        "approval_prompt": "auto",
        **params,
    }
    return strava.http.get(f"{strava.server.oauth_url}/authorize", params=query)


def test_authorize_redirects_with_state_code_and_a_scope_that_always_includes_read(
    strava: Strava,
) -> None:
    response = _authorize(strava)
    assert response.status_code == 302
    location = urlparse(response.headers["location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == "http://127.0.0.1:9/done"
    assert query["state"] == ["s1"]
    assert query["scope"] == ["read,activity:read_all"]
    assert len(query["code"][0]) == 40


def test_authorize_with_a_wrong_client_id_is_a_400_fault(strava: Strava) -> None:
    response = _authorize(strava, client_id=1)
    assert response.status_code == 400
    assert response.json() == {
        "message": "Bad Request",
        "errors": [{"resource": "Application", "field": "client_id", "code": "invalid"}],
    }


def test_authorization_codes_are_single_use_and_name_the_logged_in_athlete(
    strava: Strava,
) -> None:
    second = strava.emulator.athlete_ids[1]
    strava.emulator.login(second)
    code = parse_qs(urlparse(_authorize(strava).headers["location"]).query)["code"][0]
    first_use = strava.post_token(grant_type="authorization_code", code=code)
    again = strava.post_token(grant_type="authorization_code", code=code)
    assert first_use.json()["athlete"]["id"] == second
    assert again.status_code == 400
    assert again.json()["errors"] == [
        {"resource": "RequestToken", "field": "code", "code": "invalid"}
    ]


def test_refresh_rotates_the_refresh_token_and_the_old_one_dies_at_once(strava: Strava) -> None:
    strava.token()
    old = strava.tokens[strava.emulator.athlete_ids[0]]["refresh_token"]
    refreshed = strava.post_token(grant_type="refresh_token", refresh_token=old)
    reused = strava.post_token(grant_type="refresh_token", refresh_token=old)
    assert refreshed.status_code == 200
    assert refreshed.json()["refresh_token"] != old
    assert "athlete" not in refreshed.json()
    assert reused.status_code == 400
    assert reused.json() == {
        "message": "Bad Request",
        "errors": [{"resource": "RefreshToken", "field": "refresh_token", "code": "invalid"}],
    }


def test_an_expired_access_token_is_refused_and_refresh_issues_a_new_one(
    make_strava: Callable[..., Strava],
) -> None:
    clock = FakeClock(DATA_END + 3600)
    strava = make_strava(clock=clock, token_lifetime=600)
    token = strava.token()
    clock.now += 601
    assert strava.get("/athlete", token).status_code == 401
    refresh = strava.tokens[strava.emulator.athlete_ids[0]]["refresh_token"]
    body = strava.post_token(grant_type="refresh_token", refresh_token=refresh).json()
    assert body["access_token"] != token
    assert body["expires_in"] == 600
    assert strava.get("/athlete", body["access_token"]).status_code == 200


def test_refresh_returns_the_same_access_token_while_it_has_over_an_hour_left(
    strava: Strava,
) -> None:
    token = strava.token()
    refresh = strava.tokens[strava.emulator.athlete_ids[0]]["refresh_token"]
    body = strava.post_token(grant_type="refresh_token", refresh_token=refresh).json()
    assert body["access_token"] == token


def test_oauth_deauthorize_revokes_every_token_of_the_athlete(strava: Strava) -> None:
    token = strava.token()
    response = strava.http.post(
        f"{strava.server.oauth_url}/deauthorize", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.json() == {"access_token": token}
    assert strava.get("/athlete", token).status_code == 401
    refresh = strava.tokens[strava.emulator.athlete_ids[0]]["refresh_token"]
    assert strava.post_token(grant_type="refresh_token", refresh_token=refresh).status_code == 400


def test_oauth_deauthorize_answers_an_injected_fault_and_revokes_nothing(strava: Strava) -> None:
    token = strava.token()
    strava.emulator.fail_next(1, 503)
    response = strava.http.post(
        f"{strava.server.oauth_url}/deauthorize", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 503
    assert strava.get("/athlete", token).status_code == 200
    again = strava.http.post(
        f"{strava.server.oauth_url}/deauthorize", headers={"Authorization": f"Bearer {token}"}
    )
    assert again.status_code == 200
    assert strava.get("/athlete", token).status_code == 401


def test_oauth_deauthorize_with_a_revoked_token_answers_401(strava: Strava) -> None:
    token = strava.token()
    headers = {"Authorization": f"Bearer {token}"}
    strava.http.post(f"{strava.server.oauth_url}/deauthorize", headers=headers)
    response = strava.http.post(f"{strava.server.oauth_url}/deauthorize", headers=headers)
    assert response.status_code == 401


# -- listing activities (docs/strava.md §4.1) ---------------------------------------------------


def _starts(activities: list[dict[str, Any]]) -> list[str]:
    return [a["start_date"] for a in activities]


def test_activities_are_listed_newest_first_thirty_per_page_by_default(
    make_strava: Callable[..., Strava],
) -> None:
    strava = make_strava(athletes=1, activities_per_athlete=45, max_stream_points=50)
    token = strava.token()
    page = strava.get("/athlete/activities", token).json()
    assert len(page) == 30
    assert _starts(page) == sorted(_starts(page), reverse=True)
    assert page[0]["id"] == strava.emulator.activities_of(strava.emulator.athlete_ids[0])[0]["id"]


def test_pages_continue_where_the_previous_ended_and_end_with_an_empty_page(
    strava: Strava,
) -> None:
    token = strava.token()
    pages = [
        strava.get("/athlete/activities", token, page=p, per_page=5).json() for p in (1, 2, 3, 4)
    ]
    assert [len(p) for p in pages] == [5, 5, 2, 0]
    ids = [a["id"] for p in pages for a in p]
    expected = [a["id"] for a in strava.emulator.activities_of(strava.emulator.athlete_ids[0])]
    assert ids == expected


def test_per_page_is_clamped_to_two_hundred(make_strava: Callable[..., Strava]) -> None:
    strava = make_strava(athletes=1, activities_per_athlete=205, max_stream_points=20)
    token = strava.token()
    assert len(strava.get("/athlete/activities", token, per_page=500).json()) == 200


def test_before_and_after_are_exclusive_epoch_second_bounds(strava: Strava) -> None:
    token = strava.token()
    everything = strava.emulator.activities_for(strava.emulator.athlete_ids[0])
    newest, middle, oldest = everything[1], everything[5], everything[9]
    listed = strava.get(
        "/athlete/activities", token, after=oldest.start, before=newest.start
    ).json()
    assert [a["id"] for a in listed] == [a.id for a in everything[2:9]]
    assert middle.id in [a["id"] for a in listed]


def test_a_millisecond_after_is_a_400_future_error(strava: Strava) -> None:
    response = strava.get("/athlete/activities", strava.token(), after=DATA_END * 1000)
    assert response.status_code == 400
    assert response.json() == {
        "message": "Bad Request",
        "errors": [{"resource": "Application", "field": "after", "code": "future"}],
    }


def test_only_me_activities_are_hidden_without_activity_read_all(strava: Strava) -> None:
    athlete_id = strava.emulator.athlete_ids[0]
    hidden = strava.emulator.activities_for(athlete_id)[0].id
    strava.emulator.update_activity(hidden, private=True)
    read_only = strava.token(athlete_id, "activity:read")
    listed = [a["id"] for a in strava.get("/athlete/activities", read_only).json()]
    assert hidden not in listed
    assert strava.get(f"/activities/{hidden}", read_only).status_code == 404
    full = strava.token(athlete_id, "activity:read_all")
    assert hidden in [a["id"] for a in strava.get("/athlete/activities", full).json()]


def test_listing_without_an_activity_scope_is_a_401(strava: Strava) -> None:
    response = strava.get("/athlete/activities", strava.token(scope="read"))
    assert response.status_code == 401
    assert response.json()["errors"][0]["field"] == "activity:read_permission"


def test_an_activity_without_an_activity_scope_is_stravas_permission_401(strava: Strava) -> None:
    activity_id = strava.emulator.activities_of(strava.emulator.athlete_ids[0])[0]["id"]
    response = strava.get(f"/activities/{activity_id}", strava.token(scope="read"))
    assert response.status_code == 401
    assert response.json() == {
        "message": "Authorization Error",
        "errors": [
            {"resource": "AccessToken", "field": "activity:read_permission", "code": "missing"}
        ],
    }


def test_a_deleted_activity_answers_stravas_404(strava: Strava) -> None:
    athlete_id = strava.emulator.athlete_ids[0]
    activity_id = strava.emulator.activities_of(athlete_id)[0]["id"]
    token = strava.token(athlete_id)
    strava.emulator.delete_activity(activity_id)
    response = strava.get(f"/activities/{activity_id}", token)
    assert response.status_code == 404
    assert response.json() == {
        "message": "Record Not Found",
        "errors": [{"resource": "Activity", "field": "id", "code": "invalid"}],
    }


def test_a_revoked_grant_rejects_both_tokens_with_stravas_bodies(strava: Strava) -> None:
    athlete_id = strava.emulator.athlete_ids[0]
    token = strava.token(athlete_id)
    refresh = strava.tokens[athlete_id]["refresh_token"]
    strava.emulator.deauthorize(athlete_id, send_event=False)
    api = strava.get("/athlete", token)
    assert api.status_code == 401
    assert api.json() == {
        "message": "Authorization Error",
        "errors": [{"resource": "Athlete", "field": "access_token", "code": "invalid"}],
    }
    refreshed = strava.post_token(grant_type="refresh_token", refresh_token=refresh)
    assert refreshed.status_code == 400
    assert refreshed.json()["errors"] == [
        {"resource": "RefreshToken", "field": "refresh_token", "code": "invalid"}
    ]


def test_another_athletes_activity_is_not_found(strava: Strava) -> None:
    other = strava.emulator.activities_of(strava.emulator.athlete_ids[1])[0]["id"]
    response = strava.get(f"/activities/{other}", strava.token())
    assert response.status_code == 404


# -- generated data ---------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_data_and_another_seed_does_not() -> None:
    def snapshot(seed: int) -> list[Any]:
        with Emulator(EmulatorConfig(seed=seed, data_end=DATA_END, max_stream_points=50)) as emu:
            return [emu.activity(a["id"]) for a in emu.activities_of(emu.athlete_ids[0])[:5]]

    assert snapshot(9) == snapshot(9)
    assert snapshot(9) != snapshot(10)


def test_activity_ids_exceed_32_bits_and_grow_with_start_time(strava: Strava) -> None:
    activities = strava.emulator.activities_for(strava.emulator.athlete_ids[0])
    assert all(a.id > 2**32 for a in activities)
    assert [a.id for a in activities] == sorted((a.id for a in activities), reverse=True)


def test_start_date_local_is_start_date_shifted_by_utc_offset(strava: Strava) -> None:
    from datetime import datetime

    for activity in strava.emulator.activities_of(strava.emulator.athlete_ids[0]):
        start = datetime.fromisoformat(activity["start_date"].replace("Z", "+00:00"))
        local = datetime.fromisoformat(activity["start_date_local"].replace("Z", "+00:00"))
        assert (local - start).total_seconds() == activity["utc_offset"]
        assert activity["timezone"].startswith("(GMT")


def test_private_is_true_exactly_for_only_me_visibility(
    make_strava: Callable[..., Strava],
) -> None:
    strava = make_strava(athletes=3, activities_per_athlete=40, max_stream_points=30)
    seen = set()
    for athlete_id in strava.emulator.athlete_ids:
        for activity in strava.emulator.activities_of(athlete_id):
            assert activity["private"] == (activity["visibility"] == "only_me")
            seen.add(activity["visibility"])
    assert seen == {"everyone", "followers_only", "only_me"}


def test_the_summary_polyline_runs_from_start_to_end_latlng(strava: Strava) -> None:
    with_gps = [
        a
        for a in strava.emulator.activities_of(strava.emulator.athlete_ids[0])
        if a["start_latlng"]
    ]
    assert with_gps
    for activity in with_gps:
        points = decode_polyline(activity["map"]["summary_polyline"])
        assert points[0] == pytest.approx(tuple(activity["start_latlng"]), abs=1e-5)
        assert points[-1] == pytest.approx(tuple(activity["end_latlng"]), abs=1e-5)


def test_streams_without_keys_hold_distance_only(strava: Strava) -> None:
    activity = next(
        a for a in strava.emulator.activities_of(strava.emulator.athlete_ids[0]) if a["distance"]
    )
    response = strava.get(
        f"/activities/{activity['id']}/streams", strava.token(), key_by_type="true"
    )
    assert list(response.json()) == ["distance"]
    assert response.json()["distance"]["data"][-1] == activity["distance"]


def test_streams_leave_out_types_the_activity_did_not_record(strava: Strava) -> None:
    activity = strava.emulator.create_activity(
        strava.emulator.athlete_ids[0], sport_type="Run", has_power=False, manual=False
    )
    keys = "time,distance,latlng,watts,heartrate,moving"
    streams = strava.get(
        f"/activities/{activity['id']}/streams", strava.token(), keys=keys, key_by_type="true"
    ).json()
    assert "watts" not in streams
    assert {"time", "distance", "latlng", "moving"} <= set(streams)
    assert len({len(s["data"]) for s in streams.values()}) == 1
    assert len(streams["time"]["data"]) <= 200


# -- rate limits (docs/strava.md §2) ------------------------------------------------------------


def _usage(response: httpx.Response) -> tuple[str, str]:
    return response.headers["X-Ratelimit-Usage"], response.headers["X-Readratelimit-Usage"]


def test_usage_counts_every_api_read_in_both_buckets(strava: Strava) -> None:
    token = strava.token()
    strava.get("/athlete", token)
    response = strava.get("/athlete/activities", token)
    assert response.headers["X-Ratelimit-Limit"] == "200,2000"
    assert response.headers["X-Readratelimit-Limit"] == "100,1000"
    assert _usage(response) == ("2,2", "2,2")


def test_the_short_window_rolls_over_at_the_quarter_hour(
    make_strava: Callable[..., Strava],
) -> None:
    clock = FakeClock(DATA_END + 14 * 60 + 59)  # 12:14:59 UTC
    strava = make_strava(clock=clock)
    token = strava.token()
    strava.get("/athlete", token)
    assert _usage(strava.get("/athlete", token)) == ("2,2", "2,2")
    clock.now += 1  # 12:15:00
    assert _usage(strava.get("/athlete", token)) == ("1,3", "1,3")


def test_the_daily_window_rolls_over_at_utc_midnight(make_strava: Callable[..., Strava]) -> None:
    clock = FakeClock(DATA_END + 12 * 3600 - 1)  # 23:59:59 UTC
    strava = make_strava(clock=clock)
    token = strava.token()
    assert _usage(strava.get("/athlete", token)) == ("1,1", "1,1")
    clock.now += 1
    assert _usage(strava.get("/athlete", token)) == ("1,1", "1,1")


def test_requests_past_the_limit_get_429_with_stravas_body_and_still_count(
    make_strava: Callable[..., Strava],
) -> None:
    clock = FakeClock(DATA_END + 60)
    strava = make_strava(clock=clock, limits=RateLimits(200, 2000, 2, 1000))
    token = strava.token()
    statuses = [strava.get("/athlete", token).status_code for _ in range(2)]
    rejected = strava.get("/athlete", token)
    assert statuses == [200, 200]
    assert rejected.status_code == 429
    assert rejected.json() == RATE_LIMITED
    assert _usage(rejected) == ("3,3", "3,3")
    clock.now += 900
    assert _usage(strava.get("/athlete", token)) == ("1,4", "1,4")


def test_a_shorter_window_speeds_up_both_windows(make_strava: Callable[..., Strava]) -> None:
    clock = FakeClock(0.0)
    strava = make_strava(clock=clock, window_seconds=9, token_lifetime=10**9)
    token = strava.token()
    strava.get("/athlete", token)
    clock.now = 9  # next short window
    assert _usage(strava.get("/athlete", token)) == ("1,2", "1,2")
    clock.now = 9 * 96  # next "day"
    assert _usage(strava.get("/athlete", token)) == ("1,1", "1,1")


# -- faults and counters ------------------------------------------------------------------------


def test_fail_next_answers_the_status_then_recovers(strava: Strava) -> None:
    token = strava.token()
    strava.emulator.fail_next(2, status=503)
    statuses = [strava.get("/athlete", token).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_timeout_next_holds_the_request_past_the_client_timeout(
    make_strava: Callable[..., Strava],
) -> None:
    strava = make_strava(timeout_delay=5.0)
    token = strava.token()
    strava.emulator.timeout_next(1)
    with pytest.raises(httpx.ReadTimeout):
        strava.http.get(
            f"{strava.server.api_url}/athlete",
            headers={"Authorization": f"Bearer {token}"},
            timeout=0.3,
        )
    assert strava.get("/athlete", token).status_code == 200


def test_a_seeded_fault_rate_fails_the_same_requests_each_run(
    make_strava: Callable[..., Strava],
) -> None:
    def statuses() -> list[int]:
        strava = make_strava(fault_rate=0.4)
        token = strava.token()
        return [strava.get("/athlete", token).status_code for _ in range(12)]

    first = statuses()
    assert first == statuses()
    assert {200} < set(first) <= {200, 500, 502, 503}


def test_calls_are_counted_per_endpoint_and_can_be_reset(strava: Strava) -> None:
    token = strava.token()
    activity_id = strava.get("/athlete/activities", token).json()[0]["id"]
    strava.get(f"/activities/{activity_id}", token)
    strava.get(f"/activities/{activity_id}", token)
    assert strava.emulator.calls["GET /activities/{id}"] == 2
    assert strava.emulator.calls["GET /athlete/activities"] == 1
    strava.emulator.reset_calls()
    assert strava.emulator.calls["GET /activities/{id}"] == 0


# -- push subscriptions (docs/strava.md §1.1, §1.2) ---------------------------------------------


def test_subscription_create_validates_the_callback_before_answering_201(
    strava: Strava, hook: tuple[Hook, str]
) -> None:
    receiver, url = hook
    response = strava.subscribe(url, verify_token="my-token")
    assert response.status_code == 201
    assert response.json()["callback_url"] == url
    assert response.json()["application_id"] == CLIENT_ID
    [validation] = receiver.validations
    assert validation["hub.mode"] == "subscribe"
    assert validation["hub.verify_token"] == "my-token"
    assert validation["hub.challenge"]


def test_subscription_create_is_not_verifiable_when_the_echo_is_wrong(
    strava: Strava, hook: tuple[Hook, str]
) -> None:
    receiver, url = hook
    receiver.echo = False
    response = strava.subscribe(url)
    assert response.status_code == 400
    assert response.json() == {
        "message": "Bad Request",
        "errors": [
            {"resource": "PushSubscription", "field": "callback url", "code": "not verifiable"}
        ],
    }
    assert strava.emulator.subscription is None


def test_subscription_create_is_not_verifiable_when_nothing_listens(strava: Strava) -> None:
    with BackgroundServer(Starlette()) as gone:
        url = f"{gone.url}/hook"
    response = strava.subscribe(url)
    assert response.json()["errors"][0]["code"] == "not verifiable"


def test_a_second_subscription_already_exists(strava: Strava, hook: tuple[Hook, str]) -> None:
    _, url = hook
    assert strava.subscribe(url).status_code == 201
    second = strava.subscribe(url)
    assert second.status_code == 400
    assert second.json() == {
        "message": "Bad Request",
        "errors": [{"resource": "PushSubscription", "field": "", "code": "already exists"}],
    }


def test_subscription_view_lists_zero_or_one_and_delete_answers_204(
    strava: Strava, hook: tuple[Hook, str]
) -> None:
    _, url = hook
    credentials: dict[str, str | int] = {"client_id": CLIENT_ID, "client_secret": SECRET}
    base = f"{strava.server.api_url}/push_subscriptions"
    assert strava.http.get(base, params=credentials).json() == []
    subscription_id = strava.subscribe(url).json()["id"]
    assert [s["id"] for s in strava.http.get(base, params=credentials).json()] == [subscription_id]
    deleted = strava.http.delete(f"{base}/{subscription_id}", params=credentials)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert strava.http.get(base, params=credentials).json() == []


def test_subscription_calls_with_wrong_app_credentials_are_refused(strava: Strava) -> None:
    response = strava.http.get(
        f"{strava.server.api_url}/push_subscriptions",
        params={"client_id": CLIENT_ID, "client_secret": "wrong"},
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["resource"] == "Application"


# -- event delivery (docs/strava.md §1.3, §1.4) ---------------------------------------------------


@pytest.fixture
def subscribed(strava: Strava, hook: tuple[Hook, str]) -> tuple[Strava, Hook, int]:
    receiver, url = hook
    assert strava.subscribe(url).status_code == 201
    athlete_id = strava.emulator.athlete_ids[0]
    strava.token(athlete_id)  # Strava pushes events only for athletes who authorized the app
    return strava, receiver, athlete_id


def test_a_created_activity_pushes_stravas_create_event(
    subscribed: tuple[Strava, Hook, int],
) -> None:
    strava, receiver, athlete_id = subscribed
    activity = strava.emulator.create_activity(athlete_id, sport_type="Ride")
    assert strava.emulator.wait_for_deliveries(5)
    subscription_id = strava.emulator.subscription["id"]  # type: ignore[index]
    assert receiver.events == [
        {
            "aspect_type": "create",
            "event_time": receiver.events[0]["event_time"],
            "object_id": activity["id"],
            "object_type": "activity",
            "owner_id": athlete_id,
            "subscription_id": subscription_id,
            "updates": {},
        }
    ]


def test_an_update_event_carries_exactly_the_changed_keys_as_strings(
    subscribed: tuple[Strava, Hook, int],
) -> None:
    strava, receiver, athlete_id = subscribed
    activity = strava.emulator.activities_of(athlete_id)[0]
    strava.emulator.update_activity(activity["id"], title="Messy", private=not activity["private"])
    strava.emulator.update_activity(activity["id"], title="Messy")  # no change, no event
    assert strava.emulator.wait_for_deliveries(5)
    [event] = receiver.events
    assert event["aspect_type"] == "update"
    assert event["updates"] == {
        "title": "Messy",
        "private": "false" if activity["private"] else "true",
    }


def test_a_deleted_activity_pushes_a_delete_event_and_is_gone(
    subscribed: tuple[Strava, Hook, int],
) -> None:
    strava, receiver, athlete_id = subscribed
    activity_id = strava.emulator.activities_of(athlete_id)[0]["id"]
    strava.emulator.delete_activity(activity_id)
    assert strava.emulator.wait_for_deliveries(5)
    assert [(e["aspect_type"], e["object_id"]) for e in receiver.events] == [
        ("delete", activity_id)
    ]
    assert strava.get(f"/activities/{activity_id}", strava.token(athlete_id)).status_code == 404


def test_deauthorization_pushes_the_athlete_event_and_kills_the_tokens(
    subscribed: tuple[Strava, Hook, int],
) -> None:
    strava, receiver, athlete_id = subscribed
    token = strava.tokens[athlete_id]["access_token"]
    strava.emulator.deauthorize(athlete_id)
    assert strava.emulator.wait_for_deliveries(5)
    [event] = receiver.events
    assert (event["object_type"], event["aspect_type"]) == ("athlete", "update")
    assert (event["object_id"], event["owner_id"]) == (athlete_id, athlete_id)
    assert event["updates"] == {"authorized": "false"}
    assert strava.get("/athlete", token).status_code == 401


def test_no_events_are_pushed_for_athletes_who_never_authorized(
    subscribed: tuple[Strava, Hook, int],
) -> None:
    strava, receiver, _ = subscribed
    strava.emulator.create_activity(strava.emulator.athlete_ids[1])
    assert strava.emulator.wait_for_deliveries(5)
    assert receiver.events == []


def test_delivery_makes_three_attempts_when_the_callback_does_not_answer_200(
    subscribed: tuple[Strava, Hook, int],
) -> None:
    strava, receiver, athlete_id = subscribed
    receiver.statuses = [500, 503, 500, 500]
    strava.emulator.create_activity(athlete_id)
    assert strava.emulator.wait_for_deliveries(5)
    assert len(receiver.events) == 3
    assert [(d.attempt, d.status) for d in strava.emulator.deliveries] == [
        (1, 500),
        (2, 503),
        (3, 500),
    ]


def test_delivery_stops_retrying_after_a_200(subscribed: tuple[Strava, Hook, int]) -> None:
    strava, receiver, athlete_id = subscribed
    receiver.statuses = [502, 200]
    strava.emulator.create_activity(athlete_id)
    assert strava.emulator.wait_for_deliveries(5)
    assert [d.status for d in strava.emulator.deliveries] == [502, 200]


def test_delivery_gives_up_on_a_callback_slower_than_the_timeout(
    make_strava: Callable[..., Strava], hook: tuple[Hook, str]
) -> None:
    strava = make_strava(callback_timeout=0.2)
    receiver, url = hook
    assert strava.subscribe(url).status_code == 201
    athlete_id = strava.emulator.athlete_ids[0]
    strava.token(athlete_id)
    receiver.gate = threading.Event()
    strava.emulator.create_activity(athlete_id)
    assert strava.emulator.wait_for_deliveries(5)
    deliveries = strava.emulator.deliveries
    assert [d.attempt for d in deliveries] == [1, 2, 3]
    assert all(d.status is None and d.error for d in deliveries)


def test_pushing_an_event_does_not_wait_for_the_callback(
    subscribed: tuple[Strava, Hook, int],
) -> None:
    strava, receiver, athlete_id = subscribed
    receiver.gate = threading.Event()
    strava.emulator.create_activity(athlete_id)  # returns while the callback is still held
    assert receiver.entered.wait(5)
    assert strava.emulator.deliverer.pending == 1
    receiver.gate.set()
    assert strava.emulator.wait_for_deliveries(5)


# -- control API (/_emulator) ---------------------------------------------------------------------


def test_the_control_api_drives_activities_and_reports_calls_and_deliveries(
    subscribed: tuple[Strava, Hook, int],
) -> None:
    strava, _, athlete_id = subscribed
    control = f"{strava.server.url}/_emulator"
    created = strava.http.post(
        f"{control}/athletes/{athlete_id}/activities", json={"sport_type": "Swim"}
    )
    assert created.status_code == 201
    activity_id = created.json()["id"]
    patched = strava.http.patch(f"{control}/activities/{activity_id}", json={"title": "Laps"})
    assert patched.json()["name"] == "Laps"
    assert strava.http.delete(f"{control}/activities/{activity_id}").status_code == 204
    waited = strava.http.post(f"{control}/deliveries/wait", json={"timeout": 5})
    assert waited.json() == {"done": True}
    aspects = [d["event"]["aspect_type"] for d in strava.http.get(f"{control}/deliveries").json()]
    # Each event is delivered on its own, as Strava's are: their order is not promised.
    assert sorted(aspects) == ["create", "delete", "update"]
    strava.get("/athlete", strava.token(athlete_id))
    assert strava.http.get(f"{control}/calls").json()["GET /athlete"] == 1


def test_the_control_api_injects_faults_and_switches_the_logged_in_athlete(
    strava: Strava,
) -> None:
    control = f"{strava.server.url}/_emulator"
    second = strava.emulator.athlete_ids[1]
    assert strava.http.post(f"{control}/login", json={"athlete_id": second}).status_code == 200
    assert strava.emulator.logged_in == second
    strava.http.post(f"{control}/faults", json={"fail_next": 1, "status": 502})
    assert strava.get("/athlete", strava.token()).status_code == 502


def test_the_control_api_revokes_a_grant_with_or_without_the_event(
    subscribed: tuple[Strava, Hook, int],
) -> None:
    strava, receiver, athlete_id = subscribed
    token = strava.tokens[athlete_id]["access_token"]
    control = f"{strava.server.url}/_emulator"

    revoked = strava.http.post(
        f"{control}/athletes/{athlete_id}/deauthorize", json={"send_event": False}
    )

    assert revoked.status_code == 204
    assert strava.get("/athlete", token).status_code == 401
    assert strava.emulator.wait_for_deliveries(5)
    assert receiver.events == []
