"""The in-process quota backend, for embedded mode (one process, many threads)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from service.clock import Clock
from service.strava.quota.scheduler import (
    BUCKETS,
    WINDOWS,
    Bucket,
    Counters,
    QuotaConfig,
    QuotaScheduler,
    Reconciliation,
    blocking_windows,
    held_for_realtime,
    window_index,
)
from service.strava.quota.tiers import REALTIME_TIERS, Tier
from service.strava.ratelimit import Window


@dataclass
class _WindowCounts:
    """The counts of one window instance; replaced by a fresh one when the window rolls."""

    index: int
    used: Counter[Bucket] = field(default_factory=Counter)
    by_tier: Counter[tuple[Bucket, Tier]] = field(default_factory=Counter)
    denied: Counter[Tier] = field(default_factory=Counter)

    def realtime_used(self, bucket: Bucket) -> int:
        return sum(self.by_tier[(bucket, tier)] for tier in REALTIME_TIERS)

    def realtime_wanted(self, bucket: Bucket) -> int:
        return self.realtime_used(bucket) + sum(self.denied[tier] for tier in REALTIME_TIERS)


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
        # The short window before the current one (for held_for_realtime).
        self._previous_short = _WindowCounts(-1)
        self._limits: dict[tuple[Bucket, Window], int] = {}
        self._throttled = 0
        self._denials: Counter[Tier] = Counter()

    def close(self) -> None:
        """Nothing to release: the counters go with the object."""

    def _current(self, window: Window, now: float) -> _WindowCounts:
        index = window_index(now, self.config.length(window))
        counts = self._windows.get(window)
        if counts is None or counts.index != index:
            if window == "short":
                self._previous_short = _WindowCounts(index - 1)
                if counts is not None and counts.index == index - 1:
                    self._previous_short = counts
            counts = self._windows[window] = _WindowCounts(index)
        return counts

    def _held(self, bucket: Bucket, now: float) -> int:
        return held_for_realtime(
            self._previous_short.realtime_wanted(bucket),
            self._current("short", now).realtime_used(bucket),
        )

    def _limit(self, bucket: Bucket, window: Window) -> int:
        return self._limits.get((bucket, window), self.config.default_limit(bucket, window))

    def _reserve(self, now: float, tier: Tier, buckets: tuple[Bucket, ...]) -> tuple[Window, ...]:
        with self._lock:
            current = {window: self._current(window, now) for window in WINDOWS}
            blocked = blocking_windows(
                self.config,
                tier,
                buckets,
                used=lambda bucket, window: current[window].used[bucket],
                limit=self._limit,
                held=lambda bucket: self._held(bucket, now),
            )
            if blocked:
                self._denials[tier] += 1
                current["short"].denied[tier] += 1
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
            current = {window: self._current(window, now) for window in WINDOWS}
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
                realtime_wanted_before={
                    bucket: self._previous_short.realtime_wanted(bucket) for bucket in BUCKETS
                },
            )
