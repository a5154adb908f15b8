#!/usr/bin/env python3
"""Benchmark of the two-phase backfill: one athlete with N activities on the emulator.

Printed, each against its target:
  - list calls used by a clean backfill (target ceil(N/200)+1),
  - summary rows upserted per second by the page transaction (target >= 20,000/s), measured
    inside the backfill and on its own (fresh inserts, unchanged re-listing, all changed),
  - time to the first page visible (committed),
  - the same backfill interrupted three times (SIGKILL of a worker process mid-page, a quota
    denial, a cancel + a new sync) ending with identical rows and no list calls beyond the
    killed page.

The emulator is served in this process on a loopback port with rate limits high enough not to
interfere, and stream points capped (--stream-points): a summary's derived fields come from
the activity's generated track, and full-size tracks cost the emulator ~15 ms per activity on
first listing (emulator cost, not ours). Hydration is left out (policy: none eager), so only
phase 1 is measured. Needs PostgreSQL; the database in --database-url is dropped and recreated.

Run: `.venv/bin/python scripts/bench_backfill.py [--activities 10000]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.config import Settings
from service.db import create_db_engine, recreate_database, session_scope, upgrade_schema
from service.emulator import Emulator, EmulatorConfig, RateLimits
from service.emulator.server import EmulatorServer
from service.ingest import sync
from service.ingest.athletes import connect_athlete
from service.ingest.backfill import upsert_summaries
from service.ingest.context import IngestContext
from service.ingest.crypto import TokenCipher
from service.ingest.policy import HydrationPolicy
from service.ingest.sync import Continue, Finished, SyncOptions, Wait, run_job
from service.models import SyncKind, SyncStatus
from service.strava.client import StravaClient
from service.strava.quota import QuotaHooks, build_scheduler
from service.strava.ratelimit import RateLimitSnapshot, WindowPair
from service.strava.schemas import SummaryActivity, TokenResponse

CLIENT_ID, CLIENT_SECRET = 4242, "bench-client-secret"
TOKEN_KEY = "LoTyDJlU3Ef1EE_taUf_kY2fFpS0qCTKRGNmVQu7o-o="  # noqa: S105 - a bench-only key
LIST = "GET /athlete/activities"
HIGH = 10_000_000
# No eager hydration: phase 1 alone is measured.
OPTIONS = SyncOptions(
    per_page=200,
    policy=HydrationPolicy(recent=timedelta(0), older="on_demand"),
    time_slice=timedelta(0),  # one page per run_job call, so the bench can step between pages
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Bench:
    engine: Engine
    emulator: Emulator
    ctx: IngestContext
    clock: Clock
    quota_clock: Clock
    athlete_id: int
    emulator_urls: tuple[str, str]  # API and OAuth, for a worker process of its own


def bench_settings(url: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=url,
        strava_client_id=CLIENT_ID,
        strava_client_secret=CLIENT_SECRET,
        strava_verify_token="bench",  # noqa: S106 - a bench-only value
        token_key=TOKEN_KEY,
        quota_limit_short=HIGH,
        quota_limit_daily=HIGH,
        quota_read_limit_short=HIGH,
        quota_read_limit_daily=HIGH,
    )


def build(url: str, emulator: Emulator, server: EmulatorServer) -> Bench:
    settings = bench_settings(url)
    quota_clock = Clock()
    quota = build_scheduler(settings, clock=lambda: quota_clock().timestamp())
    client = StravaClient(
        api_url=server.api_url,
        oauth_url=server.oauth_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        hooks=QuotaHooks(quota),
        timeout=120,
    )
    engine = create_db_engine(url)
    clock = Clock()
    ctx = IngestContext(
        engine=engine, strava=client, quota=quota, cipher=TokenCipher(TOKEN_KEY), clock=clock
    )
    athlete_id = emulator.athlete_ids[0]
    token = TokenResponse.model_validate(emulator.issue_tokens(athlete_id))
    connect_athlete(engine, ctx.cipher, token, "read,activity:read_all", clock())
    return Bench(
        engine, emulator, ctx, clock, quota_clock, athlete_id, (server.api_url, server.oauth_url)
    )


def reset(bench: Bench) -> None:
    with bench.engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE activities, sync_jobs CASCADE"))
    bench.emulator.reset_calls()


def snapshot(engine: Engine, athlete_id: int) -> str:
    """A digest of every stored row's listed columns and raw summary."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT id, name, sport_type, start_date, distance, moving_time, raw_summary "
                "FROM activities WHERE athlete_id = :a ORDER BY id"
            ),
            {"a": athlete_id},
        ).all()
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps([str(v) for v in row], sort_keys=True).encode())
    return f"{len(rows)} rows, sha256 {digest.hexdigest()[:16]}"


def step(bench: Bench, job_id: int, owner: str = "bench") -> sync.Outcome:
    return run_job(bench.ctx, job_id, owner=owner, options=OPTIONS, send_hydration=lambda *_: None)


