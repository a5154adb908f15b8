"""StravaClient and AsyncStravaClient against Strava's real recorded answers.

Cassettes (tests/cassettes, see NOTICE.md there) replay real Strava exchanges through vcrpy,
which patches httpx's sync and async transports alike, so both clients run on the same
recordings. Answers that no recording holds (429, 5xx, timeouts) are served by
``httpx.MockTransport`` with the bodies documented in docs/strava.md §2.3.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import httpx
import pytest
import vcr
from vcr.request import Request as VcrRequest

from service.strava import (
    AsyncStravaClient,
    BadRequest,
    NotFound,
    RateLimited,
    RateLimitSnapshot,
    RequestInfo,
    StravaClient,
    Transient,
    Unauthorized,
    UnexpectedResponse,
    WindowPair,
)

T = TypeVar("T")

API_URL = "https://www.strava.com/api/v3"
OAUTH_URL = "https://www.strava.com/oauth"
# The placeholders the Ruby recordings were made with.
CLIENT_ID = 24523
CLIENT_SECRET = "client-secret"
ACCESS_TOKEN = "access-token"
MARATHON_ID = 1946417534

RATE_LIMIT_BODY = {
    "message": "Rate Limit Exceeded",
    "errors": [{"resource": "Application", "field": "rate limit", "code": "exceeded"}],
}  # docs/strava.md §2.3


def _query_without_strava_defaults(r1: VcrRequest, r2: VcrRequest) -> None:
    """Query match where an explicit page=1&per_page=30 equals no paging parameters.

    The recording of GET /athlete/activities sent no parameters; Strava documents page=1 and
    per_page=30 as the defaults (docs/strava.md §4.1), which this client always sends.
    """
    defaults = {("page", "1"), ("per_page", "30")}
    assert [q for q in r1.query if q not in defaults] == [q for q in r2.query if q not in defaults]


RECORDED = vcr.VCR(
    cassette_library_dir=str(Path(__file__).resolve().parents[1] / "cassettes"),
    record_mode="none",
)
RECORDED.register_matcher("query_without_strava_defaults", _query_without_strava_defaults)
DEFAULT_MATCH = ("method", "scheme", "host", "port", "path", "query")
MATCH_WITH_FORM = (*DEFAULT_MATCH, "body")
LIST_MATCH = ("method", "scheme", "host", "port", "path", "query_without_strava_defaults")

F = TypeVar("F", bound=Callable[..., Any])


def cassette(name: str, match_on: tuple[str, ...] = DEFAULT_MATCH) -> Callable[[F], F]:
    """Replay tests/cassettes/``name`` around a test (typed wrapper over vcrpy's decorator)."""
    decorator: Callable[[F], F] = RECORDED.use_cassette(name, match_on=match_on)
    return decorator


@pytest.fixture
def client() -> Iterator[StravaClient]:
    with StravaClient(
        api_url=API_URL, oauth_url=OAUTH_URL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    ) as strava:
        yield strava


def oauth_client(client_id: int, client_secret: str) -> StravaClient:
    return StravaClient(
        api_url=API_URL, oauth_url=OAUTH_URL, client_id=client_id, client_secret=client_secret
    )


def run_async(body: Callable[[AsyncStravaClient], Coroutine[Any, Any, T]], **kwargs: Any) -> T:
    """Run ``body`` with an AsyncStravaClient on the recorded URLs, closing it afterwards."""
    settings: dict[str, Any] = {
        "api_url": API_URL,
        "oauth_url": OAUTH_URL,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        **kwargs,
    }

    async def main() -> T:
        async with AsyncStravaClient(**settings) as strava:
            return await body(strava)

    return asyncio.run(main())


Handler = Callable[[httpx.Request], httpx.Response]


def mocked(handler: Handler, **kwargs: Any) -> StravaClient:
    """A client whose requests are answered by ``handler`` at the HTTP boundary."""
    settings: dict[str, Any] = {
        "api_url": API_URL,
        "oauth_url": OAUTH_URL,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "transport": httpx.MockTransport(handler),
        **kwargs,
    }
    return StravaClient(**settings)


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handle


class Capture:
    """A MockTransport handler that records requests and answers with a fixed response."""

    def __init__(self, status: int = 200, body: Any = None) -> None:
        self.requests: list[httpx.Request] = []
        self._status = status
        self._body = [] if body is None else body

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if self._status == 204:
            return httpx.Response(204)
        return httpx.Response(self._status, json=self._body)

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.requests[-1].content.decode())

    @property
    def query(self) -> dict[str, str]:
        return dict(self.requests[-1].url.params)


