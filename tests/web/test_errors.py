"""Database errors become answers that say what happened: refused data is the request's fault
(400, or 409 for a conflict), never "database unavailable" (503), which stays for outages."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from service.db import create_db_engine
from service.web.errors import exception_handlers

UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/x"


def app_running(engine: Engine, statement: str) -> Starlette:
    """An app whose one route runs `statement` on the real database."""

    def run(request: Request) -> Response:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TEMPORARY TABLE t (v int NOT NULL)"))
            connection.execute(sa.text(statement))
        return Response("done")

    return Starlette(routes=[Route("/run", run)], exception_handlers=exception_handlers())


def test_data_the_database_refuses_is_a_400_not_an_outage(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="service.web.errors")

    with TestClient(app_running(engine, "SELECT 1 / 0")) as client:
        response = client.get("/run")

    assert response.status_code == 400
    assert response.json()["reason"] == "unstorable_value"
    assert "database refused the data path='/run' error=DivisionByZero" in caplog.text


def test_a_constraint_the_data_breaks_is_a_409_not_an_outage(engine: Engine) -> None:
    with TestClient(app_running(engine, "INSERT INTO t VALUES (NULL)")) as client:
        response = client.get("/run")

    assert response.status_code == 409
    assert response.json()["reason"] == "conflict"


def test_an_unreachable_database_is_still_a_503() -> None:
    down = create_db_engine(UNREACHABLE_DATABASE)

    with TestClient(app_running(down, "SELECT 1")) as client:
        response = client.get("/run")

    down.dispose()
    assert response.status_code == 503
    assert response.json() == {"error": "database unavailable"}
