#!/usr/bin/env python3
"""Benchmark of the app-wide quota scheduler: a sped-up day against the Strava emulator.

The service runs in production mode, as the Procfile runs it (`strava-ingest serve`, several
`strava-ingest worker` processes and `strava-ingest scheduler` on PostgreSQL and Redis), against
the emulator served in this process on a loopback port, with Strava's limits and a window of a
few seconds instead of fifteen minutes. Both sides count the same epoch-aligned windows.

Phase A: a Poisson stream of webhook creates for one connected athlete, nothing else. The
stream stands for many athletes' creates: the athlete's webhook budget
(WEBHOOK_FETCHES_PER_ATHLETE_PER_WINDOW, 10 a window by default) is raised to cover it, as
the per-athlete budget would not bind for a crowd of athletes; left at 10, most of the stream
would run at `recent`, as a flood of unverified events from one athlete does.
Phase B: the same stream while a backlog far larger than one window waits: a second athlete
with a long history connects, and the service's own backfill lists it; its hydrations (recent
ones at `recent` tier, with streams, older ones at `backfill`) wait in their rows, and the
scheduler process's release duty admits them every release tick, their requests reserved,
and sends them to the workers prepaid (service/ingest/held.py).

Printed: per window the requests Strava counted (by tier), its 429s, the scheduler's own
count, denials, and the budget of the tiers with waiting work; then the share of that budget
used while work waited, the refusals (the scheduler's denials) per completed unit of work,
and webhook-to-hydrated latency percentiles (detail and streams, both fetched at webhook
priority) without and with the backlog, each against its target (PASS/FAIL); the latency to
the detail alone is shown too. A backlog hydration counts as done when its row is `complete`.

Needs PostgreSQL and Redis; the database named in --database-url is dropped and recreated
and the Redis db in --redis-url is flushed. Run: `.venv/bin/python scripts/bench_quota.py`.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import redis
import sqlalchemy as sa
from cryptography.fernet import Fernet
from launch import DeadlineExceeded, answers, command, free_port, running, wait_until
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped
from sqlmodel import col
from starlette.types import ASGIApp, Receive, Scope, Send

from service.clock import Clock
from service.config import Settings
from service.db import create_db_engine, recreate_database
from service.emulator import Emulator, EmulatorConfig
from service.emulator.config import RateLimits
from service.emulator.ratelimits import RateLimiter, Usage
from service.emulator.server import BackgroundServer
from service.heartbeats import KEY_PREFIX as HEARTBEAT_PREFIX
from service.heartbeats import SCHEDULER
from service.ingest.policy import HydrationPolicy, plan_hydration
from service.models import Activity, HydrationStatus, InboxEvent
from service.strava.quota import QuotaConfig, Tier
from service.strava.quota.redis import RedisQuotaScheduler
from service.strava.quota.scheduler import allowance
from service.strava.ratelimit import WindowPair

CLIENT_SECRET = "bench-client-secret"  # noqa: S105 - the emulator's, never a real one
VERIFY_TOKEN = "bench-verify-token"  # noqa: S105
# Production mode requires the secret last path segment of the webhook route.
WEBHOOK_SECRET = "bench-webhook-secret-0123456789"  # noqa: S105
WINDOWS_PER_DAY = 96  # Strava's day is 96 quarter hours; the emulator keeps that ratio
# dramatiq's idle consumers poll with a back-off capped at the worker timeout (1000 ms by
# default): the coarsest step at which a worker notices new work, our "scheduler tick".
DEFAULT_TICK = 1.0


@dataclass(frozen=True)
class Options:
    window_seconds: int
    baseline_windows: int
    windows: int
    backlog: int
    events_per_window: int
    workers: int
    threads: int
    latency: float
    external_share: float
    limit_short: int
    read_limit_short: int
    tick: float
    seed: int
    database_url: str
    redis_url: str
    log_level: str


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--window-seconds", type=int, default=6, help="length of the short window (Strava: 900)")
    add("--baseline-windows", type=int, default=4, help="windows of phase A (no backlog)")
    add("--windows", type=int, default=12, help="windows of phase B (backlog waiting)")
    add(
        "--backlog",
        type=int,
        default=1500,
        help="activities of the athlete who connects in phase B",
    )
    add("--events-per-window", type=int, default=15, help="webhook creates per window")
    add("--workers", type=int, default=2, help="`strava-ingest worker` processes")
    add("--threads", type=int, default=8, help="dramatiq threads per worker process")
    add("--latency", type=float, default=0.1, help="emulator latency per API request, seconds")
    add(
        "--external-share",
        type=float,
        default=0.10,
        help="share of each window's read limit other clients of the app spend",
    )
    add("--limit", type=int, default=200, help="overall requests per window")
    add("--read-limit", type=int, default=100, help="read requests per window")
    add("--seed", type=int, default=1, help="of the webhook arrival times")
    add("--tick", type=float, default=DEFAULT_TICK, help="allowed p99 slack, seconds")
    add(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/strava_ingest_bench",
        help="dropped and recreated",
    )
    add("--redis-url", default="redis://127.0.0.1:6379/11", help="flushed")
    add("--log-level", default="WARNING", help="of the service's processes")
    args = parser.parse_args(argv)
    return Options(
        window_seconds=args.window_seconds,
        baseline_windows=args.baseline_windows,
        windows=args.windows,
        backlog=args.backlog,
        events_per_window=args.events_per_window,
        workers=args.workers,
        threads=args.threads,
        latency=args.latency,
        external_share=args.external_share,
        limit_short=args.limit,
        read_limit_short=args.read_limit,
        tick=args.tick,
        seed=args.seed,
        database_url=args.database_url,
        redis_url=args.redis_url,
        log_level=args.log_level,
    )


# -- what the emulator counted ---------------------------------------------------------------

# The path of the request being answered, set by `tag_paths` for the limiter to read: the
# limiter is called inside the request's own task, so it sees its request's value.
_request_path: ContextVar[str] = ContextVar("bench_request_path", default="?")

# Requests of the other client carry this header, so that the emulator's count can tell them
# from the service's; Strava sees one app either way.
EXTERNAL_HEADER = "x-bench-client"
EXTERNAL = "external"


def tag_paths(app: ASGIApp) -> ASGIApp:
    async def tagged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers", []))
            external = headers.get(EXTERNAL_HEADER.encode()) == EXTERNAL.encode()
            _request_path.set(EXTERNAL if external else str(scope["path"]))
        await app(scope, receive, send)

    return tagged


@dataclass(frozen=True)
class Hit:
    """One request the emulator counted against its limits."""

    at: float
    path: str
    allowed: bool


class RecordingLimiter(RateLimiter):
    """The emulator's limiter, also remembering when each counted request came and for what:
    exact per-window counts, which sampling the usage at boundaries cannot give."""

    def __init__(self, limits: RateLimits, clock: Clock, window_seconds: int) -> None:
        super().__init__(limits, clock, window_seconds)
        self.hits: list[Hit] = []
        self._hits_lock = threading.Lock()

    def hit(self) -> tuple[bool, Usage]:
        allowed, usage = super().hit()
        with self._hits_lock:
            self.hits.append(Hit(self._clock(), _request_path.get(), allowed))
        return allowed, usage

    def snapshot(self) -> list[Hit]:
        with self._hits_lock:
            return list(self.hits)


# -- the service -----------------------------------------------------------------------------


def service_env(options: Options, api_url: str, oauth_url: str, client_id: int) -> dict[str, str]:
    day = options.window_seconds * WINDOWS_PER_DAY
    return {
        "DATABASE_URL": options.database_url,
        "BROKER_URL": options.redis_url,
        "STRAVA_CLIENT_ID": str(client_id),
        "STRAVA_CLIENT_SECRET": CLIENT_SECRET,
        "STRAVA_VERIFY_TOKEN": VERIFY_TOKEN,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "TOKEN_KEY": Fernet.generate_key().decode(),
        "STRAVA_API_URL": api_url,
        "STRAVA_OAUTH_URL": oauth_url,
        "LOG_LEVEL": options.log_level,
        # The scheduler counts the emulator's windows: same length, same epoch alignment.
        "QUOTA_WINDOW_SECONDS": str(options.window_seconds),
        "QUOTA_DAY_SECONDS": str(day),
        "QUOTA_LIMIT_SHORT": str(options.limit_short),
        "QUOTA_LIMIT_DAILY": str(daily_limit(options.limit_short)),
        "QUOTA_READ_LIMIT_SHORT": str(options.read_limit_short),
        "QUOTA_READ_LIMIT_DAILY": str(daily_limit(options.read_limit_short)),
        # Two calls a create, and room for a window four times the mean.
        "WEBHOOK_FETCHES_PER_ATHLETE_PER_WINDOW": str(8 * options.events_per_window),
    }


def daily_limit(short: int) -> int:
    # Every window may be full without the day running out: the run measures the short
    # window, and a daily cap would stop it after a tenth of the emulated day (§2.1 ratio).
    return short * WINDOWS_PER_DAY


@contextmanager
def service(options: Options, env: dict[str, str], logs: Path) -> Iterator[str]:
    """Web, worker and scheduler processes, as the Procfile starts them; yields the web app's
    URL. Without the scheduler process no waiting hydration would ever be admitted."""
    heartbeats = redis.Redis.from_url(options.redis_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with ExitStack() as stack:
        for number in range(options.workers):
            stack.enter_context(
                running(
                    command("worker", "--processes", "1", "--threads", str(options.threads)),
                    env=env,
                    log_file=logs / f"worker-{number}.log",
                    cwd=logs,
                )
            )
        # Each consumer that started listening has written dramatiq's heartbeat.
        wait_until(
            lambda: heartbeats.zcard("dramatiq:__heartbeats__") >= options.workers,
            timeout=60,
            what="the workers",
        )
        stack.enter_context(
            running(
                command("scheduler"),
                env=env,
                log_file=logs / "scheduler.log",
                cwd=logs,
                ready=lambda: bool(heartbeats.keys(f"{HEARTBEAT_PREFIX}{SCHEDULER}:*")),
            )
        )
        stack.enter_context(
            running(
                command("serve", "--port", str(port)),
                env={"PUBLIC_URL": url, **env},
                log_file=logs / "web.log",
                cwd=logs,
                ready=lambda: answers(f"{url}/readyz"),
            )
        )
        heartbeats.close()
        yield url


def connect_athlete(url: str) -> int:
    """The athlete goes through /auth/strava/connect, the emulator's authorize page and back."""
    response = httpx.get(f"{url}/auth/strava/connect", follow_redirects=True, timeout=30)
    response.raise_for_status()
    return int(response.json()["athlete_id"])


