"""Every HTTP request has an id: the caller's X-Request-ID when it is sane, else a new one;
echoed in the answer and carried by the request's log lines."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from service.config import Settings
from service.log_ids import current_ids
from service.web.app import create_app


class IdsOfRecords(logging.Handler):
    """What the log ids were when each record was written."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, dict[str, object]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.getMessage(), dict(current_ids())))


@pytest.fixture
def client(make_settings: Callable[..., Settings], engine: Engine) -> TestClient:
    with TestClient(create_app(make_settings(), engine=engine)) as client:
        yield client


@pytest.mark.parametrize("given", ["4bf92f3577b34da6a3ce929d0e0e4736", "req-1.2:3_x", "a" * 128])
def test_a_sane_incoming_id_is_echoed(client: TestClient, given: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": given})

    assert response.headers["x-request-id"] == given


@pytest.mark.parametrize(
    "given", ["a" * 129, "has space", "semi;colon", "", "é".encode(), "line\\nbreak"]
)
def test_an_insane_incoming_id_is_replaced_by_a_new_one(
    client: TestClient, given: str | bytes
) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": given})

    echoed = response.headers["x-request-id"]
    assert echoed not in (given, "é")
    assert len(echoed) == 32
    assert set(echoed) <= set("0123456789abcdef")


def test_without_an_incoming_id_each_request_gets_its_own(client: TestClient) -> None:
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz").headers["x-request-id"]

    assert first != second


def test_an_error_answer_carries_the_id_and_its_log_line_too(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    handler = IdsOfRecords()
    logger = logging.getLogger("service.web")
    logger.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="service.web"):
            response = client.get(
                "/auth/strava/callback?error=access_denied", headers={"X-Request-ID": "trace-77"}
            )
    finally:
        logger.removeHandler(handler)

    assert response.status_code == 400
    assert response.headers["x-request-id"] == "trace-77"
    declined = [ids for message, ids in handler.seen if "oauth callback declined" in message]
    assert declined == [{"request_id": "trace-77"}]
