#!/usr/bin/env python3
"""Day-scale benchmark of the quota scheduler: simulated UTC days in which the daily limit binds.

A 10,000-activity athlete imports (list pages at `recent`, then one detail call per activity at
`backfill` tier) while webhook creates arrive at random through the day (detail and streams,
two calls at `webhook` tier) and another client of the same app spends a little of the daily
limit. Strava's 900 s windows and UTC days are simulated, not waited for: the scheduler is the
service's own (Redis backend by default, on a flushed Redis db), run in this process with an
injected clock that jumps from one event to the next; Strava's counting is the emulator's
rate limiter on the same clock, and every call of ours is reconciled with the usage it
reports, as the HTTP hooks do. A call takes `--latency` seconds of simulated time.

The backlog goes through the service's own admission (service/strava/quota/admission.py), as
the workers do: each list call takes its place at `recent` (the tier a backfill lists at) and
the page's hydrations then take theirs at `backfill`; each is tried at its place, and one the
scheduler refuses takes the next free place (a refusal is one re-delivery). What is left out,
so that eleven simulated days run in seconds: the broker, the database and the webhook
coalescing (scripts/bench_quota.py runs them, with real processes).

Printed: per day, the requests Strava counted (ours by tier, and the other client's) against
the daily budget (Strava's daily limit less the margin); the share of the daily budget used on
days the import waited all day; real-time latency percentiles (arrival to both calls done)
with the backlog and, from a second run with the same arrivals, without it; and the import
time against the physical minimum, (list calls + hydrations) / daily budget.

Run: `.venv/bin/python scripts/bench_quota_day.py --redis-url redis://127.0.0.1:6379/1`.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from bench_quota import percentile

from service.emulator.config import RateLimits
from service.emulator.ratelimits import RateLimiter
from service.ingest.retry import Backoff, WaitForQuota, next_step
from service.ingest.sync import LIST_TIERS
from service.models import SyncKind
from service.strava.quota import QuotaConfig, QuotaExceeded, QuotaScheduler, Tier
from service.strava.quota.admission import build_admission
from service.strava.quota.memory import MemoryQuotaScheduler
from service.strava.quota.redis import RedisQuotaScheduler
from service.strava.quota.scheduler import allowance
from service.strava.ratelimit import RateLimitSnapshot, WindowPair

MIDNIGHT = 1780272000.0  # 2026-06-01T00:00:00Z: the simulation starts at a UTC midnight
# The service has run for a day (real-time work and the other client only) when the athlete
# connects, at the next midnight: the forecast has a yesterday to learn from.
IMPORT_STARTS = MIDNIGHT + 86400
WINDOW = 900
DAY = 86400
PAGE = 200  # activities per list page (the service's page size)
LIST_TIER = LIST_TIERS[SyncKind.BACKFILL]


@dataclass(frozen=True)
class Options:
    activities: int
    creates_per_day: float
    external_per_day: float
    latency: float
    max_days: int
    seed: int
    backend: str
    redis_url: str


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--activities", type=int, default=10_000, help="history of the importing athlete")
    add("--creates-per-day", type=float, default=24, help="webhook creates (2 calls each)")
    add("--external-per-day", type=float, default=10, help="other clients' requests a day")
    add("--latency", type=float, default=0.1, help="seconds per Strava call")
    add("--max-days", type=int, default=14, help="stop after this many days")
    add("--seed", type=int, default=1, help="of arrivals and retry scatter")
    add("--backend", choices=("redis", "memory"), default="redis")
    add("--redis-url", default="redis://127.0.0.1:6379/11", help="flushed (redis backend)")
    args = parser.parse_args(argv)
    return Options(
        activities=args.activities,
        creates_per_day=args.creates_per_day,
        external_per_day=args.external_per_day,
        latency=args.latency,
        max_days=args.max_days,
        seed=args.seed,
        backend=args.backend,
        redis_url=args.redis_url,
    )


class Clock:
    """The simulation's time: moves only when the event loop says so."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Strava:
    """The emulator's counting on the simulated clock; each call of ours is reconciled."""

    limiter: RateLimiter
    scheduler: QuotaScheduler
    counted: Counter[tuple[int, str]] = field(default_factory=Counter)  # (day, who)
    throttled: int = 0

    def call(self, who: str, now: float) -> None:
        allowed, usage = self.limiter.hit()
        self.counted[(int((now - MIDNIGHT) // DAY), who)] += 1
        if who == "external":
            return
        self.throttled += not allowed
        snapshot = RateLimitSnapshot(
            limit=WindowPair(self.limiter.limits.overall_short, self.limiter.limits.overall_daily),
            usage=WindowPair(usage.overall_short, usage.overall_daily),
            read_limit=WindowPair(self.limiter.limits.read_short, self.limiter.limits.read_daily),
            read_usage=WindowPair(usage.read_short, usage.read_daily),
        )
        self.scheduler.observe("read", 200 if allowed else 429, snapshot, now)


@dataclass
class Outcome:
    latencies: list[float]
    unfinished_creates: int
    counted: Counter[tuple[int, str]]
    throttled: int
    import_done_at: float | None
    denials: int


def poisson(rng: random.Random, per_day: float, until: float) -> list[float]:
    moments, moment = [], MIDNIGHT
    while per_day > 0:
        moment += rng.expovariate(per_day / DAY)
        if moment >= until:
            break
        moments.append(moment)
    return moments


def make_scheduler(options: Options, config: QuotaConfig, clock: Clock) -> QuotaScheduler:
    if options.backend == "memory":
        return MemoryQuotaScheduler(config, clock)
    flushed = redis.Redis.from_url(options.redis_url)
    flushed.flushdb()
    flushed.close()
    return RedisQuotaScheduler.from_url(options.redis_url, config, clock)


def simulate(options: Options, config: QuotaConfig, *, backlog: bool) -> Outcome:
    clock = Clock(MIDNIGHT)
    scheduler = make_scheduler(options, config, clock)
    limits = RateLimits()
    strava = Strava(RateLimiter(limits, clock, WINDOW), scheduler)
    arrivals_rng, scatter = random.Random(options.seed), random.Random(options.seed + 1)
    backoff = Backoff()
    end = MIDNIGHT + options.max_days * DAY
    creates = poisson(arrivals_rng, options.creates_per_day, end)
    external = poisson(arrivals_rng, options.external_per_day, end)

    events: list[tuple[float, int, str, int]] = []
    order = itertools.count()

    def at(moment: float, kind: str, payload: int = 0) -> None:
        heapq.heappush(events, (moment, next(order), kind, payload))

    for number, moment in enumerate(creates):
        at(moment, "create", number)
    for moment in external:
        at(moment, "external")
    calls_left = dict.fromkeys(range(len(creates)), 2)
    latencies: list[float] = []

    def wait(error: QuotaExceeded, attempts: int) -> float:
        step = next_step(
            error,
            attempts=attempts,
            now=datetime.fromtimestamp(clock.now, UTC),
            window_reset=scheduler.retry_at,
            backoff=backoff,
            rng=scatter,
        )
        assert isinstance(step, WaitForQuota)
        return step.at.timestamp()

    pages = math.ceil(options.activities / PAGE)
    units = pages + options.activities if backlog else 0
    listed = 0  # activities listed so far
    done = 0
    import_done_at: float | None = None
    denials = 0
    if backlog:
        at(IMPORT_STARTS, "page")

    admission = build_admission(scheduler)

    def place(tier: Tier, count: int = 1) -> list[float]:
        return [ticket.at.timestamp() for ticket in admission.admit(tier, count)]

    while events:
        moment, _, kind, payload = heapq.heappop(events)
        if moment >= end:
            break
        clock.now = moment
        if kind == "external":
            strava.call("external", moment)
        elif kind in ("create", "create-retry"):
            try:
                scheduler.reserve(Tier.WEBHOOK, "read")
            except QuotaExceeded as error:
                at(wait(error, 1), "create-retry", payload)
                continue
            strava.call("webhook", moment)
            calls_left[payload] -= 1
            if calls_left[payload]:
                at(moment + options.latency, "create-retry", payload)
            else:
                latencies.append(moment + options.latency - creates[payload])
        elif kind == "page":
            # The next list call takes its place first, at `recent` as a backfill lists.
            at(place(LIST_TIER)[0], "list")
        elif kind in ("list", "hydrate"):
            tier = LIST_TIER if kind == "list" else Tier.BACKFILL
            try:
                scheduler.reserve(tier, "read")
            except QuotaExceeded:
                # Refused at its place: the next free one (the worker's `_next_place`).
                denials += 1
                at(admission.next_place(tier, refused=True).timestamp(), kind)
                continue
            strava.call("backfill", moment)
            at(moment + options.latency, f"{kind}-done")
        elif kind in ("list-done", "hydrate-done"):
            done += 1
            if kind == "list-done":
                count = min(PAGE, options.activities - listed)
                listed += count
                for placed in place(Tier.BACKFILL, count):
                    at(placed, "hydrate")
                if listed < options.activities:
                    at(moment, "page")
            if done == units:
                import_done_at = moment
    scheduler.close()
    return Outcome(
        latencies=latencies,
        unfinished_creates=sum(1 for left in calls_left.values() if left),
        counted=strava.counted,
        throttled=strava.throttled,
        import_done_at=import_done_at,
        denials=denials,
    )


def report(options: Options, config: QuotaConfig, run: Outcome, quiet: Outcome) -> bool:
    budget = allowance(RateLimits().read_daily, 1 - config.safety_margin)
    units = math.ceil(options.activities / PAGE) + options.activities
    last_full_day = (
        int((run.import_done_at - MIDNIGHT) // DAY) if run.import_done_at else options.max_days
    )
    first_day = int((IMPORT_STARTS - MIDNIGHT) // DAY)
    print(
        f"\nper day (daily read limit {RateLimits().read_daily}, margin "
        f"{config.safety_margin:.0%}: daily budget {budget})"
    )
    print(f"{'day':>3} {'counted':>7} {'webhook':>7} {'backfill':>8} {'other':>5} {'used':>6}")
    full_days: list[int] = []
    days = sorted({day for day, _ in run.counted})
    for day in days:
        count = {who: run.counted[(day, who)] for who in ("webhook", "backfill", "external")}
        total = sum(count.values())
        waited = first_day <= day < last_full_day
        if waited:
            full_days.append(total)
        used = f"{min(total, budget) / budget:.1%}" if waited else "-"
        print(
            f"{day:>3} {total:>7} {count['webhook']:>7} {count['backfill']:>8} "
            f"{count['external']:>5} {used:>6}"
        )
    print(
        f"  day {first_day - 1}: the service running before the athlete connects at the start of\n"
        f"  day {first_day}; counted: requests Strava counted that day (ours and the other\n"
        "  client's); used: min(counted, budget) / budget, on days the import waited from\n"
        "  midnight to midnight"
    )
    filled = sum(min(total, budget) for total in full_days)
    share = filled / (budget * len(full_days)) if full_days else math.nan
    minimum = units / budget
    took = (run.import_done_at - IMPORT_STARTS) / DAY if run.import_done_at else math.inf
    rt_per_day = sum(run.counted[(d, "webhook")] for d in days) / max(1, len(days))
    ext_per_day = sum(run.counted[(d, "external")] for d in days) / max(1, len(days))
    print("\nsummary")
    print(
        f"  import: {options.activities} activities = {units} calls (list pages + hydrations); "
        f"done after {took:.2f} days; physical minimum {units}/{budget} = {minimum:.2f} days "
        f"(with the real-time and other use measured, {units}/"
        f"({budget} - {rt_per_day:.0f} - {ext_per_day:.0f}) = "
        f"{units / (budget - rt_per_day - ext_per_day):.2f} days)"
    )
    print(
        f"  refusals of queued work (each a re-delivery) per unit: {run.denials}/{units} = "
        f"{run.denials / units:.3f}; 429s: {run.throttled}"
    )

    def line(label: str, outcome: Outcome) -> str:
        v = outcome.latencies
        return (
            f"  {label:<16} n={len(v):<5} p50 {percentile(v, 50):8.2f} s  p90 "
            f"{percentile(v, 90):8.2f} s  p99 {percentile(v, 99):8.2f} s  max "
            f"{max(v, default=math.nan):8.2f} s"
            + (f"  UNFINISHED {outcome.unfinished_creates}" if outcome.unfinished_creates else "")
        )

    print("real-time latency (webhook create: arrival to detail and streams fetched)")
    print(line("without backlog", quiet))
    print(line("with backlog", run))
    late = sum(1 for latency in run.latencies if latency > 2 * options.latency + 1)
    print(f"  creates that waited more than 1 s for quota: {late} of {len(run.latencies)}")
    checks = [
        ("0 x 429", run.throttled == 0, f"{run.throttled}"),
        (
            ">= 95 % of the daily budget used while the import waits",
            bool(full_days) and share >= 0.95,
            f"{filled}/{budget * len(full_days)} = {share:.1%} over {len(full_days)} days",
        ),
        (
            "import time within 10 % of the physical minimum",
            took <= 1.10 * minimum,
            f"{took:.2f} days vs {minimum:.2f} days: {took / minimum - 1:+.1%}",
        ),
    ]
    print("targets")
    for name, passed, detail in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {name}: {detail}")
    return all(passed for _, passed, _ in checks)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    config = QuotaConfig()  # the service's defaults: Strava's windows, limits, margin, shares
    print(
        f"bench_quota_day: simulated in process with an injected clock ({options.backend} "
        f"scheduler), not real processes; {options.activities} activities, "
        f"{options.creates_per_day:g} webhook creates and {options.external_per_day:g} other "
        f"requests a day, seed {options.seed}"
    )
    run = simulate(options, config, backlog=True)
    quiet = simulate(options, config, backlog=False)
    return 0 if report(options, config, run, quiet) else 1


if __name__ == "__main__":
    sys.exit(main())