def subscribe(env: dict[str, str], url: str, logs: Path) -> None:
    subprocess.run(
        command("subscription", "create", "--callback-url", f"{url}/webhooks/strava"),
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        cwd=logs,
    )


def migrate(env: dict[str, str], logs: Path) -> None:
    subprocess.run(
        command("db", "upgrade"),
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        cwd=logs,
    )


# -- the load --------------------------------------------------------------------------------


def window_of(moment: float, length: int) -> int:
    # The same epoch-aligned numbering as the emulator's limiter and the scheduler use.
    return math.floor(moment / length)


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


@dataclass
class Stream:
    """Webhook creates in a thread from `start` until `stop`, as a Poisson stream with mean
    gap `interval`: athletes finish activities independently, so arrivals fall at any phase
    of a window, also while a window turns over (a fixed pace would avoid that by luck)."""

    emulator: Emulator
    athlete_id: int
    start: float
    stop: float
    interval: float
    seed: int
    created: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        rng = random.Random(self.seed)
        moment = self.start
        while moment < self.stop:
            sleep_until(moment)
            try:
                self.created.append(int(self.emulator.create_activity(self.athlete_id)["id"]))
            except Exception as error:  # a failed create must not silently end the stream
                self.errors.append(repr(error))
            moment += rng.expovariate(1 / self.interval)


