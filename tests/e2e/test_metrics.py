"""GET /metrics after a full flow, with two web and two worker processes.

Two `serve` and two `worker` processes and a `scheduler` on PostgreSQL and Redis, the emulator
as Strava. The first athlete connects through one web process and is synced by the first
worker; the second worker then takes over (the first stops) and the second athlete connects
through the other web process; a webhook create follows, whose fetch Strava first answers 503.
Whatever process did the work, the Strava calls /metrics reports equal, per endpoint, the calls
the emulator received, and the rejections sent to both web processes add up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import sqlalchemy as sa
from e2e.processes import connect, scheduler, subscribe
from e2e.processes import web as start_web
from launch import DeadlineExceeded, command, free_port, running, wait_until
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from support import (
    ADMIN_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    READ_KEY,
    WEBHOOK_SECRET,
    FakeStrava,
    service_env,
)

from service.emulator import Emulator, EmulatorConfig
from service.emulator.server import EmulatorServer
from service.models import Activity, SyncJob

pytestmark = pytest.mark.e2e

DEADLINE = 60.0
ACTIVITIES = 6
# The endpoints our processes call in this flow, as the emulator counts them.
COMPARED = ("/oauth/token", "/athlete/activities", "/activities/{id}", "/activities/{id}/streams")
ENDPOINT_TEMPLATES = {
    "/oauth/token",
    "/oauth/deauthorize",
    "/athlete",
    "/athlete/activities",
    "/activities/{id}",
    "/activities/{id}/laps",
    "/activities/{id}/streams",
    "/push_subscriptions",
    "/push_subscriptions/{id}",
}
SERIES = (
    "strava_ingest_inbox_events",
    "strava_ingest_inbox_unconfirmed_destructive_events",
    "strava_ingest_inbox_oldest_received_age_seconds",
    "strava_ingest_last_webhook_received_timestamp_seconds",
    "strava_ingest_sync_jobs",
    "strava_ingest_activities",
    "strava_ingest_broker_queue_messages",
    "strava_ingest_broker_queue_oldest_message_age_seconds",
    "strava_ingest_quota_used",
    "strava_ingest_quota_limit",
    "strava_ingest_quota_tier_used",
    "strava_ingest_quota_tier_allowed",
    "strava_ingest_quota_seconds_to_reset",
    "strava_ingest_quota_denials",
    "strava_ingest_strava_throttled",
    "strava_ingest_rejected_requests",
    "strava_ingest_strava_request_duration_seconds",
    "strava_ingest_strava_request_errors",
    "strava_ingest_sse_subscribers",
    "dramatiq_messages",
    "dramatiq_message_errors",
    "dramatiq_message_retries",
    "dramatiq_message_rejects",
    "dramatiq_messages_inprogress",
    "dramatiq_message_duration_milliseconds",
    "strava_ingest_metrics_source_up",
)


@pytest.fixture
def strava() -> Iterator[FakeStrava]:
    emulator = Emulator(
        EmulatorConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            athletes=2,
            activities_per_athlete=ACTIVITIES,
            max_stream_points=30,
            delivery_retry_delay=0.2,
        )
    )
    with EmulatorServer(emulator) as server:
        yield FakeStrava(emulator, server)
    emulator.close()


@contextlib.contextmanager
def worker(env: dict[str, str], tmp_path: Path, name: str, consumers: int) -> Iterator[None]:
    """One `strava-ingest worker` process, ready once ``consumers`` processes beat."""
    heartbeats = redis.Redis.from_url(env["BROKER_URL"])
    try:
        with running(
            command("worker", "--processes", "1", "--threads", "2"),
            env=env,
            cwd=tmp_path,
            log_file=tmp_path / f"{name}.log",
            ready=lambda: heartbeats.zcard("dramatiq:__heartbeats__") >= consumers,
        ):
            yield
    finally:
        heartbeats.close()


def scrape(url: str, key: str | None = ADMIN_KEY) -> dict[str, list[Sample]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def value(families: dict[str, list[Sample]], sample_name: str, **labels: str) -> float:
    """The sum of the samples named ``sample_name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for samples in families.values()
        for sample in samples
        if sample.name == sample_name and labels.items() <= sample.labels.items()
    )


