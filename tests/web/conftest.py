"""Fixtures of the web tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient
from support import SUBSCRIPTION_ID, WEBHOOK_SECRET, Deployed, FakeStrava, LoopbackProxy

from service.config import Settings
from service.db import create_db_engine
from service.web.app import create_app


@pytest.fixture
def stalling_engine(engine: Engine) -> Iterator[tuple[Engine, LoopbackProxy]]:
    url = engine.url
    proxy = LoopbackProxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = create_db_engine(
        url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    )
    yield proxied, proxy
    proxied.dispose()
    proxy.close()


@pytest.fixture(params=["production", "embedded"])
def deployed(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings], strava: FakeStrava
) -> Iterator[Deployed]:
    """The web app in each mode: PostgreSQL with the secret path, or SQLite (embedded) with
    the plain one; pointed at the emulator, so that any Strava call would count."""
    overrides: dict[str, Any] = {}
    if request.param == "production":
        engine: Engine = request.getfixturevalue("engine")
        webhook = f"/webhooks/strava/{WEBHOOK_SECRET}"
    else:
        engine = request.getfixturevalue("sqlite_engine")
        overrides = {"database_url": engine.url.render_as_string(), "webhook_secret": None}
        webhook = "/webhooks/strava"
    settings = make_settings(
        **strava.urls,
        strava_subscription_id=SUBSCRIPTION_ID,
        subscription_cache_seconds=0,
        **overrides,
    )
    assert settings.mode.value == request.param
    with TestClient(create_app(settings, engine=engine)) as client:
        yield Deployed(client, engine, webhook)


@pytest.fixture
def start(
    make_settings: Callable[..., Settings], engine: Engine
) -> Iterator[Callable[..., TestClient]]:
    """Starts an app with these settings overridden (on PostgreSQL); closed after the test."""
    clients: list[TestClient] = []

    def started(**overrides: Any) -> TestClient:
        client = TestClient(create_app(make_settings(**overrides), engine=engine))
        client.__enter__()
        clients.append(client)
        return client

    yield started
    for client in clients:
        client.__exit__(None, None, None)