@dataclass
class ExternalClient:
    """Another client of the same app, in a thread: `per_window` read requests in every window
    with the app's credentials (an access token the emulator issued to it), evenly through
    the window at a random phase, so the service learns of them only from the usage headers."""

    api_url: str
    token: str
    length: int
    per_window: int
    start: float
    stop: float
    seed: int
    sent: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        if self.per_window <= 0:
            return
        rng = random.Random(self.seed)
        gap = self.length / self.per_window
        headers = {"Authorization": f"Bearer {self.token}", EXTERNAL_HEADER: EXTERNAL}
        with httpx.Client(timeout=30) as client:
            window = window_of(self.start, self.length)
            while window * self.length < self.stop:
                phase = rng.uniform(0, gap)
                for k in range(self.per_window):
                    sleep_until(window * self.length + phase + k * gap)
                    try:
                        response = client.get(f"{self.api_url}/athlete", headers=headers)
                        self.sent += 1
                        self.refused += response.status_code == 429
                    except httpx.HTTPError as error:
                        self.errors.append(repr(error))
                window += 1


@dataclass(frozen=True)
class Sample:
    """The scheduler's view just before a window ends."""

    window: int
    used: int
    denials: Counter[Tier]


class Sampler:
    """Reads the scheduler's status shortly before every window boundary, in a thread."""

    def __init__(self, scheduler: RedisQuotaScheduler, length: int) -> None:
        self._scheduler = scheduler
        self._length = length
        self._stop = threading.Event()
        self.samples: dict[int, Sample] = {}
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            window = window_of(time.time(), self._length)
            # Late enough to see nearly the whole window, early enough not to cross it.
            moment = (window + 1) * self._length - 0.05
            if self._stop.wait(max(0.0, moment - time.time())):
                return
            status = self._scheduler.status()
            self.samples[window] = Sample(
                window,
                status.window("read", "short").used,
                Counter({tier: status.denials.get(tier, 0) for tier in Tier}),
            )
            self._stop.wait(0.1)


