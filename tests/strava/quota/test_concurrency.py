"""Worker processes sharing one Redis never together spend more than the budget."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from service.strava.quota import QuotaConfig, QuotaExceeded, Tier
from service.strava.quota.redis import RedisQuotaScheduler
from service.strava.ratelimit import WindowPair

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
