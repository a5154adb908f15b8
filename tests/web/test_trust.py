"""Forged, foreign and malformed webhook requests are refused before anything is stored
(docs/strava.md §1.8), each with a JSON error whose reason is counted."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.testclient import TestClient
from support import ADMIN, WEBHOOK_SECRET, Deployed, FakeStrava, LoopbackProxy

from service.config import ConfigError, Settings
from service.db import create_db_engine
from service.ingest.subscription import clear_subscription, save_subscription
from service.models import InboxEvent
from service.web.app import create_app
from service.web.errors import Unavailable
from service.web.trust import MAX_EVENT_BYTES, SubscriptionGate

BARE = "/webhooks/strava"
# Production mode (PostgreSQL): the callback carries WEBHOOK_SECRET.
WEBHOOK = f"{BARE}/{WEBHOOK_SECRET}"
OURS = 120475
EVENT: dict[str, Any] = {
    "aspect_type": "update",
    "event_time": 1516126040,
    "object_id": 16181809559,
    "object_type": "activity",
    "owner_id": 134815,
    "subscription_id": OURS,
    "updates": {"title": "Messy"},
}
PATH_SECRET = "s3cret-path-segment-0123456789"
SIGNING_SECRET = "signing-secret-for-tests"
HANDSHAKE = {
    "hub.mode": "subscribe",
    "hub.challenge": "15f7d1a91c1f40f8a748fd134752feb3",
    "hub.verify_token": "test-verify-token",
}


@pytest.fixture
def app_client(
    make_settings: Callable[..., Settings], engine: Engine, strava: FakeStrava
) -> Iterator[Callable[..., TestClient]]:
    """Starts the app with extra settings, pointed at the emulator (so any call would count)."""
    clients: list[TestClient] = []

    def start(**overrides: Any) -> TestClient:
        overrides.setdefault("strava_subscription_id", OURS)
        settings = make_settings(**strava.urls, subscription_cache_seconds=0, **overrides)
        client = TestClient(create_app(settings, engine=engine))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(app_client: Callable[..., TestClient]) -> TestClient:
    return app_client()


def inbox_rows(engine: Engine) -> list[InboxEvent]:
    with Session(engine) as session:
        return list(session.exec(select(InboxEvent)).all())


def rejected(client: TestClient) -> dict[str, int]:
    counts: dict[str, int] = client.get("/stats/webhooks", headers=ADMIN).json()["rejected"]
    return counts


def signed(body: bytes, secret: str = SIGNING_SECRET, at: int | None = None) -> str:
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


# The subscription id


def test_an_event_for_another_subscription_is_forbidden_and_costs_nothing(
    client: TestClient, engine: Engine, strava: FakeStrava
) -> None:
    response = client.post(WEBHOOK, json={**EVENT, "subscription_id": OURS + 1})

    assert response.status_code == 403
    assert response.json()["reason"] == "wrong_subscription"
    assert "subscription_id" in response.json()["error"]
    assert inbox_rows(engine) == []
    assert sum(strava.emulator.calls.values()) == 0


def test_an_event_for_our_configured_subscription_is_stored(
    client: TestClient, engine: Engine
) -> None:
    response = client.post(WEBHOOK, json=EVENT)

    assert response.status_code == 200
    assert len(inbox_rows(engine)) == 1


def test_the_stored_subscription_id_is_enforced(
    app_client: Callable[..., TestClient], engine: Engine
) -> None:
    save_subscription(engine, OURS, "https://example.test/webhooks/strava")
    client = app_client(strava_subscription_id=None)

    ours = client.post(WEBHOOK, json=EVENT)
    theirs = client.post(WEBHOOK, json={**EVENT, "subscription_id": 1})

    assert (ours.status_code, theirs.status_code) == (200, 403)


def test_the_configured_subscription_id_wins_over_the_stored_one(
    app_client: Callable[..., TestClient], engine: Engine
) -> None:
    save_subscription(engine, OURS + 1, None)
    client = app_client(strava_subscription_id=OURS)

    response = client.post(WEBHOOK, json=EVENT)

    assert response.status_code == 200


def test_every_event_gets_503_while_no_subscription_id_is_known(
    app_client: Callable[..., TestClient], engine: Engine
) -> None:
    client = app_client(strava_subscription_id=None)

    response = client.post(WEBHOOK, json={**EVENT, "subscription_id": 987654})

    assert response.status_code == 503
    assert response.json()["reason"] == "no_subscription"
    assert "subscription" in response.json()["error"]
    assert rejected(client) == {"no_subscription": 1}
    assert inbox_rows(engine) == []


def test_embedded_mode_also_refuses_events_while_no_subscription_id_is_known(
    make_settings: Callable[..., Settings], sqlite_engine: Engine
) -> None:
    settings = make_settings(database_url=sqlite_engine.url.render_as_string())

    with TestClient(create_app(settings, engine=sqlite_engine)) as client:
        response = client.post(WEBHOOK, json=EVENT)

    assert response.status_code == 503
    assert response.json() == {
        "error": "no webhook subscription is known yet; try again later",
        "reason": "no_subscription",
    }
    assert inbox_rows(sqlite_engine) == []


def test_a_cleared_subscription_refuses_events_until_one_is_known_again(
    app_client: Callable[..., TestClient], engine: Engine
) -> None:
    save_subscription(engine, OURS, None)
    client = app_client(strava_subscription_id=None)
    clear_subscription(engine)

    refused = client.post(WEBHOOK, json={**EVENT, "subscription_id": 1})
    save_subscription(engine, OURS, None)
    accepted = client.post(WEBHOOK, json=EVENT)

    assert (refused.status_code, accepted.status_code) == (503, 200)
    assert len(inbox_rows(engine)) == 1


def test_the_stored_subscription_id_is_read_once_per_ttl(engine: Engine) -> None:
    now = [0.0]
    gate = SubscriptionGate(engine, None, ttl=30.0, clock=lambda: now[0])
    save_subscription(engine, OURS, None)
    first = asyncio.run(gate.expected())
    save_subscription(engine, OURS + 1, None)

    within_ttl = asyncio.run(gate.expected())
    now[0] = 31.0
    after_ttl = asyncio.run(gate.expected())

    assert (first, within_ttl, after_ttl) == (OURS, OURS, OURS + 1)


def test_a_database_that_never_answers_the_first_read_gets_503_within_the_timeout() -> None:
    silent = socket.create_server(("127.0.0.1", 0))
    down = create_db_engine(f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/x")
    gate = SubscriptionGate(down, None, ttl=30.0, timeout=0.2)

    async def attempt() -> tuple[float, BaseException | int | None]:
        started = time.monotonic()
        try:
            result: BaseException | int | None = await gate.expected()
        except Unavailable as error:
            result = error
        return time.monotonic() - started, result

    elapsed, result = asyncio.run(attempt())

    down.dispose()
    silent.close()
    assert isinstance(result, Unavailable)
    assert (result.status_code, result.reason) == (503, "database_unavailable")
    assert elapsed < 0.2 + 0.3


def test_a_stalled_database_leaves_the_last_id_read_in_use_within_the_timeout(
    stalling_engine: tuple[Engine, LoopbackProxy],
) -> None:
    proxied, proxy = stalling_engine
    now = [0.0]
    gate = SubscriptionGate(proxied, None, ttl=30.0, timeout=0.2, clock=lambda: now[0])
    save_subscription(proxied, OURS, None)

    async def stall_then_recover() -> tuple[int | None, float, int | None, int | None]:
        first = await gate.expected()
        proxy.flowing.clear()
        now[0] = 31.0  # the cached id is stale: a read is due
        started = time.monotonic()
        during = await gate.expected()
        elapsed = time.monotonic() - started
        proxy.flowing.set()
        now[0] = 31.0 + SubscriptionGate.RETRY_SECONDS
        after = await gate.expected()
        return first, elapsed, during, after

    first, elapsed, during, after = asyncio.run(stall_then_recover())

    assert (first, during, after) == (OURS, OURS, OURS)
    assert elapsed < 0.2 + 0.3


def test_an_event_from_an_unknown_owner_is_stored_without_calling_strava(
    client: TestClient, engine: Engine, strava: FakeStrava
) -> None:
    response = client.post(WEBHOOK, json={**EVENT, "owner_id": 999_999_999})

    assert response.status_code == 200
    assert [row.owner_id for row in inbox_rows(engine)] == [999_999_999]
    assert sum(strava.emulator.calls.values()) == 0


# The secret path segment


def test_an_event_on_the_secret_path_is_stored(
    app_client: Callable[..., TestClient], engine: Engine
) -> None:
    client = app_client(webhook_secret=PATH_SECRET)

    response = client.post(f"{BARE}/{PATH_SECRET}", json=EVENT)

    assert response.status_code == 200
    assert len(inbox_rows(engine)) == 1


def test_the_handshake_is_answered_on_the_secret_path(
    app_client: Callable[..., TestClient],
) -> None:
    client = app_client(webhook_secret=PATH_SECRET)

    response = client.get(f"{BARE}/{PATH_SECRET}", params=HANDSHAKE)

    assert response.json() == {"hub.challenge": HANDSHAKE["hub.challenge"]}


@pytest.mark.parametrize("path", [BARE, f"{BARE}/not-the-secret-segment-at-all"])
def test_a_missing_or_wrong_path_secret_looks_like_an_unknown_path(
    app_client: Callable[..., TestClient], engine: Engine, path: str
) -> None:
    client = app_client(webhook_secret=PATH_SECRET)

    response = client.post(path, json=EVENT)

    assert response.status_code == 404
    assert response.json() == client.get("/nowhere").json()
    assert rejected(client) == {"path_secret": 1}
    assert inbox_rows(engine) == []


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", [BARE, f"{BARE}/not-the-secret-segment-at-all"])
def test_a_missing_or_wrong_path_secret_answers_byte_for_byte_like_an_unknown_route(
    client: TestClient, path: str, method: str
) -> None:
    # The same request id in both: the answers echo it.
    same_id = {"X-Request-ID": "probe-1"}
    unknown = client.request(method, "/nowhere/at-all", json=EVENT, headers=same_id)

    response = client.request(method, path, json=EVENT, headers=same_id)

    assert response.status_code == unknown.status_code == 404
    assert response.headers.raw == unknown.headers.raw
    assert response.content == unknown.content


def test_production_mode_will_not_start_without_a_webhook_secret(
    make_settings: Callable[..., Settings], engine: Engine
) -> None:
    settings = make_settings(webhook_secret=None)

    with pytest.raises(ConfigError) as error:
        create_app(settings, engine=engine)

    assert str(error.value).splitlines()[0] == "invalid configuration:"
    assert str(error.value).splitlines()[1].strip().startswith("WEBHOOK_SECRET: is required")
    assert len(str(error.value).splitlines()) == 2


def test_the_opt_out_serves_the_plain_path_and_warns_at_every_start(
    app_client: Callable[..., TestClient], engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="service.web.app")

    first = app_client(webhook_secret=None, webhook_secret_optout=True)
    app_client(webhook_secret=None, webhook_secret_optout=True)
    response = first.post(BARE, json=EVENT)

    assert response.status_code == 200
    warnings = [r for r in caplog.records if "WEBHOOK_SECRET_OPTOUT" in r.getMessage()]
    assert [r.levelname for r in warnings] == ["WARNING", "WARNING"]


def test_embedded_mode_may_keep_the_plain_path(
    make_settings: Callable[..., Settings], sqlite_engine: Engine
) -> None:
    settings = make_settings(
        database_url=sqlite_engine.url.render_as_string(),
        webhook_secret=None,
        strava_subscription_id=OURS,
    )

    with TestClient(create_app(settings, engine=sqlite_engine)) as client:
        response = client.post(BARE, json=EVENT)

    assert response.status_code == 200
    assert len(inbox_rows(sqlite_engine)) == 1


def test_the_path_secret_never_reaches_our_logs(
    app_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="service")
    client = app_client(webhook_secret=PATH_SECRET)

    client.post(f"{BARE}/{PATH_SECRET}", json=EVENT)
    client.post(f"{BARE}/{PATH_SECRET}", json={"not": "an event"})

    ours = [r.getMessage() for r in caplog.records if r.name.startswith("service")]
    assert ours
    assert not [message for message in ours if PATH_SECRET in message]


def test_the_path_secret_is_masked_in_the_access_log(
    app_client: Callable[..., TestClient],
) -> None:
    app_client(webhook_secret=PATH_SECRET)
    access_log = logging.getLogger("uvicorn.access")
    # What uvicorn's access log writes for a request.
    record = access_log.makeRecord(
        access_log.name,
        logging.INFO,
        __file__,
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", f"{BARE}/{PATH_SECRET}", "1.1", 200),
        None,
    )

    access_log.filter(record)

    assert record.getMessage() == '127.0.0.1:5000 - "POST /webhooks/strava/*** HTTP/1.1" 200'


# Size and content type


def test_a_declared_oversized_body_is_refused(client: TestClient, engine: Engine) -> None:
    body = json.dumps({**EVENT, "padding": "x" * MAX_EVENT_BYTES}).encode()

    response = client.post(WEBHOOK, content=body, headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert response.json()["reason"] == "too_large"
    assert inbox_rows(engine) == []


def test_a_streamed_oversized_body_is_refused(client: TestClient, engine: Engine) -> None:
    def chunks() -> Iterator[bytes]:
        # No Content-Length: only counting while reading can catch it.
        yield b'{"padding": "'
        for _ in range(64):
            yield b"x" * 1024
        yield b'"}'

    response = client.post(WEBHOOK, content=chunks(), headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert inbox_rows(engine) == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json5"]
)
def test_a_body_that_is_not_json_by_its_type_is_refused(
    client: TestClient, engine: Engine, content_type: str
) -> None:
    response = client.post(
        WEBHOOK, content=json.dumps(EVENT), headers={"content-type": content_type}
    )

    assert response.status_code == 415
    assert response.json() == {
        "error": "content type must be application/json",
        "reason": "content_type",
    }
    assert inbox_rows(engine) == []


def test_a_charset_other_than_utf8_is_refused(client: TestClient) -> None:
    response = client.post(
        WEBHOOK,
        content=json.dumps(EVENT),
        headers={"content-type": "application/json; charset=latin-1"},
    )

    assert response.status_code == 415
    assert "charset" in response.json()["error"]


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON; charset=UTF-8", None]
)
def test_json_with_a_utf8_charset_or_no_content_type_is_accepted(
    client: TestClient, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}

    response = client.post(WEBHOOK, content=json.dumps(EVENT), headers=headers)

    assert response.status_code == 200


# The optional signature


def test_a_signature_header_is_ignored_when_no_signing_secret_is_set(client: TestClient) -> None:
    response = client.post(WEBHOOK, json=EVENT, headers={"x-strava-signature": "t=1,v1=00"})

    assert response.status_code == 200


def test_a_correctly_signed_event_is_accepted(app_client: Callable[..., TestClient]) -> None:
    client = app_client(webhook_signing_secret=SIGNING_SECRET)
    body = json.dumps(EVENT).encode()

    response = client.post(
        WEBHOOK,
        content=body,
        headers={"content-type": "application/json", "x-strava-signature": signed(body)},
    )

    assert response.status_code == 200


# Each header is made when its test runs: signed at collection time, it could go stale
# before a long suite reaches it.
@pytest.mark.parametrize(
    ("make_header", "reason"),
    [
        (lambda: None, "signature_missing"),
        (lambda: "sha256=abc", "signature_malformed"),
        (lambda: signed(b"another body"), "signature_mismatch"),
        (lambda: signed(json.dumps(EVENT).encode(), secret="not-ours"), "signature_mismatch"),
        (lambda: signed(json.dumps(EVENT).encode(), at=int(time.time()) - 301), "signature_stale"),
    ],
    ids=["missing", "malformed", "other_body", "other_secret", "stale"],
)
def test_a_missing_wrong_or_stale_signature_is_forbidden(
    app_client: Callable[..., TestClient],
    engine: Engine,
    make_header: Callable[[], str | None],
    reason: str,
) -> None:
    client = app_client(webhook_signing_secret=SIGNING_SECRET)
    header = make_header()
    headers = {"content-type": "application/json"}
    if header is not None:
        headers["x-strava-signature"] = header

    response = client.post(WEBHOOK, content=json.dumps(EVENT).encode(), headers=headers)

    assert response.status_code == 403
    assert response.json()["reason"] == reason
    assert inbox_rows(engine) == []


# Counting


def test_rejections_are_counted_per_reason(client: TestClient) -> None:
    client.post(WEBHOOK, json={**EVENT, "subscription_id": 1})
    client.post(WEBHOOK, json={**EVENT, "subscription_id": 2})
    client.post(WEBHOOK, content=b"{", headers={"content-type": "application/json"})
    client.post(WEBHOOK, content=b"x", headers={"content-type": "text/plain"})
    client.get(WEBHOOK, params={**HANDSHAKE, "hub.verify_token": "guess"})
    client.post(WEBHOOK, json=EVENT)

    stats = client.get("/stats/webhooks", headers=ADMIN).json()

    assert stats["rejected"] == {
        "content_type": 1,
        "invalid_json": 1,
        "wrong_subscription": 2,
        "wrong_verify_token": 1,
    }
    assert stats["accepted"] == 1


# Junk


# Besides ordinary JSON, what PostgreSQL or SQLite cannot store: NUL, lone surrogates (JSON's
# "\ud800"), NaN and ±Infinity (which json.dumps writes and json.loads reads), integers beyond
# 64 bits.
TEXT = st.text(
    alphabet=st.characters() | st.just("\x00") | st.integers(0xD800, 0xDFFF).map(chr),
    max_size=20,
)
NUMBERS = st.integers() | st.integers(2**63 - 2, 2**80) | st.integers(-(2**80), -(2**63) + 1)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.floats() | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
EVENTISH = st.fixed_dictionaries(
    {},
    optional={name: JSON_VALUES | st.just(value) for name, value in EVENT.items()},
)
# A genuine-looking event (recent, ours) whose updates or words are poisoned: if validation let
# anything unstorable through, it would reach the database.
NEAR_NOW = int(time.time())
POISONED = st.fixed_dictionaries(
    {
        **{name: st.just(value) for name, value in EVENT.items()},
        "event_time": st.integers(NEAR_NOW - 1000, NEAR_NOW + 1000),
        "object_type": st.just("activity") | TEXT,
        "updates": st.dictionaries(TEXT, JSON_VALUES, max_size=4),
    }
)
JUNK = st.one_of(
    st.binary(max_size=512),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    EVENTISH.map(lambda value: json.dumps(value).encode()),
    POISONED.map(lambda value: json.dumps(value).encode()),
)


@hypothesis_settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=JUNK, content_type=st.sampled_from([None, "application/json", "text/plain"]))
def test_junk_bodies_never_cause_a_server_error(
    deployed: Deployed, body: bytes, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}

    response = deployed.client.post(deployed.webhook, content=body, headers=headers)

    assert response.status_code in (200, 400, 403, 415), response.text
    assert response.headers["content-type"] == "application/json"
    if response.status_code != 200:
        assert response.json()["error"]
