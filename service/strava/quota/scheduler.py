"""The quota scheduler: the interface every Strava call passes through, and its arithmetic.

Strava limits each application in fixed windows, a quarter hour aligned to :00/:15/:30/:45
and the UTC day, separately for "non-upload" (read) requests and overall (docs/strava.md §2.1).
The scheduler reserves one request in every counter it will spend before the request is sent,
and never sends one the budget cannot cover. After the response it reconciles its counters
with the usage Strava reports (§2.2), which also counts other clients of the same app.

The scheduler is work-conserving: each tier below the real-time ones (``on_demand``,
``webhook``) may use whatever the tiers above it and other clients of the app are not expected
to need for the rest of the window; for ``recent`` that is the real-time tiers and the other
clients, and ``backfill`` and ``reconcile`` also leave ``recent`` what it is doing in the
current window. The expected need is a forecast of *demand* (used, refused, and the usage
Strava reported beyond ours; ``window_demand``) learned from the last few short windows
(their peak of real-time work only: another client's full window is not forecast to recur as
a burst; their mean with other clients), the current window and the day (other clients
included), and yesterday
(``forecast_demand``, ``kept_for_realtime``): in the short window its recent peak (or this
window's rate so far when that runs hotter) times the fraction of the window still to come;
in the day the daily rate times the fraction of the day left; both with Poisson headroom for
bursts. It shrinks as the window and the day end (to nothing in the window, to four requests
in the day), and after a quiet day it is those four, so an idle real-time tier costs the
backlog next to nothing and what real-time work will not need before midnight goes to the
backlog. Real-time work is never held back by the forecast; the safety margin, never spent,
covers usage of other clients not yet reported.
Shares (``QUOTA_SHARES``) are optional hard caps per tier; by default there is none below the
forecast (docs/benchmarks/quota.md).

``QuotaScheduler`` holds the policy; a backend (``memory.py`` for one process, ``redis.py`` for
many) only keeps the counters and applies a reservation or a reconciliation atomically. The
decisions are pure functions here, so the backends agree and the rules are easy to test.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from service.clock import Clock
from service.config import default
from service.strava.client import RequestKind
from service.strava.quota.tiers import REALTIME_TIERS, TIERS_BY_PRIORITY, Tier
from service.strava.ratelimit import RateLimitSnapshot, Window, WindowPair, exhausted_window

if TYPE_CHECKING:
    from service.config import Settings

Bucket = Literal["overall", "read"]
"""Strava's two counters: every request spends ``overall``; "non-upload" ones also ``read``."""

"""Seconds since the epoch; injected so that tests and sped-up simulations control time."""

BUCKETS: tuple[Bucket, ...] = ("overall", "read")
WINDOWS: tuple[Window, ...] = ("short", "daily")

# Shares multiply floats: 200 x 0.95 x 0.7 is 132.99999999999997 in binary floating point, which
# would floor to 132. The tolerance absorbs that and nothing else; the Lua script gets it too.
ALLOWANCE_TOLERANCE = 1e-9

# Strava's default limits per application (docs/strava.md §2.1), until a response reports others.
STRAVA_LIMIT = WindowPair(default("quota_limit_short"), default("quota_limit_daily"))
STRAVA_READ_LIMIT = WindowPair(default("quota_read_limit_short"), default("quota_read_limit_daily"))


class QuotaError(Exception):
    """Base of the scheduler's errors."""


class QuotaExceeded(QuotaError):
    """The budget of ``tier`` cannot cover this request now; nothing was sent or counted.

    Parameters:
        tier: who the request was for.
        window: the window that blocks (``"daily"`` when both do and it resets later).
        retry_at: aware UTC time when a reservation should next succeed: the start of the
            next such window, or, for a lower tier held back only by the room kept for
            real-time work, the moment that room will have shrunk enough
            (``WindowPlan.fits_again_at``).
    """

    def __init__(self, tier: Tier, window: Window, retry_at: datetime) -> None:
        super().__init__(
            f"{tier.value} quota for the {window} window is spent; "
            f"next chance at {retry_at.isoformat()}"
        )
        self.tier = tier
        self.window: Window = window
        self.retry_at = retry_at


class TierNotSet(QuotaError):
    """A Strava call was made outside ``using_tier``: every call must say who it is for."""