TOKEN_BODY = {
    "token_type": "Bearer",
    "access_token": "a9b723",
    "expires_at": 1568775134,
    "expires_in": 20566,
    "refresh_token": "b5c569",
}  # the refresh example of docs/strava.md §3.3


# --- activity detail (client/activity.yaml, 2025) ------------------------------------------


@cassette("client/activity.yaml")
def test_activity_is_parsed_into_a_detailed_activity(client: StravaClient) -> None:
    result = client.get_activity(ACCESS_TOKEN, MARATHON_ID)

    assert result.status_code == 200
    assert result.data.id == MARATHON_ID
    assert result.data.name == "TCS NYC Marathon 2018"
    assert result.data.sport_type == "Run"
    assert result.data.athlete.id == 26462176


@cassette("client/activity.yaml")
def test_activity_start_date_is_an_aware_utc_instant(client: StravaClient) -> None:
    result = client.get_activity(ACCESS_TOKEN, MARATHON_ID)

    assert result.data.start_date == datetime(2018, 11, 4, 14, 53, 46, tzinfo=UTC)


@cassette("client/activity.yaml")
def test_activity_start_date_local_is_a_naive_wall_clock(client: StravaClient) -> None:
    result = client.get_activity(ACCESS_TOKEN, MARATHON_ID)

    assert result.data.start_date_local == datetime(2018, 11, 4, 9, 53, 46)
    assert result.data.start_date_local.tzinfo is None


@cassette("client/activity.yaml")
def test_activity_laps_are_typed(client: StravaClient) -> None:
    result = client.get_activity(ACCESS_TOKEN, MARATHON_ID)

    [lap] = result.data.laps
    assert lap.name == "Lap 1"
    assert lap.distance == 42882.9
    assert lap.activity is not None
    assert lap.activity.id == MARATHON_ID
    assert lap.start_date_local == datetime(2018, 11, 4, 9, 53, 46)


@cassette("client/activity.yaml")
def test_activity_fields_unknown_to_the_model_are_kept_in_extras_and_raw(
    client: StravaClient,
) -> None:
    result = client.get_activity(ACCESS_TOKEN, MARATHON_ID)

    extras = result.data.model_extra or {}
    assert extras["stats_visibility"] == result.raw["stats_visibility"]
    assert extras["similar_activities"]["effort_count"] == 4


@cassette("client/activity.yaml")
def test_activity_raw_is_the_json_strava_sent(client: StravaClient) -> None:
    result = client.get_activity(ACCESS_TOKEN, MARATHON_ID)

    assert result.raw["start_date_local"] == "2018-11-04T09:53:46Z"
    assert result.raw["utc_offset"] == -18000.0


@cassette("client/activity.yaml")
def test_activity_rate_limit_headers_are_read_from_their_wire_casing(
    client: StravaClient,
) -> None:
    result = client.get_activity(ACCESS_TOKEN, MARATHON_ID)

    assert result.rate_limit == RateLimitSnapshot(
        limit=WindowPair(200, 2000),
        usage=WindowPair(5, 148),
        read_limit=WindowPair(100, 1000),
        read_usage=WindowPair(5, 148),
    )


# --- other reads --------------------------------------------------------------------------


@cassette("client/athlete_activities.yaml", LIST_MATCH)
def test_activity_page_is_a_list_of_summary_activities(client: StravaClient) -> None:
    result = client.list_activities(ACCESS_TOKEN)

    assert len(result.data) == 30
    assert all(activity.athlete.id == 26462176 for activity in result.data)
    assert [activity.id for activity in result.data] == [item["id"] for item in result.raw]


