"""Product API declarations: the query and body of a request are parsed by the route's
declared models, and malformed input is answered 400 naming each offending field."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from service.web.api_spec import (
    MAX_BODY_BYTES,
    Access,
    ApiRoute,
    Operation,
    json_response,
    parse_body,
    parse_query,
)
from service.web.errors import exception_handlers


class Query(BaseModel):
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    sport_type: list[str] = []


class Body(BaseModel):
    kind: Literal["incremental", "full"]


class Echo(BaseModel):
    limit: int = 0
    sport_type: list[str] = []
    kind: str = ""


async def read_query(request: Request) -> Response:
    """Echo the parsed query."""
    query = parse_query(request, Query)
    return json_response(Echo(limit=query.limit, sport_type=query.sport_type))


async def read_body(request: Request) -> Response:
    body = await parse_body(request, Body)
    return json_response(Echo(kind=body.kind), status_code=202)


@pytest.fixture
def client() -> TestClient:
    app = Starlette(
        routes=[
            ApiRoute(
                "/query",
                read_query,
                method="GET",
                operation=Operation("echo", Access.PUBLIC, {200: Echo}, query=Query),
            ),
            ApiRoute(
                "/body",
                read_body,
                method="POST",
                operation=Operation("echo", Access.PUBLIC, {202: Echo}, body=Body),
            ),
        ],
        exception_handlers=exception_handlers(),
    )
    return TestClient(app)


def test_a_route_keeps_its_operation_and_its_docstring() -> None:
    operation = Operation("echo", Access.READ, {200: Echo}, query=Query)
    route = ApiRoute("/query", read_query, method="get", operation=operation)
    assert (route.method, route.operation, route.description) == (
        "GET",
        operation,
        "Echo the parsed query.",
    )


def test_the_query_is_parsed_with_defaults_and_repeatable_parameters(client: TestClient) -> None:
    assert client.get("/query").json() == {"limit": 50, "sport_type": [], "kind": ""}
    answer = client.get(
        "/query", params=[("limit", "7"), ("sport_type", "Run"), ("sport_type", "Ride")]
    )
    assert answer.json() == {"limit": 7, "sport_type": ["Run", "Ride"], "kind": ""}


@pytest.mark.parametrize(
    ("query", "name", "problem"),
    [
        ("limit=500", "limit", "less than or equal to 200"),
        ("limit=ten", "limit", "valid integer"),
        ("limit=1&limit=2", "limit", "given more than once"),
        ("sport=Run", "sport", "unknown parameter"),
    ],
)
def test_a_bad_query_is_a_400_naming_the_parameter(
    client: TestClient, query: str, name: str, problem: str
) -> None:
    answer = client.get(f"/query?{query}")
    assert answer.status_code == 400
    body = answer.json()
    assert (body["reason"], body["error"]) == ("query", f"invalid query: {name}")
    [field] = body["fields"]
    assert field["name"] == name
    assert problem in field["problem"]


def test_the_body_is_parsed_by_its_model(client: TestClient) -> None:
    answer = client.post("/body", json={"kind": "full"})
    assert (answer.status_code, answer.json()["kind"]) == (202, "full")


@pytest.mark.parametrize(
    ("content", "status", "reason"),
    [
        (b'{"kind": "sideways"}', 400, "body"),
        (b"", 400, "body"),
        (b"[1, 2]", 400, "body"),
        (b"{not json", 400, "body"),
        (b"\xff\xfe", 400, "body"),
        (b'{"kind": "' + b"x" * MAX_BODY_BYTES + b'"}', 413, "body_size"),
    ],
)
def test_a_bad_body_is_refused_with_a_reason(
    client: TestClient, content: bytes, status: int, reason: str
) -> None:
    answer = client.post("/body", content=content, headers={"content-type": "application/json"})
    assert (answer.status_code, answer.json()["reason"]) == (status, reason)


def test_a_body_of_another_type_is_a_415(client: TestClient) -> None:
    answer = client.post("/body", content=b"kind=full", headers={"content-type": "text/plain"})
    assert (answer.status_code, answer.json()["reason"]) == (415, "content_type")
