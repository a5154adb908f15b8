"""Liveness (the process answers) and readiness (its database and broker answer)."""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.messaging import broker_reachable
from service.web.state import web_state

log = logging.getLogger(__name__)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """200 when both dependencies answer, else 503 naming which one is down."""
    web = web_state(request)
    database_ok, broker_ok = await asyncio.gather(
        run_in_threadpool(database_reachable, web.engine),
        run_in_threadpool(broker_reachable, web.broker),
    )
    checks = {"database": _word(database_ok), "broker": _word(broker_ok)}
    if database_ok and broker_ok:
        return JSONResponse({"status": "ok", **checks})
    down = [name for name, word in checks.items() if word == "down"]
    log.warning("not ready database=%s broker=%s", checks["database"], checks["broker"])
    # A report rather than a raised error: besides "error", the body names every dependency.
    return JSONResponse(
        {"status": "unavailable", "error": f"unavailable: {', '.join(down)}", **checks},
        status_code=503,
    )


def database_reachable(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as error:
        log.warning("database check failed error=%s", type(error).__name__)
        return False
    return True


def _word(ok: bool) -> str:
    return "ok" if ok else "down"


def routes() -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