def new_job(bench: Bench) -> int:
    started = sync.start_job(bench.engine, bench.athlete_id, SyncKind.BACKFILL, bench.clock())
    assert started.job.id is not None
    return started.job.id


def pages_of(bench: Bench, job_id: int) -> int:
    found = sync.get_job(bench.engine, job_id)
    assert found is not None
    return found.pages


def until(bench: Bench, job_id: int, pages: int, owner: str = "bench") -> None:
    while pages_of(bench, job_id) < pages:
        outcome = step(bench, job_id, owner)
        assert isinstance(outcome, Continue), outcome


def to_end(bench: Bench, job_id: int, owner: str = "bench") -> sync.Outcome:
    while isinstance(outcome := step(bench, job_id, owner), Continue):
        pass
    return outcome


class Timed:
    """Wraps upsert_summaries to add up its time and rows."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real, self.seconds, self.rows = real, 0.0, 0

    def __call__(self, session: Any, summaries: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = self.real(session, summaries, *args, **kwargs)
        session.flush()
        self.seconds += time.perf_counter() - started
        self.rows += len(summaries)
        return result


def clean_backfill(bench: Bench, n: int) -> tuple[str, int]:
    reset(bench)
    timed = Timed(vars(sync)["upsert_summaries"])
    vars(sync)["upsert_summaries"] = timed
    try:
        started = time.perf_counter()
        job_id = new_job(bench)
        step(bench, job_id)
        first_page = time.perf_counter() - started
        outcome = to_end(bench, job_id)
        total = time.perf_counter() - started
    finally:
        vars(sync)["upsert_summaries"] = timed.real
    assert outcome == Finished(SyncStatus.COMPLETED), outcome
    calls = bench.emulator.calls[LIST]
    target = math.ceil(n / 200) + 1
    rate = timed.rows / timed.seconds
    print("clean backfill")
    print(f"  list calls            {calls:>10}   target {target} (ceil(N/200)+1)")
    print(f"  first page visible    {first_page * 1000:>8.0f} ms")
    print(
        f"  upsert rate in job    {rate:>10,.0f} rows/s   target >= 20,000/s "
        f"({timed.rows} rows in {timed.seconds:.2f} s of page transactions)"
    )
    print(f"  whole backfill        {total:>8.1f} s  (emulator listing included)")
    return snapshot(bench.engine, bench.athlete_id), calls


def upsert_alone(bench: Bench, n: int) -> None:
    """The page transaction's upsert without the network: fresh, unchanged, all changed."""
    listing = bench.emulator.activities_of(bench.athlete_id)
    parsed = [SummaryActivity.model_validate(raw) for raw in listing]
    pages = [(parsed[i : i + 200], listing[i : i + 200]) for i in range(0, len(listing), 200)]
    now = bench.clock()

    def run(label: str, raws_of: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
        # Each page with its text, as the list call hands it over (Strava's body).
        listed = [(summaries, raws_of(raws)) for summaries, raws in pages]
        texts = [json.dumps(raws) for _, raws in listed]
        started = time.perf_counter()
        for (summaries, raws), text in zip(listed, texts, strict=True):
            with session_scope(bench.engine) as session:
                upsert_summaries(session, summaries, raws, OPTIONS.policy, now, raw_text=text)
        seconds = time.perf_counter() - started
        print(f"  {label:<22}{len(parsed) / seconds:>10,.0f} rows/s   target >= 20,000/s")

    with bench.engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE activities, sync_jobs CASCADE"))
    print("upsert alone (one transaction per 200-row page, PostgreSQL)")
    run("fresh inserts", lambda raws: raws)
    run("unchanged re-listing", lambda raws: raws)
    run("every row changed", lambda raws: [{**raw, "kudos_count": -1} for raw in raws])


def stored_rows(bench: Bench) -> int:
    with bench.engine.connect() as connection:
        count: int = connection.execute(sa.text("SELECT count(*) FROM activities")).scalar_one()
    return count


def kill_mid_page(bench: Bench, job_id: int) -> None:
    """Run one page of the job in a worker process and SIGKILL it once the page's rows are
    written but not committed."""
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    url = bench.engine.url.render_as_string(hide_password=False)
    worker = spawn.Process(
        target=doomed_worker, args=(url, bench.emulator_urls, job_id, bench.clock(), theirs)
    )
    worker.start()
    if not ours.poll(timeout=60):
        worker.kill()
        raise RuntimeError("the doomed worker never wrote its page")
    ours.recv()
    os.kill(worker.pid or 0, signal.SIGKILL)
    worker.join()
    assert worker.exitcode == -signal.SIGKILL, worker.exitcode


def doomed_worker(
    url: str, emulator_urls: tuple[str, str], job_id: int, now: datetime, report: Any
) -> None:
    """A worker process's run of one page, stopped after the upsert, before the commit."""
    api_url, oauth_url = emulator_urls
    quota = build_scheduler(bench_settings(url))
    client = StravaClient(
        api_url=api_url,
        oauth_url=oauth_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        hooks=QuotaHooks(quota),
        timeout=120,
    )
    ctx = IngestContext(
        engine=create_db_engine(url),
        strava=client,
        quota=quota,
        cipher=TokenCipher(TOKEN_KEY),
        clock=lambda: now,
    )
    real = vars(sync)["upsert_summaries"]

    def upsert_then_hang(session: Any, *args: Any, **kwargs: Any) -> Any:
        result = real(session, *args, **kwargs)
        session.flush()
        report.send("written, not committed")
        time.sleep(3600)  # still "working" when the kill comes
        return result

    vars(sync)["upsert_summaries"] = upsert_then_hang
    sync.claim(ctx.engine, job_id, "doomed", now, OPTIONS.lease)
    run_job(ctx, job_id, owner="doomed", options=OPTIONS, send_hydration=lambda *_: None)


def interrupted_backfill(bench: Bench, n: int, clean_rows: str, clean_calls: int) -> None:
    reset(bench)
    total_pages = clean_calls
    job_id = new_job(bench)
    marks = [total_pages // 4, total_pages // 2, 3 * total_pages // 4]

    # 1. A kill -9 mid-page: a worker process lists the page and writes it inside its
    #    transaction, and is killed before the commit. It leaves its lease behind and the next
    #    sweep hands the job to another worker.
    until(bench, job_id, marks[0])
    stored_before = stored_rows(bench)
    kill_mid_page(bench, job_id)
    assert stored_rows(bench) == stored_before, "the killed page's rows must not be visible"
    bench.clock.now += OPTIONS.lease + timedelta(seconds=1)
    taken: list[int] = []
    sync.sweep(bench.engine, bench.clock(), taken.append)
    assert taken == [job_id], taken

    # 2. Quota denied: nothing is sent, the job waits rate_limited and resumes after.
    until(bench, job_id, marks[1], owner="successor")
    full = RateLimitSnapshot(WindowPair(HIGH, HIGH), WindowPair(HIGH, HIGH),
                             WindowPair(HIGH, HIGH), WindowPair(HIGH, HIGH))  # fmt: skip
    bench.ctx.quota.observe("read", 200, full)
    waiting = step(bench, job_id, owner="successor")
    assert isinstance(waiting, Wait), waiting
    row = sync.get_job(bench.engine, job_id)
    assert row is not None
    assert row.status == SyncStatus.RATE_LIMITED
    assert row.retry_after is not None
    bench.quota_clock.now += timedelta(days=1)

    # 3. Cancel, then a new sync: it continues from the cancelled job's cursor.
    until(bench, job_id, marks[2], owner="successor")
    sync.cancel_job(bench.engine, bench.athlete_id, "bench", bench.clock())
    cancelled = sync.get_job(bench.engine, job_id)
    assert cancelled is not None
    assert cancelled.status == SyncStatus.CANCELLED
    resumed = new_job(bench)
    outcome = to_end(bench, resumed)
    assert outcome == Finished(SyncStatus.COMPLETED), outcome

    rows = snapshot(bench.engine, bench.athlete_id)
    calls = bench.emulator.calls[LIST]
    print("interrupted backfill (kill -9 of a worker mid-page, quota denial, cancel + new sync)")
    print(f"  rows                  {rows}")
    print(f"  clean rows            {clean_rows}   identical: {rows == clean_rows}")
    print(
        f"  list calls            {calls:>10}   clean {clean_calls} + 1 killed page "
        f"= {clean_calls + 1}: {'PASS' if calls == clean_calls + 1 else 'FAIL'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activities", type=int, default=10_000)
    parser.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/strava_ingest_bench_backfill",
        help="PostgreSQL database to drop, recreate and use",
    )
    parser.add_argument("--stream-points", type=int, default=30,
                        help="emulator track size (summaries derive from it)")  # fmt: skip
    args = parser.parse_args()
    n = args.activities

    recreate_database(args.database_url)
    upgrade_schema(args.database_url)
    started = time.perf_counter()
    emulator = Emulator(
        EmulatorConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            athletes=1,
            activities_per_athlete=n,
            max_stream_points=args.stream_points,
            limits=RateLimits(HIGH, HIGH, HIGH, HIGH),
        )
    )
    with EmulatorServer(emulator) as server:
        bench = build(args.database_url, emulator, server)
        emulator.activities_of(bench.athlete_id)  # derive every summary once (emulator cost)
        print(f"{n} activities on the emulator (prepared in {time.perf_counter() - started:.1f} s)")
        clean_rows, clean_calls = clean_backfill(bench, n)
        interrupted_backfill(bench, n, clean_rows, clean_calls)
        upsert_alone(bench, n)
        bench.ctx.strava.close()
        bench.engine.dispose()
    emulator.close()


if __name__ == "__main__":
    main()
