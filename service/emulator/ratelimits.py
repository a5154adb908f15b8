"""Per-application request counting in Strava's fixed windows (docs/strava.md §2).

Strava counts per application in a 15-minute window aligned to :00/:15/:30/:45 and a UTC day
(§2.1). Both are fixed windows, so usage drops to zero at the boundary rather than sliding.
Epoch time is aligned to both boundaries, so ``floor(now / length)`` identifies a window.
Rejected requests still count (§2.1 "requests violating the short term limit will still count
toward the long term limit"; §2.3), so usage may exceed the limit.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from service.clock import Clock
from service.emulator.config import RateLimits

RATE_LIMIT_EXCEEDED = {
    "message": "Rate Limit Exceeded",
    "errors": [{"resource": "Application", "field": "rate limit", "code": "exceeded"}],
}


@dataclass(frozen=True)
class Usage:
    """Counts in the current windows, as reported in the ``*-Usage`` headers."""

    overall_short: int
    overall_daily: int
    read_short: int
    read_daily: int


class RateLimiter:
    """Counts requests and decides whether one is over a limit.

    Every emulated endpoint is a "non-upload" endpoint (uploads are not emulated), so every
    counted request goes into both the overall and the read bucket (§2.1).
    """

    def __init__(self, limits: RateLimits, clock: Clock, window_seconds: int) -> None:
        self.limits = limits
        self._clock = clock
        self._window = window_seconds
        self._day = window_seconds * 96
        self._lock = threading.Lock()
        self._short_id = -1
        self._day_id = -1
        self._short = 0
        self._daily = 0

    def _roll(self) -> None:
        now = self._clock()
        short_id = math.floor(now / self._window)
        day_id = math.floor(now / self._day)
        if short_id != self._short_id:
            self._short_id, self._short = short_id, 0
        if day_id != self._day_id:
            self._day_id, self._daily = day_id, 0

    def hit(self) -> tuple[bool, Usage]:
        """Count one request; return whether it is allowed and the usage including it."""
        with self._lock:
            self._roll()
            self._short += 1
            self._daily += 1
            usage = self._usage()
        limits = self.limits
        allowed = (
            usage.overall_short <= limits.overall_short
            and usage.overall_daily <= limits.overall_daily
            and usage.read_short <= limits.read_short
            and usage.read_daily <= limits.read_daily
        )
        return allowed, usage

    def usage(self) -> Usage:
        with self._lock:
            self._roll()
            return self._usage()

    def _usage(self) -> Usage:
        return Usage(self._short, self._daily, self._short, self._daily)

    def headers(self, usage: Usage) -> list[tuple[bytes, bytes]]:
        """The four headers with the casing seen on the wire (docs/strava.md §2.2)."""
        limits = self.limits
        return [
            (b"X-Ratelimit-Limit", f"{limits.overall_short},{limits.overall_daily}".encode()),
            (b"X-Ratelimit-Usage", f"{usage.overall_short},{usage.overall_daily}".encode()),
            (b"X-Readratelimit-Limit", f"{limits.read_short},{limits.read_daily}".encode()),
            (b"X-Readratelimit-Usage", f"{usage.read_short},{usage.read_daily}".encode()),
        ]

    def subscription_headers(self) -> list[tuple[bytes, bytes]]:
        """Push-subscription calls showed only these two, with usage 0,0 (§1.1)."""
        limits = self.limits
        return [
            (b"X-Ratelimit-Limit", f"{limits.overall_short},{limits.overall_daily}".encode()),
            (b"X-Ratelimit-Usage", b"0,0"),
        ]
