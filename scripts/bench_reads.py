#!/usr/bin/env python
"""Activity reads under load: the product API's listing and on-demand reads against a real
`strava-ingest serve` process (production mode: PostgreSQL and Redis).

  1. Loads 1,000,000 activities into PostgreSQL with one INSERT … SELECT over
     generate_series: 100,000 for one athlete, 1,000 each for 900 others (60% runs, 30%
     rides, 10% swims; 3% of all are races, workout_type 1; a quarter complete).
  2. Sends GET /athletes/{id}/activities?limit=100 for the big athlete at a fixed rate (default
     200 requests/s) from an open-loop generator in a separate process (latency counted from
     each request's scheduled send time), from random positions in its history (signed
     cursors) or its first page, with no filter and with each filter; prints p50/p99.
  3. Starts a worker and the Strava emulator (in this process), stores summaries of the
     emulator athlete's activities, and sends GET /activities/{id} for them at the same rate:
     p50/p99 of the answers, how long each activity took from its first read to `complete`,
     and how many fetches Strava served (one detail and one streams call per activity).

The database given by --database-url is DROPPED and recreated (--reuse keeps a loaded one),
the Redis db given by --redis-url is emptied. Not a test: run it by hand:
`.venv/bin/python scripts/bench_reads.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

CLIENT_ID, CLIENT_SECRET = 4242, "bench-client-secret"
TOKEN_KEY = "LoTyDJlU3Ef1EE_taUf_kY2fFpS0qCTKRGNmVQu7o-o="  # noqa: S105 - a bench-only key
READ_KEY = "bench-read-key-0123456789"
BIG_ATHLETE = 1
OTHER_ATHLETES = 900
FETCH = "GET /activities/{id}"
# Activities read one at a time after the flood. With the flood's, two calls each stay
# within Strava's default read quota (100 per 15 minutes, less the safety margin).
QUIET_READS = 10
STREAMS = "GET /activities/{id}/streams"

LOAD_ATHLETES = """
INSERT INTO athletes (id, scopes, status, connected_at, created_at, updated_at,
                      new_fetch_count, forged_creates)
SELECT g, 'activity:read_all', 'connected', now(), now(), now(), 0, 0
FROM generate_series(1, :athletes) AS g
"""
# Activity g: the big athlete holds 1..:big, then 1,000 per other athlete. Starts go back
# 2.5 h per activity from 2026-11-01 with a few minutes of jitter (ties happen).
LOAD_ACTIVITIES = """
INSERT INTO activities (id, athlete_id, name, sport_type, type, start_date, distance,
                        moving_time, elapsed_time, workout_type, private, visibility,
                        summary_polyline, hydration_status, hydrate_attempts, raw_summary,
                        created_at, updated_at)
SELECT g, a.athlete, 'Activity ' || g, s.sport, s.sport,
       timestamptz '2026-11-01 00:00:00+00'
         - make_interval(secs => a.k * 9000 + (g % 7) * 60),
       1000.0 + g % 20000, 600 + g % 7200, 700 + g % 7200,
       CASE WHEN s.sport = 'Run' AND (g / 10) % 20 = 0 THEN 1 ELSE 0 END,
       false, 'everyone', repeat(md5(g::text), 6),
       CASE WHEN g % 4 = 0 THEN 'complete' ELSE 'none' END, 0,
       json_build_object('id', g, 'name', 'Activity ' || g, 'sport_type', s.sport,
                         'distance', 1000.0 + g % 20000,
                         'athlete', json_build_object('id', a.athlete)),
       now(), now()