@cassette("client/athlete.yaml")
def test_athlete_is_parsed_into_a_detailed_athlete(client: StravaClient) -> None:
    result = client.get_athlete(ACCESS_TOKEN)

    assert result.data.id == 26462176
    assert result.data.username == "dblockdotorg"
    assert result.data.measurement_preference == "feet"
    assert result.data.created_at == datetime(2017, 11, 28, 19, 5, 35, tzinfo=UTC)


@cassette("client/activity_streams.yaml")
def test_streams_are_keyed_by_type(client: StravaClient) -> None:
    result = client.get_activity_streams(ACCESS_TOKEN, MARATHON_ID)

    assert list(result.data) == ["distance"]
    distance = result.data["distance"]
    assert distance.series_type == "distance"
    assert distance.original_size == 13129
    assert distance.resolution == "high"
    assert distance.data[:3] == [0.0, 1.4, 2.8]


@cassette("client/activity_streams.yaml")
def test_streams_answer_without_rate_limit_headers_gives_an_empty_snapshot(
    client: StravaClient,
) -> None:
    result = client.get_activity_streams(ACCESS_TOKEN, MARATHON_ID)

    assert result.rate_limit.empty


@cassette("client/activity_laps.yaml")
def test_laps_are_parsed_into_laps(client: StravaClient) -> None:
    result = client.list_activity_laps(ACCESS_TOKEN, 15605032352)

    [lap] = result.data
    assert lap.id == 55554683802
    assert lap.average_cadence == 61.5
    assert lap.total_elevation_gain == 0


# --- OAuth (2018 recordings; request forms matched against what Ruby sent) -----------------


@cassette("oauth/token_authorization_code.yaml", MATCH_WITH_FORM)
def test_code_exchange_returns_tokens_and_the_athlete() -> None:
    with oauth_client(12345, "secret") as strava:
        result = strava.exchange_code("deadbeef585a6edb1f00309d3e1e0fec74973fb0")

    assert result.data.token_type == "Bearer"
    assert result.data.expires_at == 1542940199
    assert result.data.athlete is not None
    assert result.data.athlete.username == "dblockdotorg"


@cassette("oauth/token_authorization_code.yaml")
def test_code_exchange_answer_without_rate_limit_headers_gives_an_empty_snapshot() -> None:
    with oauth_client(12345, "secret") as strava:
        result = strava.exchange_code("deadbeef585a6edb1f00309d3e1e0fec74973fb0")

    assert result.rate_limit.empty


@cassette("oauth/token_refresh_token.yaml", MATCH_WITH_FORM)
def test_refresh_returns_new_tokens_without_an_athlete(client: StravaClient) -> None:
    result = client.refresh_token("refresh-token")

    assert result.data.access_token == "new-access-token"
    assert result.data.refresh_token == "new-refresh-token"
    assert result.data.athlete is None


@cassette("oauth/token_refresh_token.yaml")
def test_token_response_repr_hides_the_tokens(client: StravaClient) -> None:
    result = client.refresh_token("refresh-token")

    assert "new-access-token" not in repr(result)
    assert "new-refresh-token" not in repr(result)


@cassette("oauth/token_invalid_code.yaml", MATCH_WITH_FORM)
def test_invalid_code_raises_bad_request_about_the_request_token() -> None:
    with oauth_client(12345, "client-secret") as strava, pytest.raises(BadRequest) as raised:
        strava.exchange_code("code")

    assert raised.value.status_code == 400
    assert raised.value.fault is not None
    assert [error.resource for error in raised.value.fault.errors] == ["RequestToken"]


@cassette("oauth/token_invalid_client.yaml")
def test_invalid_client_raises_bad_request_about_the_application(client: StravaClient) -> None:
    with pytest.raises(BadRequest) as raised:
        client.exchange_code("code")

    assert raised.value.fault is not None
    assert [(e.resource, e.field) for e in raised.value.fault.errors] == [
        ("Application", "client_id")
    ]


