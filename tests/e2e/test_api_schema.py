"""The running service answers every operation of its OpenAPI document as the document says.

`strava-ingest serve`, `strava-ingest worker` and `strava-ingest scheduler` in production mode
(PostgreSQL, Redis), with both keys configured and three athletes connected through OAuth,
whose histories the worker has stored. Schemathesis reads /openapi.json from the process
and, for every operation it holds (so every route declared, whichever module declares it),
sends requests generated from the document with no key, a read key and an admin key: valid
ones, also aimed at the stored athletes and activities, must be answered without a 5xx, with
a documented status, content type, headers and body; invalid ones must still never be
answered with a 5xx.

The number of requests is bounded (EXAMPLES), and generation is derandomized, so a run
takes the same time and finds the same things in CI as here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from e2e.processes import connect, scheduler, web, worker
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from launch import wait_until
from schemathesis.checks import not_a_server_error
from schemathesis.core.errors import InvalidSchema
from schemathesis.core.result import Err, Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from support import ADMIN, CLIENT_ID, CLIENT_SECRET, READ, FakeStrava, service_env

from service.emulator import Emulator, EmulatorConfig, RateLimits
from service.emulator.server import EmulatorServer
from service.models import Activity, SyncJob

pytestmark = pytest.mark.e2e

ATHLETES = 3
ACTIVITIES_PER_ATHLETE = 4
HIGH = 1_000_000  # quota is not what this test is about (tests/strava/quota is)
# Requests per operation and key: valid ones, valid ones aimed at stored rows, invalid ones.
EXAMPLES = {"valid": 20, "stored": 10, "invalid": 10}
# An event stream may stay open: it is read for STREAM_SECONDS, then judged on what it sent,
# so each of its requests may take that long.
STREAM_EXAMPLES = {"valid": 3, "stored": 3, "invalid": 3}
STREAM_SECONDS = 2.0
REQUEST_SECONDS = 30.0
# Without a key every request gets the same 401: a few show it.
EXAMPLES_WITHOUT_KEY = 3
KEYS = {"no key": {}, "read key": READ, "admin key": ADMIN}
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Operations that destroy what the others read (disconnecting purges an athlete) run last.
DESTRUCTIVE_SUFFIXES = ("/disconnect",)


@pytest.fixture
def strava() -> Iterator[FakeStrava]:
    """A few athletes with short histories and short tracks, and no rate limit to wait on."""
    emulator = Emulator(
        EmulatorConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            athletes=ATHLETES,
            activities_per_athlete=ACTIVITIES_PER_ATHLETE,
            max_stream_points=30,
            limits=RateLimits(HIGH, HIGH, HIGH, HIGH),
        )
    )
    with EmulatorServer(emulator) as server:
        yield FakeStrava(emulator, server)
    emulator.close()


@pytest.fixture
def service_url(
    strava: FakeStrava, engine: Engine, database_url: str, redis_url: str, tmp_path: Path
) -> Iterator[str]:
    env = service_env(
        database_url,
        strava,
        redis_url,
        QUOTA_LIMIT_SHORT=str(HIGH),
        QUOTA_LIMIT_DAILY=str(HIGH),
        QUOTA_READ_LIMIT_SHORT=str(HIGH),
        QUOTA_READ_LIMIT_DAILY=str(HIGH),
    )
    with (
        worker(env, tmp_path, redis_url),
        scheduler(env, tmp_path, redis_url),
        web(env, tmp_path) as url,
    ):
        yield url


@pytest.fixture
def stored_ids(service_url: str, strava: FakeStrava, engine: Engine) -> dict[str, list[int]]:
    """Every athlete connects through OAuth; once their backfills have finished, the ids a
    path parameter can name: ``athlete_id`` and ``activity_id``."""
    athletes = []
    for athlete_id in strava.emulator.athlete_ids:
        strava.emulator.login(athlete_id)
        athletes.append(connect(service_url))

    def histories_stored() -> list[int] | None:
        with Session(engine) as session:
            jobs = session.exec(select(SyncJob)).all()
            activities = session.exec(select(Activity.id)).all()
        finished = {job.athlete_id for job in jobs if job.status not in ("queued", "running")}
        if finished != set(athletes) or len(activities) < ATHLETES * ACTIVITIES_PER_ATHLETE:
            return None
        return list(activities)

    activities = wait_until(histories_stored, timeout=60, what="the backfills")
    assert isinstance(activities, list)
    return {"athlete_id": athletes, "activity_id": activities}


def test_every_operation_answers_as_the_document_says(
    service_url: str, stored_ids: dict[str, list[int]], subtests: pytest.Subtests
) -> None:
    document = httpx.get(f"{service_url}/openapi.json").json()
    schema = schemathesis.openapi.from_url(f"{service_url}/openapi.json")
    operations = sorted(map(readable, schema.get_all_operations()), key=running_order)
    described = {(path, method) for path, item in document["paths"].items() for method in item}

    assert {(op.path, op.method.lower()) for op in operations} == described
    assert {("/quota", "get"), ("/healthz", "get")} <= described
    for operation in operations:
        raw = document["paths"][operation.path][operation.method.lower()]
        streams = any(
            "text/event-stream" in answer.get("content", {}) for answer in raw["responses"].values()
        )
        for who, key in KEYS.items():
            with subtests.test(operation=operation.label, key=who):
                exercise(operation, key, service_url, stored_ids, streams=streams)


def exercise(
    operation: Any,
    key: dict[str, str],
    url: str,
    stored_ids: dict[str, list[int]],
    *,
    streams: bool,
) -> None:
    """Valid requests (some naming stored rows) are answered as documented; invalid ones
    never get a 5xx."""
    examples = STREAM_EXAMPLES if streams else EXAMPLES
    timeout = STREAM_SECONDS if streams else REQUEST_SECONDS
    valid = operation.as_strategy(schemathesis.GenerationMode.POSITIVE)
    if not key:
        run(valid, EXAMPLES_WITHOUT_KEY, key, url, CONFORMANCE, timeout)
        return
    run(valid, examples["valid"], key, url, CONFORMANCE, timeout)
    aimed = [
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE, path_parameters=values)
        for values in stored_path_parameters(operation, stored_ids)
    ]
    if aimed:
        run(st.one_of(aimed), examples["stored"], key, url, CONFORMANCE, timeout)
    if has_input(operation):
        invalid = operation.as_strategy(schemathesis.GenerationMode.NEGATIVE)
        run(invalid, examples["invalid"], key, url, [not_a_server_error], timeout)


def run(
    cases: st.SearchStrategy[Any],
    examples: int,
    key: dict[str, str],
    url: str,
    checks: list[Any],
    timeout: float,
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def answered_as_documented(case: Any) -> None:
        case.call_and_validate(base_url=url, headers=key, checks=checks, timeout=timeout)

    answered_as_documented()


def readable(result: Ok[Any] | Err[InvalidSchema]) -> Any:
    """The operation, or the error schemathesis found in the document's description of it."""
    if isinstance(result, Err):
        raise result.err()
    return result.ok()


def running_order(operation: Any) -> tuple[bool, bool, str]:
    """Reads first, then writes, then what destroys rows the others read."""
    destructive = operation.path.endswith(DESTRUCTIVE_SUFFIXES)
    return destructive, operation.method.upper() != "GET", operation.path


def stored_path_parameters(
    operation: Any, stored_ids: dict[str, list[int]]
) -> Iterator[dict[str, int]]:
    """Each combination of stored ids for the operation's path parameters, when it has any
    and every one of them names a kind of row we store."""
    names = [parameter.name for parameter in operation.path_parameters]
    if not names or any(name not in stored_ids for name in names):
        return
    for values in itertools.product(*(stored_ids[name] for name in names)):
        yield dict(zip(names, values, strict=True))


def has_input(operation: Any) -> bool:
    return bool(list(operation.path_parameters) or list(operation.query) or list(operation.body))
