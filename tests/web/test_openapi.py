"""GET /openapi.json: an OpenAPI 3.1 document generated from the app's route declarations,
public, with every declared route, its parameters, body, answers, errors and key."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator
from pydantic import BaseModel, Field, NaiveDatetime
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.testclient import TestClient
from support import ADMIN, Deployed

from service.config import Settings
from service.version import package_version
from service.web.api_spec import Access, ApiRoute, Operation, json_response
from service.web.app import create_app
from service.web.metrics import WebhookStats
from service.web.openapi import MAX_ID, openapi_document
from service.web.quota_view import QuotaReport

ERROR_REF = {"$ref": "#/components/schemas/ApiError"}


class ThingsQuery(BaseModel):
    """Filters of the things listed."""

    limit: Annotated[int, Field(ge=1, le=200, description="Most things in a page.")] = 50
    kind: list[Literal["big", "small"]] = Field(default=[], description="Only these kinds.")
    since: int | None = Field(None, ge=0, description="Only things made after this.")


class Thing(BaseModel):
    """One thing.

    Longer prose that the answer's description leaves out."""

    id: int = Field(description="Its id.")


class Things(BaseModel):
    """A page of things."""

    things: list[Thing] = Field(description="Newest first.")


class Moment(BaseModel):
    """When a thing happened."""

    at: datetime = Field(description="In UTC.")
    local: NaiveDatetime | None = Field(None, description="On the owner's clock, no zone.")


class Rename(BaseModel):
    """A thing's new name."""

    name: str = Field(description="The new name.")


class Progress(BaseModel):
    """How far a thing has got."""

    done: int = Field(description="Steps done.")


async def list_things(request: Request) -> Response:
    """Lists the things of an owner, newest first."""
    return json_response(Things(things=[]))


async def rename_thing(request: Request) -> Response:
    return json_response(Thing(id=1), status_code=202)


async def watch_things(request: Request) -> Response:
    return Response()


async def plain(request: Request) -> Response:
    return Response()


def declared_routes() -> list[BaseRoute]:
    return [
        ApiRoute(
            "/owners/{owner_id:int}/things",
            list_things,
            method="GET",
            operation=Operation(
                "List things", Access.READ, {200: Things}, query=ThingsQuery, tags=("things",)
            ),
        ),
        ApiRoute(
            "/things/{name:str}",
            rename_thing,
            method="POST",
            operation=Operation(
                "Rename", Access.ADMIN, {202: Thing, 409: Thing, 410: Moment}, body=Rename
            ),
        ),
        ApiRoute(
            "/things/events",
            watch_things,
            method="GET",
            operation=Operation(
                "Watch", Access.ADMIN, {200: Progress}, media_type="text/event-stream"
            ),
        ),
        Route("/plain", plain, methods=["GET"]),
    ]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document(declared_routes(), title="things", version="1.2.3")


def test_the_generated_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    OpenAPIV31SpecValidator(document).validate()
    assert (document["openapi"], document["info"]["version"]) == ("3.1.0", "1.2.3")


def test_only_declared_routes_are_described(document: dict[str, Any]) -> None:
    assert sorted(document["paths"]) == [
        "/owners/{owner_id}/things",
        "/things/events",
        "/things/{name}",
    ]


def test_path_convertors_become_typed_path_parameters(document: dict[str, Any]) -> None:
    owner, *_ = document["paths"]["/owners/{owner_id}/things"]["get"]["parameters"]
    name, *_ = document["paths"]["/things/{name}"]["post"]["parameters"]

    assert owner == {
        "name": "owner_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
    }
    assert name["schema"] == {"type": "string", "pattern": "^[^/]+$"}


def test_query_fields_become_parameters_and_a_list_is_repeatable(
    document: dict[str, Any],
) -> None:
    operation = document["paths"]["/owners/{owner_id}/things"]["get"]
    _, limit, kind, since = operation["parameters"]

    assert (limit["name"], limit["in"], limit["required"]) == ("limit", "query", False)
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 200)
    assert limit["description"] == "Most things in a page."
    assert "explode" not in limit
    assert (kind["name"], kind["style"], kind["explode"]) == ("kind", "form", True)
    assert kind["schema"]["items"]["enum"] == ["big", "small"]
    # Left out rather than null: an optional field's parameter is not required.
    assert (since["required"], since["schema"]["type"], since["schema"]["minimum"]) == (
        False,
        "integer",
        0,
    )
    assert "anyOf" not in since["schema"]
    assert "default" not in since["schema"]


def test_an_operation_says_what_it_does_from_its_declaration_and_docstring(
    document: dict[str, Any],
) -> None:
    operation = document["paths"]["/owners/{owner_id}/things"]["get"]

    assert operation["operationId"] == "list_things"
    assert operation["summary"] == "List things"
    assert operation["description"] == "Lists the things of an owner, newest first."
    assert operation["tags"] == ["things"]


def test_answers_carry_their_models_and_the_errors_of_their_kind(
    document: dict[str, Any],
) -> None:
    listing = document["paths"]["/owners/{owner_id}/things"]["get"]["responses"]
    renaming = document["paths"]["/things/{name}"]["post"]["responses"]

    assert listing["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Things"
    }
    assert listing["200"]["description"] == "A page of things."
    assert sorted(listing) == ["200", "400", "401", "403", "404"]
    assert sorted(renaming) == ["202", "400", "401", "403", "404", "409", "410", "413", "415"]
    assert renaming["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Thing"
    }
    assert renaming["202"]["description"] == "One thing."
    for status in ("400", "401", "403", "404", "413", "415"):
        assert renaming[status]["content"]["application/json"]["schema"] == ERROR_REF
    assert renaming["401"]["headers"]["WWW-Authenticate"]["required"] is True