# -- the figures -----------------------------------------------------------------------------

BACKLOG_TIERS = (Tier.RECENT, Tier.BACKFILL)
KINDS = ("webhook", Tier.RECENT.value, Tier.BACKFILL.value, "list", "other", EXTERNAL)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: always a value that was measured."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def classify(path: str, tiers: dict[int, Tier]) -> str:
    """Which work a request the emulator counted was for, from its path alone (the other
    client's are tagged `external`)."""
    if path == EXTERNAL:
        return EXTERNAL
    prefix = "/api/v3/activities/"
    # A detail or its streams: the work is the activity's hydration either way.
    activity = path[len(prefix) :].removesuffix("/streams")
    if path.startswith(prefix) and activity.isdigit():
        tier = tiers.get(int(activity))
        return tier.value if tier is not None else "webhook"
    return "list" if path == "/api/v3/athlete/activities" else "other"


def budget_of(config: QuotaConfig, tier: Tier) -> int:
    """Requests a window may hold, all tiers together, before `tier` is refused by its share
    (its hard cap): every request spends both buckets, so the smaller allowance binds."""
    return min(
        allowance(config.limit.short, config.factor(tier, "short")),
        allowance(config.read_limit.short, config.factor(tier, "short")),
    )


def strava_budget(config: QuotaConfig) -> int:
    """Strava's window less the safety margin, whatever the tiers: what "used" is against."""
    return min(
        allowance(config.limit.short, 1 - config.safety_margin),
        allowance(config.read_limit.short, 1 - config.safety_margin),
    )


def quota_config(options: Options) -> QuotaConfig:
    """The service's quota policy: its default margin and shares, the benchmark's windows."""
    fields = Settings.model_fields
    shares: dict[str, tuple[float, float]] = fields["quota_shares"].get_default(
        call_default_factory=True
    )
    return QuotaConfig(
        window_seconds=options.window_seconds,
        day_seconds=options.window_seconds * WINDOWS_PER_DAY,
        limit=WindowPair(options.limit_short, daily_limit(options.limit_short)),
        read_limit=WindowPair(options.read_limit_short, daily_limit(options.read_limit_short)),
        safety_margin=float(fields["quota_safety_margin"].get_default()),
        shares={Tier(name): share for name, share in shares.items()},
    )


def backlog_tiers(emulator: Emulator, athlete_id: int, now: datetime) -> dict[int, Tier]:
    """The tier the service's default hydration policy gives each of the athlete's
    activities (those it hydrates eagerly): how its backfill will queue them."""
    policy = HydrationPolicy()
    tiers: dict[int, Tier] = {}
    for activity in emulator.activities_for(athlete_id):
        start = datetime.fromtimestamp(activity.start, UTC)
        planned = plan_hydration(policy, activity.sport_type, start, now)
        if planned.tier is not None:
            tiers[activity.id] = planned.tier
    return tiers


