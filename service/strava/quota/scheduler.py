"""The quota scheduler: the interface every Strava call passes through, and its arithmetic.

Strava limits each application in fixed windows, a quarter hour aligned to :00/:15/:30/:45
and the UTC day, separately for "non-upload" (read) requests and overall (docs/strava.md §2.1).
The scheduler reserves one request in every counter it will spend before the request is sent,
and never sends one the budget cannot cover. After the response it reconciles its counters
with the usage Strava reports (§2.2), which also counts other clients of the same app.

Lower priority tiers may fill only a share of each window, and a safety margin is never spent,
so a long backfill cannot starve webhooks or a user waiting on a page. A fixed share is not
enough on its own: a backfill fills its share early in the window, and real-time work that needs
more than the rest (a webhook create with its streams costs two calls) waited for the next
window (scripts/bench_quota.py: webhook p99 with a backlog 28 s, where one call per create had
given 4.7 s). So in the short window the lower tiers also leave room for what the real-time
tiers wanted in the previous one (what they used and what was refused to them), less what they
have used already in this one (docs/benchmarks/quota.md).

``QuotaScheduler`` holds the policy; a backend (``memory.py`` for one process, ``redis.py`` for
many) only keeps the counters and applies a reservation or a reconciliation atomically. The
decisions are pure functions here, so the backends agree and the rules are easy to test.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
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
        retry_at: aware UTC time when a reservation can next succeed: the start of the next
            such window.
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
            counting all tiers' usage together.
    """

    window_seconds: int = default("quota_window_seconds")
    day_seconds: int = default("quota_day_seconds")
    limit: WindowPair = STRAVA_LIMIT
    read_limit: WindowPair = STRAVA_READ_LIMIT
    safety_margin: float = default("quota_safety_margin")
    shares: Mapping[Tier, tuple[float, float]] = field(
        default_factory=lambda: {tier: (1.0, 1.0) for tier in TIERS_BY_PRIORITY}
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


def held_for_realtime(wanted_before: int, used_now: int) -> int:
    """Requests the lower tiers leave free in this short window: what the real-time tiers
    wanted in the previous one (used, and refused: work that waited for this window), less
    what they have used in this one so far. No margin for chance: scripts/bench_quota.py
    measured one standard deviation of margin costing the backfill a quarter of its
    throughput for a few webhooks less waiting (docs/benchmarks/quota.md)."""
    return max(0, wanted_before - used_now)


def blocking_windows(
    config: QuotaConfig,
    tier: Tier,
    buckets: tuple[Bucket, ...],
    used: Callable[[Bucket, Window], int],
    limit: Callable[[Bucket, Window], int],
    held: Callable[[Bucket], int] = lambda _bucket: 0,
) -> tuple[Window, ...]:
    """The windows in which one more request of ``tier`` would not fit (empty: it fits).

    ``held(bucket)`` is ``held_for_realtime`` for the short window: a tier below the real-time
    ones must also leave that much free under the real-time tiers' own room."""

    def full(bucket: Bucket, window: Window) -> bool:
        top = limit(bucket, window)
        after = used(bucket, window) + 1
        if after > allowance(top, config.factor(tier, window)):
            return True
        if window != "short" or not yields_to_realtime(tier):
            return False
        return after + held(bucket) > allowance(top, config.factor(LAST_REALTIME, window))

    return tuple(window for window in WINDOWS if any(full(bucket, window) for bucket in buckets))


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
        realtime_wanted_before: per bucket, what the real-time tiers used and were refused in
            the previous short window.
    """

    used: Mapping[tuple[Bucket, Window], int]
    used_by_tier: Mapping[tuple[Bucket, Window, Tier], int]
    limits: Mapping[tuple[Bucket, Window], int]
    throttled: int
    denials: Mapping[Tier, int]
    realtime_wanted_before: Mapping[Bucket, int] = field(default_factory=dict)


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
            # Left free by the lower tiers for real-time work (short window only).
            "held_for_realtime": self.held_for_realtime,
            "tiers": {
                tier.value: {"used": self.used_by_tier[tier], "allowed": self.allowed[tier]}
                for tier in TIERS_BY_PRIORITY
            },
        }


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


@dataclass(frozen=True)
class TierCapacity:
    """What one tier can expect to spend, from now on: the input of ETAs and admission tickets.

    Parameters:
        room_now: requests the tier may still make in the current short window (0: none).
        per_window: requests a full short window is expected to give the tier from the next
            one on (before the daily budget is counted).
        window_resets_at: when the current short window ends.
        daily_room: requests the tier may still make before the UTC day ends.
        day_resets_at: when the current UTC day ends (the daily budget is whole again).
    """

    room_now: int
    per_window: float
    window_resets_at: datetime
    daily_room: int
    day_resets_at: datetime


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


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
            window = max(blocked, key=lambda w: self._next_start(w, now))
            raise QuotaExceeded(tier, window, self._next_start(window, now))

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
        counters = self._counters(now)
        return QuotaStatus(
            at=datetime.fromtimestamp(now, UTC),
            backend=self.backend,
            safety_margin=self.config.safety_margin,
            windows=tuple(
                self._window_status(now, counters, bucket, window)
                for bucket in BUCKETS
                for window in WINDOWS
            ),
            throttled=counters.throttled,
            denials=counters.denials,
        )

    def tier_capacity(self, tier: Tier) -> TierCapacity:
        """What ``tier`` can expect under today's shares and counters. A read spends both
        buckets, so each figure is the tightest bucket's. A full window ahead is forecast as
        the tier's allowance less what real-time work is expected to spend in it: what it
        wanted in the last one (``blocking_windows`` keeps that free for it now) or has used
        in this one, whichever is more."""
        status = self.status()
        room_now: list[int] = []
        per_window: list[float] = []
        daily_room: list[int] = []
        for bucket in BUCKETS:
            short, daily = status.window(bucket, "short"), status.window(bucket, "daily")
            realtime_room = short.allowed[LAST_REALTIME]
            room = short.allowed[tier] - short.used
            ahead = float(short.allowed[tier])
            if yields_to_realtime(tier):
                room = min(room, realtime_room - short.held_for_realtime - short.used)
                wanted_before = short.held_for_realtime + sum(
                    short.used_by_tier[t] for t in REALTIME_TIERS
                )
                # A share counts every tier's usage: real-time work spends it too.
                ahead = min(ahead, realtime_room) - wanted_before
            room_now.append(room)
            per_window.append(ahead)
            daily_room.append(daily.allowed[tier] - daily.used)
        day_left = max(0, min(daily_room))
        read = status.window("read", "short")
        return TierCapacity(
            room_now=max(0, min(min(room_now), day_left)),
            per_window=max(0.0, min(per_window)),
            window_resets_at=read.resets_at,
            daily_room=day_left,
            day_resets_at=status.window("read", "daily").resets_at,
        )

    def _window_status(
        self, now: float, counters: Counters, bucket: Bucket, window: Window
    ) -> WindowStatus:
        length = self.config.length(window)
        index = window_index(now, length)
        limit = counters.limits.get((bucket, window), self.config.default_limit(bucket, window))
        return WindowStatus(
            bucket=bucket,
            window=window,
            used=counters.used.get((bucket, window), 0),
            limit=limit,
            allowed={
                tier: allowance(limit, self.config.factor(tier, window))
                for tier in TIERS_BY_PRIORITY
            },
            used_by_tier={
                tier: counters.used_by_tier.get((bucket, window, tier), 0)
                for tier in TIERS_BY_PRIORITY
            },
            held_for_realtime=(
                held_for_realtime(
                    counters.realtime_wanted_before.get(bucket, 0),
                    sum(counters.used_by_tier.get((bucket, window, t), 0) for t in REALTIME_TIERS),
                )
                if window == "short"
                else 0
            ),
            started_at=window_start(index, length),
            resets_at=window_start(index + 1, length),
            seconds_to_reset=(index + 1) * length - now,
        )

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
