"""An ingest context wired as the workers wire it, against the emulator and PostgreSQL."""

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.engine import Engine
from support import (
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_KEY,
    FakeStrava,
    FakeUtcClock,
    connect_emulator_athlete,
)

from service.config import Settings
from service.ingest.context import IngestContext
from service.ingest.crypto import TokenCipher
from service.models import utcnow
from service.strava.client import StravaClient
from service.strava.quota import QuotaHooks, build_scheduler


@pytest.fixture
def quota_clock() -> FakeUtcClock:
    """The quota scheduler's clock: it moves only when the test moves it."""
    return FakeUtcClock(utcnow())


@pytest.fixture
def make_ctx(
    engine: Engine,
    strava: FakeStrava,
    make_settings: Callable[..., Settings],
    quota_clock: FakeUtcClock,
) -> Iterator[Callable[[], IngestContext]]:
    """Builds independent contexts (each its own client and locks), like separate workers,
    sharing one quota scheduler that runs on `quota_clock`."""
    built: list[IngestContext] = []
    quota = build_scheduler(make_settings(), clock=lambda: quota_clock().timestamp())

    def build() -> IngestContext:
        client = StravaClient(
            api_url=strava.server.api_url,
            oauth_url=strava.server.oauth_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            hooks=QuotaHooks(quota),
        )
        ctx = IngestContext(
            engine=engine, strava=client, quota=quota, cipher=TokenCipher(TOKEN_KEY)
        )
        built.append(ctx)
        return ctx

    yield build
    for ctx in built:
        ctx.strava.close()


@pytest.fixture
def ctx(make_ctx: Callable[[], IngestContext]) -> IngestContext:
    return make_ctx()


@pytest.fixture
def athlete_id(ctx: IngestContext, strava: FakeStrava) -> int:
    """The emulator's athlete, connected: its tokens are in our database."""
    return connect_emulator_athlete(ctx.engine, strava)
