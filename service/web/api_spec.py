"""Declarations of the product API's routes: who may call each, what its query and body hold,
what it answers. The key guard, the parsing of the request and the OpenAPI document are all
derived from one `Operation`, so what a route enforces and what it documents cannot drift.

A route module declares its endpoints with `ApiRoute`:

    class ThingsQuery(BaseModel):
        limit: Annotated[int, Field(ge=1, le=200)] = 50

    async def list_things(request: Request) -> Response:
        query = parse_query(request, ThingsQuery)
        return json_response(ThingsPage(...))

    ApiRoute("/things", list_things, method="GET", operation=Operation(
        summary="List things", access=Access.READ, query=ThingsQuery,
        responses={200: ThingsPage}))

Malformed input is answered 400 naming each offending field (``fields``), never 422 or 500:
unknown query parameters, a single-valued parameter given twice, a body that is not a JSON
object of the declared shape.
"""

from __future__ import annotations

import inspect
import json
import types
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.web.api_keys import requires_admin_key, requires_read_key
from service.web.errors import ContentTooLarge, InvalidRequest, UnsupportedMediaType
from service.web.rejections import Endpoint

M = TypeVar("M", bound=BaseModel)

# A product API request body is a small JSON object; nothing larger is read.
MAX_BODY_BYTES = 64 * 1024


class Access(StrEnum):
    """Who may call a route: anyone, the product backend (a read key; an admin key too), or an
    operator (an admin key)."""

    PUBLIC = "public"
    READ = "read"
    ADMIN = "admin"


class ApiError(BaseModel):
    """The body of every error answer (service/web/errors.py)."""

    model_config = ConfigDict(extra="allow")

    error: str
    reason: str | None = None


@dataclass(frozen=True)
class Operation:
    """What one route does, for its guard, its parsing and the OpenAPI document.

    Parameters:
      summary: one line saying what the route does.
      access: who may call it; READ and ADMIN routes also answer 401 and 403.
      responses: the model of each success answer's body by status (None: no body).
      query: the model of its query parameters (a list field is a repeatable parameter).
      body: the model of its JSON body.
      tags: groups in the document.
      media_type: of the success answers (``text/event-stream`` for a stream).
    """

    summary: str
    access: Access
    responses: Mapping[int, type[BaseModel] | None]
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    tags: tuple[str, ...] = ()
    media_type: str = "application/json"


class ApiRoute(Route):
    """A Starlette route for one method, guarded as its operation's ``access`` says; its
    docstring becomes the operation's description."""

    def __init__(self, path: str, endpoint: Endpoint, *, method: str, operation: Operation):
        super().__init__(
            path, _guarded(endpoint, operation.access), methods=[method], name=endpoint.__name__
        )
        self.method = method.upper()
        self.operation = operation
        self.description = inspect.getdoc(endpoint) or ""


def _guarded(endpoint: Endpoint, access: Access) -> Endpoint:
    if access is Access.READ:
        return requires_read_key(endpoint)
    if access is Access.ADMIN:
        return requires_admin_key(endpoint)
    return endpoint


def parse_query(request: Request, model: type[M]) -> M:
    """The request's query parameters as ``model``; InvalidRequest (reason ``query``) naming
    every unknown, repeated or invalid parameter."""
    params = request.query_params
    names = {field.alias or name: field for name, field in model.model_fields.items()}
    problems = [{"name": key, "problem": "unknown parameter"} for key in params if key not in names]
    data: dict[str, Any] = {}
    for key, field in names.items():
        values = params.getlist(key)
        if not values:
            continue
        if repeatable(field.annotation):
            data[key] = values
        elif len(values) > 1:
            problems.append({"name": key, "problem": "given more than once"})
        else:
            data[key] = values[0]
    if problems:
        raise _invalid("query", problems)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise _invalid("query", _problems(error)) from None


async def parse_body(request: Request, model: type[M]) -> M:
    """The request's JSON body as ``model``: 415 for another content type, 413 past
    MAX_BODY_BYTES, InvalidRequest (reason ``body``) for anything but an object of that
    shape (an empty body is an empty object)."""
    content_type = request.headers.get("content-type", "application/json")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType("the body must be application/json", reason="content_type")
    raw = await bounded_body(request, MAX_BODY_BYTES, "body")
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the body is not valid JSON", reason="body") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object", reason="body")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise _invalid("body", _problems(error)) from None


async def bounded_body(request: Request, limit: int, what: str) -> bytes:
    """The request's body, read no further than ``limit`` bytes: ContentTooLarge (413, reason
    ``body_size``) naming ``what`` past it."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise ContentTooLarge(f"the {what} must be at most {limit} bytes", reason="body_size")
    return raw


def json_response(
    content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``content`` (a model, or plain data already in a model's shape) as a JSON answer,
    serialised by pydantic's compiled core (a page of 200 rows costs a fraction of what
    building Python dicts and then JSON text would)."""
    return Response(
        to_json(content),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def repeatable(annotation: Any) -> bool:
    """Whether a field of this type is a parameter that may be given several times."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(repeatable(arg) for arg in get_args(annotation))
    return origin in (list, tuple, set, frozenset)


def _problems(error: ValidationError) -> list[dict[str, str]]:
    # Never the input itself: it is the caller's text, and may be long.
    return [
        {"name": ".".join(str(part) for part in item["loc"]) or "body", "problem": item["msg"]}
        for item in error.errors(include_url=False, include_input=False)
    ]


def _invalid(where: str, problems: list[dict[str, str]]) -> InvalidRequest:
    names = ", ".join(dict.fromkeys(problem["name"] for problem in problems))
    return InvalidRequest(f"invalid {where}: {names}", reason=where, fields=problems)
