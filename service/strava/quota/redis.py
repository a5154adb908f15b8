"""The Redis quota backend, for production: every web and worker process shares one budget.

Strava counts per application, not per process (docs/strava.md §2.1), so all processes must
draw on the same counters. A reservation is one Lua script: Redis runs it atomically, so the
check "does one more request fit" and the increments cannot interleave with another process.

Keys, under ``prefix`` (by default ``strava-ingest:quota:``):

- ``{window}:{length}:{index}``: a hash per window instance with ``overall``, ``read``,
  ``{bucket}:{tier}`` and (short windows) ``denied:{tier}`` counts; it expires shortly after
  its window ends (a short window's after the ``HISTORY_WINDOWS`` that follow it: the
  forecast learns from the last ``FORECAST_WINDOWS`` of them, and the operator's chart of the
  last day shows them all), so at most a day of them is kept.
- ``limits``: a hash of limits adopted from Strava's headers (``overall:short`` ...).
- ``throttled``: the number of 429s seen (a metric); ``denials``: refusals per tier.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping

import redis

from service.clock import Clock
from service.strava.quota.scheduler import (
    ALLOWANCE_TOLERANCE,
    BUCKETS,
    DAY_HEADROOM,
    FIRST_YIELDING,
    FORECAST_WINDOWS,
    HISTORY_WINDOWS,
    LAST_REALTIME,
    OBSERVED_FLOOR,
    WINDOWS,
    Bucket,
    Counters,
    DayDemand,
    QuotaConfig,
    QuotaScheduler,
    Reconciliation,
    other_usage,
    window_demand,
    window_index,
    window_position,
    yields_to_realtime,
)
from service.strava.quota.tiers import TIERS_BY_PRIORITY, Tier, above
from service.strava.ratelimit import Window

DEFAULT_PREFIX = "strava-ingest:quota:"

# Keys outlive their window by this much, so a process whose clock lags a little still finds
# (and extends) the window it believes is current instead of starting a fresh one.
EXPIRY_GRACE_SECONDS = 60

# The same rule as scheduler.blocking_windows: one more request must fit under
# floor(limit x factor + tolerance) in every (window, bucket) and, for a tier below the
# real-time ones, leave the room kept (scheduler.kept_for_realtime, the same arithmetic in the
# same order) free under the real-time tiers' allowance; else nothing is counted but the
# denial (in all, and per window as `denied:{tier}`). The history (previous windows, the day)
# counts real-time demand; the current window the demand of every tier above this one.
# KEYS[5] is yesterday's daily window, KEYS[6..] the previous short windows, the most recent
# first.
_RESERVE = """
local tier, tolerance = ARGV[1], tonumber(ARGV[6])
local yields = ARGV[7] == '1'
local realtime_factor = {short = tonumber(ARGV[8]), daily = tonumber(ARGV[9])}
local elapsed, left, floor = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local day_elapsed, day_headroom = tonumber(ARGV[13]), tonumber(ARGV[14])
local above = {}
for name in string.gmatch(ARGV[15], '[^,]+') do
  table.insert(above, name)
end
local all_tiers = {@ALL_TIERS@}
local realtime_tiers = {@REALTIME_TIERS@}
local windows = {
  {key = KEYS[1], name = 'short', factor = tonumber(ARGV[2]), ttl = ARGV[4]},
  {key = KEYS[2], name = 'daily', factor = tonumber(ARGV[3]), ttl = ARGV[5]},
}
local buckets = {}
for i = 16, #ARGV, 3 do
  table.insert(buckets, {name = ARGV[i], short = ARGV[i + 1], daily = ARGV[i + 2]})
end
local function counts(key)
  local flat = redis.call('HGETALL', key)
  local fields = {}
  for i = 1, #flat, 2 do
    fields[flat[i]] = tonumber(flat[i + 1])
  end
  return fields
end
local function demand(fields, bucket, tiers, others)
  local higher, denied, ours = 0, 0, 0
  for _, name in ipairs(tiers) do
    higher = higher + (fields[bucket .. ':' .. name] or 0)
    denied = denied + (fields['denied:' .. name] or 0)
  end
  for _, name in ipairs(all_tiers) do
    ours = ours + (fields[bucket .. ':' .. name] or 0)
  end
  if not others then
    return higher + denied
  end
  return higher + denied + math.max(0, (fields[bucket] or 0) - ours)