@dataclass(frozen=True)
class QuotaConfig:
    """Window lengths, starting limits, margin and shares: everything the policy needs.

    Parameters:
        window_seconds: length of the short window (Strava: 900, aligned to the quarter hour).
        day_seconds: length of the daily window (Strava: 86400, aligned to UTC midnight).
        limit: overall limits until a response reports others (§2.1 defaults 200/2000).
        read_limit: read ("non-upload") limits until a response reports others (100/1000).
        safety_margin: fraction of every limit that is never spent.
        shares: per tier, the (short, daily) fraction of the spendable budget it may fill,
            counting all tiers' usage together: a hard cap, 1.0 (none) by default.
    """

    window_seconds: int = default("quota_window_seconds")
    day_seconds: int = default("quota_day_seconds")
    limit: WindowPair = STRAVA_LIMIT
    read_limit: WindowPair = STRAVA_READ_LIMIT
    safety_margin: float = default("quota_safety_margin")
    shares: Mapping[Tier, tuple[float, float]] = field(
        default_factory=lambda: {
            Tier(name): (short, daily) for name, (short, daily) in default("quota_shares").items()
        }
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> QuotaConfig:
        return cls(
            window_seconds=settings.quota_window_seconds,
            day_seconds=settings.quota_day_seconds,
            limit=WindowPair(settings.quota_limit_short, settings.quota_limit_daily),
            read_limit=WindowPair(settings.quota_read_limit_short, settings.quota_read_limit_daily),
            safety_margin=settings.quota_safety_margin,
            shares={Tier(name): share for name, share in settings.quota_shares.items()},
        )

    def length(self, window: Window) -> int:
        return self.window_seconds if window == "short" else self.day_seconds

    def default_limit(self, bucket: Bucket, window: Window) -> int:
        pair = self.limit if bucket == "overall" else self.read_limit
        return pair.short if window == "short" else pair.daily

    def factor(self, tier: Tier, window: Window) -> float:
        """The fraction of a limit ``tier`` may fill: (1 - margin) x its share."""
        short, daily = self.shares.get(tier, (1.0, 1.0))
        return (1.0 - self.safety_margin) * (short if window == "short" else daily)


def window_index(now: float, length: int) -> int:
    """Which window ``now`` falls in. Epoch multiples of 900 s are the quarter hours and
    multiples of 86400 s are UTC midnights, so no offset is needed (§2.1)."""
    return math.floor(now / length)


def window_start(index: int, length: int) -> datetime:
    return datetime.fromtimestamp(index * length, UTC)


def allowance(limit: int, factor: float) -> int:
    """How many requests a tier with ``factor`` may have in a window with ``limit``."""
    return math.floor(limit * factor + ALLOWANCE_TOLERANCE)


def buckets_spent(kind: RequestKind) -> tuple[Bucket, ...]:
    """The counters a request spends. Token calls carry no rate-limit headers and may not
    count at all (§2.2), so they are let through uncounted rather than guessed at."""
    if kind in ("read", "write"):
        # Only uploads and activity creation are outside the read ("non-upload") bucket
        # (§2.1); this service makes neither, so its writes (push subscriptions) spend both.
        return BUCKETS
    return ()


def yields_to_realtime(tier: Tier) -> bool:
    """Whether ``tier`` leaves room for the real-time tiers' recent demand."""
    return tier not in REALTIME_TIERS


# The real-time tiers' own room in a window is the allowance of the lowest of them.
LAST_REALTIME = REALTIME_TIERS[-1]
# The first tier that keeps room for others: what it keeps is the room kept for real-time work.
FIRST_YIELDING = TIERS_BY_PRIORITY[len(REALTIME_TIERS)]


# Short windows of history the forecast learns from. Four quarter hours: long enough that one
# quiet window after a busy one still keeps room for a burst, short enough that an idle
# real-time tier stops costing the backlog anything within an hour.
FORECAST_WINDOWS = 4

# Short windows whose counts are kept for the operator's chart of the last day (the /admin
# page): a day of Strava's quarter hours. A number of windows rather than a duration, so that
# a sped-up simulation with short windows keeps no more of them.
HISTORY_WINDOWS = 96

# The rate seen so far in the current window counts as if at least this fraction of it had
# passed: a burst raises the forecast at once, but one request in the first second does not
# make the forecast for the window hundreds.
OBSERVED_FLOOR = 0.25

# Standard deviations of headroom over the demand expected at the daily rate for the rest of the
# window and of the day: a request refused waits for the next window or midnight, so both keep
# room for bursts beyond the mean (Poisson counts: the deviation is the square root of the
# expected count). For sparse real-time work it is what keeps room at all: a webhook an hour
# is 0.5 calls a window, and the recent peak is often nothing. In the day it is the deviation
# of one request more than expected, so that a few requests stay kept up to midnight: a
# webhook that found the day spent in its last minutes would wait for midnight.
DAY_HEADROOM = 4.0

# A lower tier refused because of the room kept comes back no sooner than this fraction of a
# window later: the room shrinks continuously, and each waiting unit of work tried at every
# step of it would be refused many times per window.
RETRY_STEPS = 8


def window_demand(
    used: int, ours: int, above_used: int, above_denied: int, *, others: bool = True
) -> int:
    """What a tier could not have had in one window: what the tiers above it used and were
    refused, and the usage Strava reported beyond our own reservations (other clients of the
    same app, §2.2). Above ``recent`` that is the real-time demand, the one forecast from
    history: real-time work and other clients arrive when they will. ``backfill`` also yields
    to ``recent``, but only to what ``recent`` does in the current window: a burst of recent
    hydrations is work that ends, not a rate that comes back. Other clients' usage counts in
    the current window and the day (``others``), not in the recent windows' peak: one window
    another client filled is not forecast to recur in each of the next four."""
    return above_used + above_denied + (other_usage(used, ours) if others else 0)


def other_usage(used: int, ours: int) -> int:
    """The usage Strava reported in a window beyond our own reservations: other clients of
    the same app."""
    return max(0, used - ours)


@dataclass(frozen=True)
class Forecast:
    """Demand per short window, learned from recent windows (``window_demand`` of each).

    Parameters:
        peak: the highest real-time demand of the recent windows: the headroom for bursts.
        mean: the mean of their demand with other clients' usage: what a lower tier cannot
            expect of a window over many windows (the rest of the day).
    """

    peak: float
    mean: float


def forecast_demand(history: Sequence[int], others: Sequence[int] = ()) -> Forecast:
    """The forecast from the last ``FORECAST_WINDOWS`` windows' real-time demand and other
    clients' usage (missing windows are 0). Other clients count in the mean only: a lower
    tier's places in later windows must leave what they spend on average, but one window
    another client filled is no burst to keep room for."""
    recent = [*history[:FORECAST_WINDOWS]] + [0] * (FORECAST_WINDOWS - len(history))
    spent = sum(recent) + sum(others[:FORECAST_WINDOWS])
    return Forecast(peak=float(max(recent)), mean=spent / FORECAST_WINDOWS)


@dataclass(frozen=True)
class Kept:
    """Requests the lower tiers leave free in the current short window and day."""

    short: float
    daily: float


@dataclass(frozen=True)
class DayDemand:
    """``window_demand`` of whole UTC days: yesterday's, and today's so far."""

    yesterday: int = 0
    today: int = 0


def daily_rate(day: DayDemand, day_elapsed: float) -> float:
    """Real-time demand and other clients' usage expected in a whole UTC day: yesterday's, or
    today's so far when that runs hotter (counted as if at least ``OBSERVED_FLOOR`` of the day
    had passed)."""
    return max(float(day.yesterday), day.today / max(day_elapsed, OBSERVED_FLOOR))


def kept_for_realtime(
    forecast: Forecast,
    demand_now: int,
    elapsed: float,
    windows_left_today: float,
    day: DayDemand,
    day_elapsed: float,
) -> Kept:
    """The room kept for real-time work and other clients for the rest of the window and day.

    ``elapsed`` and ``day_elapsed`` are the fractions of the short window and of the day gone;
    ``windows_left_today`` the short windows (fractional) before midnight, the current one's
    remainder included. The daily rate is yesterday's demand, or today's so far when that runs
    hotter. In the short window: the rate per window (the recent peak, or this window's demand
    so far when that runs hotter) times what is left of it, and at least the daily rate's
    share of what is left plus ``DAY_HEADROOM`` deviations. In the day: the daily rate times
    what is left of the day, plus ``DAY_HEADROOM`` deviations of one request more; never less
    than the short window's. The short window's reaches nothing at its end, the day's
    ``DAY_HEADROOM`` requests.
    The Lua script of the Redis backend repeats this arithmetic step for step.
    """
    rate_of_day = daily_rate(day, day_elapsed)
    windows_per_day = windows_left_today / (1.0 - day_elapsed)
    rate = max(forecast.peak, demand_now / max(elapsed, OBSERVED_FLOOR))
    in_window = rate_of_day / windows_per_day * (1.0 - elapsed)
    short = max(rate * (1.0 - elapsed), in_window + DAY_HEADROOM * math.sqrt(in_window))
    expected = rate_of_day * (1.0 - day_elapsed)
    daily = max(expected + DAY_HEADROOM * math.sqrt(expected + 1.0), short)
    return Kept(short=short, daily=daily)


def blocking_windows(
    config: QuotaConfig,
    tier: Tier,
    buckets: tuple[Bucket, ...],
    used: Callable[[Bucket, Window], int],
    limit: Callable[[Bucket, Window], int],
    kept: Callable[[Bucket, Window], float] = lambda _bucket, _window: 0.0,
) -> tuple[Window, ...]:
    """The windows in which one more request of ``tier`` would not fit (empty: it fits).

    A tier must stay within its own allowance (its share); a tier below the real-time ones
    must also leave ``kept(bucket, window)`` free under the real-time tiers' allowance."""
    return tuple(
        window
        for window in WINDOWS
        if any(
            _blocked_by(config, tier, used(b, window), limit(b, window), kept(b, window), window)
            for b in buckets
        )
    )


def _blocked_by(
    config: QuotaConfig, tier: Tier, used: int, limit: int, kept: float, window: Window
) -> Literal["", "cap", "kept"]:
    after = used + 1
    if after > allowance(limit, config.factor(tier, window)):
        return "cap"
    if yields_to_realtime(tier) and after + kept > realtime_allowance(config, limit, window):
        return "kept"
    return ""


def realtime_allowance(config: QuotaConfig, limit: int, window: Window) -> float:
    """The most the real-time tiers may fill, with the tolerance of ``allowance``."""
    return allowance(limit, config.factor(LAST_REALTIME, window)) + ALLOWANCE_TOLERANCE


def room(
    config: QuotaConfig, tier: Tier, used: int, limit: int, kept: float, window: Window
) -> int:
    """Requests ``tier`` could still reserve in one (bucket, window) now."""
    free = allowance(limit, config.factor(tier, window)) - used
    if yields_to_realtime(tier):
        free = min(free, math.floor(realtime_allowance(config, limit, window) - used - kept))
    return max(0, free)


@dataclass(frozen=True)
class Reconciliation:
    """What one response changes, decided from its status and headers alone.

    Parameters:
        limits: limits Strava reported; they replace the configured or earlier ones.
        usage: usage Strava reported; counters are raised to it, never lowered, because our
            own requests still in flight may not be in it yet.
        throttled: on a 429, the window it exhausted (§2.3); ``None`` otherwise.
        mark_full: on a 429, the buckets to mark full in that window until it rolls.
    """

    limits: Mapping[tuple[Bucket, Window], int]
    usage: Mapping[tuple[Bucket, Window], int]
    throttled: Window | None = None
    mark_full: tuple[Bucket, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.limits and not self.usage and self.throttled is None


def plan_reconciliation(
    kind: RequestKind, status_code: int | None, snapshot: RateLimitSnapshot
) -> Reconciliation:
    """Turn one response into a ``Reconciliation``."""
    limits: dict[tuple[Bucket, Window], int] = {}
    usage: dict[tuple[Bucket, Window], int] = {}
    reported: tuple[tuple[Bucket, WindowPair | None, WindowPair | None], ...] = (
        ("overall", snapshot.limit, snapshot.usage),
        ("read", snapshot.read_limit, snapshot.read_usage),
    )
    for bucket, limit_pair, usage_pair in reported:
        for window in WINDOWS:
            # A zero limit would stop everything; it is a garbled header, not a policy.
            if limit_pair is not None and _pick(limit_pair, window) > 0:
                limits[(bucket, window)] = _pick(limit_pair, window)
            if usage_pair is not None:
                usage[(bucket, window)] = _pick(usage_pair, window)
    if status_code != 429:
        return Reconciliation(limits=limits, usage=usage)
    # Strava sends no Retry-After (§2.3): the refused request's buckets stay shut until the
    # exhausted window rolls. A token call spends no bucket of ours, so it shuts "overall".
    return Reconciliation(
        limits=limits,
        usage=usage,
        throttled=exhausted_window(snapshot),
        mark_full=buckets_spent(kind) or ("overall",),
    )


def drop_stale_usage(
    config: QuotaConfig, plan: Reconciliation, sent_at: float, now: float
) -> Reconciliation:
    """Keep only the usage of windows that have not rolled since the request was sent.

    A request sent just before a boundary is counted by Strava in the old window; if its
    answer arrives after the boundary, that usage would otherwise be applied to the new
    window, and since counters are never lowered it would shut the new window to every tier
    whose share is below the old usage, for the whole window (scripts/bench_quota.py measured
    a window in which backfill sent 1 request of its 66). The next answer sent in the new
    window reports its usage; until then a request that reached Strava after the boundary
    may be missing from the new count, which the safety margin covers. Limits and 429s
    still apply as before.
    """
    rolled = {
        window
        for window in WINDOWS
        if window_index(sent_at, config.length(window)) != window_index(now, config.length(window))
    }
    if not rolled or not plan.usage:
        return plan
    usage = {key: value for key, value in plan.usage.items() if key[1] not in rolled}
    return replace(plan, usage=usage)


def _pick(pair: WindowPair, window: Window) -> int:
    return pair.short if window == "short" else pair.daily


@dataclass(frozen=True)
class Counters:
    """A backend's counters for the current windows, as read for ``status``.

    Parameters:
        used: requests counted per (bucket, window), ours and reported.
        used_by_tier: our own reservations per (bucket, window, tier).
        limits: limits adopted from Strava's headers; absent ones are the configured ones.
        throttled: 429s seen since the backend was created (a metric; never resets).
        denials: reservations refused per tier since the backend was created.
        demand_history: per bucket, the real-time demand (``window_demand`` of the tiers
            above ``FIRST_YIELDING``, other clients not included) of the previous short windows,
            the most recent first (``FORECAST_WINDOWS`` of them; a window without counts is 0).
        other_usage_history: per bucket, ``other_usage`` of the same previous windows.
        demand_now: per (bucket, tier), ``window_demand`` of the tiers above ``tier`` in the
            current short window so far.
        day_demand: per bucket, the real-time demand, other clients included, yesterday and
            today so far.
    """

    used: Mapping[tuple[Bucket, Window], int]
    used_by_tier: Mapping[tuple[Bucket, Window, Tier], int]
    limits: Mapping[tuple[Bucket, Window], int]
    throttled: int
    denials: Mapping[Tier, int]
    demand_history: Mapping[Bucket, tuple[int, ...]] = field(default_factory=dict)
    other_usage_history: Mapping[Bucket, tuple[int, ...]] = field(default_factory=dict)
    demand_now: Mapping[tuple[Bucket, Tier], int] = field(default_factory=dict)
    day_demand: Mapping[Bucket, DayDemand] = field(default_factory=dict)


@dataclass(frozen=True)
class WindowStatus:
    """One counter (bucket x window) now."""

    bucket: Bucket
    window: Window
    used: int
    limit: int
    allowed: Mapping[Tier, int]
    used_by_tier: Mapping[Tier, int]
    held_for_realtime: int
    started_at: datetime
    resets_at: datetime
    seconds_to_reset: float

    def as_json(self) -> dict[str, Any]:
        ours = sum(self.used_by_tier.values())
        return {
            "used": self.used,
            "limit": self.limit,
            "started_at": _iso(self.started_at),
            "resets_at": _iso(self.resets_at),
            "seconds_to_reset": round(self.seconds_to_reset, 3),
            # Reported usage beyond our own reservations: other clients of the app (§2.2).
            "other": max(0, self.used - ours),
            # Left free by the lower tiers for the rest of this window: the forecast of real-time
            # work and other clients' usage (scheduler.kept_for_realtime).
            "held_for_realtime": self.held_for_realtime,
            "tiers": {
                tier.value: {"used": self.used_by_tier[tier], "allowed": self.allowed[tier]}
                for tier in TIERS_BY_PRIORITY
            },
        }


@dataclass(frozen=True)
class WindowUsage:
    """What one short window counted per bucket (ours and reported), for the chart of the
    last day."""

    started_at: datetime
    used: Mapping[Bucket, int]


@dataclass(frozen=True)
class QuotaStatus:
    """The scheduler's view of every window now; ``as_json`` is what GET /quota returns."""

    at: datetime
    backend: str
    safety_margin: float
    windows: tuple[WindowStatus, ...]
    throttled: int
    denials: Mapping[Tier, int]

    def window(self, bucket: Bucket, window: Window) -> WindowStatus:
        return next(w for w in self.windows if w.bucket == bucket and w.window == window)

    def as_json(self) -> dict[str, Any]:
        return {
            "at": _iso(self.at),
            "backend": self.backend,
            "safety_margin": self.safety_margin,
            "buckets": {
                bucket: {window: self.window(bucket, window).as_json() for window in WINDOWS}
                for bucket in BUCKETS
            },
            "throttled": self.throttled,
            "denials": {tier.value: self.denials.get(tier, 0) for tier in TIERS_BY_PRIORITY},
        }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class TierCapacity:
    """What one tier can expect, from the counters and the forecast now.

    Parameters:
        room_now: requests it could reserve at once (both buckets, both windows).
        per_window: requests per short window it can expect going forward: the real-time
            allowance less the mean forecast demand (for a lower tier), within its share, and
            no more than its expected daily room spread over the day's windows.
        window_resets_at: when the current short window ends.
        daily_room: requests it can expect for the rest of the UTC day: the daily allowance
            less what is used and what is kept for real-time work until midnight.
        day_resets_at: the next UTC midnight (the end of the daily window).
        window_budget: the most a short window may hold (Strava's limit less the margin).
    """

    room_now: int
    per_window: float
    window_resets_at: datetime
    daily_room: int
    day_resets_at: datetime
    window_budget: int


def window_position(config: QuotaConfig, now: float) -> tuple[float, float, float]:
    """The fraction of the current short window gone, the short windows (fractional) left
    before the daily window ends, and the fraction of the day gone: the time inputs of
    ``kept_for_realtime``."""
    length, day = config.window_seconds, config.day_seconds
    elapsed = now / length - window_index(now, length)
    day_end = (window_index(now, day) + 1) * day
    return elapsed, (day_end - now) / length, now / day - window_index(now, day)


class WindowPlan:
    """The policy applied to one reading of the counters: the room kept, what each tier may
    still use, when a refused tier fits again. Pure: both backends' counters go through it.

    Parameters:
        config: windows, limits, margin and shares.
        now: seconds since the epoch.
        counters: the backend's counters at ``now``.
    """

    def __init__(self, config: QuotaConfig, now: float, counters: Counters) -> None:
        self.config = config
        self.now = now
        self.counters = counters
        self.short_index = window_index(now, config.window_seconds)
        self.elapsed, self.windows_left_today, self.day_elapsed = window_position(config, now)
        self.forecasts = {
            bucket: forecast_demand(
                counters.demand_history.get(bucket, ()),
                counters.other_usage_history.get(bucket, ()),
            )
            for bucket in BUCKETS
        }
        self.kept = {
            (bucket, tier): self.kept_at(bucket, tier, now)
            for bucket in BUCKETS
            for tier in TIERS_BY_PRIORITY
        }

    def limit(self, bucket: Bucket, window: Window) -> int:
        return self.counters.limits.get((bucket, window), self.config.default_limit(bucket, window))

    def used(self, bucket: Bucket, window: Window) -> int:
        return self.counters.used.get((bucket, window), 0)

    def kept_in(self, bucket: Bucket, window: Window, tier: Tier) -> float:
        """The room ``tier`` leaves free in (bucket, window) for the tiers above it."""
        kept = self.kept[(bucket, tier)]
        return kept.short if window == "short" else kept.daily

    def start(self, window: Window, offset: int = 0) -> datetime:
        length = self.config.length(window)
        return window_start(window_index(self.now, length) + offset, length)

    def kept_at(self, bucket: Bucket, tier: Tier, moment: float) -> Kept:
        """The room ``tier`` keeps at ``moment`` of the same windows (now, or later if
        nothing else is spent)."""
        elapsed, windows_left, day_elapsed = window_position(self.config, moment)
        return kept_for_realtime(
            self.forecasts[bucket],
            self.counters.demand_now.get((bucket, tier), 0),
            elapsed,
            windows_left,
            self.counters.day_demand.get(bucket, DayDemand()),
            day_elapsed,
        )

    def fits_again_at(self, tier: Tier, buckets: tuple[Bucket, ...], window: Window) -> datetime:
        """When one more request of ``tier`` should fit in ``window`` if nothing else is
        spent: the next window when its allowance is spent, else the moment the room kept has
        shrunk enough (no sooner than ``1 / RETRY_STEPS`` of a short window from now)."""
        end = self.start(window, 1).timestamp()
        at = self.now + self.config.window_seconds / RETRY_STEPS
        for bucket in buckets:
            used, limit = self.used(bucket, window), self.limit(bucket, window)
            reason = _blocked_by(
                self.config, tier, used, limit, self.kept_in(bucket, window, tier), window
            )
            if reason == "cap":
                return self.start(window, 1)
            if reason != "kept":
                continue
            top = realtime_allowance(self.config, limit, window) - used - 1

            def fits(moment: float, bucket: Bucket = bucket, top: float = top) -> bool:
                kept = self.kept_at(bucket, tier, moment)
                return (kept.short if window == "short" else kept.daily) <= top

            # The room kept shrinks towards the window's end, where it is nothing: bisect.
            low, high = self.now, end
            for _ in range(40):
                middle = (low + high) / 2
                low, high = (low, middle) if fits(middle) else (middle, high)
            at = max(at, high)
        return min(datetime.fromtimestamp(at, UTC), self.start(window, 1))

    def capacity(self, tier: Tier, buckets: tuple[Bucket, ...]) -> TierCapacity:
        yields = yields_to_realtime(tier)
        per_day = self.config.day_seconds / self.config.window_seconds

        def room_in(bucket: Bucket, window: Window) -> int:
            return room(
                self.config,
                tier,
                self.used(bucket, window),
                self.limit(bucket, window),
                self.kept_in(bucket, window, tier),
                window,
            )

        def expected(bucket: Bucket, window: Window) -> float:
            # A whole future window (or day): the allowance less the demand of others, a day's
            # forecast from whole days (a few quarter hours' mean times 96 is mostly noise).
            limit = self.limit(bucket, window)
            others = (
                self.forecasts[bucket].mean
                if window == "short"
                else daily_rate(self.counters.day_demand.get(bucket, DayDemand()), self.day_elapsed)
            )
            own: float = allowance(limit, self.config.factor(tier, window))
            if yields:
                own = min(own, realtime_allowance(self.config, limit, window) - others)
            return max(0.0, float(own))

        per_window = min(min(expected(b, "short"), expected(b, "daily") / per_day) for b in buckets)
        return TierCapacity(
            room_now=min(room_in(b, w) for b in buckets for w in WINDOWS),
            per_window=per_window,
            window_resets_at=self.start("short", 1),
            daily_room=min(room_in(b, "daily") for b in buckets),
            day_resets_at=self.start("daily", 1),
            window_budget=min(
                allowance(self.limit(b, "short"), self.config.factor(LAST_REALTIME, "short"))
                for b in buckets
            ),
        )

    def window_status(self, bucket: Bucket, window: Window) -> WindowStatus:
        length = self.config.length(window)
        index = window_index(self.now, length)
        limit = self.limit(bucket, window)
        return WindowStatus(
            bucket=bucket,
            window=window,
            used=self.used(bucket, window),
            limit=limit,
            allowed={
                tier: allowance(limit, self.config.factor(tier, window))
                for tier in TIERS_BY_PRIORITY
            },
            used_by_tier={
                tier: self.counters.used_by_tier.get((bucket, window, tier), 0)
                for tier in TIERS_BY_PRIORITY
            },
            held_for_realtime=math.ceil(
                self.kept_in(bucket, window, FIRST_YIELDING) - ALLOWANCE_TOLERANCE
            ),
            started_at=window_start(index, length),
            resets_at=window_start(index + 1, length),
            seconds_to_reset=(index + 1) * length - self.now,
        )


class QuotaScheduler(ABC):
    """Reserves Strava budget before each call and reconciles it after each response.

    Subclasses keep the counters (``_reserve``, ``_reconcile``, ``_counters``); this class
    decides what to reserve, what a response means and when a refused tier may try again.

    Parameters:
        config: windows, limits, margin and shares.
        clock: seconds since the epoch (``time.time`` unless a test or simulation says so).
    """

    backend = "abstract"

    def __init__(self, config: QuotaConfig, clock: Clock = time.time) -> None:
        self.config = config
        self._clock = clock

    def reserve(self, tier: Tier, kind: RequestKind) -> None:
        """Count one request of ``tier`` in every counter it spends, or raise QuotaExceeded.

        Either every counter is incremented or none is, so concurrent callers never
        together overshoot a budget.
        """
        buckets = buckets_spent(kind)
        if not buckets:
            return
        now = self._clock()
        blocked = self._reserve(now, tier, buckets)
        if blocked:
            # Read back only on a refusal: when it fits again depends on the room kept.
            plan = self._plan(now, self._counters(now))
            at = {window: plan.fits_again_at(tier, buckets, window) for window in blocked}
            window = max(blocked, key=lambda w: at[w])
            raise QuotaExceeded(tier, window, at[window])

    def observe(
        self,
        kind: RequestKind,
        status_code: int | None,
        snapshot: RateLimitSnapshot,
        sent_at: float | None = None,
    ) -> None:
        """Reconcile with one response: adopt reported limits, raise counters to reported
        usage, and on a 429 mark the exhausted window full and count it.

        Usage is applied to the windows current when the response arrives. With ``sent_at``
        (``now()`` when the request went out), usage of a window that has rolled since is
        dropped (``drop_stale_usage``); without it, an answer that crosses a boundary may
        carry the old window's usage into the new one.
        """
        now = self._clock()
        plan = plan_reconciliation(kind, status_code, snapshot)
        if sent_at is not None:
            plan = drop_stale_usage(self.config, plan, sent_at, now)
        if not plan.empty:
            self._reconcile(now, plan)

    def now(self) -> float:
        """The scheduler's clock; hooks stamp ``sent_at`` for ``observe`` with it."""
        return self._clock()

    def retry_at(self, window: Window) -> datetime:
        """When the next ``window`` starts: the earliest a refused request may go again."""
        return self._next_start(window, self._clock())

    def status(self) -> QuotaStatus:
        """Every counter now, with what each tier may still use and when windows reset."""
        now = self._clock()
        plan = self._plan(now, self._counters(now))
        return QuotaStatus(
            at=datetime.fromtimestamp(now, UTC),
            backend=self.backend,
            safety_margin=self.config.safety_margin,
            windows=tuple(
                plan.window_status(bucket, window) for bucket in BUCKETS for window in WINDOWS
            ),
            throttled=plan.counters.throttled,
            denials=plan.counters.denials,
        )

    def usage_history(self) -> list[WindowUsage]:
        """The last ``HISTORY_WINDOWS`` short windows, the current one last, with what each
        counted per bucket (0 in a window nothing was counted in)."""
        now = self._clock()
        length = self.config.window_seconds
        current = window_index(now, length)
        first = current - HISTORY_WINDOWS + 1
        counted = self._usage_by_window(now, first)
        return [
            WindowUsage(
                started_at=window_start(index, length),
                used={bucket: counted.get(index, {}).get(bucket, 0) for bucket in BUCKETS},
            )
            for index in range(first, current + 1)
        ]

    def tier_capacity(self, tier: Tier, kind: RequestKind = "read") -> TierCapacity:
        """What ``tier`` can expect now and going forward (for admission and ETAs)."""
        now = self._clock()
        return self._plan(now, self._counters(now)).capacity(tier, buckets_spent(kind) or BUCKETS)

    def _plan(self, now: float, counters: Counters) -> WindowPlan:
        return WindowPlan(self.config, now, counters)

    @abstractmethod
    def close(self) -> None:
        """Release the backend's resources (a connection pool, if it owns one)."""

    def _next_start(self, window: Window, now: float) -> datetime:
        length = self.config.length(window)
        return window_start(window_index(now, length) + 1, length)

    @abstractmethod
    def _reserve(self, now: float, tier: Tier, buckets: tuple[Bucket, ...]) -> tuple[Window, ...]:
        """Atomically: if one more request fits in every (bucket, window) for ``tier``
        (``blocking_windows``), count it there and per tier and return ``()``; otherwise count
        a denial for ``tier`` and return the blocking windows."""

    @abstractmethod
    def _reconcile(self, now: float, plan: Reconciliation) -> None:
        """Atomically apply ``plan`` to the windows current at ``now`` and the limits."""

    @abstractmethod
    def _counters(self, now: float) -> Counters:
        """The counters of the windows current at ``now``."""

    @abstractmethod
    def _usage_by_window(self, now: float, first: int) -> Mapping[int, Mapping[Bucket, int]]:
        """Per short window from index ``first`` to the one current at ``now``, the usage
        counted per bucket; windows without counts may be left out."""
