"""Stopping `strava-ingest worker` the way process managers do, with SIGTERM to its whole
process group: each worker process gets the signal twice (from the sender and forwarded by
dramatiq's main process) and still shuts down gracefully."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from e2e.processes import worker
from launch import wait_until
from sqlalchemy.engine import Engine
from support import FakeStrava, service_env

pytestmark = pytest.mark.e2e


def test_sigterm_to_the_process_group_stops_the_worker_gracefully(
    strava: FakeStrava, engine: Engine, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = service_env(database_url, strava, redis_url)
    with worker(env, tmp_path, redis_url) as process:
        os.killpg(process.pid, signal.SIGTERM)
        wait_until(lambda: process.poll() is not None, timeout=30, what="the worker's exit")

    log = (tmp_path / "worker.log").read_text()
    assert "Stopping worker process" in log
    assert "Killing worker process" not in log
    assert process.returncode == 0, log[-3000:]
