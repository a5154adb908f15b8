#!/usr/bin/env python3
"""Benchmark of admission from a queue (service/strava/quota/admission.py).

Part 1, a backlog of a million units at Strava's real limits and windows: tickets for all of
them from the Redis backend, in batches of a listing page (200) and one at a time for a
sample (the hydration actors take one per unit), with the CPU of this process and of the
Redis server and the Redis memory of the ticket books; then the delayed dramatiq messages
that stay in Redis: one for each unit placed within the horizon (ADMISSION_HORIZON_SECONDS;
the rest wait in their rows), and, for comparison, what a message for every unit would take.

Part 2, a short simulation: scripts/bench_quota.py's sped-up windows, web and worker
processes and webhook stream, with a backlog far larger than the run; printed, the refusals
(each one a re-delivery of its unit) per completed unit of work, against the target (0.1).

Needs PostgreSQL and Redis; the database in --database-url is dropped and recreated and the
Redis db in --redis-url is flushed. Run: `.venv/bin/python scripts/bench_admission.py`.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bench_quota
import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from service.messaging import HYDRATE_ACTIVITY, HYDRATE_QUEUE
from service.strava.quota import QuotaConfig, Tier
from service.strava.quota.admission import RedisAdmission, Ticket
from service.strava.quota.redis import RedisQuotaScheduler

TARGET_REFUSALS_PER_UNIT = 0.1
# Tickets are taken a listing page at a time (docs/strava.md §4.1: at most 200 a page).
PAGE = 200


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--units", type=int, default=1_000_000, help="units of work in the large backlog")
    add("--single", type=int, default=10_000, help="tickets taken one at a time (sample)")
    add("--horizon", type=float, default=3600.0, help="ADMISSION_HORIZON_SECONDS")
    add(
        "--compare-messages",
        type=int,
        default=100_000,
        help="delayed messages sent to measure a message's size, had every unit one",
    )
    add("--seeds", type=int, nargs="*", default=[1, 2, 3], help="simulation seeds; none: skip")
    add("--sim-windows", type=int, default=12, help="windows of the simulation's phase B")
    add("--sim-backlog", type=int, default=3000, help="activities of the simulation's backlog")
    add(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/strava_ingest_bench_quota_admission",
        help="dropped and recreated",
    )
    add("--redis-url", default="redis://127.0.0.1:6379/2", help="flushed")
    return parser.parse_args(argv)


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def mib(size: float) -> str:
    return f"{size / 2**20:,.1f} MiB"


def large_backlog(args: argparse.Namespace) -> None:
    """Part 1: tickets and delayed messages for a backlog of ``args.units``."""
    client = redis.Redis.from_url(args.redis_url)
    client.flushdb()
    config = QuotaConfig()  # Strava's limits and windows, the service's default margin
    shares = bench_quota.quota_config(bench_quota.parse_args(["--window-seconds", "900"])).shares
    config = replace(config, shares=shares)
    scheduler = RedisQuotaScheduler.from_url(args.redis_url, config)
    admission = RedisAdmission(scheduler.client, scheduler, scheduler.prefix)
    print(f"part 1: {args.units:,} units of backfill work, Redis at {args.redis_url}")

    memory_before = used_memory(client)
    cpu, server = own_cpu(), redis_cpu(client)
    started = time.perf_counter()
    last = None
    horizon = datetime.now(UTC) + timedelta(seconds=args.horizon)
    near: list[Ticket] = []
    for offset in range(0, args.units, PAGE):
        tickets = admission.admit(Tier.BACKFILL, min(PAGE, args.units - offset))
        near += [ticket for ticket in tickets if ticket.at <= horizon]
        last = tickets[-1]
    wall = time.perf_counter() - started
    cpu, server = own_cpu() - cpu, redis_cpu(client) - server
    assert last is not None
    book = client.memory_usage(f"{scheduler.prefix}tickets:{Tier.BACKFILL.value}") or 0
    print(
        f"  tickets in pages of {PAGE}: {wall:.1f} s wall, {cpu:.1f} s CPU here, "
        f"{server:.2f} s CPU in Redis; {cpu / args.units * 1e6:.1f} µs CPU a ticket"
    )
    print(
        f"  ticket book: {book} bytes (MEMORY USAGE); used_memory "
        f"{mib(memory_before)} -> {mib(used_memory(client))}"
    )
    days = (last.at - datetime.now(UTC)).total_seconds() / 86400
    print(f"  last unit placed {days:,.0f} days ahead ({last.at:%Y-%m-%d %H:%M} UTC)")

    cpu, server = own_cpu(), redis_cpu(client)
    started = time.perf_counter()
    for _ in range(args.single):
        admission.admit(Tier.BACKFILL)
    wall = time.perf_counter() - started
    cpu, server = own_cpu() - cpu, redis_cpu(client) - server
    print(
        f"  {args.single:,} tickets one at a time: {wall / args.single * 1e6:.0f} µs wall, "
        f"{cpu / args.single * 1e6:.0f} µs CPU here, {server / args.single * 1e6:.0f} µs CPU "
        "in Redis a ticket"
    )

    broker = RedisBroker(client=redis.Redis.from_url(args.redis_url))  # type: ignore[no-untyped-call]
    broker.declare_queue(HYDRATE_QUEUE)
    now = datetime.now(UTC)
    memory_before = used_memory(client)
    for number, ticket in enumerate(near):
        broker.enqueue(hydration(number), delay=ticket.delay_ms(now))
    grown = used_memory(client) - memory_before
    print(
        f"  delayed messages in Redis with a {args.horizon:.0f} s horizon: {len(near):,} "
        f"(+{mib(grown)} used_memory); {args.units - len(near):,} units wait in their rows"
    )
    client.flushdb()
    broker.declare_queue(HYDRATE_QUEUE)
    memory_before = used_memory(client)
    started = time.perf_counter()
    for number in range(args.compare_messages):
        # Spread over the years the backlog takes; Redis keeps each the same.
        broker.enqueue(hydration(number), delay=1000 * (1 + number * 150))
    wall = time.perf_counter() - started
    grown = used_memory(client) - memory_before
    each = grown / max(args.compare_messages, 1)
    print(
        f"  without the horizon, a message per unit: {args.compare_messages:,} sent in "
        f"{wall:.0f} s, +{mib(grown)} used_memory, {each:.0f} bytes a message: "
        f"{mib(each * args.units)} for {args.units:,} units"
    )
    broker.close()
    scheduler.close()
    client.flushdb()
    client.close()


def hydration(number: int) -> dramatiq.Message[None]:
    """A hydration message as the actors send it, for an activity id of Strava's size."""
    return dramatiq.Message(
        queue_name=HYDRATE_QUEUE,
        actor_name=HYDRATE_ACTIVITY,
        args=(10_000_000_000 + number, Tier.BACKFILL.value),
        kwargs={},
        options={},
    )