FROM generate_series(1, :total) AS g
CROSS JOIN LATERAL (
  SELECT CASE WHEN g <= :big THEN 1 ELSE 2 + (g - :big - 1) / 1000 END AS athlete,
         CASE WHEN g <= :big THEN g ELSE (g - :big - 1) % 1000 END AS k
) AS a
CROSS JOIN LATERAL (
  SELECT CASE WHEN g % 10 IN (6, 7, 8) THEN 'Ride' WHEN g % 10 = 9 THEN 'Swim' ELSE 'Run' END
    AS sport
) AS s
"""

# The listing's variants, by name: extra query parameters.
FILTERS: dict[str, dict[str, Any]] = {
    "no filter": {},
    "sport_type=Run": {"sport_type": "Run"},
    "sport_type=Ride&sport_type=Swim": {"sport_type": ["Ride", "Swim"]},
    "race finder: sport_type=Run&workout_type=1": {"sport_type": "Run", "workout_type": 1},
    "hydration_status=complete": {"hydration_status": "complete"},
    "after+before (one year)": {"after": "2015-01-01T00:00:00Z", "before": "2016-01-01T00:00:00Z"},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/strava_ingest_bench_api_activities",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/3")
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=100_000, help="activities of one athlete")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per scenario")
    parser.add_argument("--limit", type=int, default=100, help="page size")
    parser.add_argument("--on-demand", type=int, default=30, help="activities read on demand")
    parser.add_argument(
        "--web-processes", type=int, default=1, help="`serve --workers`: web processes"
    )
    parser.add_argument("--reuse", action="store_true", help="keep an already loaded database")
    parser.add_argument("--only", default=None, help="run only the scenarios containing this")
    parser.add_argument("--generate", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


# -- the open-loop generator (a child process) ----------------------------------------------


async def _generate(spec: dict[str, Any]) -> dict[str, Any]:
    port, rate, duration, paths = spec["port"], spec["rate"], spec["duration"], spec["paths"]
    total = int(rate * duration)
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    first_sent: dict[str, float] = {}
    errors = 0
    auth = f"Authorization: Bearer {spec['key']}\r\n"

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (item := await queue.get()) is not None:
            index, scheduled = item
            path = paths[index % len(paths)]
            first_sent.setdefault(path, time.time())
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode())
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
                await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, TypeError):
                errors += 1
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            latencies.append((time.perf_counter() - scheduled) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(spec.get("connections", 32))]
    start = time.perf_counter() + 0.2
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((index, scheduled))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return {
        "sent": total,
        "elapsed": time.perf_counter() - start,
        "statuses": statuses,
        "errors": errors,
        "latencies": latencies,
        "first_sent": first_sent,
    }


def generate(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    json.dump(asyncio.run(_generate(spec)), sys.stdout)


def run_load(port: int, rate: float, duration: float, paths: list[str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as spec:
        json.dump(
            {"port": port, "rate": rate, "duration": duration, "paths": paths, "key": READ_KEY},
            spec,
        )
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--generate", spec.name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        os.unlink(spec.name)
    result: dict[str, Any] = json.loads(out)
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def report(name: str, result: dict[str, Any], cpu: float, width: int = 44) -> None:
    """One scenario's line; `cpu`: the web process's CPU seconds during it."""
    latencies = result["latencies"]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    achieved = len(latencies) / result["elapsed"]
    print(
        f"  {name:<{width}} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  {achieved:4.0f} req/s"
        f"  web CPU {cpu / max(len(latencies), 1) * 1000:4.2f} ms/req"
        f"  statuses {result['statuses']}  errors {result['errors']}"
    )


def measured(pid: int, port: int, rate: float, duration: float, paths: list[str]) -> Any:
    """The load's result and the web process's CPU seconds while it ran."""
    before = cpu_seconds(pid)
    result = run_load(port, rate, duration, paths)
    return result, cpu_seconds(pid) - before


# -- the run ----------------------------------------------------------------------------------


def load(url: str, total: int, big: int) -> None:
    import sqlalchemy as sa

    from service.db import create_db_engine, recreate_database, upgrade_schema

    recreate_database(url)
    upgrade_schema(url)
    engine = create_db_engine(url)
    started = time.perf_counter()
    with engine.begin() as connection:
        athletes = 1 + (total - big + 999) // 1000
        connection.execute(sa.text(LOAD_ATHLETES), {"athletes": athletes})
        connection.execute(sa.text(LOAD_ACTIVITIES), {"total": total, "big": big})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE activities"))
        connection.execute(sa.text("VACUUM ANALYZE athletes"))
    print(f"loaded {total:,} activities ({big:,} for athlete {BIG_ATHLETE}) "
          f"in {time.perf_counter() - started:.0f} s")  # fmt: skip
    engine.dispose()


def loaded(url: str, total: int) -> bool:
    import sqlalchemy as sa

    from service.db import create_db_engine

    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            count = connection.execute(sa.text("SELECT count(*) FROM activities")).scalar_one()
        return bool(count >= total)
    except sa.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def positions(url: str, samples: int) -> list[tuple[datetime, int]]:
    """Random rows of the big athlete: the cursors of the measured pages continue after them."""
    import sqlalchemy as sa

    from service.db import create_db_engine

    engine = create_db_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT start_date, id FROM activities TABLESAMPLE SYSTEM (2) "
                "WHERE athlete_id = :a LIMIT :n"
            ),
            {"a": BIG_ATHLETE, "n": samples},
        ).all()
    engine.dispose()
    return [(row[0], row[1]) for row in rows]


def listing_paths(
    samples: list[tuple[datetime, int]], params: dict[str, Any], limit: int
) -> list[str]:
    from urllib.parse import urlencode

    from service.config import Settings
    from service.ingest.activity_reads import Position
    from service.web.activities import activities_cursor
    from service.web.cursors import cursor_key

    settings = Settings(
        _env_file=None,
        database_url="sqlite://",
        strava_client_id=CLIENT_ID,
        strava_client_secret=CLIENT_SECRET,
        strava_verify_token="bench",  # noqa: S106 - a bench-only value
        token_key=TOKEN_KEY,
    )
    key = cursor_key(settings)
    paths = []
    for index, (start, activity_id) in enumerate(samples):
        query = {**params, "limit": limit}
        if index % 10:  # one in ten is the first page
            query["cursor"] = activities_cursor(key, BIG_ATHLETE, Position(start, activity_id))
        paths.append(f"/athletes/{BIG_ATHLETE}/activities?{urlencode(query, doseq=True)}")
    random.Random(1).shuffle(paths)
    return paths


def service_env(args: argparse.Namespace, strava_api: str, strava_oauth: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "BROKER_URL": args.redis_url,
        "STRAVA_CLIENT_ID": str(CLIENT_ID),
        "STRAVA_CLIENT_SECRET": CLIENT_SECRET,
        "STRAVA_VERIFY_TOKEN": "bench",
        "TOKEN_KEY": TOKEN_KEY,
        "WEBHOOK_SECRET": "bench-webhook-secret-0123456789",
        "READ_API_KEYS": READ_KEY,
        "STRAVA_API_URL": strava_api,
        "STRAVA_OAUTH_URL": strava_oauth,
        "LOG_LEVEL": "WARNING",
    }


@contextmanager
def serve(env: dict[str, str], log_dir: Path, processes: int) -> Iterator[tuple[int, int]]:
    """`strava-ingest serve --workers PROCESSES` on a free port: its port and process id."""
    from launch import answers, command, free_port, running

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        command("serve", "--port", str(port), "--workers", str(processes)),
        env={**env, "PUBLIC_URL": url},
        log_file=log_dir / "web.log",
        ready=lambda: answers(f"{url}/readyz"),
    ) as process:
        yield port, process.pid


def cpu_seconds(pid: int) -> float:
    """The CPU time a process and its children have used (user and system, all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = (
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    )
    return own + sum(cpu_seconds(child) for child in children)


@contextmanager
def worker(env: dict[str, str], log_dir: Path, redis_url: str) -> Iterator[None]:
    import redis
    from launch import command, running

    heartbeats = redis.Redis.from_url(redis_url)
    try:
        with running(
            command("worker", "--processes", "1", "--threads", "4"),
            env=env,
            log_file=log_dir / "worker.log",
            ready=lambda: heartbeats.zcard("dramatiq:__heartbeats__") > 0,
        ):
            yield
    finally:
        heartbeats.close()


def machine_load() -> str:
    one, five, _ = os.getloadavg()
    # The same Python loop timed on every run: the host's speed that day, since CPU times
    # from different days (or hosts) compare only through it.
    speed = min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6
    return (
        f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores;"
        f" sum(range(1000)) takes {speed:.1f} µs"
    )


def on_demand(args: argparse.Namespace, port: int, pid: int, emulator: Any) -> None:
    import sqlalchemy as sa
    from launch import wait_until

    from service.db import create_db_engine, session_scope
    from service.ingest.athletes import connect_athlete
    from service.ingest.crypto import TokenCipher
    from service.models import Activity, utcnow
    from service.strava.schemas import TokenResponse

    engine = create_db_engine(args.database_url)
    athlete_id = emulator.athlete_ids[0]
    token = TokenResponse.model_validate(emulator.issue_tokens(athlete_id))
    connect_athlete(engine, TokenCipher(TOKEN_KEY), token, "read,activity:read_all", utcnow())
    summaries = emulator.activities_of(athlete_id)[: args.on_demand + QUIET_READS]
    every = [int(summary["id"]) for summary in summaries]
    ids, quiet = every[: args.on_demand], every[args.on_demand :]
    with session_scope(engine) as session:
        session.execute(sa.delete(Activity).where(Activity.id.in_(every)))  # type: ignore[attr-defined]
        for summary in summaries:
            session.add(
                Activity(
                    id=summary["id"],
                    athlete_id=athlete_id,
                    name=summary["name"],
                    sport_type=summary["sport_type"],
                    start_date=datetime.fromisoformat(summary["start_date"]),
                    raw_summary=summary,
                    hydration_status="none",
                )
            )
    emulator.reset_calls()
    paths = [f"/activities/{i}" for i in ids]
    result, cpu = measured(pid, port, args.rate, args.duration, paths)
    report(f"GET /activities/{{id}} ({len(ids)} summary-only)", result, cpu)

    def hydrated() -> dict[int, datetime] | None:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(Activity.id, Activity.hydrated_at).where(  # type: ignore[call-overload]
                    Activity.id.in_(ids),  # type: ignore[attr-defined]
                    Activity.hydration_status == "complete",
                )
            ).all()
        return {row[0]: row[1] for row in rows} if len(rows) == len(ids) else None

    done = wait_until(hydrated, timeout=300, what="every activity read on demand to complete")
    assert isinstance(done, dict)
    waits = [done[i].timestamp() - result["first_sent"][f"/activities/{i}"] for i in ids]
    calls = emulator.calls
    print(
        f"  complete after the first read: p50 {percentile(waits, 50):.2f} s, "
        f"max {max(waits):.2f} s (the quota's short window is 900 s); "
        f"Strava served {calls[FETCH]} detail and {calls[STREAMS]} streams calls "
        f"for {len(ids)} activities and {result['sent']} reads"
    )
    # Without the flood: one reader at a time, each waiting for its activity (`?wait=10`).
    import httpx

    seconds = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
        for activity_id in quiet:
            started = time.perf_counter()
            body = client.get(
                f"/activities/{activity_id}",
                params={"wait": "10"},
                headers={"authorization": f"Bearer {READ_KEY}"},
            ).json()
            seconds.append(time.perf_counter() - started)
            assert body["hydration_status"] == "complete", body["hydration_status"]
    print(
        f"  one reader at a time, ?wait=10, {len(quiet)} summary-only activities: complete in "
        f"p50 {percentile(seconds, 50):.2f} s, max {max(seconds):.2f} s (one tick: 1 s)"
    )
    engine.dispose()


