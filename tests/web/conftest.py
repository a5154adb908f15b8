"""Fixtures of the web tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine
from support import LoopbackProxy

from service.db import create_db_engine


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
