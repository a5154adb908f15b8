#!/usr/bin/env python3
"""Benchmark of the sync progress streams: many SSE subscribers on one web process while a
real backfill runs.

Production mode, as the Procfile starts it: `strava-ingest serve` (one web process) and
`strava-ingest worker` on PostgreSQL and Redis, the emulator as Strava (served in this
process, high rate limits, each call answered after --latency seconds). An athlete with
--activities activities connects while no worker runs yet, so their backfill waits queued;
--subscribers clients (spread over --client-processes processes) open
`GET /athletes/{id}/sync/events`; once every one has its first event the worker starts, and
the backfill lists the history and hydrates the recent weeks (--recent-weeks) while every
client reads the stream until it ends.

Printed:
  - progress events published (the Redis Stream) and how many subscribers got every one of
    them (target: all), with the events a lagging subscriber missed;
  - delivery latency, from the moment a worker read the state (`at`) to the moment a client
    parsed the event: p50, p99, max (target p99 <= 1 s);
  - the web process's resident memory (RSS): idle, with every subscriber connected, and at
    its peak during the backfill.

The clients share the machine's cores with the web and worker processes, PostgreSQL, Redis
and the emulator: their own parsing is inside the measured latency.

Run: `.venv/bin/python scripts/bench_sse.py [--subscribers 1000]`. The database named in
--database-url is dropped and recreated; --redis-url's db is emptied (FLUSHDB).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import redis
from cryptography.fernet import Fernet
from launch import answers, command, free_port, running, wait_until

from service.db import recreate_database, upgrade_schema
from service.emulator import Emulator, EmulatorConfig, RateLimits
from service.emulator.server import EmulatorServer
from service.ingest.progress import STREAM_KEY

CLIENT_ID, CLIENT_SECRET = 4242, "bench-client-secret"
READ_KEY = "bench-read-key-0123456789"
ADMIN_KEY = "bench-admin-key-0123456789"
HIGH = 10_000_000


@dataclass(frozen=True)
class Options:
    subscribers: int
    client_processes: int
    activities: int
    recent_weeks: int
    latency: float
    threads: int
    database_url: str
    redis_url: str
    timeout: float


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--activities", type=int, default=1000)
    parser.add_argument("--recent-weeks", type=int, default=52)
    parser.add_argument("--latency", type=float, default=0.1, help="emulator seconds per call")
    parser.add_argument("--threads", type=int, default=2, help="worker threads")
    parser.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/strava_ingest_bench_api_sync",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    return Options(**{key.replace("-", "_"): value for key, value in vars(args).items()})


# -- the clients --------------------------------------------------------------------------------
# Each client is a bare HTTP/1.1 connection read with asyncio streams, parsing only the id,
# the `at` and the phase out of each event: httpx's line iteration and a full JSON parse per
# event cost the shared cores more than the web process spends sending it.

Received = tuple[list[tuple[str, float, float]], bool]


def client_process(
    url: str, count: int, ready: Any, results: Any, timeout: float
) -> None:  # pragma: no cover - runs in a child process
    """`count` SSE subscribers; each reports [(event id, `at`, received at), ...] and
    whether its last event was the `done` state."""
    received = asyncio.run(_subscribers(url, count, ready, timeout))
    results.put(received)


async def _subscribers(url: str, count: int, ready: Any, timeout: float) -> list[Received]:
    target = httpx.URL(url)
    return await asyncio.gather(
        *(
            asyncio.wait_for(_one(target.host, target.port or 80, target.raw_path, ready), timeout)
            for _ in range(count)
        )
    )


async def _one(host: str, port: int, path: bytes, ready: Any) -> Received:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"GET " + path + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
        b"Authorization: Bearer " + READ_KEY.encode() + b"\r\n"
        b"Accept: text/event-stream\r\n\r\n"
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError(f"stream answered {status}")
    events: list[tuple[str, float, float]] = []
    done = False
    pending = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        if size == 0:
            break
        pending += (await reader.readexactly(size + 2))[:-2]
        while b"\r\n\r\n" in pending:
            block, _, pending = pending.partition(b"\r\n\r\n")
            if block.startswith(b":"):
                continue  # a heartbeat
            now = time.time()
            event_id, at = "", math.nan
            for line in block.split(b"\r\n"):
                if line.startswith(b"id: "):
                    event_id = line[4:].decode()
                elif line.startswith(b"data: "):
                    start = line.index(b'"at":"') + 6
                    stamp = line[start : line.index(b'"', start)].decode()
                    at = datetime.fromisoformat(stamp).timestamp()
                    done = b'"phase":"done"' in line
            if not events:
                with ready.get_lock():
                    ready.value += 1
            events.append((event_id, at, now))
    writer.close()
    return events, done


# -- the service ----------------------------------------------------------------------------


def service_env(options: Options, server: EmulatorServer) -> dict[str, str]:
    return {
        "DATABASE_URL": options.database_url,
        "BROKER_URL": options.redis_url,
        "STRAVA_CLIENT_ID": str(CLIENT_ID),
        "STRAVA_CLIENT_SECRET": CLIENT_SECRET,
        "STRAVA_VERIFY_TOKEN": "bench",
        "TOKEN_KEY": Fernet.generate_key().decode(),
        "STRAVA_API_URL": server.api_url,
        "STRAVA_OAUTH_URL": server.oauth_url,
        "WEBHOOK_SECRET": "bench-webhook-path-secret",
        "READ_API_KEYS": READ_KEY,
        "ADMIN_API_KEYS": ADMIN_KEY,
        "LOG_LEVEL": "WARNING",
        "HYDRATE_RECENT_WEEKS": str(options.recent_weeks),
        "HYDRATE_OLDER": "on_demand",
        "QUOTA_LIMIT_SHORT": str(HIGH),
        "QUOTA_LIMIT_DAILY": str(HIGH),
        "QUOTA_READ_LIMIT_SHORT": str(HIGH),
        "QUOTA_READ_LIMIT_DAILY": str(HIGH),
        # Room for every subscriber besides the bench's own requests.
        "HTTP_CONCURRENCY_LIMIT": str(options.subscribers + 200),
    }


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.peak = max(self.peak, rss_mib(self.pid))


@contextmanager
def web(env: dict[str, str], logs: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        command("serve", "--port", str(port)),
        env={"PUBLIC_URL": url, **env},
        log_file=logs / "web.log",
        cwd=logs,
        ready=lambda: answers(f"{url}/readyz"),
    ) as process:
        yield url, process.pid


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    logs = Path(mkdtemp(prefix="bench-sse-"))
    recreate_database(options.database_url)
    upgrade_schema(options.database_url)
    store = redis.Redis.from_url(options.redis_url)
    store.flushdb()
    emulator = Emulator(
        EmulatorConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            athletes=1,
            activities_per_athlete=options.activities,
            max_stream_points=30,
            latency=options.latency,
            limits=RateLimits(HIGH, HIGH, HIGH, HIGH),
        )
    )
    with ExitStack() as stack:
        server = stack.enter_context(EmulatorServer(emulator))
        env = service_env(options, server)
        url, web_pid = stack.enter_context(web(env, logs))
        idle_rss = rss_mib(web_pid)
        # No worker yet: the backfill the connect starts waits queued.
        response = httpx.get(f"{url}/auth/strava/connect", follow_redirects=True, timeout=60)
        response.raise_for_status()
        athlete_id = int(response.json()["athlete_id"])
        events_url = f"{url}/athletes/{athlete_id}/sync/events"

        ready = multiprocessing.Value("i", 0)
        results: Any = multiprocessing.Queue()
        share = math.ceil(options.subscribers / options.client_processes)
        counts = [share] * (options.subscribers // share) + (
            [options.subscribers % share] if options.subscribers % share else []
        )
        clients = [
            multiprocessing.Process(
                target=client_process, args=(events_url, n, ready, results, options.timeout)
            )
            for n in counts
        ]
        for process in clients:
            process.start()
        started = time.monotonic()
        wait_until(lambda: ready.value >= options.subscribers, timeout=120, what="every subscriber")
        connect_seconds = time.monotonic() - started
        subscribed_rss = rss_mib(web_pid)
        peak = PeakRss(web_pid)
        peak.start()

        began = time.monotonic()
        cpu_before = cpu_seconds(web_pid)
        stack.enter_context(
            running(
                command("worker", "--processes", "1", "--threads", str(options.threads)),
                env=env,
                log_file=logs / "worker.log",
                cwd=logs,
            )
        )
        received: list[Received] = []
        for _ in clients:
            received.extend(results.get(timeout=options.timeout))
        backfill_seconds = time.monotonic() - began
        web_cpu = cpu_seconds(web_pid) - cpu_before
        for process in clients:
            process.join(10)
        peak.stop.set()
        peak.join()

    entries: Any = store.xrange(STREAM_KEY)
    published = [
        entry_id.decode()
        for entry_id, fields in entries
        if int(fields[b"athlete_id"]) == athlete_id
    ]
    store.close()
    wanted = set(published)
    # Each stream starts with the athlete's latest state (the queued backfill, published
    # before any subscriber came); every change after it must follow.
    complete = sum(1 for events, _ in received if wanted <= {e[0] for e in events})
    missed = sum(len(wanted - {e[0] for e in events}) for events, _ in received)
    latencies = [recv - at for events, _ in received for _, at, recv in events[1:]]
    ended = sum(1 for _, done in received if done)

    print(f"subscribers: {options.subscribers} over {len(clients)} client processes")
    print(f"  all connected with their first event after {connect_seconds:.1f} s")
    print(
        f"backfill: {options.activities} activities, recent {options.recent_weeks} weeks "
        f"hydrated, emulator latency {options.latency} s, {backfill_seconds:.1f} s until "
        "every stream ended"
    )
    print(f"progress events published: {len(published)}")
    print(
        f"subscribers that got every event: {complete} of {len(received)} "
        f"(events missed in all: {missed}); streams ended by the done state: {ended}"
    )
    print(
        f"delivery latency over {len(latencies)} deliveries: "
        f"p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
        f"max {max(latencies, default=math.nan) * 1000:.0f} ms (target p99 <= 1000 ms)"
    )
    print(
        f"web process RSS: idle {idle_rss:.0f} MiB, {options.subscribers} subscribers "
        f"{subscribed_rss:.0f} MiB, peak during the backfill {peak.peak:.0f} MiB"
    )
    print(
        f"web process CPU while streaming: {web_cpu:.1f} s in {backfill_seconds:.1f} s "
        f"({100 * web_cpu / backfill_seconds:.0f} % of one core); load average before: "
        f"{load_before}"
    )
    print(f"logs: {logs}")
    ok = complete == len(received) == options.subscribers
    return 0 if ok and percentile(latencies, 0.99) <= 1.0 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
