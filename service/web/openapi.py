"""The product API's OpenAPI 3.1 document, generated from the app's routes, and
``GET /openapi.json`` (public) that serves it.

Every `ApiRoute` (service/web/api_spec.py) becomes an operation: its path with the Starlette
convertors as typed path parameters, a query parameter per field of its query model (a list
field is a parameter given once per value), its JSON body, each declared answer with its
model, and the errors every route of its kind answers with the `ApiError` model: 400 for
malformed input (and 413/415 for a body), 401 and 403 for a missing or wrong key, 404 for a
path naming nothing. The schemas come from the pydantic models (JSON Schema 2020-12, OpenAPI
3.1's own dialect), so nothing here is written by hand but the prose of ``info``.

Plain routes are left out: the Strava-facing ones (the webhook callback, the OAuth connect
and callback) are answered to Strava and to an athlete's browser, whose shapes Strava and
the browser set, not the product backend; and this document does not describe itself.

The document is built once, when the app is assembled, and served as the same bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from pydantic_core import core_schema
from starlette import convertors
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from service.version import DISTRIBUTION, package_version
from service.web.api_spec import Access, ApiError, ApiRoute, repeatable

OPENAPI_VERSION = "3.1.0"
OPENAPI_PATH = "/openapi.json"
REF_TEMPLATE = "#/components/schemas/{model}"
EVENT_STREAM = "text/event-stream"

# The security scheme of each guarded access, and what it accepts.
SECURITY_SCHEMES: dict[Access, tuple[str, str]] = {
    Access.READ: (
        "readKey",
        "A key of READ_API_KEYS (the product backend) or of ADMIN_API_KEYS (an operator): "
        "`Authorization: Bearer <key>`.",
    ),
    Access.ADMIN: ("adminKey", "A key of ADMIN_API_KEYS: `Authorization: Bearer <key>`."),
}

# Ids are Strava's 64-bit integers: a larger number names nothing.
MAX_ID = 2**63 - 1
# A wall-clock time without a zone, as pydantic writes a naive datetime.
LOCAL_DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?$"

DESCRIPTION = (
    "Read athletes and their activities (hydrated on demand), start, stop and watch their "
    "syncs, read their logs. Every route but the health checks needs a bearer key."
)


def openapi_document(routes: Iterable[BaseRoute], *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the `ApiRoute`s among ``routes``. Raises ValueError for
    one inside a `Mount`, whose path the document would get wrong."""
    api_routes = sorted(_api_routes(routes), key=lambda route: (route.path_format, route.method))
    refs, schemas = _schemas(api_routes)
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    for route in api_routes:
        operation = _operation(route, refs, schemas)
        operation["operationId"] = _unique(route.name, operation_ids)
        paths.setdefault(route.path_format, {})[route.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                name: {"type": "http", "scheme": "bearer", "description": description}
                for name, description in SECURITY_SCHEMES.values()
            },
        },
    }


def document_routes(app_routes: Iterable[BaseRoute]) -> list[Route]:
    """``GET /openapi.json``, answering the document of ``app_routes``, built now, with the
    installed package's name and version."""
    document = openapi_document(app_routes, title=DISTRIBUTION, version=package_version())
    body = json.dumps(document).encode()

    async def openapi_json(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return [Route(OPENAPI_PATH, openapi_json, methods=["GET"])]


def _api_routes(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[ApiRoute]:
    for route in routes:
        if isinstance(route, ApiRoute):
            if prefix:
                raise ValueError(f"a mounted ApiRoute is not described: {prefix}{route.path}")
            yield route
        elif isinstance(route, Mount):
            yield from _api_routes(route.routes, prefix + route.path)


def _schemas(
    api_routes: list[ApiRoute],
) -> tuple[dict[tuple[type[BaseModel], JsonSchemaMode], str], dict[str, Any]]:
    """Each model's component name (inputs as validated, answers as serialised) and the
    components."""
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ApiError, "serialization"): None}
    for route in api_routes:
        operation = route.operation
        for model in (operation.query, operation.body):
            if model is not None:
                wanted[(model, "validation")] = None
        for answer in operation.responses.values():
            if answer is not None:
                wanted[(answer, "serialization")] = None
    keys, top = models_json_schema(
        list(wanted), ref_template=REF_TEMPLATE, schema_generator=_JsonSchema
    )
    names = {key: str(keys[key]["$ref"]).rsplit("/", 1)[1] for key in wanted}
    schemas: dict[str, Any] = top.get("$defs", {})
    return names, schemas


class _JsonSchema(GenerateJsonSchema):
    """pydantic's JSON Schema, but a naive datetime (``NaiveDatetime``, e.g. a local start
    time) is not ``date-time``, whose RFC 3339 form requires a zone."""

    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> dict[str, Any]:
        if schema.get("tz_constraint") == "naive":
            return {"type": "string", "pattern": LOCAL_DATE_TIME}
        return super().datetime_schema(schema)


