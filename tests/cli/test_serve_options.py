"""`serve` runs uvicorn with uvloop and httptools where they are installed, and with asyncio's
loop and h11 where they are not (pyproject.toml installs uvloop only where it builds)."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn
from starlette.applications import Starlette

from service.cli.run import uvicorn_options


def test_uvloop_and_httptools_are_used_where_installed() -> None:
    options = uvicorn_options()
    assert (options["loop"], options["http"]) == ("uvloop", "httptools")


def test_without_uvloop_and_httptools_serve_falls_back_to_asyncio_and_h11() -> None:
    options = uvicorn_options(lambda _name: None)
    assert (options["loop"], options["http"]) == ("asyncio", "h11")


@pytest.mark.parametrize(
    ("available", "loop_module", "protocol"),
    [(True, "uvloop", "HttpToolsProtocol"), (False, "asyncio", "H11Protocol")],
    ids=["installed", "absent"],
)
def test_uvicorn_runs_with_the_options_either_way(
    available: bool, loop_module: str, protocol: str
) -> None:
    config = uvicorn.Config(Starlette(), **uvicorn_options(lambda _name: available or None))
    config.load()
    assert config.http_protocol_class.__name__ == protocol
    loop_factory = config.get_loop_factory()
    event_loop = loop_factory() if loop_factory is not None else asyncio.new_event_loop()
    try:
        assert type(event_loop).__module__.split(".")[0] == loop_module
    finally:
        event_loop.close()