@cassette("oauth/token_invalid_client.yaml")
def test_error_message_holds_no_client_secret(client: StravaClient) -> None:
    with pytest.raises(BadRequest) as raised:
        client.exchange_code("code")

    assert CLIENT_SECRET not in str(raised.value)


@cassette("client/deauthorize.yaml")
def test_deauthorize_succeeds_with_the_bearer_token(client: StravaClient) -> None:
    result = client.deauthorize(ACCESS_TOKEN)

    assert result.status_code == 200
    assert result.data is None
    assert result.rate_limit.usage == WindowPair(79, 222)


# --- recorded errors ----------------------------------------------------------------------


@cassette("client/authorization_error.yaml")
def test_401_raises_unauthorized_with_the_fault(client: StravaClient) -> None:
    with pytest.raises(Unauthorized) as raised:
        client.get_activity(ACCESS_TOKEN, MARATHON_ID)

    assert raised.value.status_code == 401
    assert raised.value.fault is not None
    assert raised.value.fault.message == "Authorization Error"
    assert [(e.resource, e.code) for e in raised.value.fault.errors] == [("Application", "invalid")]


@cassette("client/not_found_error.yaml")
def test_404_with_an_empty_body_raises_not_found(client: StravaClient) -> None:
    with pytest.raises(NotFound) as raised:
        client.get_activity(ACCESS_TOKEN, MARATHON_ID)

    assert raised.value.status_code == 404
    assert raised.value.body == ""
    assert raised.value.fault is None


@cassette("client/not_found_error.yaml")
def test_404_without_rate_limit_headers_carries_an_empty_snapshot(client: StravaClient) -> None:
    with pytest.raises(NotFound) as raised:
        client.get_activity(ACCESS_TOKEN, MARATHON_ID)

    assert raised.value.rate_limit.empty


# --- push subscriptions (2018 recordings) -------------------------------------------------


@cassette("webhooks/create_push_subscription.yaml", MATCH_WITH_FORM)
def test_subscription_is_created_with_the_recorded_form(client: StravaClient) -> None:
    result = client.create_subscription("http://35d43b4e.ngrok.io/subscribe", "verify-token")

    assert result.status_code == 201
    assert result.data.id == 131300
    assert result.data.application_id == CLIENT_ID


@cassette("webhooks/create_push_subscription.yaml")
def test_subscription_timestamps_with_nanoseconds_are_parsed(client: StravaClient) -> None:
    result = client.create_subscription("http://35d43b4e.ngrok.io/subscribe", "verify-token")

    assert result.data.created_at == datetime(2018, 11, 29, 21, 46, 21, 854786, tzinfo=UTC)


@cassette("webhooks/create_push_subscription.yaml")
def test_subscription_answer_carries_the_overall_headers_only(client: StravaClient) -> None:
    result = client.create_subscription("http://35d43b4e.ngrok.io/subscribe", "verify-token")

    assert result.rate_limit == RateLimitSnapshot(
        limit=WindowPair(600, 30000), usage=WindowPair(0, 0), read_limit=None, read_usage=None
    )


@cassette("webhooks/push_subscriptions.yaml")
def test_subscription_view_lists_the_one_subscription(client: StravaClient) -> None:
    result = client.list_subscriptions()

    [subscription] = result.data
    assert subscription.id == 131300
    assert subscription.callback_url == "http://35d43b4e.ngrok.io/"


@cassette("webhooks/no_push_subscriptions.yaml")
def test_subscription_view_without_a_subscription_is_empty(client: StravaClient) -> None:
    result = client.list_subscriptions()

    assert result.data == []
    assert result.raw == []


@cassette("webhooks/delete_push_subscription.yaml")
def test_subscription_delete_accepts_204_no_content(client: StravaClient) -> None:
    result = client.delete_subscription(131300)

    assert result.status_code == 204
    assert result.data is None
    assert result.raw is None


# --- the async client on the same recordings ----------------------------------------------


