"""A scratch database of either kind for each migration test: the suite's own stays at head."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.db import drop_database, recreate_database


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Iterator[str]:
    """An empty database of either kind (PostgreSQL: the suite's name, suffixed), dropped after."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    scratch = f"{database_url}_migration"
    recreate_database(scratch)
    yield scratch
    drop_database(scratch)
