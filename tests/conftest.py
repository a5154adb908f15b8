"""Fixtures that build real things: a PostgreSQL schema from the migrations, a Redis db.

TEST_DATABASE_URL and TEST_REDIS_URL point the suite at other servers or databases.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from support import (
    ADMIN_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    READ_KEY,
    TOKEN_KEY,
    VERIFY_TOKEN,
    WEBHOOK_SECRET,
    FakeStrava,
)

from service.config import Settings
from service.db import create_db_engine, recreate_database, upgrade_schema
from service.emulator import Emulator, EmulatorConfig
from service.emulator.server import EmulatorServer
from service.log_ids import replace_log_ids
from service.models import SQLModel

DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/strava_ingest_test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def database_url() -> str:
    """A fresh PostgreSQL database, migrated to head by the real migrations."""
    recreate_database(DATABASE_URL)
    upgrade_schema(DATABASE_URL)
    return DATABASE_URL


@pytest.fixture(scope="session")
def _session_engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(_session_engine: Engine) -> Engine:
    """The PostgreSQL engine, with every table emptied before the test."""
    tables = ", ".join(t.name for t in SQLModel.metadata.sorted_tables)
    with _session_engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return _session_engine


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'test.db'}"
    upgrade_schema(url)
    engine = create_db_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def redis_url() -> str:
    """A Redis database emptied before the test."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    return REDIS_URL


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    """Settings for a test; keyword arguments override (e.g. broker_url=redis_url)."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "broker_url": "memory://",
            "strava_client_id": CLIENT_ID,
            "strava_client_secret": CLIENT_SECRET,
            "strava_verify_token": VERIFY_TOKEN,
            "token_key": TOKEN_KEY,
            "strava_api_url": "https://www.strava.com/api/v3",
            "strava_oauth_url": "https://www.strava.com/oauth",
            # Production mode requires it; TestClient's own base URL.
            "public_url": "http://testserver",
            # Production mode (PostgreSQL) requires it; tests of the plain path pass None.
            "webhook_secret": WEBHOOK_SECRET,
            "admin_api_keys": ADMIN_KEY,
            "read_api_keys": READ_KEY,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture
def strava() -> Iterator[FakeStrava]:
    """A Strava emulator with one seeded athlete, served on a real loopback port."""
    emulator = Emulator(
        EmulatorConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            athletes=1,
            activities_per_athlete=5,
            delivery_retry_delay=0.2,
        )
    )
    with EmulatorServer(emulator) as server:
        yield FakeStrava(emulator, server)
    emulator.close()


@pytest.fixture(autouse=True)
def _own_logging() -> Iterator[None]:
    """Each test starts with no log ids and leaves the root logger as it found it: commands
    run in-process (CliRunner) configure logging, and domain code called outside a worker
    or a request adds ids to the test's own context."""
    root = logging.getLogger()
    level, formatters = root.level, {h: h.formatter for h in root.handlers}
    replace_log_ids()
    yield
    replace_log_ids()
    root.setLevel(level)
    for handler in root.handlers:
        handler.setFormatter(formatters.get(handler))