def all_complete(engine: Engine, athlete_id: int) -> bool:
    with Session(engine) as session:
        rows = session.exec(select(Activity).where(Activity.athlete_id == athlete_id)).all()
        jobs = session.exec(select(SyncJob).where(SyncJob.athlete_id == athlete_id)).all()
    return (
        len(rows) >= ACTIVITIES
        and all(row.hydration_status == "complete" for row in rows)
        and bool(jobs)
        and all(job.status == "completed" for job in jobs)
    )


def hydrated_count(engine: Engine) -> int:
    with Session(engine) as session:
        count: int = session.execute(
            sa.select(sa.func.count()).where(col(Activity.hydration_status) == "complete")
        ).scalar_one()
    return count


def test_metrics_add_up_across_two_web_and_two_worker_processes(
    strava: FakeStrava, engine: Engine, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = service_env(database_url, strava, redis_url)
    metrics_port = free_port()
    for folder in ("w1", "w2", "a", "b"):
        (tmp_path / folder).mkdir()
    first_athlete, second_athlete = strava.emulator.athlete_ids
    with contextlib.ExitStack() as processes:
        first_worker = contextlib.ExitStack()
        processes.push(first_worker)
        first_worker.enter_context(worker(env, tmp_path / "w1", "worker-1", consumers=1))
        processes.enter_context(scheduler(env, tmp_path, redis_url))
        web_a = processes.enter_context(
            start_web({**env, "METRICS_PORT": str(metrics_port)}, tmp_path / "a")
        )
        web_b = processes.enter_context(start_web(env, tmp_path / "b"))
        subscribe(web_a, env)

        strava.emulator.login(first_athlete)
        assert connect(web_a) == first_athlete
        wait_until(lambda: all_complete(engine, first_athlete), timeout=DEADLINE, what="sync 1")

        # What the first worker counted reaches the shared totals while it runs (about once
        # a second), before the second takes over and the first stops.
        first_calls = strava.emulator.calls["GET /activities/{id}"]
        wait_until(
            lambda: (
                value(
                    scrape(f"{web_a}/metrics"),
                    "strava_ingest_strava_request_duration_seconds_count",
                    endpoint="/activities/{id}",
                )
                == first_calls
            ),
            timeout=30,
            what="the first worker's counts published",
        )
        processes.enter_context(worker(env, tmp_path / "w2", "worker-2", consumers=2))
        first_worker.close()
        strava.emulator.login(second_athlete)
        assert connect(web_b) == second_athlete
        wait_until(lambda: all_complete(engine, second_athlete), timeout=DEADLINE, what="sync 2")

        strava.emulator.fail_next(1, status=503)
        created = strava.emulator.create_activity(first_athlete)

        def created_complete() -> bool:
            with Session(engine) as session:
                row = session.get(Activity, created["id"])
            return row is not None and row.hydration_status == "complete"

        wait_until(created_complete, timeout=DEADLINE, what="the webhook's activity")

        for url, times in ((web_a, 3), (web_b, 2)):
            for _ in range(times):
                refused = httpx.post(
                    f"{url}/webhooks/strava/{WEBHOOK_SECRET}",
                    content=b"{not json",
                    headers={"Content-Type": "application/json"},
                )
                assert refused.status_code == 400

        # The route's keys: none 401, a read key or a wrong one 403, an admin key 200.
        assert httpx.get(f"{web_b}/metrics").status_code == 401
        read_key = httpx.get(f"{web_b}/metrics", headers={"Authorization": "Bearer " + READ_KEY})
        assert read_key.status_code == 403
        wrong = httpx.get(f"{web_b}/metrics", headers={"Authorization": "Bearer " + "x" * 32})
        assert wrong.status_code == 403

        calls = strava.emulator.calls

        expected = {
            endpoint: calls[f"{'POST' if 'oauth' in endpoint else 'GET'} {endpoint}"]
            for endpoint in COMPARED
        }
        # Every hydration, both syncs and the event, in both worker processes.
        least = hydrated_count(engine) + 2 + 1
        last: dict[str, object] = {}

        def added_up() -> dict[str, list[Sample]] | None:
            families = scrape(f"{web_b}/metrics")
            counted = {
                endpoint: value(
                    families,
                    "strava_ingest_strava_request_duration_seconds_count",
                    endpoint=endpoint,
                )
                for endpoint in COMPARED
            }
            rejected = value(
                families, "strava_ingest_rejected_requests_total", reason="invalid_json"
            )
            # A message is counted once it has finished, after the calls it made.
            messages = {
                "total": value(families, "dramatiq_messages_total"),
                "timed": value(families, "dramatiq_message_duration_milliseconds_count"),
                "in_progress": value(families, "dramatiq_messages_inprogress"),
            }
            last.update(counted=counted, rejected=rejected, messages=messages)
            finished = (
                messages["in_progress"] == 0 and messages["timed"] == messages["total"] >= least
            )
            return families if counted == expected and rejected == 5 and finished else None

        try:
            families = wait_until(added_up, timeout=30, what="every process's counts published")
        except DeadlineExceeded:
            # The figures that never added up, for the failure message.
            pytest.fail(
                f"the counts never added up to {expected}, 5 rejected, {least} messages: {last}"
            )
        assert isinstance(families, dict)

        # Served unauthenticated on METRICS_PORT, by the web process that was given it.
        unauthenticated = scrape(f"http://127.0.0.1:{metrics_port}/metrics", key=None)
        assert (
            value(unauthenticated, "strava_ingest_rejected_requests_total", reason="invalid_json")
            == 5
        )

    missing = [name for name in SERIES if name not in families]
    assert not missing, f"series missing from /metrics: {missing}"

    # Plausible values.
    with Session(engine) as session:
        stored = session.execute(sa.select(sa.func.count()).select_from(Activity)).scalar_one()
    hydrated = hydrated_count(engine)
    assert stored == 2 * ACTIVITIES + 1
    assert value(families, "strava_ingest_activities", hydration_status="complete") == hydrated
    assert value(families, "strava_ingest_sync_jobs", kind="backfill", status="completed") == 2
    assert (
        value(
            families,
            "strava_ingest_inbox_events",
            object_type="activity",
            aspect_type="create",
            status="processed",
        )
        == 1
    )
    assert value(families, "strava_ingest_inbox_unconfirmed_destructive_events") == 0
    assert value(families, "strava_ingest_inbox_oldest_received_age_seconds") == 0
    assert value(families, "strava_ingest_last_webhook_received_timestamp_seconds") > 0
    # The webhook's fetch: Strava's 503, then the retry that succeeded.
    assert value(families, "strava_ingest_strava_request_errors_total", status="503") == 1
    assert value(families, "strava_ingest_strava_throttled_total") == 0
    reads = sum(calls[f"GET {endpoint}"] for endpoint in COMPARED if "oauth" not in endpoint)
    # The day's count: the quarter hour may have turned during the test.
    assert value(families, "strava_ingest_quota_used", bucket="read", window="daily") >= reads
    assert value(families, "strava_ingest_quota_limit", bucket="read", window="short") > 0
    for queue in ("events", "hydrations", "sync"):
        assert value(families, "strava_ingest_broker_queue_messages", queue=queue) == 0
    # Every hydration, both syncs and the event, in both worker processes.
    assert value(families, "strava_ingest_sse_subscribers") == 0
    assert all(sample.value == 1 for sample in families["strava_ingest_metrics_source_up"])

    # Bounded labels: endpoint templates only, and no id anywhere.
    with Session(engine) as session:
        ids = {str(i) for i in session.execute(sa.select(col(Activity.id))).scalars()}
    ids |= {str(first_athlete), str(second_athlete)}
    for samples in families.values():
        for sample in samples:
            assert not ids & set(sample.labels.values()), sample
            if "endpoint" in sample.labels:
                assert sample.labels["endpoint"] in ENDPOINT_TEMPLATES, sample
