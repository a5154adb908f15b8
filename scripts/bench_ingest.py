#!/usr/bin/env python
"""Durable ingest speed: how close the webhook endpoint, which answers only
after the event is committed to PostgreSQL, comes to the web stack's own limit.

In one run on this machine it measures, with the same uvicorn settings (`--workers`
processes, the options of `strava-ingest serve`: uvloop and httptools; LOG_LEVEL for both):
  1. events/s of a parse-only Starlette endpoint (read body, parse, validate; no storage),
  2. events/s of our webhook endpoint (`strava-ingest serve`) with real PostgreSQL and Redis,
     both with `wrk` (closed loop, POST bodies with distinct object ids, from a Lua script);
  3. p50/p99 latency of our endpoint at a fixed rate (default 1,000 events/s), from an open-loop
     generator in a separate process (latency counted from each request's scheduled send time,
     so a stall is not hidden by the generator waiting), which also checks that zero events
     were lost: every acknowledged event is in the inbox, and the inbox holds no other.

The database given by --database-url is DROPPED and recreated, and the Redis db given by
--redis-url is flushed. Not a test: run it by hand; `wrk` must be installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Production mode requires the secret path segment (WEBHOOK_SECRET); the baseline serves the same.
BENCH_PATH_SEGMENT = "bench-webhook-secret-0123456789"
WEBHOOK = f"/webhooks/strava/{BENCH_PATH_SEGMENT}"
# /stats/webhooks needs an admin key (ADMIN_API_KEYS).
BENCH_ADMIN_KEY = "bench-admin-key-0123456789"
SUBSCRIPTION_ID = 120475
# Object ids of the fixed-rate phase start here, apart from those of wrk's threads.
RATE_ID_BASE = 5_000_000_000_000

WRK_SCRIPT = """
local counter = 0
local id_base = 0
function setup(thread)
  thread:set("id_base", (#threads_seen + 1) * 1000000000000)
  table.insert(threads_seen, thread)
end
threads_seen = {}
function init(args)
  id_base = wrk.thread:get("id_base")
end
function request()
  counter = counter + 1
  local body = string.format(
    '{"aspect_type":"create","event_time":1725991232,"object_id":%d,' ..
    '"object_type":"activity","owner_id":67890,"subscription_id":%d,"updates":{}}',
    id_base + counter, SUBSCRIPTION_ID)
  return wrk.format("POST", "WEBHOOK", {["Content-Type"] = "application/json"}, body)
end
""".replace("SUBSCRIPTION_ID", str(SUBSCRIPTION_ID)).replace("WEBHOOK", WEBHOOK)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/si_bench",
        help="PostgreSQL database to DROP, recreate and use (default: %(default)s)",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/8",
        help="Redis db to FLUSH and use as the broker (default: %(default)s)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s of the fixed rate")
    parser.add_argument("--rate-duration", type=float, default=10.0, help="seconds at --rate")
    parser.add_argument("--log-level", default="WARNING", help="LOG_LEVEL of both servers")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn processes of both servers (serve --workers)"
    )
    # Internal: the roles of this script's own child processes.
    parser.add_argument("--serve-parse-only", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# The parse-only server (a child process)


def parse_only_app() -> Any:
    """The baseline: what our endpoint does before storage (a uvicorn factory)."""
    from pydantic import ValidationError
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from service.ingest.events import WebhookEvent
    from service.logs import configure_logging

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            event = WebhookEvent.model_validate(json.loads(body))
        except (ValueError, ValidationError):
            return JSONResponse({"error": "invalid event"}, status_code=400)
        return JSONResponse({"status": "received", "object_id": event.object_id})

    configure_logging(os.environ.get("LOG_LEVEL", "WARNING"))
    return Starlette(routes=[Route(WEBHOOK, receive, methods=["POST"])])


def serve_parse_only(port: int, workers: int) -> None:
    """Serve the baseline as `strava-ingest serve --workers N` serves ours (service/cli/run.py)."""
    import uvicorn

    from service.cli.run import UVICORN_OPTIONS

    if workers == 1:
        uvicorn.run(parse_only_app(), host="127.0.0.1", port=port, **UVICORN_OPTIONS)
    else:
        uvicorn.run(
            "bench_ingest:parse_only_app",
            factory=True,
            workers=workers,
            app_dir=str(Path(__file__).parent),
            host="127.0.0.1",
            port=port,
            **UVICORN_OPTIONS,
        )


# The fixed-rate, open-loop generator (a child process)


async def _generate(port: int, rate: float, duration: float, connections: int) -> dict[str, Any]:
    total = int(rate * duration)
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    acked: list[int] = []
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (item := await queue.get()) is not None:
            index, scheduled = item
            object_id = RATE_ID_BASE + index
            body = json.dumps(
                {
                    "aspect_type": "create",
                    "event_time": 1725991232,
                    "object_id": object_id,
                    "object_type": "activity",
                    "owner_id": 67890,
                    "subscription_id": SUBSCRIPTION_ID,
                    "updates": {},
                },
                separators=(",", ":"),
            ).encode()
            writer.write(
                f"POST {WEBHOOK} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
                await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, TypeError):
                errors += 1
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            latencies.append(time.perf_counter() - scheduled)
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                acked.append(object_id)
        writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
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
    elapsed = time.perf_counter() - start
    return {
        "sent": total,
        "elapsed": elapsed,
        "statuses": statuses,
        "errors": errors,
        "acked": acked,
        "latencies": latencies,
    }


def generate(port: int, rate: float, duration: float) -> None:
    result = asyncio.run(_generate(port, rate, duration, connections=64))
    json.dump(result, sys.stdout)


# The run


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_wrk(url: str, args: argparse.Namespace, script: Path, duration: float) -> dict[str, Any]:
    out = subprocess.run(
        [
            "wrk",
            f"-t{args.wrk_threads}",
            f"-c{args.connections}",
            f"-d{duration:g}s",
            "--latency",
            "-s",
            str(script),
            url + WEBHOOK,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        "requests": requests,
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
        "socket_errors": socket_errors[1] if socket_errors else "none",
        "raw": out,
    }


@contextmanager
def server(args: list[str], env: dict[str, str], url: str, log: Path) -> Iterator[None]:
    from launch import answers, running

    with running(args, env=env, log_file=log, ready=lambda: answers(url + "/healthz")):
        yield


def main() -> None:
    args = parse_args()
    if args.serve_parse_only is not None:
        serve_parse_only(args.serve_parse_only, args.workers)
        return
    if args.generate is not None:
        generate(args.generate, args.rate, args.rate_duration)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")

    import redis
    import sqlalchemy as sa
    from launch import command, free_port, running, wait_until

    from service.db import create_db_engine, recreate_database, upgrade_schema

    work = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    script = work / "events.lua"
    script.write_text(WRK_SCRIPT)
    recreate_database(args.database_url)
    upgrade_schema(args.database_url)
    broker = redis.Redis.from_url(args.redis_url)
    broker.flushdb()
    broker.close()

    # 1. The parse-only baseline (it has no /healthz: wait until its port accepts).
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    baseline_args = [sys.executable, __file__, "--serve-parse-only", str(port)]
    baseline_args += ["--workers", str(args.workers)]
    with running(baseline_args, env={"LOG_LEVEL": args.log_level}, log_file=work / "baseline.log"):
        wait_until(lambda: _accepts(port), timeout=30, what="the parse-only server")
        run_wrk(base_url, args, script, 2)  # warm-up
        baseline = run_wrk(base_url, args, script, args.duration)

    # 2. and 3. Our endpoint, production mode.
    env = {
        "DATABASE_URL": args.database_url,
        "BROKER_URL": args.redis_url,
        "STRAVA_CLIENT_ID": "4242",
        "STRAVA_CLIENT_SECRET": "bench-client-secret",
        "STRAVA_VERIFY_TOKEN": "bench-verify-token",
        "TOKEN_KEY": "LoTyDJlU3Ef1EE_taUf_kY2fFpS0qCTKRGNmVQu7o-o=",
        "STRAVA_SUBSCRIPTION_ID": str(SUBSCRIPTION_ID),
        "WEBHOOK_SECRET": BENCH_PATH_SEGMENT,
        "ADMIN_API_KEYS": BENCH_ADMIN_KEY,
        "LOG_LEVEL": args.log_level,
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env["PUBLIC_URL"] = url
    serve_args = command("serve", "--port", str(port), "--workers", str(args.workers))
    with server(serve_args, env, url, work / "web.log"):
        run_wrk(url, args, script, 2)  # warm-up
        stats_before_wrk = _get_json(url + "/stats/webhooks")
        ours = run_wrk(url, args, script, args.duration)
        stats_after_wrk = _get_json(url + "/stats/webhooks")
        generator = subprocess.run(
            [
                sys.executable,
                __file__,
                "--generate",
                str(port),
                *("--rate", str(args.rate), "--rate-duration", str(args.rate_duration)),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        rate = json.loads(generator.stdout)
        stats = _get_json(url + "/stats/webhooks")

    engine = create_db_engine(args.database_url)
    with engine.connect() as connection:
        stored_rate_ids = {
            row[0]
            for row in connection.execute(
                sa.text("SELECT object_id FROM webhook_inbox WHERE object_id >= :base"),
                {"base": RATE_ID_BASE},
            )
        }
        stored_total = connection.execute(sa.text("SELECT count(*) FROM webhook_inbox")).scalar()
    engine.dispose()

    acked = set(rate["acked"])
    lost = len(acked - stored_rate_ids)
    unacknowledged_but_stored = len(stored_rate_ids - acked)
    wrk_acked = ours["requests"] - ours["non_2xx"]
    baseline_acked = baseline["requests"] - baseline["non_2xx"]
    latencies_ms = [1000 * v for v in rate["latencies"]]
    ratio = ours["rps"] / baseline["rps"]
    batches = stats["batches"] or 1
    p50, p99 = percentile(latencies_ms, 50), percentile(latencies_ms, 99)

    print(
        f"machine: {os.cpu_count()} cores; wrk -t{args.wrk_threads} -c{args.connections} "
        f"-d{args.duration:g}s; both servers as `strava-ingest serve --workers {args.workers}` "
        f"(uvloop, httptools); LOG_LEVEL={args.log_level}"
    )
    print(
        f"parse-only Starlette endpoint : {baseline['rps']:9.0f} events/s "
        f"({baseline_acked} acknowledged, non-2xx {baseline['non_2xx']}, "
        f"socket errors: {baseline['socket_errors']})"
    )
    print(
        f"our webhook endpoint (PG+Redis): {ours['rps']:9.0f} events/s "
        f"({wrk_acked} acknowledged, non-2xx {ours['non_2xx']}, "
        f"socket errors: {ours['socket_errors']})"
    )
    print(f"ratio                          : {100 * ratio:9.1f} %   (target >= 25 %)")
    print(
        f"at a fixed {args.rate:g} events/s for {args.rate_duration:g} s "
        f"(open loop, {rate['sent']} events): p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"max {max(latencies_ms):.1f} ms   (target p99 <= 50 ms); statuses {rate['statuses']}, "
        f"connection errors {rate['errors']}"
    )
    print(
        f"lost: {lost} of {len(acked)} acknowledged events are missing from the inbox; "
        f"{unacknowledged_but_stored} stored but not acknowledged   (target 0)"
    )
    server_acked = stats_after_wrk["accepted"] - stats_before_wrk["accepted"]
    print(
        f"inbox rows in all: {stored_total}; during the measured wrk run the server "
        f"acknowledged {server_acked}, wrk counted {wrk_acked} (the difference: responses "
        f"in flight when wrk stopped)"
    )
    print(
        f"group commit: {stats['batches']} batches, {stats['batched_events'] / batches:.1f} "
        f"events per batch on average, largest {stats['largest_batch']}; "
        f"hand-off failures {stats['handoff_failures']}"
    )
    ok = ratio >= 0.25 and p99 <= 50 and lost == 0 and unacknowledged_but_stored == 0
    print("targets:", "met" if ok else "NOT met")
    shutil.rmtree(work, ignore_errors=True)


def _accepts(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _get_json(url: str) -> dict[str, Any]:
    import httpx

    headers = {"authorization": f"Bearer {BENCH_ADMIN_KEY}"}
    result: dict[str, Any] = httpx.get(url, headers=headers, timeout=5).json()
    return result


if __name__ == "__main__":
    main()
