"""Liveness (the process answers) and readiness (its database and broker answer), with the
workers and the scheduler their heartbeats show alive.

Readiness decides whether a load balancer sends this process requests. A web process whose
database and broker answer can take Strava's events (stored, and processed once workers are
back), so missing workers or a missing scheduler do not make it unready: `/readyz` still
answers 200, with `"status": "degraded"` and `"missing"` naming what is gone, for an
operator or a monitor to act on. `strava-ingest health` is the strict check: it exits
non-zero when any process role is missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

import redis
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.db import database_reachable
from service.heartbeats import SCHEDULER, WORKER, Beat, HeartbeatStore
from service.liveness import missing, role_states
from service.messaging import broker_reachable
from service.web.api_spec import Access, ApiRoute, Operation, json_response
from service.web.state import web_state

log = logging.getLogger(__name__)

# The roles whose absence /readyz reports (the web process answering is the web role).
_WATCHED = (WORKER, SCHEDULER)

Word = Literal["ok", "down"]


class Alive(BaseModel):
    """The process answers."""

    status: Literal["ok"] = "ok"


class RoleLiveness(BaseModel):
    """The live processes of one role, as their heartbeats show them (no hosts or pids)."""

    status: Literal["ok", "missing"] = Field(description="Whether any process of it is alive.")
    processes: int = Field(description="Its processes with a live heartbeat.")
    last_beat_seconds_ago: float | None = Field(
        description="Seconds since its latest heartbeat; null when none is alive."
    )


class Ready(BaseModel):
    """The database and the broker both answer; `degraded` names the process roles that no
    heartbeat shows alive."""

    status: Literal["ok", "degraded"]
    database: Literal["ok"] = Field("ok", description="The database answers.")
    broker: Literal["ok"] = Field("ok", description="The broker answers.")
    processes: dict[str, RoleLiveness] = Field(description="The workers and the scheduler.")
    missing: list[str] = Field(description="The roles with no live process.")


class NotReady(BaseModel):
    """The database or the broker does not answer."""

    status: Literal["unavailable"] = "unavailable"
    error: str = Field(description="Names each dependency that is down.")
    database: Word = Field(description="Whether the database answers.")
    broker: Word = Field(description="Whether the broker answers.")
    processes: dict[str, RoleLiveness] = Field(description="The workers and the scheduler.")
    missing: list[str] = Field(description="The roles with no live process.")


async def healthz(request: Request) -> Response:
    """Always 200 while the process serves requests."""
    return json_response(Alive())


async def readyz(request: Request) -> Response:
    """503 naming the dependency that is down; else 200, `ok` or `degraded` naming the
    process roles no heartbeat shows alive."""
    web = web_state(request)
    database_ok, broker_ok, beats = await asyncio.gather(
        run_in_threadpool(database_reachable, web.engine),
        run_in_threadpool(broker_reachable, web.broker),
        run_in_threadpool(live_beats, web.heartbeats),
    )
    states = role_states(beats or [], _WATCHED)
    now = time.time()
    processes = {
        role: RoleLiveness.model_validate(state.summary(now)) for role, state in states.items()
    }
    gone = missing(states) if beats is not None else list(_WATCHED)
    if database_ok and broker_ok:
        status: Literal["ok", "degraded"] = "degraded" if gone else "ok"
        return json_response(Ready(status=status, processes=processes, missing=gone))
    database, broker = _word(database_ok), _word(broker_ok)
    down = [name for name, word in (("database", database), ("broker", broker)) if word == "down"]
    log.warning("not ready database=%s broker=%s", database, broker)
    # A report rather than a raised error: besides "error", the body names every dependency.
    report = NotReady(
        error=f"unavailable: {', '.join(down)}",
        database=database,
        broker=broker,
        processes=processes,
        missing=gone,
    )
    return json_response(report, status_code=503)


def live_beats(store: HeartbeatStore) -> list[Beat] | None:
    """The live heartbeats, or None when the store cannot be read."""
    try:
        return store.alive()
    except redis.RedisError as error:  # its server is away: report it, do not fail the probe
        log.warning("heartbeats unreadable error=%s", type(error).__name__)
        return None


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
                summary="Readiness: the database and the broker answer; the processes alive",
                access=Access.PUBLIC,
                responses={200: Ready, 503: NotReady},
                tags=("health",),
            ),
        ),
    ]
