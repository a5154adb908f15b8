"""The status → exception mapping and fault parsing (docs/strava.md §2.3, §3.3, §4.5)."""

from __future__ import annotations

import pytest

from service.strava.errors import (
    BadRequest,
    NotFound,
    RateLimited,
    StravaError,
    Transient,
    Unauthorized,
    UnexpectedResponse,
    error_for_response,
    parse_fault,
)
from service.strava.ratelimit import EMPTY_SNAPSHOT, RateLimitSnapshot, WindowPair

# Documented bodies only (docs/strava.md sections in the names).
RATE_LIMIT_BODY_2_3 = (
    '{"message":"Rate Limit Exceeded","errors":[{"resource":"Application",'
    '"field":"rate limit","code":"exceeded"}]}'
)
INVALID_TOKEN_BODY_3_3 = (
    '{"message":"Authorization Error","errors":[{"resource":"Athlete",'
    '"field":"access_token","code":"invalid"}]}'
)
INVALID_CODE_BODY_3_3 = (
    '{"message":"Bad Request","errors":[{"resource":"RequestToken","field":"code",'
    '"code":"invalid"}]}'
)
RECORD_NOT_FOUND_BODY_4_2 = (
    '{"message":"Record Not Found","errors":[{"resource":"Activity","field":"id",'
    '"code":"invalid"}]}'
)
ATHLETE_LIMIT_MESSAGE_2_1 = "Limit of connected athletes exceeded"


def error(
    status: int, body: str = "", rate_limit: RateLimitSnapshot = EMPTY_SNAPSHOT
) -> StravaError:
    return error_for_response(status, body, rate_limit, operation="get_activity")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (403, BadRequest),
        (404, NotFound),
        (409, BadRequest),
        (422, BadRequest),
        (429, RateLimited),
        (500, Transient),
        (502, Transient),
        (503, Transient),
        (302, UnexpectedResponse),
    ],
)
def test_status_maps_to_its_error_type(status: int, expected: type[StravaError]) -> None:
    assert type(error(status)) is expected


def test_every_error_is_a_strava_error() -> None:
    for kind in (RateLimited, Unauthorized, NotFound, BadRequest, Transient, UnexpectedResponse):
        assert issubclass(kind, StravaError)


def test_fault_is_parsed_from_the_documented_body() -> None:
    fault = parse_fault(INVALID_CODE_BODY_3_3)

    assert fault is not None
    assert fault.message == "Bad Request"
    assert [(e.resource, e.field, e.code) for e in fault.errors] == [
        ("RequestToken", "code", "invalid")
    ]


@pytest.mark.parametrize("body", ["", "   ", "<html>502</html>", "[]", '"text"', '{"id": 1}'])
def test_body_that_is_not_a_fault_gives_no_fault(body: str) -> None:
    assert parse_fault(body) is None


def test_fault_with_unknown_shape_of_errors_gives_no_fault() -> None:
    # The hand-edited Ruby fixture's body (docs/strava.md §2.3): "errors" is a string.
    assert parse_fault('{"errors":"Rate Limit Exceeded","status":429,"message":"x"}') is None


def test_error_keeps_a_body_that_is_not_a_fault() -> None:
    raised = error(502, "<html>Bad gateway</html>")

    assert raised.fault is None
    assert raised.body == "<html>Bad gateway</html>"


def test_error_carries_status_fault_and_rate_limit() -> None:
    headers = RateLimitSnapshot(WindowPair(200, 2000), WindowPair(3, 40), None, None)

    raised = error(404, RECORD_NOT_FOUND_BODY_4_2, headers)

    assert raised.status_code == 404
    assert raised.fault is not None
    assert raised.fault.message == "Record Not Found"
    assert raised.rate_limit == headers


def test_message_names_the_operation_and_the_fault() -> None:
    raised = error(401, INVALID_TOKEN_BODY_3_3)

    assert str(raised) == (
        "Strava answered 401 to get_activity: Authorization Error (Athlete.access_token invalid)"
    )


def test_403_with_an_authorization_fault_is_unauthorized() -> None:
    assert isinstance(error(403, INVALID_TOKEN_BODY_3_3), Unauthorized)


def test_403_with_the_rate_limit_fault_is_rate_limited() -> None:
    # Strava's pre-2017 answer to an exhausted quota (docs/strava.md §2.3).
    assert isinstance(error(403, RATE_LIMIT_BODY_2_3), RateLimited)


def test_403_for_too_many_connected_athletes_is_a_bad_request() -> None:
    assert isinstance(error(403, ATHLETE_LIMIT_MESSAGE_2_1), BadRequest)


def test_rate_limited_window_is_daily_when_daily_usage_reached_the_limit() -> None:
    headers = RateLimitSnapshot(WindowPair(200, 2000), WindowPair(10, 2001), None, None)

    raised = error(429, RATE_LIMIT_BODY_2_3, headers)

    assert isinstance(raised, RateLimited)
    assert raised.window == "daily"


def test_rate_limited_window_is_short_when_daily_usage_is_below_the_limit() -> None:
    headers = RateLimitSnapshot(WindowPair(600, 30000), WindowPair(692, 29300), None, None)

    raised = error(429, RATE_LIMIT_BODY_2_3, headers)

    assert isinstance(raised, RateLimited)
    assert raised.window == "short"