def test_the_body_is_its_model_as_json(document: dict[str, Any]) -> None:
    body = document["paths"]["/things/{name}"]["post"]["requestBody"]

    assert body == {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Rename"}}},
    }


def test_a_stream_describes_each_event_as_its_model_in_json(document: dict[str, Any]) -> None:
    answer = document["paths"]["/things/events"]["get"]["responses"]["200"]
    [(media_type, content)] = answer["content"].items()

    assert media_type == "text/event-stream"
    data = content["schema"]["properties"]["data"]
    assert data["contentMediaType"] == "application/json"
    assert data["contentSchema"] == {"$ref": "#/components/schemas/Progress"}
    assert "404" not in document["paths"]["/things/events"]["get"]["responses"]


def test_every_model_is_a_component_with_its_descriptions(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]

    assert {"ApiError", "Things", "Thing", "Rename", "Progress", "ThingsQuery"} <= set(schemas)
    assert schemas["Things"]["properties"]["things"]["items"] == {
        "$ref": "#/components/schemas/Thing"
    }
    assert schemas["Thing"]["properties"]["id"]["description"] == "Its id."


def test_a_naive_datetime_is_described_without_a_zone(document: dict[str, Any]) -> None:
    moment = document["components"]["schemas"]["Moment"]["properties"]
    pattern = re.compile(moment["local"]["anyOf"][0]["pattern"])

    assert moment["at"]["format"] == "date-time"
    assert "format" not in moment["local"]["anyOf"][0]
    served = Moment(at=datetime.now(UTC), local=datetime(2026, 11, 26, 12, 50, 54, 120))
    assert pattern.match(served.model_dump(mode="json")["local"])
    assert pattern.match("2026-11-26T12:50:54")
    assert not pattern.match("2026-11-26T12:50:54Z")


def test_each_operation_names_the_key_its_access_needs(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    paths = document["paths"]

    assert {scheme["scheme"] for scheme in schemes.values()} == {"bearer"}
    assert "READ_API_KEYS" in schemes["readKey"]["description"]
    assert "ADMIN_API_KEYS" in schemes["readKey"]["description"]
    assert paths["/owners/{owner_id}/things"]["get"]["security"] == [{"readKey": []}]
    assert paths["/things/{name}"]["post"]["security"] == [{"adminKey": []}]


def test_operation_ids_stay_unique_when_endpoints_share_a_name() -> None:
    twice = [
        ApiRoute(path, list_things, method="GET", operation=Operation("x", Access.PUBLIC, {}))
        for path in ("/a", "/b")
    ]

    document = openapi_document(twice, title="t", version="1")

    ids = [document["paths"][path]["get"]["operationId"] for path in ("/a", "/b")]
    assert ids == ["list_things", "list_things_2"]


def test_a_mounted_api_route_is_refused_rather_than_described_at_a_wrong_path() -> None:
    with pytest.raises(ValueError, match="/v1/owners"):
        openapi_document([Mount("/v1", routes=declared_routes())], title="t", version="1")


# The app's own document


@pytest.fixture
def app_document(make_settings: Callable[..., Settings]) -> tuple[TestClient, dict[str, Any]]:
    app = create_app(make_settings())
    client = TestClient(app)
    return client, client.get("/openapi.json").json()


def test_the_app_serves_its_document_to_anyone(
    app_document: tuple[TestClient, dict[str, Any]],
) -> None:
    client, document = app_document

    response = client.get("/openapi.json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == document
    OpenAPIV31SpecValidator(document).validate()
    assert (document["info"]["title"], document["info"]["version"]) == (
        "strava-ingest",
        package_version(),
    )


def test_every_api_route_of_the_app_is_in_its_document_with_its_key(
    app_document: tuple[TestClient, dict[str, Any]],
) -> None:
    client, document = app_document
    declared = [route for route in client.app.routes if isinstance(route, ApiRoute)]
    security = {Access.PUBLIC: [], Access.READ: [{"readKey": []}], Access.ADMIN: [{"adminKey": []}]}

    assert {"/quota", "/stats/webhooks", "/healthz", "/readyz"} <= {r.path for r in declared}
    for route in declared:
        operation = document["paths"][route.path_format][route.method.lower()]
        assert operation["security"] == security[route.operation.access], route.path
        guarded = route.operation.access is not Access.PUBLIC
        assert ({"401", "403"} <= set(operation["responses"])) == guarded, route.path
    described = sum(len(methods) for methods in document["paths"].values())
    assert described == len(declared)


def test_the_strava_facing_routes_are_not_in_the_document(
    app_document: tuple[TestClient, dict[str, Any]],
) -> None:
    _, document = app_document

    assert not [path for path in document["paths"] if path.startswith(("/webhooks", "/auth"))]
    assert "/openapi.json" not in document["paths"]


def test_the_document_is_built_once_when_the_app_is_assembled(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings())
    client = TestClient(app)
    before = client.get("/openapi.json").content
    app.router.routes.append(
        ApiRoute("/late", plain, method="GET", operation=Operation("late", Access.PUBLIC, {}))
    )

    after = client.get("/openapi.json").content

    assert after == before
    assert "/late" not in json.loads(after)["paths"]


@pytest.mark.parametrize("route", ["/quota", "/stats/webhooks"])
def test_the_operator_routes_answer_what_their_models_say(deployed: Deployed, route: str) -> None:
    model = {"/quota": QuotaReport, "/stats/webhooks": WebhookStats}[route]
    body = deployed.client.get(route, headers=ADMIN).json()

    assert model.model_validate(body).model_dump(mode="json") == body
