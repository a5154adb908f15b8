"""What to do after a unit of work failed: a pure decision, carried out by the actors.

Rate limits are not failures: the work waits for the window in which quota exists again and
costs no retry. Transient faults back off exponentially with jitter, up to a bound. Anything
else is permanent and fails at once, keeping Strava's error.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import OperationalError

from service.config import default
from service.strava.errors import RateLimited, Transient
from service.strava.quota import QuotaExceeded
from service.strava.quota.tiers import REALTIME_TIERS
from service.strava.ratelimit import Window


@dataclass(frozen=True)
class WaitForQuota:
    """Try again once quota exists: at most one attempt per unit of work per window."""

    at: datetime


@dataclass(frozen=True)
class RetryLater:
    at: datetime


@dataclass(frozen=True)
class GiveUp:
    reason: str


Step = WaitForQuota | RetryLater | GiveUp


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, bounded in delay and in attempts.

    Parameters:
      base: the delay before the second attempt (before jitter).
      cap: the longest delay.
      max_attempts: attempts in all, after which the work fails for good.
      spread: the window over which work waiting for quota is scattered after the boundary,
        so that it does not all wake in the same instant.
      realtime_spread: the same for real-time work (webhook, on demand): there is little of
        it, room is held for it in the new window, and someone is waiting on it.
    """

    base: timedelta = timedelta(seconds=2)
    cap: timedelta = timedelta(minutes=10)
    max_attempts: int = default("retry_max_attempts")
    spread: timedelta = timedelta(seconds=10)
    realtime_spread: timedelta = timedelta(seconds=1)

    def delay(self, attempts: int, rng: random.Random) -> timedelta:
        ceiling: timedelta = min(self.cap, self.base * 2 ** max(attempts - 1, 0))
        return ceiling * rng.uniform(0.5, 1.0)


_TRANSIENT = (Transient, OperationalError, TimeoutError, ConnectionError)


def next_step(
    error: BaseException,
    *,
    attempts: int,
    now: datetime,
    window_reset: Callable[[Window], datetime],
    backoff: Backoff,
    rng: random.Random,
) -> Step:
    """Decide after a failed attempt; `attempts` counts failed attempts including this one."""
    spread = backoff.spread * rng.random()
    if isinstance(error, QuotaExceeded):
        if error.tier in REALTIME_TIERS:
            spread = backoff.realtime_spread * rng.random()
        return WaitForQuota(error.retry_at + spread)
    if isinstance(error, RateLimited):
        # Strava said 429 although we reserved: nothing more until its window resets (§2.3).
        return WaitForQuota(window_reset(error.window) + spread)
    if isinstance(error, _TRANSIENT):
        if attempts >= backoff.max_attempts:
            return GiveUp(f"gave up after {attempts} attempts: {error!r}")
        return RetryLater(now + backoff.delay(attempts, rng))
    return GiveUp(f"{type(error).__name__}: {error}")


def delay_ms(until: datetime, now: datetime) -> int:
    """The delay, in dramatiq's milliseconds, of a message re-sent to run at `until`."""
    return max(0, int((until - now).total_seconds() * 1000))
