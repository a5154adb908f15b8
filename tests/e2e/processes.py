"""Starting the service's processes for end-to-end tests, exactly as the Procfile does."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from launch import answers, command, free_port, running, wait_until
from sqlalchemy.engine import Engine
from sqlmodel import Session

from service.heartbeats import KEY_PREFIX
from service.models import Activity


@dataclass
class Service:
    url: str
    engine: Engine
    env: dict[str, str]

    @property
    def webhook_url(self) -> str:
        """The callback, with its secret segment when the service has one."""
        secret = self.env.get("WEBHOOK_SECRET")
        return f"{self.url}/webhooks/strava" + (f"/{secret}" if secret else "")


@contextmanager
def web(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`strava-ingest serve`, ready once /readyz answers; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        command("serve", "--port", str(port)),
        env={"PUBLIC_URL": url, **env},
        cwd=tmp_path,
        log_file=tmp_path / "web.log",
        ready=lambda: answers(f"{url}/readyz"),
    ):
        yield url


@contextmanager
def worker(
    env: dict[str, str], tmp_path: Path, redis_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`strava-ingest worker`, ready once a consumer has written dramatiq's heartbeat; yields
    the process (the leader of its process group: dramatiq's parent)."""
    heartbeats = redis.Redis.from_url(redis_url)
    try:
        with running(
            command("worker", "--processes", "1", "--threads", "2"),
            env=env,
            cwd=tmp_path,
            log_file=tmp_path / "worker.log",
            ready=lambda: heartbeats.zcard("dramatiq:__heartbeats__") > 0,
        ) as process:
            yield process
    finally:
        heartbeats.close()


@contextmanager
def scheduler(env: dict[str, str], tmp_path: Path, redis_url: str) -> Iterator[None]:
    """`strava-ingest scheduler`, ready once its heartbeat is in Redis. In production mode it
    runs the periodic duties, among them the release of a backfill's waiting hydrations."""
    client = redis.Redis.from_url(redis_url)
    try:
        with running(
            command("scheduler"),
            env=env,
            cwd=tmp_path,
            log_file=tmp_path / "scheduler.log",
            ready=lambda: bool(client.keys(f"{KEY_PREFIX}scheduler:*")),
        ):
            yield
    finally:
        client.close()


def connect(url: str) -> int:
    """An athlete goes through /auth/strava/connect, Strava's authorize page and back."""
    response = httpx.get(f"{url}/auth/strava/connect", follow_redirects=True)
    assert response.status_code == 200, response.text
    athlete_id: int = response.json()["athlete_id"]
    return athlete_id


def subscribe(url: str, env: dict[str, str]) -> None:
    # `subscription create` appends WEBHOOK_SECRET to the callback when the env sets it.
    subprocess.run(
        command("subscription", "create", "--callback-url", f"{url}/webhooks/strava"),
        env=env,
        check=True,
        capture_output=True,
    )


def activity_when(
    service: Service, activity_id: int, condition: Callable[[Activity], bool], timeout: float
) -> Activity:
    """The activity's row, once it exists and satisfies `condition`."""

    def check() -> Activity | None:
        with Session(service.engine) as session:
            row = session.get(Activity, activity_id)
        return row if row is not None and condition(row) else None

    found = wait_until(check, timeout=timeout, what=f"activity {activity_id}")
    assert isinstance(found, Activity)
    return found
