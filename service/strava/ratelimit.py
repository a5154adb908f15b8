"""Strava's rate-limit headers, parsed into a snapshot.

Strava limits each application in two fixed windows, a quarter hour and the UTC day, and
reports both on (nearly) every response, for the overall bucket and for the "non-upload"
(read) bucket (docs/strava.md §2.1, §2.2). This module only reads what Strava said; deciding
what to do about it belongs to the quota scheduler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Window = Literal["short", "daily"]

# Lower-cased: the documented names are X-RateLimit-*, but the wire says X-Ratelimit-* and
# X-Readratelimit-* (docs/strava.md §2.2), so every lookup is case-insensitive.
LIMIT_HEADER = "x-ratelimit-limit"
USAGE_HEADER = "x-ratelimit-usage"
READ_LIMIT_HEADER = "x-readratelimit-limit"
READ_USAGE_HEADER = "x-readratelimit-usage"


@dataclass(frozen=True)
class WindowPair:
    """One header's two numbers: ``short`` is the 15-minute window, ``daily`` the UTC day."""

    short: int
    daily: int


@dataclass(frozen=True)
class RateLimitSnapshot:
    """What one response said about the application's quota.

    A field is ``None`` when its header was missing or unreadable: ``/oauth/token`` responses
    and some error responses carry no rate-limit headers at all (docs/strava.md §2.2).

    Parameters:
        limit: ``X-RateLimit-Limit``, the overall limits.
        usage: ``X-RateLimit-Usage``, the overall usage so far.
        read_limit: ``X-ReadRateLimit-Limit``, the "non-upload" limits.
        read_usage: ``X-ReadRateLimit-Usage``, the "non-upload" usage so far.
    """

    limit: WindowPair | None
    usage: WindowPair | None
    read_limit: WindowPair | None
    read_usage: WindowPair | None

    @property
    def empty(self) -> bool:
        """True when the response carried none of the four headers (in readable form)."""
        return (
            self.limit is None
            and self.usage is None
            and self.read_limit is None
            and self.read_usage is None
        )


EMPTY_SNAPSHOT = RateLimitSnapshot(limit=None, usage=None, read_limit=None, read_usage=None)


def parse_rate_limit_headers(headers: Mapping[str, str]) -> RateLimitSnapshot:
    """Read the four rate-limit headers from any mapping of header names to values.

    Never raises: a header that is missing or garbled leaves its field ``None``, because a
    malformed quota hint must not turn a good response into a failure.
    """
    by_name = {name.lower(): value for name, value in headers.items()}
    return RateLimitSnapshot(
        limit=_parse_pair(by_name.get(LIMIT_HEADER)),
        usage=_parse_pair(by_name.get(USAGE_HEADER)),
        read_limit=_parse_pair(by_name.get(READ_LIMIT_HEADER)),
        read_usage=_parse_pair(by_name.get(READ_USAGE_HEADER)),
    )


def _parse_pair(value: str | None) -> WindowPair | None:
    # The wire carries "200,2000"; spaces are stripped anyway because other clients' tests use
    # "601, 602" (docs/strava.md §2.2).
    if value is None:
        return None
    parts = [part.strip() for part in value.split(",")]
    if len(parts) != 2 or not all(part.isascii() and part.isdigit() for part in parts):
        return None
    return WindowPair(short=int(parts[0]), daily=int(parts[1]))


def exhausted_window(snapshot: RateLimitSnapshot) -> Window:
    """Which window a 429 is about: ``"daily"`` if either bucket's daily usage has reached its
    daily limit, else ``"short"``.

    Usage keeps counting past the limit (docs/strava.md §2.3), hence ``>=``. Without headers
    the short window is the cheaper guess: it resets within 15 minutes.
    """
    for limit, usage in (
        (snapshot.limit, snapshot.usage),
        (snapshot.read_limit, snapshot.read_usage),
    ):
        if limit is not None and usage is not None and usage.daily >= limit.daily:
            return "daily"
    return "short"
