"""The Redis quota backend, for production: every web and worker process shares one budget.

Strava counts per application, not per process (docs/strava.md §2.1), so all processes must
draw on the same counters. A reservation is one Lua script: Redis runs it atomically, so the
check "does one more request fit" and the increments cannot interleave with another process.

Keys, under ``prefix`` (by default ``strava-ingest:quota:``):

- ``{window}:{length}:{index}``: a hash per window instance with ``overall``, ``read``,
  ``{bucket}:{tier}`` and (short windows) ``denied:{tier}`` counts; it expires shortly after
  its window ends (a short window's after the next one, which reads its real-time counts), so
  nothing accumulates.
- ``limits``: a hash of limits adopted from Strava's headers (``overall:short`` ...).
- ``throttled``: the number of 429s seen (a metric); ``denials``: refusals per tier.
- ``tickets:{tier}``: admission's ticket book of a tier (admission.py), a cursor of six fields.
"""

from __future__ import annotations

import json
import math
import time

import redis

from service.clock import Clock
from service.strava.quota.scheduler import (
    ALLOWANCE_TOLERANCE,
    BUCKETS,
    LAST_REALTIME,
    WINDOWS,
    Bucket,
    Counters,
    QuotaConfig,
    QuotaScheduler,
    Reconciliation,
    window_index,
    yields_to_realtime,
)
from service.strava.quota.tiers import REALTIME_TIERS, Tier
from service.strava.ratelimit import Window

DEFAULT_PREFIX = "strava-ingest:quota:"

# Keys outlive their window by this much, so a process whose clock lags a little still finds
# (and extends) the window it believes is current instead of starting a fresh one.
EXPIRY_GRACE_SECONDS = 60

# The same rule as scheduler.blocking_windows: one more request must fit under
# floor(limit x factor + tolerance) in every (window, bucket) and, for a tier below the
# real-time ones in the short window, leave held_for_realtime free under the real-time tiers'
# room; else nothing is counted but the denial (in all, and per short window as
# `denied:{tier}`). KEYS[5] is the previous short window.
_RESERVE = """
local tier, tolerance = ARGV[1], tonumber(ARGV[6])
local yields, realtime_factor = ARGV[7] == '1', tonumber(ARGV[8])
local realtime_tiers = {@REALTIME_TIERS@}
local windows = {
  {key = KEYS[1], name = 'short', factor = tonumber(ARGV[2]), ttl = ARGV[4]},
  {key = KEYS[2], name = 'daily', factor = tonumber(ARGV[3]), ttl = ARGV[5]},
}
local buckets = {}
for i = 9, #ARGV, 3 do
  table.insert(buckets, {name = ARGV[i], short = ARGV[i + 1], daily = ARGV[i + 2]})
end
local function realtime(key, prefix)
  local total = 0
  for _, name in ipairs(realtime_tiers) do
    total = total + tonumber(redis.call('HGET', key, prefix .. ':' .. name) or '0')
  end
  return total
end
local blocked = {}
for _, w in ipairs(windows) do
  for _, b in ipairs(buckets) do
    local limit = tonumber(redis.call('HGET', KEYS[3], b.name .. ':' .. w.name) or b[w.name])
    local used = tonumber(redis.call('HGET', w.key, b.name) or '0')
    local full = used + 1 > math.floor(limit * w.factor + tolerance)
    if not full and yields and w.name == 'short' then
      local wanted = realtime(KEYS[5], b.name) + realtime(KEYS[5], 'denied')
      local held = math.max(0, wanted - realtime(w.key, b.name))
      full = used + 1 + held > math.floor(limit * realtime_factor + tolerance)
    end
    if full then
      table.insert(blocked, w.name)
      break
    end
  end
end
if #blocked > 0 then
  redis.call('HINCRBY', KEYS[4], tier, 1)
  redis.call('HINCRBY', KEYS[1], 'denied:' .. tier, 1)
  redis.call('EXPIRE', KEYS[1], windows[1].ttl)
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
""".replace("@REALTIME_TIERS@", ", ".join(f"'{tier.value}'" for tier in REALTIME_TIERS))

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

    @property
    def client(self) -> redis.Redis:
        """The Redis client (admission keeps its ticket books beside the counters)."""
        return self._client

    @property
    def prefix(self) -> str:
        return self._prefix

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _window_key(self, window: Window, now: float) -> str:
        length = self.config.length(window)
        return f"{self._prefix}{window}:{length}:{window_index(now, length)}"

    def _ttl(self, window: Window, now: float) -> int:
        length = self.config.length(window)
        ends = (window_index(now, length) + 1) * length
        # The next short window reads this one's real-time counts (held_for_realtime).
        kept = length if window == "short" else 0
        return max(1, math.ceil(ends - now)) + kept + EXPIRY_GRACE_SECONDS

    def _shared_keys(self, now: float) -> list[str]:
        return [
            self._window_key("short", now),
            self._window_key("daily", now),
            f"{self._prefix}limits",
        ]

    def _reserve(self, now: float, tier: Tier, buckets: tuple[Bucket, ...]) -> tuple[Window, ...]:
        args: list[str | int | float] = [
            tier.value,
            repr(self.config.factor(tier, "short")),
            repr(self.config.factor(tier, "daily")),
            self._ttl("short", now),
            self._ttl("daily", now),
            repr(ALLOWANCE_TOLERANCE),
            "1" if yields_to_realtime(tier) else "0",
            repr(self.config.factor(LAST_REALTIME, "short")),
        ]
        for bucket in buckets:
            args += [
                bucket,
                self.config.default_limit(bucket, "short"),
                self.config.default_limit(bucket, "daily"),
            ]
        previous = self._window_key("short", now - self.config.window_seconds)
        keys = [*self._shared_keys(now), f"{self._prefix}denials", previous]
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
        pipe.hgetall(self._window_key("short", now - self.config.window_seconds))
        *per_window, limits, throttled, denials, before = pipe.execute()
        previous = _decoded(before)
        refused = sum(previous.get(f"denied:{tier.value}", 0) for tier in REALTIME_TIERS)
        used: dict[tuple[Bucket, Window], int] = {}
        used_by_tier: dict[tuple[Bucket, Window, Tier], int] = {}
        for window, fields in zip(WINDOWS, per_window, strict=True):
            for name, value in _decoded(fields).items():
                bucket, _, tier = name.partition(":")
                if bucket not in BUCKETS:
                    continue
                if tier:
                    used_by_tier[(_bucket(bucket), window, Tier(tier))] = value
                else:
                    used[(_bucket(bucket), window)] = value
        adopted: dict[tuple[Bucket, Window], int] = {}
        for name, value in _decoded(limits).items():
            bucket, _, window_name = name.partition(":")
            if bucket in BUCKETS and window_name in WINDOWS:
                adopted[(_bucket(bucket), _window(window_name))] = value
        return Counters(
            used=used,
            used_by_tier=used_by_tier,
            limits=adopted,
            throttled=int(throttled or 0),
            denials={Tier(name): value for name, value in _decoded(denials).items()},
            realtime_wanted_before={
                bucket: refused
                + sum(previous.get(f"{bucket}:{tier.value}", 0) for tier in REALTIME_TIERS)
                for bucket in BUCKETS
            },
        )


def _decoded(fields: dict[bytes, bytes]) -> dict[str, int]:
    return {name.decode(): int(value) for name, value in fields.items()}


def _bucket(name: str) -> Bucket:
    return "overall" if name == "overall" else "read"


def _window(name: str) -> Window:
    return "short" if name == "short" else "daily"