@dataclass(frozen=True)
class Plan:
    """Which windows are which: A = [first, load); the backlog athlete connects at the start
    of `load`; B = (load, last]."""

    length: int
    first: int
    load: int
    last: int

    def phase(self, window: int) -> str:
        if window < self.load:
            return "A"
        return "load" if window == self.load else "B"


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    # When the backfill had listed every page (its job finished); None if it never did.
    listed_at: float | None
    tiers: dict[int, Tier]
    # Per backlog activity: when its row was stored by the listing, when it was hydrated
    # (its row `complete`: the detail, and the streams its tier fetches).
    listed: dict[int, float]
    hydrated: dict[int, float]
    hits: list[Hit]
    samples: dict[int, Sample]
    # Every webhook create stored in the inbox: received_at, then when its event was done (the
    # detail stored) and when the activity was complete (streams too), None for not (yet).
    events: list[tuple[float, float | None, float | None]]
    created: int
    stream_errors: list[str]
    external_sent: int
    # Webhook POSTs from the emulator to the service that got no 200, by status or error.
    failed_deliveries: Counter[str]
    throttled: int
    denials: Counter[Tier]


@dataclass
class WindowRow:
    index: int
    phase: str
    sent: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    scheduler_used: int | None = None
    denied: Counter[Tier] | None = None
    left: Counter[Tier] = field(default_factory=Counter)
    budget: int | None = None

    @property
    def total(self) -> int:
        return sum(self.sent.values())


def build_rows(outcome: Outcome, config: QuotaConfig) -> list[WindowRow]:
    plan = outcome.plan
    rows = {k: WindowRow(k, plan.phase(k)) for k in range(plan.first, plan.last + 1)}
    for hit in outcome.hits:
        row = rows.get(window_of(hit.at, plan.length))
        if row is not None:
            row.sent[classify(hit.path, outcome.tiers)] += 1
            row.refused += not hit.allowed and hit.path != EXTERNAL
    for k, row in rows.items():
        end = (k + 1) * plan.length
        start = k * plan.length
        # Per tier, the backlog that was listed (so queued) before the window began and was
        # still not hydrated when it ended: work that waited for the whole window.
        waited: Counter[Tier] = Counter()
        for activity_id, tier in outcome.tiers.items():
            if outcome.hydrated.get(activity_id, math.inf) >= end:
                if outcome.listed.get(activity_id, math.inf) < end:
                    row.left[tier] += 1
                if outcome.listed.get(activity_id, math.inf) <= start:
                    waited[tier] += 1
        sample, before = outcome.samples.get(k), outcome.samples.get(k - 1)
        if sample is not None:
            row.scheduler_used = sample.used
            if before is not None:
                row.denied = sample.denials - before.denials
        # While work waited all window, the budget is Strava's window less the margin.
        if any(waited[tier] > 0 for tier in BACKLOG_TIERS):
            row.budget = strava_budget(config)
    return list(rows.values())


@dataclass(frozen=True)
class Latencies:
    values: list[float]
    missing: int

    def line(self, label: str) -> str:
        v = self.values
        return (
            f"{label:<16} n={len(v):<4} p50 {percentile(v, 50):6.2f} s"
            f"  p90 {percentile(v, 90):6.2f} s  p99 {percentile(v, 99):6.2f} s"
            f"  max {max(v, default=math.nan):6.2f} s"
            + (f"  NOT HYDRATED {self.missing}" if self.missing else "")
        )


def latencies(
    outcome: Outcome, rows: list[WindowRow], *, complete: bool = False
) -> tuple[Latencies, Latencies]:
    """Webhook-to-detail per event (with ``complete``: to the activity complete, streams
    included): without backlog (phase A) and with it (the windows of phase B in which backlog
    work waited throughout)."""
    waiting = {row.index for row in rows if row.budget is not None}
    baseline = set(range(outcome.plan.first, outcome.plan.load))
    values: dict[str, list[float]] = {"A": [], "B": []}
    missing: Counter[str] = Counter()
    for received, detail_at, complete_at in outcome.events:
        hydrated = complete_at if complete else detail_at
        window = window_of(received, outcome.plan.length)
        key = "A" if window in baseline else "B" if window in waiting else None
        if key is None:
            continue
        if hydrated is None:
            missing[key] += 1
        else:
            values[key].append(hydrated - received)
    return Latencies(values["A"], missing["A"]), Latencies(values["B"], missing["B"])


