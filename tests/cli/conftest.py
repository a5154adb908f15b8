"""Commands run in-process (click's CliRunner) against PostgreSQL, Redis and the emulator."""

import pytest
from sqlalchemy.engine import Engine
from support import FakeStrava, connect_emulator_athlete


@pytest.fixture
def athlete_id(engine: Engine, strava: FakeStrava) -> int:
    """The emulator's athlete, connected: its tokens are in our database."""
    return connect_emulator_athlete(engine, strava)