def simulation(args: argparse.Namespace, seed: int) -> bool:
    """Part 2: bench_quota's short-window simulation; refusals per completed unit."""
    options = bench_quota.parse_args(
        [
            "--seed",
            str(seed),
            "--windows",
            str(args.sim_windows),
            "--backlog",
            str(args.sim_backlog),
            "--database-url",
            args.database_url,
            "--redis-url",
            args.redis_url,
        ]
    )
    config = bench_quota.quota_config(options)
    # The simulated Strava calls the plain webhook path (production mode otherwise wants
    # WEBHOOK_SECRET in it); bench_quota's processes inherit this environment.
    os.environ["WEBHOOK_SECRET_OPTOUT"] = "true"  # noqa: S105 - a switch, not a secret
    logs = Path(tempfile.mkdtemp(prefix="bench_admission-"))
    print(
        f"part 2, seed {seed}: {options.workers} workers x {options.threads} threads, window "
        f"{options.window_seconds} s, {options.baseline_windows} + {options.windows} windows, "
        f"backlog {options.backlog} activities; logs in {logs}"
    )
    outcome = bench_quota.simulate(options, config, logs)
    # bench_quota's own table and targets, for the same run (budget used, 429s, webhook p99).
    bench_quota.report(outcome, options, config)
    hydrated = len(outcome.hydrated)
    events = sum(1 for _, processed, _ in outcome.events if processed is not None)
    backlog_refusals = sum(outcome.denials.get(tier, 0) for tier in bench_quota.BACKLOG_TIERS)
    all_refusals = sum(outcome.denials.values())
    completed = hydrated + events
    per_unit = all_refusals / max(completed, 1)
    print(
        f"  completed: {hydrated} backlog hydrations, {events} webhook events; 429s: "
        f"{outcome.throttled}"
    )
    print(
        "  refusals: "
        + ", ".join(f"{tier.value} {outcome.denials.get(tier, 0)}" for tier in Tier)
        + f"; backlog {backlog_refusals / max(hydrated, 1):.3f} per hydration"
    )
    verdict = "PASS" if per_unit <= TARGET_REFUSALS_PER_UNIT else "FAIL"
    print(
        f"  refusals (= re-deliveries) per completed unit: {per_unit:.3f} "
        f"(target <= {TARGET_REFUSALS_PER_UNIT}) {verdict}"
    )
    return per_unit <= TARGET_REFUSALS_PER_UNIT


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.units:
        large_backlog(args)
    results = [simulation(args, seed) for seed in args.seeds]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
