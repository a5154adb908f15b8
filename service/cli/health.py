"""`strava-ingest health`: is every part of the deployment there? The web, worker and
scheduler processes (their heartbeats, service/heartbeats.py), the database and the broker.

Prints one line per part and exits 1, naming what is missing, when any part is missing or
down: a probe for a cron job or a monitor. In production it reads the heartbeats from Redis
itself; in embedded mode they live inside `strava-ingest serve`, which it asks (`/readyz`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import click
import httpx

from service.cli.common import settings as load_settings
from service.config import EMBEDDED_BASE_URL, Settings
from service.heartbeats import ROLES, SCHEDULER, WEB, WORKER, RedisHeartbeats
from service.liveness import RoleState, role_states

OK, MISSING, DOWN = "ok", "missing", "down"


@dataclass
class Part:
    """One part of the deployment and what was found."""

    name: str
    status: str
    detail: str = ""
    processes: list[dict[str, Any]] = field(default_factory=list)


@click.command("health")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.option(
    "--url",
    help=f"Embedded mode: the `serve` to ask. Default: PUBLIC_URL, else {EMBEDDED_BASE_URL}.",
)
def health(as_json: bool, url: str | None) -> None:
    """Web, worker and scheduler processes, database and broker: exit 0 when all are there,
    1 (naming them) when any is missing or down."""
    settings = load_settings()
    if settings.broker_url == "memory://":
        parts = embedded_parts(settings, url or settings.public_url or EMBEDDED_BASE_URL)
    else:
        parts = production_parts(settings)
    failing = [part.name for part in parts if part.status != OK]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "status": "failing" if failing else OK,
                    "missing": failing,
                    "parts": {
                        p.name: {"status": p.status, "detail": p.detail, "processes": p.processes}
                        for p in parts
                    },
                }
            )
        )
    else:
        for part in parts:
            click.echo(f"{part.name:<10} {part.status:<8} {part.detail}".rstrip())
    if failing:
        click.echo(f"missing or down: {', '.join(failing)}", err=True)
        raise SystemExit(1)


def production_parts(settings: Settings) -> list[Part]:
    from service.db import create_db_engine, database_reachable
    from service.messaging import broker_reachable, build_broker

    engine = create_db_engine(settings.database_url)
    try:
        database_ok = database_reachable(engine)
    finally:
        engine.dispose()
    broker = build_broker(settings.broker_url)
    try:
        broker_ok = broker_reachable(broker)
    finally:
        broker.close()
    parts = []
    if broker_ok:
        store = RedisHeartbeats.from_url(settings.broker_url)
        try:
            states = role_states(store.alive(), ROLES)
        finally:
            store.close()
        parts = [_role_part(state, settings) for state in states.values()]
    else:
        parts = [
            Part(role, MISSING, "unknown: the heartbeats live in the broker") for role in ROLES
        ]
    return [
        *parts,
        Part("database", OK if database_ok else DOWN),
        Part("broker", OK if broker_ok else DOWN),
    ]


def _role_part(state: RoleState, settings: Settings) -> Part:
    now = time.time()
    if not state.alive:
        return Part(
            state.role,
            MISSING,
            f"no heartbeat in the last {settings.heartbeat_ttl_seconds:g} s",
        )
    processes = [
        {
            "host": b.host,
            "pid": b.pid,
            "started_at": b.started_at,
            "last_beat": b.last_beat,
        }
        for b in state.beats
    ]
    shown = ", ".join(
        f"{b.host}:{b.pid} (up {_age(now - b.started_at)}, beat {_age(now - b.last_beat)} ago)"
        for b in state.beats
    )
    count = len(state.beats)
    return Part(state.role, OK, f"{count} process{'es' if count != 1 else ''}: {shown}", processes)


def embedded_parts(settings: Settings, url: str) -> list[Part]:
    """Embedded mode: every role lives in `serve`; its /readyz reports them."""
    from service.db import create_db_engine, database_reachable

    engine = create_db_engine(settings.database_url)
    try:
        database = Part("database", OK if database_reachable(engine) else DOWN)
    finally:
        engine.dispose()
    try:
        answer = httpx.get(f"{url.rstrip('/')}/readyz", timeout=5.0)
        body = answer.json()
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
    except (httpx.HTTPError, ValueError) as error:
        gone = f"`strava-ingest serve` does not answer at {url}: {type(error).__name__}"
        return [
            Part(WEB, MISSING, gone),
            Part(WORKER, MISSING, "runs inside `serve`"),
            Part(SCHEDULER, MISSING, "runs inside `serve`"),
            database,
            Part("broker", DOWN, "in-process, inside `serve`"),
        ]
    processes = body.get("processes") or {}
    parts = [Part(WEB, OK, f"answers at {url}")]
    for role in (WORKER, SCHEDULER):
        seen = processes.get(role) or {}
        status = OK if seen.get("status") == OK else MISSING
        detail = (
            f"inside `serve`, beat {seen.get('last_beat_seconds_ago')} s ago"
            if status == OK
            else "no heartbeat inside `serve`"
        )
        parts.append(Part(role, status, detail))
    broker_ok = body.get("broker") == OK
    return [*parts, database, Part("broker", OK if broker_ok else DOWN, "in-process")]


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
