#!/usr/bin/env python3
"""Redis memory and CPU of the scheduler's release for a backlog of a million waiting hydrations.

A backfill's hydrations wait in their rows, not in Redis (service/ingest/held.py); every
release tick the scheduler process admits what the quota takes now and sends only those to
the broker. This builds such a backlog in PostgreSQL (one athlete, `--units` activities
waiting: `hydration_held_until` set a listing page at a time, start dates spread over ten
years, `--recent-share` of them within the recent window), then runs the service's release as
the `strava-ingest scheduler` process runs it: `held.release` with `admit_now` on the Redis
quota scheduler (Strava's real limits and 900 s windows) and a Dispatcher on a Redis broker,
for `--ticks` release ticks. The clock is injected: it moves `release_tick(900)` seconds from
one tick to the next, and the ticks run back to back.

No worker runs: the hydrations a tick sends are counted in Redis and then deleted from the
broker's queue, so that they do not pile up as they would were no worker ever to take them.

Printed, each with its definition: the Redis memory before the rows exist, after, and after
the ticks; the keys in the Redis db and the dramatiq messages in it; the wall time of a
release tick; the Redis server's CPU and this process's CPU per tick; the hydrations sent.

Needs PostgreSQL and Redis; the database named in --database-url is dropped and recreated and
the Redis db in --redis-url is flushed. The memory and CPU figures are the whole Redis
server's: take them on a server no one else uses. Run: `.venv/bin/python
scripts/bench_admission.py`.
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import redis
import sqlalchemy as sa
from bench_quota import percentile
from bench_quota_day import Clock

from service.db import create_db_engine, recreate_database, session_scope, upgrade_schema
from service.ingest.held import release
from service.ingest.policy import HydrationPolicy
from service.messaging import HYDRATE_QUEUE, Dispatcher, build_broker
from service.models import Athlete, HydrationStatus
from service.strava.quota import QuotaConfig
from service.strava.quota.admission import admit_now, release_tick
from service.strava.quota.redis import RedisQuotaScheduler

ATHLETE_ID = 1_000_001
FIRST_ACTIVITY_ID = 10_000_000_000  # an id of Strava's size
PAGE = 200  # a listing page: its rows start waiting together (`held.wait_for_place`)
HISTORY = timedelta(days=3650)  # how far back the older start dates go
WINDOW = 900  # Strava's short window
DRAMATIQ_NAMESPACE = "dramatiq"

COPY_ACTIVITIES = (
    "COPY activities (id, athlete_id, name, sport_type, start_date, hydration_status, "
    "hydrate_attempts, hydration_held_until, created_at, updated_at) FROM STDIN"
)


@dataclass(frozen=True)
class Options:
    units: int
    ticks: int
    recent_share: float
    seed: int
    database_url: str
    redis_url: str


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--units", type=int, default=1_000_000, help="waiting hydrations in the backlog")
    add("--ticks", type=int, default=200, help="release ticks run")
    add("--recent-share", type=float, default=0.05, help="of the backlog, within recent weeks")
    add("--seed", type=int, default=1, help="of the start dates")
    add(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/strava_ingest_bench_admission",
        help="dropped and recreated",
    )
    add("--redis-url", default="redis://127.0.0.1:6379/2", help="flushed")
    args = parser.parse_args(argv)
    return Options(
        units=args.units,
        ticks=args.ticks,
        recent_share=args.recent_share,
        seed=args.seed,
        database_url=args.database_url,
        redis_url=args.redis_url,
    )


# -- the backlog -----------------------------------------------------------------------------


def build_backlog(options: Options, policy: HydrationPolicy, now: datetime) -> int:
    """The athlete and their waiting activities, written with COPY; returns how many start
    within the recent window."""
    engine = create_db_engine(options.database_url)
    try:
        with session_scope(engine) as session:
            session.add(Athlete(id=ATHLETE_ID, username="backlog", connected_at=now))
    finally:
        engine.dispose()
    recent = 0
    with psycopg.connect(libpq_url(options.database_url)) as connection:
        with connection.cursor() as cursor, cursor.copy(COPY_ACTIVITIES) as copy:
            for row in backlog_rows(options, policy, now):
                copy.write_row(row)
                recent += row[4] >= now - policy.recent
        # Fresh statistics, as autovacuum would have them for a table this size.
        connection.execute("ANALYZE activities")
    return recent


# id, athlete_id, name, sport_type, start_date, hydration_status, hydrate_attempts,
# hydration_held_until, created_at, updated_at: the columns of COPY_ACTIVITIES.
Row = tuple[int, int, str, str, datetime, str, int, datetime, datetime, datetime]


def backlog_rows(options: Options, policy: HydrationPolicy, now: datetime) -> Iterator[Row]:
    rng = random.Random(options.seed)
    # The listing went newest first a page at a time, a second a page, ending a minute ago.
    listed_from = now - timedelta(seconds=60 + options.units / PAGE)
    for number in range(options.units):
        if rng.random() < options.recent_share:
            start = now - policy.recent * rng.random()
        else:
            start = now - policy.recent - HISTORY * rng.random()
        waiting_since = listed_from + timedelta(seconds=number // PAGE)
        yield (
            FIRST_ACTIVITY_ID + number,
            ATHLETE_ID,
            f"Activity {number}",
            "Run",
            start,
            HydrationStatus.PENDING.value,
            0,
            waiting_since,
            waiting_since,
            waiting_since,
        )


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL as psycopg takes it (without the `+psycopg` driver name)."""
    url = sa.make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