def report(outcome: Outcome, options: Options, config: QuotaConfig) -> bool:
    rows = build_rows(outcome, config)
    caps = ", ".join(
        f"{tier.value} {budget_of(config, tier)}" for tier in (Tier.WEBHOOK, *BACKLOG_TIERS)
    )
    print(
        f"\nper window ({options.window_seconds} s; limits {options.limit_short} overall / "
        f"{options.read_limit_short} read, margin {config.safety_margin:.0%}: budget "
        f"{strava_budget(config)}; hard caps of the tiers' shares: {caps}; other clients "
        f"{options.external_share:.0%} of the read limit)"
    )
    print(
        f"{'window':>6} {'phase':<5} {'sent':>4} {'webhook':>7} {'recent':>6} {'backfill':>8} "
        f"{'list':>4} {'other':>5} {'ext':>3} {'429':>3} {'sched':>5} {'budget':>6} {'used':>5} "
        f"{'denied wh/rc/bf':>15} {'left rc/bf':>10}"
    )
    for row in rows:
        used = f"{min(row.total, row.budget) / row.budget:.0%}" if row.budget else "-"
        denied = (
            "/".join(str(row.denied[tier]) for tier in (Tier.WEBHOOK, *BACKLOG_TIERS))
            if row.denied is not None
            else "-"
        )
        left = "/".join(str(row.left[tier]) for tier in BACKLOG_TIERS) if row.phase != "A" else ""
        sent = row.sent
        print(
            f"{row.index - outcome.plan.first:>6} {row.phase:<5} {row.total:>4} "
            f"{sent['webhook']:>7} {sent['recent']:>6} {sent['backfill']:>8} {sent['list']:>4} "
            f"{sent['other']:>5} {sent[EXTERNAL]:>3} {row.refused:>3} "
            f"{'-' if row.scheduler_used is None else row.scheduler_used:>5} "
            f"{'-' if row.budget is None else row.budget:>6} {used:>5} {denied:>15} {left:>10}"
        )
    print(
        "  sent: requests the emulator counted in the window (ours and the other client's),\n"
        "  by the work they were for; ext: the other client's; 429: ours refused by the\n"
        "  emulator; sched: the scheduler's own count 50 ms before the window ended; budget:\n"
        "  Strava's limit less the margin, in windows where backlog waited throughout; used:\n"
        "  min(sent, budget) / budget; denied: reservations the scheduler refused; left:\n"
        "  backlog listed, not yet complete"
    )

    waiting = [row for row in rows if row.budget is not None]
    allowed = sum(row.budget or 0 for row in waiting)
    filled = sum(min(row.total, row.budget or 0) for row in waiting)
    utilization = filled / allowed if allowed else math.nan
    refused = sum(1 for hit in outcome.hits if not hit.allowed and hit.path != EXTERNAL)
    external_refused = sum(1 for hit in outcome.hits if not hit.allowed and hit.path == EXTERNAL)
    without, with_backlog = latencies(outcome, rows, complete=True)
    detail_without, detail_with = latencies(outcome, rows)
    per_tier = Counter(outcome.tiers.values())
    done = sum(1 for a in outcome.tiers if a in outcome.hydrated)
    load_start = outcome.plan.load * outcome.plan.length

    print("\nsummary")
    listed = (
        f"listed {outcome.listed_at - load_start:.1f} s into window "
        f"{outcome.plan.load - outcome.plan.first}"
        if outcome.listed_at is not None
        else "never fully listed"
    )
    print(
        f"  backlog: {len(outcome.tiers)} activities to hydrate ({per_tier[Tier.RECENT]} recent, "
        f"{per_tier[Tier.BACKFILL]} backfill), {listed}; {done} complete by the end"
    )
    if waiting:
        totals = [row.total for row in waiting]
        print(
            f"  windows with backlog waiting throughout: {len(waiting)}; requests per window "
            f"min {min(totals)} / mean {sum(totals) / len(totals):.1f} / max {max(totals)}"
        )
    print(
        "  quota denials (whole run): "
        + ", ".join(f"{tier.value} {outcome.denials[tier]}" for tier in Tier)
    )
    print(f"  webhook creates sent {outcome.created}, stored {len(outcome.events)}")
    if outcome.failed_deliveries:
        print(
            "  webhook deliveries (emulator to service) without a 200: "
            + ", ".join(f"{why} x {n}" for why, n in outcome.failed_deliveries.most_common())
        )
    # A unit of work: one backlog hydration or one webhook create, done by the end.
    units = done + sum(1 for _, detail, _ in outcome.events if detail is not None)
    denials = sum(outcome.denials.values())
    print(
        f"  refusals (the scheduler's quota denials, all tiers) per completed unit of work: "
        f"{denials}/{units} = {denials / units if units else math.nan:.2f}"
    )
    print(
        f"  other client: {outcome.external_sent} requests sent, {external_refused} refused "
        "by the emulator"
    )
    if outcome.stream_errors:
        print(f"  creates that failed: {len(outcome.stream_errors)}: {outcome.stream_errors[:3]}")
    print("webhook-to-hydrated latency (complete, streams included: hydrated_at - received_at)")
    print("  " + without.line("without backlog"))
    print("  " + with_backlog.line("with backlog"))
    print("webhook-to-detail latency (the event done, its detail stored: processed_at)")
    print("  " + detail_without.line("without backlog"))
    print("  " + detail_with.line("with backlog"))

    p99_a, p99_b = percentile(without.values, 99), percentile(with_backlog.values, 99)
    checks = [
        (
            "0 x 429",
            refused == 0 and outcome.throttled == 0,
            f"emulator refused {refused} of ours, scheduler saw {outcome.throttled}",
        ),
        (
            ">= 95 % of Strava's window less the margin used while work waits",
            bool(waiting) and utilization >= 0.95,
            f"{filled}/{allowed} = {utilization:.1%} over {len(waiting)} windows",
        ),
        (
            f"webhook p99 with backlog <= without + one tick ({options.tick:.1f} s)",
            not without.missing
            and not with_backlog.missing
            and bool(with_backlog.values)
            and p99_b <= p99_a + options.tick,
            f"{p99_b:.2f} s vs {p99_a:.2f} s + {options.tick:.1f} s",
        ),
    ]
    print("targets")
    for name, passed, detail in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {name}: {detail}")
    return all(passed for _, passed, _ in checks)