@cassette("client/activity.yaml")
def test_async_activity_is_parsed_like_the_sync_one() -> None:
    result = run_async(lambda strava: strava.get_activity(ACCESS_TOKEN, MARATHON_ID))

    assert result.data.name == "TCS NYC Marathon 2018"
    assert result.data.start_date_local == datetime(2018, 11, 4, 9, 53, 46)
    assert result.rate_limit.read_usage == WindowPair(5, 148)


@cassette("oauth/token_authorization_code.yaml", MATCH_WITH_FORM)
def test_async_code_exchange_sends_the_recorded_form() -> None:
    result = run_async(
        lambda strava: strava.exchange_code("deadbeef585a6edb1f00309d3e1e0fec74973fb0"),
        client_id=12345,
        client_secret="secret",
    )

    assert result.data.athlete is not None


@cassette("client/not_found_error.yaml")
def test_async_404_raises_not_found() -> None:
    with pytest.raises(NotFound):
        run_async(lambda strava: strava.get_activity(ACCESS_TOKEN, MARATHON_ID))


@cassette("webhooks/delete_push_subscription.yaml")
def test_async_subscription_delete_accepts_204() -> None:
    result = run_async(lambda strava: strava.delete_subscription(131300))

    assert result.status_code == 204


# --- answers no recording holds (MockTransport, documented bodies) -------------------------


def test_429_with_daily_usage_at_the_limit_is_rate_limited_for_the_day() -> None:
    headers = {"X-Ratelimit-Limit": "200,2000", "X-Ratelimit-Usage": "37,2000"}
    strava = mocked(answer(429, RATE_LIMIT_BODY, headers))

    with pytest.raises(RateLimited) as raised:
        strava.get_activity(ACCESS_TOKEN, MARATHON_ID)

    assert raised.value.window == "daily"


def test_429_with_the_read_bucket_exhausted_for_the_day_is_rate_limited_for_the_day() -> None:
    headers = {
        "X-Ratelimit-Limit": "200,2000",
        "X-Ratelimit-Usage": "20,1000",
        "X-Readratelimit-Limit": "100,1000",
        "X-Readratelimit-Usage": "20,1000",
    }
    strava = mocked(answer(429, RATE_LIMIT_BODY, headers))

    with pytest.raises(RateLimited) as raised:
        strava.get_activity(ACCESS_TOKEN, MARATHON_ID)

    assert raised.value.window == "daily"


def test_429_with_daily_usage_below_the_limit_is_rate_limited_for_the_quarter_hour() -> None:
    # The documented example headers (docs/strava.md §2.3).
    headers = {"X-Ratelimit-Limit": "600,30000", "X-Ratelimit-Usage": "692,29300"}
    strava = mocked(answer(429, RATE_LIMIT_BODY, headers))

    with pytest.raises(RateLimited) as raised:
        strava.get_activity(ACCESS_TOKEN, MARATHON_ID)

    assert raised.value.window == "short"
    assert raised.value.fault is not None
    assert raised.value.fault.message == "Rate Limit Exceeded"


def test_500_raises_transient_with_its_status() -> None:
    strava = mocked(answer(500))

    with pytest.raises(Transient) as raised:
        strava.get_activity(ACCESS_TOKEN, MARATHON_ID)

    assert raised.value.status_code == 500
    assert raised.value.body == ""


def test_timeout_raises_transient_without_a_status() -> None:
    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(Transient) as raised:
        mocked(time_out).get_activity(ACCESS_TOKEN, MARATHON_ID)

    assert raised.value.status_code is None
    assert isinstance(raised.value.__cause__, httpx.ReadTimeout)


def test_connection_error_raises_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(Transient):
        mocked(refuse).list_subscriptions()


def test_async_timeout_raises_transient() -> None:
    async def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    with pytest.raises(Transient):
        run_async(
            lambda strava: strava.get_activity(ACCESS_TOKEN, MARATHON_ID),
            transport=httpx.MockTransport(time_out),
        )