end
local history = {}
for i = 6, #KEYS do
  table.insert(history, counts(KEYS[i]))
end
local current = counts(KEYS[1])
local today, yesterday = counts(KEYS[2]), counts(KEYS[5])
local function kept(bucket)
  local peak = 0
  for _, fields in ipairs(history) do
    peak = math.max(peak, demand(fields, bucket, realtime_tiers, false))
  end
  local today_rate = demand(today, bucket, realtime_tiers, true) / math.max(day_elapsed, floor)
  local daily_rate = math.max(demand(yesterday, bucket, realtime_tiers, true), today_rate)
  local windows_per_day = left / (1.0 - day_elapsed)
  local rate = math.max(peak, demand(current, bucket, above, true) / math.max(elapsed, floor))
  local in_window = daily_rate / windows_per_day * (1.0 - elapsed)
  local short = math.max(rate * (1.0 - elapsed), in_window + day_headroom * math.sqrt(in_window))
  local expected = daily_rate * (1.0 - day_elapsed)
  local daily = math.max(expected + day_headroom * math.sqrt(expected + 1.0), short)
  return {short = short, daily = daily}
end
local blocked = {}
for _, w in ipairs(windows) do
  for _, b in ipairs(buckets) do
    local limit = tonumber(redis.call('HGET', KEYS[3], b.name .. ':' .. w.name) or b[w.name])
    local used = tonumber(redis.call('HGET', w.key, b.name) or '0')
    local full = used + 1 > math.floor(limit * w.factor + tolerance)
    if not full and yields then
      local top = math.floor(limit * realtime_factor[w.name] + tolerance) + tolerance
      full = used + 1 + kept(b.name)[w.name] > top
    end
    if full then
      table.insert(blocked, w.name)
      break
    end
  end
end
if #blocked > 0 then
  redis.call('HINCRBY', KEYS[4], tier, 1)
  for _, w in ipairs(windows) do
    redis.call('HINCRBY', w.key, 'denied:' .. tier, 1)
    redis.call('EXPIRE', w.key, w.ttl)
  end
  return blocked
end
for _, w in ipairs(windows) do
  for _, b in ipairs(buckets) do
    redis.call('HINCRBY', w.key, b.name, 1)
    redis.call('HINCRBY', w.key, b.name .. ':' .. tier, 1)
  end
  redis.call('EXPIRE', w.key, w.ttl)
end
return blocked
""".replace("@ALL_TIERS@", ", ".join(f"'{tier.value}'" for tier in TIERS_BY_PRIORITY)).replace(
    "@REALTIME_TIERS@", ", ".join(f"'{tier.value}'" for tier in above(FIRST_YIELDING))
)

# Applies a scheduler.Reconciliation: adopt limits, raise (never lower) counts to the reported
# usage, and on a 429 count it and raise the refused buckets to their limit.
_RECONCILE = """
local plan = cjson.decode(ARGV[3])
local windows = {short = {key = KEYS[1], ttl = ARGV[1]}, daily = {key = KEYS[2], ttl = ARGV[2]}}
local function raise(window, bucket, value)
  local w = windows[window]
  local used = tonumber(redis.call('HGET', w.key, bucket) or '0')
  if value > used then
    redis.call('HSET', w.key, bucket, value)
    redis.call('EXPIRE', w.key, w.ttl)
  end
end
for _, entry in ipairs(plan.limits) do
  redis.call('HSET', KEYS[3], entry[1] .. ':' .. entry[2], entry[3])
end
for _, entry in ipairs(plan.usage) do
  raise(entry[1], entry[2], entry[3])
end
if plan.throttled ~= '' then
  redis.call('INCR', KEYS[4])
  for _, entry in ipairs(plan.mark_full) do
    local limit = redis.call('HGET', KEYS[3], entry[1] .. ':' .. plan.throttled) or entry[2]
    raise(plan.throttled, entry[1], tonumber(limit))
  end
