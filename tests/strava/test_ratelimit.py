"""parse_rate_limit_headers and exhausted_window (docs/strava.md §2.2, §2.3)."""

from __future__ import annotations

import httpx
import pytest

from service.strava.ratelimit import (
    RateLimitSnapshot,
    WindowPair,
    exhausted_window,
    parse_rate_limit_headers,
)

# As on the wire in the 2025 recording of GET /activities/{id} (docs/strava.md §2.2).
WIRE_HEADERS = {
    "X-Ratelimit-Usage": "5,148",
    "X-Ratelimit-Limit": "200,2000",
    "X-Readratelimit-Limit": "100,1000",
    "X-Readratelimit-Usage": "5,148",
}


def snapshot(
    limit: tuple[int, int] | None = None,
    usage: tuple[int, int] | None = None,
    read_limit: tuple[int, int] | None = None,
    read_usage: tuple[int, int] | None = None,
) -> RateLimitSnapshot:
    def pair(values: tuple[int, int] | None) -> WindowPair | None:
        return None if values is None else WindowPair(*values)

    return RateLimitSnapshot(pair(limit), pair(usage), pair(read_limit), pair(read_usage))


def test_wire_casing_is_parsed() -> None:
    parsed = parse_rate_limit_headers(WIRE_HEADERS)

    assert parsed == snapshot(
        limit=(200, 2000), usage=(5, 148), read_limit=(100, 1000), read_usage=(5, 148)
    )


def test_documented_casing_is_parsed() -> None:
    parsed = parse_rate_limit_headers(
        {"X-RateLimit-Limit": "200,2000", "X-ReadRateLimit-Usage": "7,9"}
    )

    assert parsed.limit == WindowPair(short=200, daily=2000)
    assert parsed.read_usage == WindowPair(short=7, daily=9)


def test_lower_case_names_are_parsed() -> None:
    parsed = parse_rate_limit_headers({"x-ratelimit-usage": "1,2"})

    assert parsed.usage == WindowPair(short=1, daily=2)


def test_httpx_headers_are_accepted() -> None:
    parsed = parse_rate_limit_headers(httpx.Headers(WIRE_HEADERS))

    assert parsed.read_limit == WindowPair(short=100, daily=1000)


def test_spaces_around_numbers_are_stripped() -> None:
    parsed = parse_rate_limit_headers({"X-RateLimit-Usage": " 601, 602 "})

    assert parsed.usage == WindowPair(short=601, daily=602)


def test_usage_above_the_limit_is_kept() -> None:
    # The 429 example in the rate-limit docs (docs/strava.md §2.3).
    parsed = parse_rate_limit_headers({"X-Ratelimit-Usage": "692,29300"})

    assert parsed.usage == WindowPair(short=692, daily=29300)


@pytest.mark.parametrize(
    "value",
    [
        "",
        ",",
        "abc",
        "200",
        "200,",
        ",2000",
        "1,2,3",
        "1.5,2",
        "-1,5",
        "1;2",
        "\uff12,\uff13",
        "0x10,1",
    ],
)
def test_garbled_value_leaves_the_field_empty(value: str) -> None:
    parsed = parse_rate_limit_headers({"X-Ratelimit-Limit": value})

    assert parsed.limit is None


def test_garbled_header_does_not_hide_the_others() -> None:
    parsed = parse_rate_limit_headers({**WIRE_HEADERS, "X-Ratelimit-Limit": "garbage"})

    assert parsed.limit is None
    assert parsed.usage == WindowPair(short=5, daily=148)


def test_missing_headers_give_an_empty_snapshot() -> None:
    # /oauth/token answers carry no rate-limit headers (docs/strava.md §2.2).
    parsed = parse_rate_limit_headers({"Content-Type": "application/json"})

    assert parsed.empty
    assert parsed == snapshot()


def test_overall_headers_without_read_headers_are_not_empty() -> None:
    # The 2018 push-subscription answers carried only the overall pair (docs/strava.md §1.1).
    parsed = parse_rate_limit_headers(
        {"X-Ratelimit-Limit": "600,30000", "X-Ratelimit-Usage": "0,0"}
    )

    assert not parsed.empty
    assert parsed.read_limit is None
    assert parsed.read_usage is None


def test_daily_window_is_exhausted_when_overall_daily_usage_reaches_the_limit() -> None:
    assert exhausted_window(snapshot(limit=(200, 2000), usage=(12, 2000))) == "daily"


def test_daily_window_is_exhausted_when_read_daily_usage_reaches_the_limit() -> None:
    exhausted = snapshot(
        limit=(200, 2000), usage=(40, 1000), read_limit=(100, 1000), read_usage=(40, 1000)
    )

    assert exhausted_window(exhausted) == "daily"


def test_daily_window_is_exhausted_when_usage_has_run_past_the_limit() -> None:
    assert exhausted_window(snapshot(limit=(600, 30000), usage=(700, 31000))) == "daily"


def test_short_window_is_exhausted_when_daily_usage_is_below_the_limit() -> None:
    assert exhausted_window(snapshot(limit=(600, 30000), usage=(692, 29300))) == "short"


def test_short_window_is_assumed_without_headers() -> None:
    assert exhausted_window(snapshot()) == "short"


def test_a_usage_without_its_limit_decides_nothing() -> None:
    assert exhausted_window(snapshot(usage=(5000, 5000))) == "short"