def test_transport_error_message_holds_no_secret_or_token() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    with pytest.raises(Transient) as raised:
        mocked(refuse).list_subscriptions()

    assert CLIENT_SECRET not in str(raised.value)


def test_success_with_a_body_that_is_not_json_raises_unexpected_response() -> None:
    strava = mocked(lambda request: httpx.Response(200, text="<html>maintenance</html>"))

    with pytest.raises(UnexpectedResponse) as raised:
        strava.get_athlete(ACCESS_TOKEN)

    assert raised.value.body == "<html>maintenance</html>"


def test_success_with_the_wrong_shape_raises_unexpected_response_without_values() -> None:
    incomplete = {**TOKEN_BODY}
    del incomplete["access_token"]
    strava = mocked(answer(200, incomplete))

    with pytest.raises(UnexpectedResponse) as raised:
        strava.refresh_token("r")

    assert "access_token" in str(raised.value)
    assert "b5c569" not in str(raised.value)
    assert raised.value.__cause__ is None


# --- what the client sends ----------------------------------------------------------------


def test_requests_ask_for_json_and_name_the_client() -> None:
    capture = Capture(body={"id": 1})

    mocked(capture).get_athlete(ACCESS_TOKEN)

    sent = capture.requests[0]
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["User-Agent"].startswith("strava-ingest/")


def test_athlete_requests_carry_the_bearer_token() -> None:
    capture = Capture(body={"id": 1})

    mocked(capture).get_athlete(ACCESS_TOKEN)

    assert capture.requests[0].headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"


def test_base_urls_with_a_trailing_slash_give_the_same_paths() -> None:
    capture = Capture(body={"id": 1})
    strava = mocked(capture, api_url=f"{API_URL}/", oauth_url=f"{OAUTH_URL}/")

    strava.get_athlete(ACCESS_TOKEN)

    assert str(capture.requests[0].url) == f"{API_URL}/athlete"


def test_code_exchange_posts_the_authorization_code_grant_as_a_form() -> None:
    capture = Capture(body=TOKEN_BODY)

    mocked(capture).exchange_code("the-code")

    assert str(capture.requests[0].url) == f"{OAUTH_URL}/token"
    assert capture.form == {
        "client_id": [str(CLIENT_ID)],
        "client_secret": [CLIENT_SECRET],
        "code": ["the-code"],
        "grant_type": ["authorization_code"],
    }


def test_refresh_posts_the_refresh_token_grant_as_a_form() -> None:
    capture = Capture(body=TOKEN_BODY)

    mocked(capture).refresh_token("old-refresh")

    assert capture.form["grant_type"] == ["refresh_token"]
    assert capture.form["refresh_token"] == ["old-refresh"]


def test_activity_page_sends_paging_and_time_bounds() -> None:
    capture = Capture(body=[])

    mocked(capture).list_activities(
        ACCESS_TOKEN, before=1543683600, after=1541088000, page=3, per_page=200
    )

    assert capture.query == {
        "page": "3",
        "per_page": "200",
        "before": "1543683600",
        "after": "1541088000",
    }


def test_activity_page_larger_than_200_is_refused_before_sending() -> None:
    capture = Capture(body=[])

    with pytest.raises(ValueError, match="per_page"):
        mocked(capture).list_activities(ACCESS_TOKEN, per_page=201)

    assert capture.requests == []


def test_streams_request_sends_keys_as_csv_and_key_by_type() -> None:
    capture = Capture(body={})

    mocked(capture).get_activity_streams(ACCESS_TOKEN, 7, keys=["time", "heartrate"])

    assert capture.query == {"keys": "time,heartrate", "key_by_type": "true"}


def test_subscription_view_sends_app_credentials_in_the_query() -> None:
    capture = Capture(body=[])

    mocked(capture).list_subscriptions()

    assert capture.query == {"client_id": str(CLIENT_ID), "client_secret": CLIENT_SECRET}
    assert "Authorization" not in capture.requests[0].headers