def _operation(
    route: ApiRoute,
    refs: Mapping[tuple[type[BaseModel], JsonSchemaMode], str],
    schemas: Mapping[str, Any],
) -> dict[str, Any]:
    operation = route.operation
    described: dict[str, Any] = {"summary": operation.summary}
    if route.description:
        described["description"] = route.description
    if operation.tags:
        described["tags"] = list(operation.tags)
    path_parameters = list(_path_parameters(route))
    query_parameters = (
        list(_query_parameters(operation.query, schemas[refs[(operation.query, "validation")]]))
        if operation.query is not None
        else []
    )
    if path_parameters or query_parameters:
        described["parameters"] = path_parameters + query_parameters
    if operation.body is not None:
        body_schema = schemas[refs[(operation.body, "validation")]]
        described["requestBody"] = {
            "required": bool(body_schema.get("required")),
            "content": {"application/json": {"schema": _ref(refs, operation.body, "validation")}},
        }
    responses: dict[str, Any] = {}
    for status, model in sorted(operation.responses.items()):
        responses[str(status)] = _answer(model, operation.media_type, refs)
    error = _ref(refs, ApiError, "serialization")
    for status, meaning in _errors(route, has_path_parameters=bool(path_parameters)):
        responses.setdefault(str(status), _error(meaning, error, status))
    described["responses"] = responses
    if operation.access in SECURITY_SCHEMES:
        described["security"] = [{SECURITY_SCHEMES[operation.access][0]: []}]
    else:
        described["security"] = []
    return described


def _path_parameters(route: ApiRoute) -> Iterator[dict[str, Any]]:
    for name, convertor in route.param_convertors.items():
        yield {"name": name, "in": "path", "required": True, "schema": _path_schema(convertor)}


def _path_schema(convertor: convertors.Convertor[Any]) -> dict[str, Any]:
    # What each of Starlette's convertors matches: any other text routes nowhere (404).
    if isinstance(convertor, convertors.IntegerConvertor):
        return {"type": "integer", "minimum": 0, "maximum": MAX_ID}
    if isinstance(convertor, convertors.FloatConvertor):
        return {"type": "number", "minimum": 0}
    if isinstance(convertor, convertors.UUIDConvertor):
        return {"type": "string", "format": "uuid"}
    if isinstance(convertor, convertors.PathConvertor):
        return {"type": "string"}
    return {"type": "string", "pattern": "^[^/]+$"}


def _query_parameters(
    model: type[BaseModel], schema: Mapping[str, Any]
) -> Iterator[dict[str, Any]]:
    properties: Mapping[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    for name, field_schema in properties.items():
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": _without_null(field_schema),
        }
        if "description" in field_schema:
            parameter["description"] = field_schema["description"]
        if name in fields and repeatable(fields[name].annotation):
            # ?sport_type=Run&sport_type=Ride, as parse_query reads it.
            parameter.update(style="form", explode=True)
        yield parameter


def _without_null(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A query parameter's schema without the null of an optional field: a parameter is
    given or left out (``required: false``), never null."""
    options = schema.get("anyOf")
    if not isinstance(options, list) or {"type": "null"} not in options:
        return dict(schema)
    kept = [option for option in options if option != {"type": "null"}]
    rest = {
        key: value
        for key, value in schema.items()
        if key != "anyOf" and not (key == "default" and value is None)
    }
    if len(kept) == 1:
        return {**kept[0], **rest}
    return {**rest, "anyOf": kept}


def _answer(
    model: type[BaseModel] | None,
    media_type: str,
    refs: Mapping[tuple[type[BaseModel], JsonSchemaMode], str],
) -> dict[str, Any]:
    if model is None:
        return {"description": "No body."}
    schema = _ref(refs, model, "serialization")
    description = _first_line(model.__doc__) or model.__name__
    if media_type == EVENT_STREAM:
        # Before OpenAPI 3.2's itemSchema, an event stream's schema describes one event;
        # its data is the model, as JSON.
        return {
            "description": f"A stream of events, each carrying: {description}",
            "content": {media_type: {"schema": _event_schema(schema)}},
        }
    return {"description": description, "content": {media_type: {"schema": schema}}}


def _event_schema(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "event": {"type": "string"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": data,
            },
            "retry": {"type": "integer"},
        },
        "required": ["data"],
    }


Meaning = Literal["input", "too_large", "media_type", "no_key", "wrong_key", "not_found"]

_ERROR_DESCRIPTIONS: dict[Meaning, str] = {
    "input": "Malformed input: `fields` names each offending parameter or body field.",
    "too_large": "The body is larger than the route reads.",
    "media_type": "The body is not application/json.",
    "no_key": "No bearer key: `Authorization: Bearer <key>` is required.",
    "wrong_key": "The key is not one of those this route accepts.",
    "not_found": "The path names nothing that exists.",
}


def _errors(route: ApiRoute, *, has_path_parameters: bool) -> Iterator[tuple[int, Meaning]]:
    operation = route.operation
    if operation.query is not None or operation.body is not None:
        yield 400, "input"
    if operation.access in SECURITY_SCHEMES:
        yield 401, "no_key"
        yield 403, "wrong_key"
    if has_path_parameters:
        yield 404, "not_found"
    if operation.body is not None:
        yield 413, "too_large"
        yield 415, "media_type"


def _error(meaning: Meaning, schema: dict[str, Any], status: int) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": _ERROR_DESCRIPTIONS[meaning],
        "content": {"application/json": {"schema": schema}},
    }
    if status == 401:
        answer["headers"] = {
            "WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}
        }
    return answer


def _ref(
    refs: Mapping[tuple[type[BaseModel], JsonSchemaMode], str],
    model: type[BaseModel],
    mode: JsonSchemaMode,
) -> dict[str, Any]:
    return {"$ref": REF_TEMPLATE.format(model=refs[(model, mode)])}


def _first_line(text: str | None) -> str:
    paragraph = (text or "").strip().split("\n\n", 1)[0]
    return re.sub(r"\s+", " ", paragraph)


def _unique(name: str, taken: set[str]) -> str:
    candidate, serial = name, 1
    while candidate in taken:
        serial += 1
        candidate = f"{name}_{serial}"
    taken.add(candidate)
    return candidate