# -- the run ---------------------------------------------------------------------------------


def simulate(options: Options, config: QuotaConfig, logs: Path) -> Outcome:
    length = options.window_seconds
    recreate_database(options.database_url)
    flushed = redis.Redis.from_url(options.redis_url)
    flushed.flushdb()
    flushed.close()
    emulator = Emulator(
        EmulatorConfig(
            client_secret=CLIENT_SECRET,
            # The one seeded athlete carries the backlog; the webhook athlete is added empty.
            athletes=1,
            activities_per_athlete=options.backlog,
            # Short tracks keep each detail and stream cheap to render.
            max_stream_points=50,
            window_seconds=length,
            limits=RateLimits(
                options.limit_short,
                daily_limit(options.limit_short),
                options.read_limit_short,
                daily_limit(options.read_limit_short),
            ),
            latency=options.latency,
        )
    )
    backlog_athlete = emulator.athlete_ids[0]
    webhook_athlete = emulator.add_athlete()
    # Another client of the same app spends with its own athlete's token.
    other_athlete = emulator.add_athlete()
    tiers = backlog_tiers(emulator, backlog_athlete, datetime.now(UTC))
    limiter = RecordingLimiter(emulator.config.limits, emulator.clock, length)
    emulator.limiter = limiter
    server = BackgroundServer(tag_paths(emulator.app)).start()
    env = service_env(
        options, f"{server.url}/api/v3", f"{server.url}/oauth", emulator.config.client_id
    )
    engine = create_db_engine(options.database_url)
    scheduler = RedisQuotaScheduler.from_url(options.redis_url, config)
    try:
        migrate(env, logs)
        with service(options, env, logs) as url, Sampler(scheduler, length) as sampler:
            emulator.login(webhook_athlete)
            connect_athlete(url)
            subscribe(env, url, logs)
            first = window_of(time.time(), length) + 1
            load = first + options.baseline_windows
            plan = Plan(length, first, load, load + options.windows)
            stream = Stream(
                emulator,
                webhook_athlete,
                start=first * length,
                stop=(plan.last + 1) * length,
                interval=length / options.events_per_window,
                seed=options.seed,
            )
            streaming = threading.Thread(target=stream.run, name="stream", daemon=True)
            streaming.start()
            other = ExternalClient(
                api_url=f"{server.url}/api/v3",
                token=str(emulator.issue_tokens(other_athlete)["access_token"]),
                length=length,
                per_window=round(options.external_share * options.read_limit_short),
                start=first * length,
                stop=(plan.last + 1) * length,
                seed=options.seed,
            )
            spending = threading.Thread(target=other.run, name="other-client", daemon=True)
            spending.start()
            print(f"phase A: windows 0-{options.baseline_windows - 1}, webhook stream only")
            sleep_until(load * length)
            # The backlog comes the way it does in production: an athlete with a long
            # history connects, and the service's own backfill lists and queues it.
            emulator.login(backlog_athlete)
            connect_athlete(url)
            print(f"phase B: an athlete with {options.backlog} activities connected")
            streaming.join()
            spending.join()
            created = list(stream.created)
            # The last events get a moment to land; a miss is reported, not waited for.
            try:
                wait_until(
                    lambda: hydrated_count(engine, created) == len(created),
                    timeout=2 * length + 10,
                    what="the last webhook activities",
                    interval=0.2,
                )
            except DeadlineExceeded as error:
                print(f"warning: {error}", file=sys.stderr)
            status = scheduler.status()
            return Outcome(
                plan=plan,
                listed_at=listed_at(engine, backlog_athlete),
                tiers=tiers,
                listed=column_times(engine, col(Activity.created_at), list(tiers)),
                hydrated=column_times(
                    engine,
                    col(Activity.hydrated_at),
                    list(tiers),
                    col(Activity.hydration_status) == HydrationStatus.COMPLETE.value,
                ),
                hits=limiter.snapshot(),
                samples=dict(sampler.samples),
                events=event_times(engine),
                created=len(created),
                stream_errors=list(stream.errors) + other.errors,
                external_sent=other.sent,
                failed_deliveries=Counter(
                    str(attempt.status) if attempt.error is None else attempt.error.split(":")[0]
                    for attempt in emulator.deliveries
                    if attempt.status != 200
                ),
                throttled=status.throttled,
                denials=Counter(dict(status.denials)),
            )
    finally:
        scheduler.close()
        engine.dispose()
        server.stop()
        emulator.close()


