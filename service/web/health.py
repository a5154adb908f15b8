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

import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.db import database_reachable
from service.heartbeats import SCHEDULER, WORKER, Beat, HeartbeatStore
from service.liveness import missing, role_states
from service.messaging import broker_reachable
from service.web.state import web_state

log = logging.getLogger(__name__)

# The roles whose absence /readyz reports (the web process answering is the web role).
_WATCHED = (WORKER, SCHEDULER)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """503 naming the dependency that is down; else 200, `ok` or `degraded` naming the
    process roles no heartbeat shows alive."""
    web = web_state(request)
    database_ok, broker_ok, beats = await asyncio.gather(
        run_in_threadpool(database_reachable, web.engine),
        run_in_threadpool(broker_reachable, web.broker),
        run_in_threadpool(live_beats, web.heartbeats),
    )
    checks = {"database": _word(database_ok), "broker": _word(broker_ok)}
    states = role_states(beats or [], _WATCHED)
    now = time.time()
    processes = {role: state.summary(now) for role, state in states.items()}
    gone = missing(states) if beats is not None else list(_WATCHED)
    if database_ok and broker_ok:
        status = "degraded" if gone else "ok"
        return JSONResponse({"status": status, **checks, "processes": processes, "missing": gone})
    down = [name for name, word in checks.items() if word == "down"]
    log.warning("not ready database=%s broker=%s", checks["database"], checks["broker"])
    # A report rather than a raised error: besides "error", the body names every dependency.
    return JSONResponse(
        {
            "status": "unavailable",
            "error": f"unavailable: {', '.join(down)}",
            **checks,
            "processes": processes,
            "missing": gone,
        },
        status_code=503,
    )


def live_beats(store: HeartbeatStore) -> list[Beat] | None:
    """The live heartbeats, or None when the store cannot be read."""
    try:
        return store.alive()
    except redis.RedisError as error:  # its server is away: report it, do not fail the probe
        log.warning("heartbeats unreadable error=%s", type(error).__name__)
        return None


def _word(ok: bool) -> str:
    return "ok" if ok else "down"


def routes() -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
