"""Commands run in-process (click's CliRunner) against PostgreSQL, Redis and the emulator."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from launch import answers, command, free_port, running
from sqlalchemy.engine import Engine
from support import FakeStrava, connect_emulator_athlete, service_env


@pytest.fixture
def athlete_id(engine: Engine, strava: FakeStrava) -> int:
    """The emulator's athlete, connected: its tokens are in our database."""
    return connect_emulator_athlete(engine, strava)


@pytest.fixture
def web(database_url: str, strava: FakeStrava, redis_url: str, tmp_path: Path) -> Iterator[str]:
    """A production-mode `strava-ingest serve` (secret path) for Strava's validation GET;
    yields its base URL, which is also its PUBLIC_URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        command("serve", "--port", str(port)),
        env=service_env(
            database_url, strava, redis_url, SUBSCRIPTION_CACHE_SECONDS="0", PUBLIC_URL=url
        ),
        cwd=tmp_path,
        log_file=tmp_path / "web.log",
        ready=lambda: answers(f"{url}/readyz"),
    ):
        yield url