def test_httpx_request_log_hides_the_client_secret(caplog: pytest.LogCaptureFixture) -> None:
    capture = Capture(body=[])

    with caplog.at_level(logging.INFO, logger="httpx"):
        mocked(capture).list_subscriptions()

    assert "push_subscriptions" in caplog.text
    assert CLIENT_SECRET not in caplog.text


# --- hooks (the quota scheduler's seam) ---------------------------------------------------


class RecordingHooks:
    def __init__(self, refuse: bool = False) -> None:
        self.before: list[RequestInfo] = []
        self.after: list[tuple[RequestInfo, int | None, RateLimitSnapshot]] = []
        self._refuse = refuse

    def before_request(self, request: RequestInfo) -> None:
        self.before.append(request)
        if self._refuse:
            raise RuntimeError("no budget")

    def after_response(
        self, request: RequestInfo, status_code: int | None, rate_limit: RateLimitSnapshot
    ) -> None:
        self.after.append((request, status_code, rate_limit))


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        (lambda strava: strava.get_athlete(ACCESS_TOKEN), "read"),
        (lambda strava: strava.list_subscriptions(), "read"),
        (lambda strava: strava.delete_subscription(1), "write"),
        (lambda strava: strava.exchange_code("code"), "oauth"),
    ],
)
def test_hooks_learn_the_kind_of_each_request(
    call: Callable[[StravaClient], object], kind: str
) -> None:
    hooks = RecordingHooks()
    strava = mocked(lambda request: httpx.Response(500), hooks=hooks)

    with pytest.raises(Transient):
        call(strava)

    assert [info.kind for info in hooks.before] == [kind]


def test_hooks_see_the_rate_limit_snapshot_after_each_response() -> None:
    hooks = RecordingHooks()
    headers = {"X-Ratelimit-Limit": "200,2000", "X-Ratelimit-Usage": "1,2"}
    strava = mocked(answer(200, {"id": 1}, headers), hooks=hooks)

    strava.get_athlete(ACCESS_TOKEN)

    [(info, status, snapshot)] = hooks.after
    assert (info.operation, status) == ("get_athlete", 200)
    assert snapshot.usage == WindowPair(1, 2)


def test_hooks_see_error_responses_too() -> None:
    hooks = RecordingHooks()
    strava = mocked(answer(429, RATE_LIMIT_BODY), hooks=hooks)

    with pytest.raises(RateLimited):
        strava.get_athlete(ACCESS_TOKEN)

    assert [status for _, status, _ in hooks.after] == [429]


def test_hooks_learn_that_no_response_arrived() -> None:
    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    hooks = RecordingHooks()

    with pytest.raises(Transient):
        mocked(time_out, hooks=hooks).get_athlete(ACCESS_TOKEN)

    [(_, status, snapshot)] = hooks.after
    assert status is None
    assert snapshot.empty


def test_hook_refusing_a_request_stops_it_before_sending() -> None:
    capture = Capture(body={"id": 1})

    with pytest.raises(RuntimeError, match="no budget"):
        mocked(capture, hooks=RecordingHooks(refuse=True)).get_athlete(ACCESS_TOKEN)

    assert capture.requests == []


def test_async_client_awaits_coroutine_hooks() -> None:
    seen: list[str] = []

    class AsyncHooks:
        async def before_request(self, request: RequestInfo) -> None:
            seen.append(f"before {request.operation}")

        async def after_response(
            self, request: RequestInfo, status_code: int | None, rate_limit: RateLimitSnapshot
        ) -> None:
            seen.append(f"after {status_code}")

    async def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[])

    run_async(
        lambda strava: strava.list_subscriptions(),
        transport=httpx.MockTransport(handle),
        hooks=AsyncHooks(),
    )

    assert seen == ["before list_subscriptions", "after 200"]


def test_async_client_accepts_plain_hooks() -> None:
    hooks = RecordingHooks()

    async def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps([]).encode())

    run_async(
        lambda strava: strava.list_subscriptions(),
        transport=httpx.MockTransport(handle),
        hooks=hooks,
    )

    assert [info.operation for info in hooks.before] == ["list_subscriptions"]
