"""The two deployments every end-to-end test can run against."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from e2e.processes import Service, scheduler, web, worker
from sqlalchemy.engine import Engine
from support import FakeStrava, service_env

from service.db import create_db_engine, upgrade_schema

# How much of each process's log a failure report shows: the end, where it went wrong.
LOG_TAIL_CHARS = 6000


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report carries the end of every process log it wrote under its
    ``tmp_path``: the processes ran outside pytest's capture, and CI keeps only the report."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    tmp_path = funcargs.get("tmp_path")
    if report.failed and isinstance(tmp_path, Path):
        for log_file in sorted(tmp_path.rglob("*.log")):
            tail = log_file.read_text(errors="replace")[-LOG_TAIL_CHARS:]
            report.sections.append((f"process log {log_file.relative_to(tmp_path)}", tail))
    return report


@pytest.fixture
def service_settings() -> dict[str, str]:
    """Extra environment of the service's processes; a test module overrides it."""
    return {}


@pytest.fixture
def production(
    strava: FakeStrava,
    engine: Engine,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    service_settings: dict[str, str],
) -> Iterator[Service]:
    """PostgreSQL, Redis, and the web, worker and scheduler processes of the Procfile."""
    env = service_env(database_url, strava, redis_url, **service_settings)
    with (
        worker(env, tmp_path, redis_url),
        scheduler(env, tmp_path, redis_url),
        web(env, tmp_path) as url,
    ):
        yield Service(url, engine, env)


@pytest.fixture
def embedded(
    strava: FakeStrava, tmp_path: Path, service_settings: dict[str, str]
) -> Iterator[Service]:
    """SQLite and the in-process broker: one `strava-ingest serve` process."""
    database_url = f"sqlite:///{tmp_path / 'strava_ingest.db'}"
    upgrade_schema(database_url)
    engine = create_db_engine(database_url)
    env = service_env(database_url, strava, "memory://", **service_settings)
    with web(env, tmp_path) as url:
        yield Service(url, engine, env)
    engine.dispose()


@pytest.fixture(params=["production", "embedded"])
def service(request: pytest.FixtureRequest) -> Service:
    """Each test using this runs once per deployment."""
    deployed: Service = request.getfixturevalue(request.param)
    return deployed
