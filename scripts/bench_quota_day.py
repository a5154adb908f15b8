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

The import goes the way the service runs it. A list page reserves at `recent` as the sync job
does and, refused, is tried again at the scheduler's `retry_at` (the job's WaitForQuota):
list pages are not queued work in the service, so they do not go through admission. A page's
hydrations wait in a queue (their rows in the service, service/ingest/held.py; a deque here);
every release tick (`release_tick(900)` s) the release asks `admit_now` how many the quota
takes now, which reserves their requests. Admitted units start at most `--in-flight` at a
time; their calls are prepaid, as `using_prepaid` makes them: they do not reserve again, but
Strava counts them and each is reconciled. A unit whose start slips past the window its
requests were reserved in reserves as usual and, refused, goes back to the queue. Webhook
creates reserve as they come and, refused, wait for the refusal's `retry_at`.

Left out, so that eleven simulated days run in minutes: the broker, the database and the
webhook coalescing (scripts/bench_quota.py runs them, with real processes). Release ticks at
which the queue's tier has no room are skipped rather than simulated one by one: while
nothing is spent the room only grows (what is kept for real-time work shrinks as the window
and the day go by), so the first tick with room is found by bisection, up to the next event
or the window's end; at the ticks skipped `admit_now` would admit nothing.

Printed: per day, the requests Strava counted (ours by kind, and the other client's) against
the daily budget (Strava's daily limit less the margin); the share of the daily budget used on
days the import waited all day; the import time against the physical minimum, (list calls +
hydrations) / daily budget; the refusals (the scheduler's denials) per completed unit and the
429s; real-time latency percentiles (arrival to both calls done) with the backlog and, from a
second run with the same arrivals, without it.

Run: `.venv/bin/python scripts/bench_quota_day.py --redis-url redis://127.0.0.1:6379/1`.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import sys
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from bench_quota import percentile

from service.emulator.config import RateLimits
from service.emulator.ratelimits import RateLimiter
from service.ingest.policy import HydrationPolicy, hydration_cost
from service.ingest.retry import Backoff, WaitForQuota, next_step
from service.ingest.sync import LIST_TIERS
from service.models import SyncKind
from service.strava.quota import QuotaConfig, QuotaExceeded, QuotaScheduler, Tier
from service.strava.quota.admission import admit_now, release_tick
from service.strava.quota.memory import MemoryQuotaScheduler
from service.strava.quota.redis import RedisQuotaScheduler
from service.strava.quota.scheduler import allowance, window_index
from service.strava.ratelimit import RateLimitSnapshot, WindowPair

MIDNIGHT = 1780272000.0  # 2026-06-01T00:00:00Z: the simulation starts at a UTC midnight
# The service has run for a day (real-time work and the other client only) when the athlete
# connects, at the next midnight: the forecast has a yesterday to learn from.
IMPORT_STARTS = MIDNIGHT + 86400
WINDOW = 900
DAY = 86400
PAGE = 200  # activities per list page (the service's page size)
LIST_TIER = LIST_TIERS[SyncKind.BACKFILL]
# The athlete's history is older than the recent window: every hydration is a backfill one.
HYDRATION_TIER = Tier.BACKFILL
# Requests per hydration, as the release counts them (service/ingest/held.py).
HYDRATION_COST = hydration_cost(HydrationPolicy(), HYDRATION_TIER)


@dataclass(frozen=True)
class Options:
    activities: int
    creates_per_day: float
    external_per_day: float
    latency: float
    in_flight: int
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
    add("--in-flight", type=int, default=16, help="admitted hydrations running at once")
    add("--max-days", type=int, default=14, help="stop after this many days")
    add("--seed", type=int, default=1, help="of arrivals, retry scatter and admission rounding")
    add("--backend", choices=("redis", "memory"), default="redis")
    add("--redis-url", default="redis://127.0.0.1:6379/11", help="flushed (redis backend)")
    args = parser.parse_args(argv)
    return Options(
        activities=args.activities,
        creates_per_day=args.creates_per_day,
        external_per_day=args.external_per_day,
        latency=args.latency,
        in_flight=args.in_flight,
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
class Unit:
    """One hydration: the calls it has still to make, and the requests admission reserved
    for it in short window `window` (as `using_prepaid` carries them)."""

    calls: int
    window: int = -1
    prepaid: int = 0


@dataclass
class Outcome:
    latencies: list[float]
    unfinished_creates: int
    counted: Counter[tuple[int, str]]
    throttled: int
    import_done_at: float | None
    # Import units done (list pages and hydrations) and webhook creates done.
    units_done: int
    creates_done: int
    # The scheduler's refused reservations, per tier (its own count).
    denials: Counter[Tier]
    # Hydrations that started after their window had passed and were refused: back in the queue.
    requeued: int
    # Hydration calls that spent their admission's reservation, and those that reserved.
    prepaid_calls: int
    reserved_calls: int


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


class Simulation:
    """One simulated run: events on a heap, handled in time order on the injected clock."""

    def __init__(self, options: Options, config: QuotaConfig, *, backlog: bool) -> None:
        self.options = options
        self.clock = Clock(MIDNIGHT)
        self.scheduler = make_scheduler(options, config, self.clock)
        self.strava = Strava(RateLimiter(RateLimits(), self.clock, WINDOW), self.scheduler)
        arrivals = random.Random(options.seed)
        self.scatter = random.Random(options.seed + 1)
        self.rounding = random.Random(options.seed + 2)
        self.backoff = Backoff()
        self.end = MIDNIGHT + options.max_days * DAY
        self.creates = poisson(arrivals, options.creates_per_day, self.end)
        self.events: list[tuple[float, int, str, int]] = []
        self.order = itertools.count()
        for number, moment in enumerate(self.creates):
            self.at(moment, "create", number)
        for moment in poisson(arrivals, options.external_per_day, self.end):
            self.at(moment, "external")
        self.calls_left = dict.fromkeys(range(len(self.creates)), 2)
        self.latencies: list[float] = []
        self.tick = release_tick(WINDOW)
        self.ticking = False
        # The hydrations listed so far (by number), those waiting for admission, and those
        # admitted, as the broker would hold them until a worker is free.
        self.units: list[Unit] = []
        self.waiting: deque[int] = deque()
        self.admitted: deque[int] = deque()
        self.running = 0
        self.pages = math.ceil(options.activities / PAGE) if backlog else 0
        self.import_units = self.pages + (options.activities if backlog else 0)
        self.units_done = 0
        self.import_done_at: float | None = None
        self.requeued = 0
        self.prepaid_calls = 0
        self.reserved_calls = 0
        if backlog:
            self.at(IMPORT_STARTS, "page")

    def at(self, moment: float, kind: str, payload: int = 0) -> None:
        heapq.heappush(self.events, (moment, next(self.order), kind, payload))

    def run(self) -> Outcome:
        handlers: dict[str, Callable[[int], None]] = {
            "external": lambda _: self.strava.call("external", self.clock.now),
            "create": self.create,
            "page": lambda _: self.page(),
            "page-done": lambda _: self.page_done(),
            "tick": lambda _: self.release(),
            "call": self.call,
            "unit-done": lambda _: self.unit_done(),
        }
        while self.events:
            moment, _, kind, payload = heapq.heappop(self.events)
            if moment >= self.end:
                break
            self.clock.now = moment
            handlers[kind](payload)
        status = self.scheduler.status()
        self.scheduler.close()
        return Outcome(
            latencies=self.latencies,
            unfinished_creates=sum(1 for left in self.calls_left.values() if left),
            counted=self.strava.counted,
            throttled=self.strava.throttled,
            import_done_at=self.import_done_at,
            units_done=self.units_done,
            creates_done=len(self.latencies),
            denials=Counter(dict(status.denials)),
            requeued=self.requeued,
            prepaid_calls=self.prepaid_calls,
            reserved_calls=self.reserved_calls,
        )

    def wait(self, error: QuotaExceeded) -> float:
        """When work the scheduler refused is tried again, as the workers decide it."""
        step = next_step(
            error,
            attempts=1,
            now=datetime.fromtimestamp(self.clock.now, UTC),
            window_reset=self.scheduler.retry_at,
            backoff=self.backoff,
            rng=self.scatter,
        )
        assert isinstance(step, WaitForQuota)
        return step.at.timestamp()

    # -- real-time work ----------------------------------------------------------------------

    def create(self, number: int) -> None:
        """A webhook create's next call (detail, then streams), reserved as it comes."""
        try:
            self.scheduler.reserve(Tier.WEBHOOK, "read")
        except QuotaExceeded as error:
            self.at(self.wait(error), "create", number)
            return
        now = self.clock.now
        self.strava.call("webhook", now)
        self.calls_left[number] -= 1
        if self.calls_left[number]:
            self.at(now + self.options.latency, "create", number)
        else:
            self.latencies.append(now + self.options.latency - self.creates[number])

    # -- the import: list pages -----------------------------------------------------------------

    def page(self) -> None:
        try:
            self.scheduler.reserve(LIST_TIER, "read")
        except QuotaExceeded as error:
            self.at(self.wait(error), "page")
            return
        self.strava.call("import", self.clock.now)
        self.at(self.clock.now + self.options.latency, "page-done")

    def page_done(self) -> None:
        listed = len(self.units)
        count = min(PAGE, self.options.activities - listed)
        self.units += [Unit(HYDRATION_COST) for _ in range(count)]
        # The page's rows wait for admission (`held.wait_for_place`).
        self.waiting.extend(range(listed, listed + count))
        self.schedule_release()
        if len(self.units) < self.options.activities:
            self.at(self.clock.now, "page")
        self.finished_one()

    # -- the import: hydrations, admitted from the queue ---------------------------------------

    def schedule_release(self) -> None:
        # The release duty runs on its own clock; it has work to do once a row waits.
        if not self.ticking:
            self.ticking = True
            self.at(math.ceil(self.clock.now / self.tick) * self.tick, "tick")

    def release(self) -> None:
        """One release tick: `held.release` for the queue, with `admit_now`."""
        if not self.waiting:
            self.ticking = False
            return
        admitted = admit_now(
            self.scheduler, HYDRATION_TIER, len(self.waiting), HYDRATION_COST, self.rounding
        )
        for requests in admitted.requests:
            number = self.waiting.popleft()
            unit = self.units[number]
            unit.window, unit.prepaid = admitted.window, requests
            self.admitted.append(number)
        self.start_admitted()
        if admitted.units or self.has_room(self.clock.now):
            self.at(self.clock.now + self.tick, "tick")
        else:
            self.at(self.next_room(), "tick")

    def has_room(self, moment: float) -> bool:
        now = self.clock.now
        self.clock.now = moment
        try:
            return self.scheduler.tier_capacity(HYDRATION_TIER).room_now >= HYDRATION_COST
        finally:
            self.clock.now = now

    def next_room(self) -> float:
        """The first release tick with room for a unit, the tick now having none, or the
        first tick after the next event or window boundary, whichever comes first."""
        now = self.clock.now
        bound = float((window_index(now, WINDOW) + 1) * WINDOW)
        if self.events:
            bound = min(bound, self.events[0][0])
        # Ticks now + k * tick for 0 < k <= last come before the bound.
        last = math.ceil((bound - now) / self.tick) - 1
        if last < 1 or not self.has_room(now + last * self.tick):
            return now + (last + 1) * self.tick
        low, high = 0, last
        while high - low > 1:
            middle = (low + high) // 2
            if self.has_room(now + middle * self.tick):
                high = middle
            else:
                low = middle
        return now + high * self.tick

    def start_admitted(self) -> None:
        while self.admitted and self.running < self.options.in_flight:
            self.running += 1
            self.call(self.admitted.popleft())

    def call(self, number: int) -> None:
        """A hydration's next call: prepaid while its window lasts, else reserved."""
        unit = self.units[number]
        now = self.clock.now
        if unit.prepaid > 0 and window_index(now, WINDOW) == unit.window:
            unit.prepaid -= 1
            self.prepaid_calls += 1
        else:
            try:
                self.scheduler.reserve(HYDRATION_TIER, "read")
            except QuotaExceeded:
                # WaitForQuota at a queued tier: back to waiting in its row, at the end.
                self.requeued += 1
                unit.prepaid = 0
                self.waiting.append(number)
                self.schedule_release()
                self.running -= 1
                self.start_admitted()
                return
            self.reserved_calls += 1
        self.strava.call("import", now)
        unit.calls -= 1
        self.at(now + self.options.latency, "call" if unit.calls else "unit-done", number)

    def unit_done(self) -> None:
        self.running -= 1
        self.start_admitted()
        self.finished_one()

    def finished_one(self) -> None:
        self.units_done += 1
        if self.units_done == self.import_units:
            self.import_done_at = self.clock.now


def report(options: Options, config: QuotaConfig, run: Outcome, quiet: Outcome) -> bool:
    budget = allowance(RateLimits().read_daily, 1 - config.safety_margin)
    units = math.ceil(options.activities / PAGE) + options.activities
    calls = math.ceil(options.activities / PAGE) + options.activities * HYDRATION_COST
    last_full_day = (
        int((run.import_done_at - MIDNIGHT) // DAY) if run.import_done_at else options.max_days
    )
    first_day = int((IMPORT_STARTS - MIDNIGHT) // DAY)
    print(
        f"\nper day (daily read limit {RateLimits().read_daily}, margin "
        f"{config.safety_margin:.0%}: daily budget {budget})"
    )
    print(f"{'day':>3} {'counted':>7} {'webhook':>7} {'import':>7} {'other':>5} {'used':>6}")
    full_days: list[int] = []
    days = sorted({day for day, _ in run.counted})
    for day in days:
        count = {who: run.counted[(day, who)] for who in ("webhook", "import", "external")}
        total = sum(count.values())
        waited = first_day <= day < last_full_day
        if waited:
            full_days.append(total)
        used = f"{min(total, budget) / budget:.1%}" if waited else "-"
        print(
            f"{day:>3} {total:>7} {count['webhook']:>7} {count['import']:>7} "
            f"{count['external']:>5} {used:>6}"
        )
    print(
        f"  day {first_day - 1}: the service running before the athlete connects at the start of\n"
        f"  day {first_day}; counted: requests Strava counted that day (ours and the other\n"
        "  client's); import: list pages and hydrations; used: min(counted, budget) / budget,\n"
        "  on days the import waited from midnight to midnight"
    )
    filled = sum(min(total, budget) for total in full_days)
    share = filled / (budget * len(full_days)) if full_days else math.nan
    minimum = calls / budget
    took = (run.import_done_at - IMPORT_STARTS) / DAY if run.import_done_at else math.inf
    rt_per_day = sum(run.counted[(d, "webhook")] for d in days) / max(1, len(days))
    ext_per_day = sum(run.counted[(d, "external")] for d in days) / max(1, len(days))
    print("\nsummary")
    print(
        f"  import: {options.activities} activities = {units} units, {calls} calls (list pages + "
        f"hydrations); done after {took:.2f} days; physical minimum {calls}/{budget} = "
        f"{minimum:.2f} days (with the real-time and other use measured, {calls}/"
        f"({budget} - {rt_per_day:.0f} - {ext_per_day:.0f}) = "
        f"{calls / (budget - rt_per_day - ext_per_day):.2f} days)"
    )
    report_refusals(run)

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


def report_refusals(run: Outcome) -> None:
    queued = run.denials[LIST_TIER] + run.denials[HYDRATION_TIER]
    every = sum(run.denials.values())
    done = run.units_done + run.creates_done
    print(
        "  refusals (the scheduler's denials) per completed unit: import "
        f"{queued}/{run.units_done} = {queued / max(run.units_done, 1):.3f}; all work "
        f"(import and webhook creates) {every}/{done} = {every / max(done, 1):.3f}; 429s: "
        f"{run.throttled}"
    )
    print(
        "  denials by tier: "
        + ", ".join(f"{tier.value} {run.denials[tier]}" for tier in Tier)
        + f"; hydrations that started after their window and were refused (back to the "
        f"queue): {run.requeued}; hydration calls prepaid {run.prepaid_calls}, reserved at "
        f"the call {run.reserved_calls}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    config = QuotaConfig()  # the service's defaults: Strava's windows, limits, margin, shares
    print(
        f"bench_quota_day: simulated in process with an injected clock ({options.backend} "
        f"scheduler), not real processes; {options.activities} activities, "
        f"{options.creates_per_day:g} webhook creates and {options.external_per_day:g} other "
        f"requests a day, release tick {release_tick(WINDOW):g} s, at most "
        f"{options.in_flight} hydrations in flight, seed {options.seed}"
    )
    run = Simulation(options, config, backlog=True).run()
    quiet = Simulation(options, config, backlog=False).run()
    return 0 if report(options, config, run, quiet) else 1


if __name__ == "__main__":
    sys.exit(main())
