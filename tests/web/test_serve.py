"""`strava-ingest serve` as a real process facing hostile connections: idle and trickling
connections neither hold it up nor stay open, oversized headers are refused, a wrong webhook
secret looks like any unknown path on the wire, and production mode will not start without
WEBHOOK_SECRET (docs/deployment.md)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from launch import answers, command, free_port, running
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from support import ADMIN, SUBSCRIPTION_ID, WEBHOOK_SECRET, service_env

from service.models import InboxEvent

KEEPALIVE_SECONDS = 1
REQUEST_TIMEOUT_SECONDS = 2
# How long another request may take while the server is being held up: far below both.
PROMPT = 1.0
EVENT = {
    "aspect_type": "create",
    "event_time": 1516126040,
    "object_id": 1,
    "object_type": "activity",
    "owner_id": 134815,
    "subscription_id": SUBSCRIPTION_ID,
}


def production_env(database_url: str, redis_url: str, **settings: str) -> dict[str, str]:
    return service_env(
        database_url,
        broker_url=redis_url,
        STRAVA_SUBSCRIPTION_ID=str(SUBSCRIPTION_ID),
        HTTP_KEEPALIVE_SECONDS=str(KEEPALIVE_SECONDS),
        HTTP_REQUEST_TIMEOUT_SECONDS=str(REQUEST_TIMEOUT_SECONDS),
        HTTP_MAX_HEADER_BYTES="4096",
        PUBLIC_URL="https://ingest.example.com",
        **settings,
    )


@pytest.fixture
def server(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A production-mode `serve` (PostgreSQL, Redis); its host and port."""
    port = free_port()
    with running(
        command("serve", "--port", str(port)),
        env=production_env(database_url, redis_url),
        cwd=tmp_path,
        log_file=tmp_path / "web.log",
        ready=lambda: answers(f"http://127.0.0.1:{port}/readyz"),
    ):
        yield "127.0.0.1", port


