"""The in-process quota backend, for embedded mode (one process, many threads)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from service.clock import Clock
from service.strava.quota.scheduler import (
    BUCKETS,
    FIRST_YIELDING,
    FORECAST_WINDOWS,
    HISTORY_WINDOWS,
    WINDOWS,
    Bucket,
    Counters,
    DayDemand,
    QuotaConfig,
    QuotaScheduler,
    Reconciliation,
    WindowPlan,
    blocking_windows,
    other_usage,
    window_demand,
    window_index,
)
from service.strava.quota.tiers import TIERS_BY_PRIORITY, Tier, above
from service.strava.ratelimit import Window


@dataclass
class _WindowCounts:
    """The counts of one window instance; replaced by a fresh one when the window rolls."""

    index: int
    used: Counter[Bucket] = field(default_factory=Counter)
    by_tier: Counter[tuple[Bucket, Tier]] = field(default_factory=Counter)
    denied: Counter[Tier] = field(default_factory=Counter)

    def ours(self, bucket: Bucket) -> int:
        return sum(count for (b, _tier), count in self.by_tier.items() if b == bucket)

    def other_usage(self, bucket: Bucket) -> int:
        return other_usage(self.used[bucket], self.ours(bucket))

    def demand(self, bucket: Bucket, tier: Tier, *, others: bool = True) -> int:
        """``window_demand`` of the tiers above ``tier``."""
        return window_demand(
            self.used[bucket],
            self.ours(bucket),
            sum(self.by_tier[(bucket, higher)] for higher in above(tier)),
            sum(self.denied[higher] for higher in above(tier)),
            others=others,
        )


class MemoryQuotaScheduler(QuotaScheduler):
    """Counters in a dict behind one lock, so a reservation's check and increments are one
    step for all threads of this process. Other processes do not see them: use the Redis
    backend as soon as there is more than one process.

    Parameters:
        config: windows, limits, margin and shares.
        clock: seconds since the epoch.
    """

    backend = "memory"

    def __init__(self, config: QuotaConfig, clock: Clock = time.time) -> None:
        super().__init__(config, clock)
        self._lock = threading.Lock()
        self._windows: dict[Window, _WindowCounts] = {}
        # The short windows before the current one, by index (what the forecast learns from,
        # and the chart of the last day shows), and the day before the current one.
        self._history: dict[int, _WindowCounts] = {}
        self._yesterday = _WindowCounts(-1)
        self._limits: dict[tuple[Bucket, Window], int] = {}
        self._throttled = 0
        self._denials: Counter[Tier] = Counter()

    def close(self) -> None:
        """Nothing to release: the counters go with the object."""

    def _current(self, window: Window, now: float) -> _WindowCounts:
        index = window_index(now, self.config.length(window))
        counts = self._windows.get(window)
        if counts is None or counts.index != index:
            if window == "short" and counts is not None:
                self._history[counts.index] = counts
                kept = max(FORECAST_WINDOWS, HISTORY_WINDOWS)
                for old in [i for i in self._history if i < index - kept]:
                    del self._history[old]
            if window == "daily" and counts is not None:
                self._yesterday = counts
            counts = self._windows[window] = _WindowCounts(index)
        return counts

    def _read(self, now: float) -> Counters:
        """The counters at ``now``; the caller holds the lock."""
        current = {window: self._current(window, now) for window in WINDOWS}
        index = current["short"].index
        history = [self._history.get(index - back) for back in range(1, FORECAST_WINDOWS + 1)]
        return Counters(
            used={
                (bucket, window): count
                for window, counts in current.items()
                for bucket, count in counts.used.items()
            },
            used_by_tier={
                (bucket, window, tier): count
                for window, counts in current.items()
                for (bucket, tier), count in counts.by_tier.items()
            },
            limits=dict(self._limits),
            throttled=self._throttled,
            denials=dict(self._denials),
            demand_history={
                bucket: tuple(
                    0 if past is None else past.demand(bucket, FIRST_YIELDING, others=False)
                    for past in history
                )
                for bucket in BUCKETS
            },
            other_usage_history={
                bucket: tuple(0 if past is None else past.other_usage(bucket) for past in history)
                for bucket in BUCKETS
            },
            demand_now={
                (bucket, tier): current["short"].demand(bucket, tier)
                for bucket in BUCKETS
                for tier in TIERS_BY_PRIORITY
            },
            day_demand={
                bucket: DayDemand(
                    yesterday=(
                        self._yesterday.demand(bucket, FIRST_YIELDING)
                        if self._yesterday.index == current["daily"].index - 1
                        else 0
                    ),
                    today=current["daily"].demand(bucket, FIRST_YIELDING),
                )
                for bucket in BUCKETS
            },
        )

    def _limit(self, bucket: Bucket, window: Window) -> int:
        return self._limits.get((bucket, window), self.config.default_limit(bucket, window))

    def _reserve(self, now: float, tier: Tier, buckets: tuple[Bucket, ...]) -> tuple[Window, ...]:
        with self._lock:
            plan = WindowPlan(self.config, now, self._read(now))
            blocked = blocking_windows(
                self.config,
                tier,
                buckets,
                used=plan.used,
                limit=plan.limit,
                kept=lambda bucket, window: plan.kept_in(bucket, window, tier),
            )
            current = {window: self._current(window, now) for window in WINDOWS}
            if blocked:
                self._denials[tier] += 1
                for counts in current.values():
                    counts.denied[tier] += 1
                return blocked
            for counts in current.values():
                for bucket in buckets:
                    counts.used[bucket] += 1
                    counts.by_tier[(bucket, tier)] += 1
            return ()

    def _reconcile(self, now: float, plan: Reconciliation) -> None:
        with self._lock:
            self._limits.update(plan.limits)
            for (bucket, window), reported in plan.usage.items():
                counts = self._current(window, now)
                counts.used[bucket] = max(counts.used[bucket], reported)
            if plan.throttled is not None:
                self._throttled += 1
                counts = self._current(plan.throttled, now)
                for bucket in plan.mark_full:
                    limit = self._limit(bucket, plan.throttled)
                    counts.used[bucket] = max(counts.used[bucket], limit)

    def _counters(self, now: float) -> Counters:
        with self._lock:
            return self._read(now)

    def _usage_by_window(self, now: float, first: int) -> Mapping[int, Mapping[Bucket, int]]:
        with self._lock:
            current = self._current("short", now)
            windows = [*self._history.values(), current]
            return {counts.index: dict(counts.used) for counts in windows if counts.index >= first}
