"""`strava-ingest health` against real processes: every part there exits 0; a killed worker
is reported missing, and the command exits 1, once its heartbeat has expired (short
heartbeat settings, so that takes seconds)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from e2e.processes import scheduler, web, worker
from launch import wait_until
from sqlalchemy.engine import Engine
from support import FakeStrava, service_env

from service.cli import main
from service.db import upgrade_schema

pytestmark = pytest.mark.e2e

# Beats every 0.3 s, gone after 1.5 s without one.
FAST_HEARTBEATS = {"HEARTBEAT_INTERVAL_SECONDS": "0.3", "HEARTBEAT_TTL_SECONDS": "1.5"}
DEADLINE = 20.0


def health(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["health", *args], env=env)


def test_health_names_a_killed_worker_once_its_heartbeat_expires(
    engine: Engine, database_url: str, strava: FakeStrava, redis_url: str, tmp_path: Path
) -> None:
    env = service_env(database_url, strava, redis_url, **FAST_HEARTBEATS)
    with (
        web(env, tmp_path),
        scheduler(env, tmp_path, redis_url),
        worker(env, tmp_path, redis_url) as workers,
    ):
        healthy = wait_until(
            lambda: (r := health(env, "--json")).exit_code == 0 and r,
            timeout=DEADLINE,
            what="every part healthy",
        )
        os.killpg(workers.pid, signal.SIGKILL)  # the dramatiq parent and its processes
        workers.wait()
        failing = wait_until(
            lambda: (r := health(env)).exit_code == 1 and r,
            timeout=DEADLINE,
            what="health to miss the worker",
        )

    assert isinstance(healthy, Result)
    report = json.loads(healthy.stdout)
    assert report["status"] == "ok"
    assert {name: part["status"] for name, part in report["parts"].items()} == {
        "web": "ok",
        "worker": "ok",
        "scheduler": "ok",
        "database": "ok",
        "broker": "ok",
    }
    [seen] = report["parts"]["worker"]["processes"]
    assert seen["pid"] != workers.pid  # the dramatiq worker process, not its parent
    assert isinstance(failing, Result)
    lines = dict(line.split(None, 1) for line in failing.stdout.splitlines())
    assert lines["worker"].startswith("missing  no heartbeat in the last 1.5 s")
    assert lines["web"].startswith("ok")
    assert lines["scheduler"].startswith("ok")
    assert "missing or down: worker" in failing.stderr


def test_health_in_embedded_mode_asks_serve_and_names_it_when_it_is_gone(
    strava: FakeStrava, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'strava_ingest.db'}"
    upgrade_schema(database_url)
    env = service_env(database_url, strava, "memory://", **FAST_HEARTBEATS)
    with web(env, tmp_path) as url:
        env_with_url = {**env, "PUBLIC_URL": url}
        healthy = wait_until(
            lambda: (r := health(env_with_url)).exit_code == 0 and r,
            timeout=DEADLINE,
            what="embedded serve healthy",
        )
    gone = health(env_with_url)

    assert isinstance(healthy, Result)
    assert [line.split()[:2] for line in healthy.stdout.splitlines()] == [
        ["web", "ok"],
        ["worker", "ok"],
        ["scheduler", "ok"],
        ["database", "ok"],
        ["broker", "ok"],
    ]
    assert gone.exit_code == 1
    assert "missing or down: web, worker, scheduler, broker" in gone.stderr