def connect(server: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(server)
    sock.settimeout(10)
    return sock


def closed_after(sock: socket.socket, deadline: float) -> float:
    """Seconds until the server closes ``sock`` (reading and discarding what it sends)."""
    started = time.monotonic()
    sock.settimeout(deadline)
    while sock.recv(65536):
        pass
    return time.monotonic() - started


def trickle(sock: socket.socket, data: bytes, stop: threading.Event) -> None:
    """Send ``data`` a byte at a time, as a slowloris client does, until told to stop."""
    for byte in data:
        if stop.wait(0.1):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


def webhook_request(server: tuple[str, int]) -> bytes:
    body = json.dumps(EVENT).encode()
    return (
        f"POST /webhooks/strava/{WEBHOOK_SECRET} HTTP/1.1\r\nHost: {server[0]}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_idle_and_trickling_connections_do_not_delay_other_requests(
    server: tuple[str, int],
) -> None:
    base = f"http://{server[0]}:{server[1]}"
    idle = [connect(server) for _ in range(8)]
    stop = threading.Event()
    slow = [connect(server) for _ in range(8)]
    threads = [
        threading.Thread(target=trickle, args=(sock, webhook_request(server), stop))
        for sock in slow
    ]
    for thread in threads:
        thread.start()
    try:
        timings = []
        for _ in range(3):
            started = time.monotonic()
            event = httpx.post(
                f"{base}/webhooks/strava/{WEBHOOK_SECRET}", json=EVENT, timeout=PROMPT * 5
            )
            health = httpx.get(f"{base}/healthz", timeout=PROMPT * 5)
            timings.append(time.monotonic() - started)
            assert (event.status_code, health.status_code) == (200, 200)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for sock in idle + slow:
            sock.close()
    assert max(timings) < PROMPT, timings


def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(
    server: tuple[str, int],
) -> None:
    sock = connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        answer += sock.recv(65536)

    waited = closed_after(sock, deadline=KEEPALIVE_SECONDS + 5)

    sock.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert KEEPALIVE_SECONDS * 0.8 <= waited < KEEPALIVE_SECONDS + 2


def rejected(server: tuple[str, int]) -> dict[str, int]:
    stats = httpx.get(f"http://{server[0]}:{server[1]}/stats/webhooks", headers=ADMIN).json()
    counts: dict[str, int] = stats["rejected"]
    return counts


def test_a_connection_that_sends_nothing_is_closed_after_the_request_timeout(
    server: tuple[str, int],
) -> None:
    sock = connect(server)

    waited = closed_after(sock, deadline=REQUEST_TIMEOUT_SECONDS + 5)

    sock.close()
    assert REQUEST_TIMEOUT_SECONDS * 0.8 <= waited < REQUEST_TIMEOUT_SECONDS + 2
    assert rejected(server) == {"request_timeout": 1}


def test_a_trickling_request_is_cut_off_after_the_request_timeout(
    server: tuple[str, int],
) -> None:
    sock = connect(server)
    stop = threading.Event()
    # Long enough to still be trickling when the deadline passes.
    request = webhook_request(server) + b" " * 200
    thread = threading.Thread(target=trickle, args=(sock, request, stop))
    thread.start()
    try:
        waited = closed_after(sock, deadline=REQUEST_TIMEOUT_SECONDS + 5)
    finally:
        stop.set()
        thread.join()
        sock.close()
    assert REQUEST_TIMEOUT_SECONDS * 0.8 <= waited < REQUEST_TIMEOUT_SECONDS + 2
    assert rejected(server) == {"request_timeout": 1}


def test_oversized_request_headers_are_refused_with_431(server: tuple[str, int]) -> None:
    sock = connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: " + b"x" * 8192)
    sock.sendall(b"\r\n\r\n")

    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431")
    assert json.loads(body)["reason"] == "head_too_large"
    assert rejected(server) == {"head_too_large": 1}


def raw_exchange(server: tuple[str, int], method: str, path: str) -> list[bytes]:
    """The server's answer, one line per item, without the Date header (it changes). Every
    exchange sends the same request id, which the answer echoes."""
    sock = connect(server)
    sock.sendall(
        f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"X-Request-ID: probe-1\r\n"
        f"Content-Length: 2\r\nConnection: close\r\n\r\n{{}}".encode()
    )
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    return [line for line in answer.split(b"\r\n") if not line.lower().startswith(b"date:")]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_a_wrong_or_missing_secret_is_on_the_wire_exactly_an_unknown_path(
    server: tuple[str, int], method: str
) -> None:
    unknown = raw_exchange(server, method, "/nowhere")

    wrong = raw_exchange(server, method, "/webhooks/strava/guessed-secret-0000000")
    missing = raw_exchange(server, method, "/webhooks/strava")

    assert unknown[0] == b"HTTP/1.1 404 Not Found"
    assert wrong == unknown
    assert missing == unknown


def test_production_mode_refuses_to_start_without_a_webhook_secret(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = production_env(database_url, redis_url)
    del env["WEBHOOK_SECRET"]

    result = subprocess.run(
        command("serve", "--port", str(free_port())),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode != 0
    assert "WEBHOOK_SECRET: is required in production mode" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_opt_out_starts_on_the_plain_path_with_a_warning(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = production_env(database_url, redis_url, WEBHOOK_SECRET_OPTOUT="true")
    del env["WEBHOOK_SECRET"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_file = tmp_path / "web.log"

    with running(
        command("serve", "--port", str(port)),
        env=env,
        cwd=tmp_path,
        log_file=log_file,
        ready=lambda: answers(f"{base}/readyz"),
    ):
        response = httpx.post(f"{base}/webhooks/strava", json=EVENT)

    assert response.status_code == 200
    assert "WEBHOOK_SECRET_OPTOUT is set" in log_file.read_text()


def test_a_body_trickling_past_the_request_timeout_is_cut_off_and_counted(
    server: tuple[str, int],
) -> None:
    request = webhook_request(server)
    head, _, body = request.partition(b"\r\n\r\n")
    sock = connect(server)
    sock.sendall(head + b"\r\n\r\n" + body[:5])
    stop = threading.Event()
    thread = threading.Thread(target=trickle, args=(sock, body[5:] * 10, stop))
    thread.start()
    try:
        waited = closed_after(sock, deadline=REQUEST_TIMEOUT_SECONDS + 5)
    finally:
        stop.set()
        thread.join()
        sock.close()

    assert REQUEST_TIMEOUT_SECONDS * 0.8 <= waited < REQUEST_TIMEOUT_SECONDS + 2
    assert rejected(server) == {"request_timeout": 1, "incomplete_body": 1}


def test_a_poisoned_burst_against_the_real_server_fails_no_good_event(
    server: tuple[str, int], engine: Engine
) -> None:
    base = f"http://{server[0]}:{server[1]}/webhooks/strava/{WEBHOOK_SECRET}"
    good = [json.dumps({**EVENT, "object_id": 1000 + n}).encode() for n in range(40)]
    poisoned = [
        json.dumps({**EVENT, "object_id": 9000}).replace('"create"', '"cre\\u0000ate"'),
        json.dumps({**EVENT, "object_id": 9001, "updates": {"title": "\ud800"}}),
        json.dumps({**EVENT, "object_id": 9002, "updates": {"distance": float("nan")}}),
        json.dumps({**EVENT, "object_id": 9003, "updates": {"a": [2**64]}}),
    ]
    bodies = [*good[:10], *[p.encode() for p in poisoned], *good[10:]]

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(bodies))
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            return await asyncio.gather(
                *(
                    client.post(base, content=body, headers={"content-type": "application/json"})
                    for body in bodies
                )
            )

    statuses = [response.status_code for response in asyncio.run(burst())]

    assert statuses == [200] * 10 + [400] * len(poisoned) + [200] * 30
    with Session(engine) as session:
        stored = sorted(session.exec(select(InboxEvent.object_id)).all())
    assert stored == list(range(1000, 1040))
