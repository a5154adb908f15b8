"""Worker processes sharing one Redis never together spend more than the budget."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from service.strava.quota import QuotaConfig, QuotaExceeded, Tier
from service.strava.quota.redis import RedisQuotaScheduler
from service.strava.ratelimit import RateLimitSnapshot, WindowPair

NOON = 1780272000 + 12 * 3600  # 2026-06-01T12:00:00Z
WORKERS = 4
CONFIG = QuotaConfig(limit=WindowPair(800, 8000), read_limit=WindowPair(400, 4000))
BUDGET = 380  # the read bucket binds: floor(400 x 0.95)


def _fixed_clock() -> float:
    return NOON


def reserve_until_denied(
    redis_url: str, start: Barrier, results: multiprocessing.Queue[int]
) -> None:
    """One worker process: reserve as fast as possible until refused; report the grants."""
    scheduler = RedisQuotaScheduler.from_url(redis_url, CONFIG, _fixed_clock)
    granted = 0
    start.wait(timeout=30)
    try:
        while True:
            scheduler.reserve(Tier.WEBHOOK, "read")
            granted += 1
    except QuotaExceeded:
        results.put(granted)
    finally:
        scheduler.close()


def test_worker_processes_together_never_exceed_the_budget(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A spawned child unpickles its target by module name; pytest imported this file as
    # tests.strava.quota.test_concurrency, importable once the repository root is on the path.
    monkeypatch.syspath_prepend(str(Path(__file__).parents[3]))
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(WORKERS)
    results: multiprocessing.Queue[int] = spawn.Queue()
    workers = [
        spawn.Process(target=reserve_until_denied, args=(redis_url, start, results))
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()

    grants = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)

    assert sum(grants) == BUDGET
    assert sum(1 for granted in grants if granted > 0) > 1  # they really did compete
    status = RedisQuotaScheduler.from_url(redis_url, CONFIG, _fixed_clock).status()
    assert status.window("read", "short").used == BUDGET
    assert status.window("overall", "daily").used == BUDGET
    assert status.denials[Tier.WEBHOOK] == WORKERS


# Several windows, every tier, and another client of the app spending beside us, the processes
# moving through each window in lockstep (their clocks agree, as real ones roughly do).
ROLES = ("backfill", "backfill", "webhook", "external")
WINDOWS_RUN = 3
STEPS = 120  # steps per window; at each, every process tries one reservation
EXTERNAL_EVERY = 20  # the other client spends EXTERNAL_SPEND at every such step
EXTERNAL_SPEND = 10
# A day that never binds: at this pace real-time work alone would need 29,000 by midnight.
DAY_CONFIG = QuotaConfig(limit=WindowPair(800, 80_000), read_limit=WindowPair(400, 40_000))
LIMIT = DAY_CONFIG.read_limit.short


class _SteppedClock:
    def __init__(self) -> None:
        self.now = float(NOON)

    def __call__(self) -> float:
        return self.now


def spend_in_lockstep(
    redis_url: str,
    role: str,
    step_barrier: Barrier,
    results: multiprocessing.Queue[tuple[str, list[tuple[int, int]], list[tuple[int, int]]]],
) -> None:
    """One process: at every step, reserve once. The "external" one first reports, as
    Strava's headers would, that another client of the app spent some; the others wait for
    that report before reserving. Reports the (window, step) of each grant and spend."""
    clock = _SteppedClock()
    scheduler = RedisQuotaScheduler.from_url(redis_url, DAY_CONFIG, clock)
    tier = Tier.BACKFILL if role == "backfill" else Tier.WEBHOOK
    grants: list[tuple[int, int]] = []
    spends: list[tuple[int, int]] = []
    spent = 0
    try:
        for window in range(WINDOWS_RUN):
            spent = 0
            for step in range(STEPS):
                clock.now = NOON + window * 900 + step * 900 / STEPS
                if role == "external" and step % EXTERNAL_EVERY == 0:
                    spent += EXTERNAL_SPEND
                    spends.append((window, step))
                    # What Strava counts: every reservation of ours (all processes) and theirs.
                    short = scheduler.status().window("read", "short")
                    counted = sum(short.used_by_tier.values()) + spent
                    usage = WindowPair(counted, counted)
                    scheduler.observe("read", 200, RateLimitSnapshot(None, None, None, usage))
                step_barrier.wait(timeout=30)
                try:
                    scheduler.reserve(tier, "read")
                    grants.append((window, step))
                except QuotaExceeded:
                    pass
                step_barrier.wait(timeout=30)
        results.put((role, grants, spends))
    finally:
        scheduler.close()


def test_no_window_exceeds_the_limit_with_four_processes_and_another_client(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parents[3]))
    spawn = multiprocessing.get_context("spawn")
    step_barrier = spawn.Barrier(len(ROLES))
    results: multiprocessing.Queue[tuple[str, list[tuple[int, int]], list[tuple[int, int]]]] = (
        spawn.Queue()
    )
    workers = [
        spawn.Process(target=spend_in_lockstep, args=(redis_url, role, step_barrier, results))
        for role in ROLES
    ]
    for worker in workers:
        worker.start()

    reports = [results.get(timeout=120) for _ in ROLES]
    for worker in workers:
        worker.join(timeout=30)

    granted = Counter(moment for _, grants, _ in reports for moment in grants)
    spent = Counter(moment for _, _, spends in reports for moment in spends)
    by_role: Counter[tuple[str, int]] = Counter()
    for role, grants, _ in reports:
        for window, _ in grants:
            by_role[(role, window)] += 1
    for window in range(WINDOWS_RUN):
        ours = theirs = 0
        for step in range(STEPS):
            ours += granted[(window, step)]
            theirs += EXTERNAL_SPEND * spent[(window, step)]
            # Strava's count when our requests of this step went out: within the limit.
            # Theirs may take it past the limit afterwards; we then send nothing more.
            if granted[(window, step)]:
                assert ours + theirs <= LIMIT, (window, step, ours, theirs)
        assert ours <= BUDGET
        assert by_role[("backfill", window)] > 0  # the backlog got what was not needed
    # The other client's usage is forecast: in the later windows the backlog leaves it room,
    # so its spending never finds the window full.
    for window in range(1, WINDOWS_RUN):
        ours = sum(count for (w, _), count in granted.items() if w == window)
        theirs = EXTERNAL_SPEND * sum(count for (w, _), count in spent.items() if w == window)
        assert ours + theirs <= LIMIT
