"""What the domain functions need from the outside world, passed in rather than imported."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from service.config import Settings
from service.db import create_db_engine
from service.ingest.crypto import TokenCipher
from service.models import utcnow
from service.strava.client import StravaClient


@dataclass
class IngestContext:
    """Dependencies of the ingest domain, shared by the workers and the CLI.

    Parameters:
      engine: the database.
      strava: the (synchronous) Strava client.
      cipher: encrypts and decrypts tokens at rest.
      refresh_margin: refresh an access token that expires sooner than this.
      clock: the current time; injected so tests can move it.
    """

    engine: Engine
    strava: StravaClient
    cipher: TokenCipher
    refresh_margin: timedelta = timedelta(minutes=5)
    clock: Callable[[], datetime] = field(default=utcnow)

    def close(self) -> None:
        self.strava.close()
        self.engine.dispose()


def build_context(settings: Settings, engine: Engine | None = None) -> IngestContext:
    return IngestContext(
        engine=engine or create_db_engine(settings.database_url),
        strava=StravaClient(
            api_url=settings.strava_api_url,
            oauth_url=settings.strava_oauth_url,
            client_id=settings.strava_client_id,
            client_secret=settings.strava_client_secret.get_secret_value(),
            timeout=settings.strava_timeout_seconds,
        ),
        cipher=TokenCipher(settings.token_key.get_secret_value()),
        refresh_margin=timedelta(seconds=settings.token_refresh_margin_seconds),
    )
