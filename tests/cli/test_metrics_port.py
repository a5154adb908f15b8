"""METRICS_PORT: the processes serve the deployment's metrics without a key, and a second
process of the host finds the port taken and runs on."""

from __future__ import annotations

from pathlib import Path

import httpx
from e2e.processes import web
from launch import answers, command, free_port, running
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine
from support import service_env


def test_the_scheduler_serves_metrics_and_serve_runs_on_when_the_port_is_taken(
    database_url: str, redis_url: str, engine: Engine, tmp_path: Path
) -> None:
    port = free_port()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    env = service_env(database_url, None, redis_url, METRICS_PORT=str(port))
    with running(
        command("scheduler"),
        env=env,
        cwd=tmp_path,
        log_file=tmp_path / "scheduler.log",
        ready=lambda: answers(metrics_url),
    ):
        response = httpx.get(metrics_url)
        families = {f.name: f for f in text_string_to_metric_families(response.text)}
        up = {
            s.labels["source"]: s.value for s in families["strava_ingest_metrics_source_up"].samples
        }
        assert up == {"database": 1, "broker": 1, "quota": 1, "events": 1}
        assert "strava_ingest_quota_limit" in families

        with web(env, tmp_path) as url:
            assert answers(f"{url}/readyz")
            assert answers(metrics_url)
        log = (tmp_path / "web.log").read_text()
        assert f"metrics port taken, served by another process port={port}" in log
