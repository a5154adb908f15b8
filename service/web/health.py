"""Liveness (the process answers) and readiness (its database and broker answer)."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.messaging import broker_reachable
from service.web.api_spec import Access, ApiRoute, Operation, json_response
from service.web.state import web_state

log = logging.getLogger(__name__)

Word = Literal["ok", "down"]


class Alive(BaseModel):
    """The process answers."""

    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    """The database and the broker both answer."""

    status: Literal["ok"] = "ok"
    database: Literal["ok"] = Field("ok", description="The database answers.")
    broker: Literal["ok"] = Field("ok", description="The broker answers.")


class NotReady(BaseModel):
    """The database or the broker does not answer."""

    status: Literal["unavailable"] = "unavailable"
    error: str = Field(description="Names each dependency that is down.")
    database: Word = Field(description="Whether the database answers.")
    broker: Word = Field(description="Whether the broker answers.")


async def healthz(request: Request) -> Response:
    """Always 200 while the process serves requests."""
    return json_response(Alive())


async def readyz(request: Request) -> Response:
    """200 when both dependencies answer, else 503 naming which one is down."""
    web = web_state(request)
    database_ok, broker_ok = await asyncio.gather(
        run_in_threadpool(database_reachable, web.engine),
        run_in_threadpool(broker_reachable, web.broker),
    )
    if database_ok and broker_ok:
        return json_response(Ready())
    database, broker = _word(database_ok), _word(broker_ok)
    down = [name for name, word in (("database", database), ("broker", broker)) if word == "down"]
    log.warning("not ready database=%s broker=%s", database, broker)
    # A report rather than a raised error: besides "error", the body names every dependency.
    report = NotReady(error=f"unavailable: {', '.join(down)}", database=database, broker=broker)
    return json_response(report, status_code=503)


def database_reachable(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as error:
        log.warning("database check failed error=%s", type(error).__name__)
        return False
    return True


def _word(ok: bool) -> Word:
    return "ok" if ok else "down"


def routes() -> list[Route]:
    return [
        ApiRoute(
            "/healthz",
            healthz,
            method="GET",
            operation=Operation(
                summary="Liveness", access=Access.PUBLIC, responses={200: Alive}, tags=("health",)
            ),
        ),
        ApiRoute(
            "/readyz",
            readyz,
            method="GET",
            operation=Operation(
                summary="Readiness: the database and the broker answer",
                access=Access.PUBLIC,
                responses={200: Ready, 503: NotReady},
                tags=("health",),
            ),
        ),
    ]