# -- Redis -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisView:
    """What the Redis db holds at one moment."""

    used_memory: int
    keys: int
    # The sum of MEMORY USAGE over the db's keys: this db's share, whatever other dbs hold.
    key_bytes: int
    messages: int


class RedisProbe:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)

    def view(self) -> RedisView:
        keys = list(self.client.scan_iter(count=1000))
        return RedisView(
            used_memory=int(self.client.info("memory")["used_memory"]),
            keys=len(keys),
            key_bytes=sum(int(self.client.memory_usage(key) or 0) for key in keys),
            messages=self.messages(),
        )

    def cpu(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def messages(self) -> int:
        """dramatiq messages stored, in every queue (each is a field of a `.msgs` hash)."""
        return sum(
            int(self.client.hlen(key))
            for key in self.client.scan_iter(match=f"{DRAMATIQ_NAMESPACE}:*.msgs", count=1000)
        )

    def drain(self) -> None:
        """Take the hydrations off the broker's queue, as a worker would have."""
        queue = f"{DRAMATIQ_NAMESPACE}:{HYDRATE_QUEUE}"
        self.client.delete(queue, f"{queue}.msgs")

    def close(self) -> None:
        self.client.close()


# -- the ticks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    wall: float
    redis_cpu: float
    own_cpu: float
    sent: int
    messages: int


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_ticks(options: Options, policy: HydrationPolicy, probe: RedisProbe) -> list[Tick]:
    clock = Clock(time.time())
    scheduler = RedisQuotaScheduler.from_url(options.redis_url, QuotaConfig(), clock)
    broker = build_broker(options.redis_url)
    dispatcher = Dispatcher(broker)
    engine = create_db_engine(options.database_url)
    admit = functools.partial(admit_now, scheduler)
    ticks: list[Tick] = []
    try:
        for _ in range(options.ticks):
            redis_before, own_before = probe.cpu(), own_cpu()
            started = time.perf_counter()
            sent = release(
                engine,
                policy,
                datetime.fromtimestamp(clock.now, UTC),
                admit,
                dispatcher.send_hydration,
            )
            wall = time.perf_counter() - started
            own, server = own_cpu() - own_before, probe.cpu() - redis_before
            ticks.append(Tick(wall, server, own, sent, probe.messages()))
            probe.drain()
            clock.now += release_tick(WINDOW)
    finally:
        engine.dispose()
        broker.close()
        scheduler.close()
    return ticks


# -- the figures -----------------------------------------------------------------------------


def mib(size: float) -> str:
    return f"{size / 2**20:,.2f} MiB"


def delta(after: int, before: int) -> str:
    return f"{'+' if after >= before else '-'}{mib(abs(after - before))}"


def millis(values: Sequence[float]) -> str:
    return (
        f"p50 {percentile(values, 50) * 1000:8.2f} ms  p99 {percentile(values, 99) * 1000:8.2f} ms"
        f"  max {max(values, default=math.nan) * 1000:8.2f} ms"
    )


def report(
    views: tuple[RedisView, RedisView, RedisView],
    ticks: list[Tick],
    built: float,
) -> None:
    empty, backlog, after = views
    tick = release_tick(WINDOW)
    print(f"\nbacklog built (COPY and ANALYZE) in {built:.1f} s")
    print("Redis")
    print(
        f"  used_memory: before the rows {mib(empty.used_memory)}; with the rows "
        f"{mib(backlog.used_memory)} ({delta(backlog.used_memory, empty.used_memory)}); after "
        f"{len(ticks)} ticks {mib(after.used_memory)} "
        f"({delta(after.used_memory, empty.used_memory)})"
    )
    print(
        f"  the db's keys: before the rows {empty.keys} ({empty.key_bytes:,} bytes); with the "
        f"rows {backlog.keys} ({backlog.key_bytes:,} bytes); after the ticks {after.keys} "
        f"({after.key_bytes:,} bytes)"
    )
    most = max((t.messages for t in ticks), default=0)
    print(
        f"  dramatiq messages: at most {most} after one tick (the tick's hydrations, deleted "
        f"before the next: no worker runs); after the ticks {after.messages}"
    )
    print(
        "  used_memory: INFO memory, the whole server's; the db's keys: counted by SCAN, with\n"
        "  the sum of their MEMORY USAGE; a dramatiq message: a field of a queue's `.msgs`\n"
        "  hash"
    )
    sent = [t.sent for t in ticks]
    print(f"release ticks: {len(ticks)}, one every {tick:g} s of the injected clock")
    print(f"  wall time of a tick          {millis([t.wall for t in ticks])}")
    print(f"  Redis server CPU per tick    {millis([t.redis_cpu for t in ticks])}")
    print(f"  this process's CPU per tick  {millis([t.own_cpu for t in ticks])}")
    redis_total = sum(t.redis_cpu for t in ticks)
    share = redis_total / max(len(ticks), 1) / tick
    print(
        f"  Redis server CPU in all: {redis_total:.3f} s, {share:.2%} of a core at one tick "
        f"per {tick:g} s"
    )
    print(
        f"  hydrations admitted and sent: {sum(sent)} in all, at most {max(sent, default=0)} a "
        f"tick; ticks that sent any: {sum(1 for n in sent if n)}"
    )
    print(
        "  a tick: one `held.release` (recent rows first, then backfill; admit_now on the\n"
        "  Redis quota scheduler; each admitted hydration sent to the broker), timed around\n"
        "  the call; Redis server CPU: the change of INFO cpu used_cpu_sys + used_cpu_user\n"
        "  over the call (the whole server's); this process's CPU: getrusage user + system,\n"
        "  PostgreSQL's own CPU not included"
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    policy = HydrationPolicy()
    now = datetime.now(UTC)
    print(
        f"bench_admission: {options.units:,} waiting hydrations, {options.ticks} release ticks "
        f"of Strava's {WINDOW} s windows; PostgreSQL {options.database_url}, Redis "
        f"{options.redis_url}"
    )
    recreate_database(options.database_url)
    upgrade_schema(options.database_url)
    probe = RedisProbe(options.redis_url)
    try:
        probe.client.flushdb()
        empty = probe.view()
        started = time.perf_counter()
        recent = build_backlog(options, policy, now)
        built = time.perf_counter() - started
        print(f"  {recent:,} of them recent (started within {policy.recent.days} days)")
        backlog = probe.view()
        ticks = run_ticks(options, policy, probe)
        after = probe.view()
        report((empty, backlog, after), ticks, built)
    finally:
        probe.client.flushdb()
        probe.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