def hydrated_count(engine: Engine, ids: list[int]) -> int:
    query = sa.select(sa.func.count()).where(
        col(Activity.id).in_(ids),
        col(Activity.hydration_status) == HydrationStatus.COMPLETE.value,
    )
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def column_times(
    engine: Engine,
    column: Mapped[datetime] | Mapped[datetime | None],
    ids: list[int],
    *conditions: sa.ColumnElement[bool],
) -> dict[int, float]:
    """A timestamp column of the given activities (those that meet `conditions`), as epoch
    seconds, where it is set."""
    query = sa.select(col(Activity.id), column).where(col(Activity.id).in_(ids), *conditions)
    with engine.connect() as connection:
        return {
            activity_id: moment.timestamp()
            for activity_id, moment in connection.execute(query)
            if moment is not None
        }


def listed_at(engine: Engine, athlete_id: int) -> float | None:
    # Plain SQL: the sync job's table is all this benchmark needs of the sync machinery.
    query = sa.text(
        "SELECT finished_at FROM sync_jobs WHERE athlete_id = :athlete ORDER BY id LIMIT 1"
    )
    with engine.connect() as connection:
        finished = connection.execute(query, {"athlete": athlete_id}).scalar()
    return finished.timestamp() if isinstance(finished, datetime) else None


def event_times(engine: Engine) -> list[tuple[float, float | None, float | None]]:
    query = (
        sa.select(
            col(InboxEvent.received_at),
            col(InboxEvent.processed_at),
            col(Activity.hydrated_at),
            col(Activity.hydration_status),
        )
        .select_from(InboxEvent)
        .outerjoin(Activity, col(Activity.id) == col(InboxEvent.object_id))
        .where(col(InboxEvent.object_type) == "activity", col(InboxEvent.aspect_type) == "create")
    )
    with engine.connect() as connection:
        return [
            (
                received.timestamp(),
                processed.timestamp() if processed else None,
                hydrated.timestamp()
                if hydrated and status == HydrationStatus.COMPLETE.value
                else None,
            )
            for received, processed, hydrated, status in connection.execute(query)
        ]


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    config = quota_config(options)
    logs = Path(tempfile.mkdtemp(prefix="bench_quota-"))
    seconds = options.window_seconds * (options.baseline_windows + options.windows + 2)
    print(
        f"bench_quota: {options.workers} worker processes x {options.threads} threads, "
        f"window {options.window_seconds} s, ~{seconds} s of load; logs in {logs}"
    )
    if options.backlog <= (options.windows + 1) * budget_of(config, Tier.BACKFILL):
        # Not an error: the backlog drains early and the later windows simply do not count.
        print("note: the backlog may drain before phase B ends", file=sys.stderr)
    outcome = simulate(options, config, logs)
    return 0 if report(outcome, options, config) else 1


if __name__ == "__main__":
    sys.exit(main())
