"""GET /metrics in one web process: the exposition format, with label values bounded
whatever the requests sent (the admin key it needs: tests/web/test_admin_routes.py; many
processes: tests/e2e/test_metrics.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from launch import wait_until
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient
from support import ADMIN, WEBHOOK_SECRET

from service.config import Settings
from service.web.app import create_app

WEBHOOK = f"/webhooks/strava/{WEBHOOK_SECRET}"
SUBSCRIPTION_ID = 120475


def event(**fields: Any) -> dict[str, Any]:
    return {
        "aspect_type": "create",
        "event_time": 1516126040,
        "object_id": 16181809559,
        "object_type": "activity",
        "owner_id": 134815,
        "subscription_id": SUBSCRIPTION_ID,
        "updates": {},
        **fields,
    }


@pytest.fixture
def client(
    make_settings: Callable[..., Settings], engine: Engine, redis_url: str
) -> Iterator[TestClient]:
    settings = make_settings(broker_url=redis_url, strava_subscription_id=SUBSCRIPTION_ID)
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client


def samples(client: TestClient) -> list[Sample]:
    response = client.get("/metrics", headers=ADMIN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def test_event_types_strava_does_not_send_are_one_label_value(client: TestClient) -> None:
    for n in range(20):
        sent = event(object_type=f"thing{n}", aspect_type=f"aspect{n}", object_id=n + 1)
        assert client.post(WEBHOOK, json=sent).status_code == 200
    assert client.post(WEBHOOK, json=event()).status_code == 200

    inbox = [s for s in samples(client) if s.name == "strava_ingest_inbox_events"]

    by_type = {(s.labels["object_type"], s.labels["aspect_type"]): s.value for s in inbox}
    assert by_type == {("other", "other"): 20, ("activity", "create"): 1}


def test_queued_messages_show_as_the_queues_depth_and_age(client: TestClient) -> None:
    for n in range(3):
        assert client.post(WEBHOOK, json=event(object_id=n + 1)).status_code == 200

    def depth() -> float:
        found = samples(client)
        return next(
            s.value
            for s in found
            if s.name == "strava_ingest_broker_queue_messages" and s.labels["queue"] == "events"
        )

    # No worker runs: the hand-off (just after the 200) leaves them waiting.
    wait_until(lambda: depth() == 3, timeout=10, what="three messages queued")
    ages = [
        s.value
        for s in samples(client)
        if s.name == "strava_ingest_broker_queue_oldest_message_age_seconds"
        and s.labels["queue"] == "events"
    ]
    assert len(ages) == 1
    assert 0 <= ages[0] < 60


def test_rejections_are_counted_by_reason(client: TestClient) -> None:
    for _ in range(2):
        refused = client.post(WEBHOOK, content=b"{", headers={"content-type": "application/json"})
        assert refused.status_code == 400

    def rejected() -> float:
        return sum(
            s.value
            for s in samples(client)
            if s.name == "strava_ingest_rejected_requests_total"
            and s.labels["reason"] == "invalid_json"
        )

    wait_until(lambda: rejected() == 2, timeout=10, what="the rejections published")