def main() -> None:
    args = parse_args()
    if args.generate is not None:
        generate(args.generate)
        return
    import redis

    from service.emulator import Emulator, EmulatorConfig
    from service.emulator.server import EmulatorServer

    print(machine_load())
    print(
        f"web: `strava-ingest serve --workers {args.web_processes}` (production mode),"
        f" load at {args.rate:.0f}/s"
    )
    if not (args.reuse and loaded(args.database_url, args.total)):
        load(args.database_url, args.total, args.big)
    client = redis.Redis.from_url(args.redis_url)
    client.flushdb()
    client.close()
    samples = positions(args.database_url, 2000)
    emulator = Emulator(
        EmulatorConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            athletes=1,
            activities_per_athlete=args.on_demand + QUIET_READS,
        )
    )
    log_dir = Path(tempfile.mkdtemp(prefix="bench_reads_"))
    with EmulatorServer(emulator) as server:
        env = service_env(args, server.api_url, server.oauth_url)
        with (
            worker(env, log_dir, args.redis_url),
            serve(env, log_dir, args.web_processes) as (port, pid),
        ):
            print(
                f"GET /athletes/{BIG_ATHLETE}/activities?limit={args.limit} "
                f"at {args.rate:.0f} requests/s for {args.duration:.0f} s each "
                f"(positions at random in {args.big:,} activities; one in ten the first page):"
            )
            run_load(port, args.rate, 3, listing_paths(samples, {}, args.limit))  # warm-up
            for name, params in FILTERS.items():
                if args.only and args.only not in name:
                    continue
                paths = listing_paths(samples, params, args.limit)
                report(name, *measured(pid, port, args.rate, args.duration, paths))
            if not args.only or args.only in "on-demand":
                print(f"On-demand reads at {args.rate:.0f} requests/s (emulator and a worker):")
                on_demand(args, port, pid, emulator)
    emulator.close()
    print(machine_load())
    print(f"logs: {log_dir}")


if __name__ == "__main__":
    main()