end
return 0
"""


class RedisQuotaScheduler(QuotaScheduler):
    """Counters in Redis, shared by every process pointed at the same server and prefix.

    Parameters:
        client: a Redis client; ``from_url`` makes one that ``close`` then closes.
        config: windows, limits, margin and shares.
        clock: seconds since the epoch. Key expiry uses Redis's own clock, but only as a
            relative delay computed from this one, so a simulated clock still works.
        prefix: the key namespace.
    """

    backend = "redis"

    def __init__(
        self,
        client: redis.Redis,
        config: QuotaConfig,
        clock: Clock = time.time,
        *,
        prefix: str = DEFAULT_PREFIX,
        owns_client: bool = False,
    ) -> None:
        super().__init__(config, clock)
        self._client = client
        self._prefix = prefix
        self._owns_client = owns_client
        self._reserve_script = client.register_script(_RESERVE)
        self._reconcile_script = client.register_script(_RECONCILE)

    @classmethod
    def from_url(
        cls,
        url: str,
        config: QuotaConfig,
        clock: Clock = time.time,
        *,
        prefix: str = DEFAULT_PREFIX,
    ) -> RedisQuotaScheduler:
        """A scheduler with its own connection pool to ``url``, closed by ``close``."""
        return cls(redis.Redis.from_url(url), config, clock, prefix=prefix, owns_client=True)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _window_key(self, window: Window, now: float) -> str:
        return self._key(window, window_index(now, self.config.length(window)))

    def _key(self, window: Window, index: int) -> str:
        return f"{self._prefix}{window}:{self.config.length(window)}:{index}"

    def _ttl(self, window: Window, now: float) -> int:
        length = self.config.length(window)
        ends = (window_index(now, length) + 1) * length
        # The next short windows' forecast and the chart of the last day read this one's
        # counts, and tomorrow's forecast today's.
        kept = length * max(FORECAST_WINDOWS, HISTORY_WINDOWS) if window == "short" else length
        return max(1, math.ceil(ends - now)) + kept + EXPIRY_GRACE_SECONDS

    def _shared_keys(self, now: float) -> list[str]:
        return [
            self._window_key("short", now),
            self._window_key("daily", now),
            f"{self._prefix}limits",
        ]

    def _history_keys(self, now: float) -> list[str]:
        length = self.config.window_seconds
        return [
            self._window_key("short", now - back * length)
            for back in range(1, FORECAST_WINDOWS + 1)
        ]

    def _reserve(self, now: float, tier: Tier, buckets: tuple[Bucket, ...]) -> tuple[Window, ...]:
        # Fractions of time from the pure policy, so both backends use the very same numbers.
        elapsed, windows_left_today, day_elapsed = window_position(self.config, now)
        args: list[str | int | float] = [
            tier.value,
            repr(self.config.factor(tier, "short")),
            repr(self.config.factor(tier, "daily")),
            self._ttl("short", now),
            self._ttl("daily", now),
            repr(ALLOWANCE_TOLERANCE),
            "1" if yields_to_realtime(tier) else "0",
            repr(self.config.factor(LAST_REALTIME, "short")),
            repr(self.config.factor(LAST_REALTIME, "daily")),
            repr(elapsed),
            repr(windows_left_today),
            repr(OBSERVED_FLOOR),
            repr(day_elapsed),
            repr(DAY_HEADROOM),
            ",".join(higher.value for higher in above(tier)),
        ]
        for bucket in buckets:
            args += [
                bucket,
                self.config.default_limit(bucket, "short"),
                self.config.default_limit(bucket, "daily"),
            ]
        keys = [
            *self._shared_keys(now),
            f"{self._prefix}denials",
            self._window_key("daily", now - self.config.day_seconds),
            *self._history_keys(now),
        ]
        blocked: list[bytes] = self._reserve_script(keys=keys, args=args)
        return tuple(w for w in WINDOWS if w.encode() in blocked)

    def _reconcile(self, now: float, plan: Reconciliation) -> None:
        encoded = json.dumps(
            {
                "limits": [[b, w, limit] for (b, w), limit in plan.limits.items()],
                "usage": [[w, b, used] for (b, w), used in plan.usage.items()],
                "throttled": plan.throttled or "",
                "mark_full": [
                    [b, self.config.default_limit(b, plan.throttled)]
                    for b in plan.mark_full
                    if plan.throttled is not None
                ],
            }
        )
        keys = [*self._shared_keys(now), f"{self._prefix}throttled"]
        self._reconcile_script(
            keys=keys, args=[self._ttl("short", now), self._ttl("daily", now), encoded]
        )

    def _counters(self, now: float) -> Counters:
        pipe = self._client.pipeline(transaction=False)
        for window in WINDOWS:
            pipe.hgetall(self._window_key(window, now))
        pipe.hgetall(f"{self._prefix}limits")
        pipe.get(f"{self._prefix}throttled")
        pipe.hgetall(f"{self._prefix}denials")
        pipe.hgetall(self._window_key("daily", now - self.config.day_seconds))
        for key in self._history_keys(now):
            pipe.hgetall(key)
        short, daily, limits, throttled, denials, yesterday, *history = pipe.execute()
        used: dict[tuple[Bucket, Window], int] = {}
        used_by_tier: dict[tuple[Bucket, Window, Tier], int] = {}
        for window, fields in (("short", short), ("daily", daily)):
            for name, value in _decoded(fields).items():
                bucket, _, tier = name.partition(":")
                if bucket not in BUCKETS:
                    continue
                if tier:
                    used_by_tier[(_bucket(bucket), _window(window), Tier(tier))] = value
                else:
                    used[(_bucket(bucket), _window(window))] = value
        adopted: dict[tuple[Bucket, Window], int] = {}
        for name, value in _decoded(limits).items():
            bucket, _, window_name = name.partition(":")
            if bucket in BUCKETS and window_name in WINDOWS:
                adopted[(_bucket(bucket), _window(window_name))] = value
        past = [_decoded(fields) for fields in history]
        return Counters(
            used=used,
            used_by_tier=used_by_tier,
            limits=adopted,
            throttled=int(throttled or 0),
            denials={Tier(name): value for name, value in _decoded(denials).items()},
            demand_history={
                bucket: tuple(
                    _demand(fields, bucket, FIRST_YIELDING, others=False) for fields in past
                )
                for bucket in BUCKETS
            },
            other_usage_history={
                bucket: tuple(
                    other_usage(fields.get(bucket, 0), _ours(fields, bucket)) for fields in past
                )
                for bucket in BUCKETS
            },
            demand_now={
                (bucket, tier): _demand(_decoded(short), bucket, tier)
                for bucket in BUCKETS
                for tier in TIERS_BY_PRIORITY
            },
            day_demand={
                bucket: DayDemand(
                    yesterday=_demand(_decoded(yesterday), bucket, FIRST_YIELDING),
                    today=_demand(_decoded(daily), bucket, FIRST_YIELDING),
                )
                for bucket in BUCKETS
            },
        )

    def _usage_by_window(self, now: float, first: int) -> Mapping[int, Mapping[Bucket, int]]:
        indexes = range(first, window_index(now, self.config.window_seconds) + 1)
        pipe = self._client.pipeline(transaction=False)
        for index in indexes:
            pipe.hmget(self._key("short", index), list(BUCKETS))
        found: dict[int, dict[Bucket, int]] = {}
        for index, values in zip(indexes, pipe.execute(), strict=True):
            if any(values):
                found[index] = {
                    bucket: int(value)
                    for bucket, value in zip(BUCKETS, values, strict=True)
                    if value
                }
        return found


def _demand(fields: dict[str, int], bucket: Bucket, tier: Tier, *, others: bool = True) -> int:
    """``window_demand`` of the tiers above ``tier`` in one window's hash."""
    return window_demand(
        fields.get(bucket, 0),
        _ours(fields, bucket),
        sum(fields.get(f"{bucket}:{higher.value}", 0) for higher in above(tier)),
        sum(fields.get(f"denied:{higher.value}", 0) for higher in above(tier)),
        others=others,
    )


def _ours(fields: dict[str, int], bucket: Bucket) -> int:
    """Our own reservations in one window's hash."""
    return sum(fields.get(f"{bucket}:{each.value}", 0) for each in TIERS_BY_PRIORITY)


def _decoded(fields: dict[bytes, bytes]) -> dict[str, int]:
    return {name.decode(): int(value) for name, value in fields.items()}


def _bucket(name: str) -> Bucket:
    return "overall" if name == "overall" else "read"


def _window(name: str) -> Window:
    return "short" if name == "short" else "daily"
