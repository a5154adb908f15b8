"""The OAuth routes against Strava faked at the HTTP boundary (httpx.MockTransport).

Response bodies follow the recordings in tests/cassettes/oauth/ (docs/strava.md §3.2, §3.3);
tokens and codes are made up.
"""

import base64
import hashlib
import hmac
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import hypothesis
import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st
from launch import answers, command, free_port, running, wait_until
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.testclient import TestClient
from support import TOKEN_KEY, service_env

from service.config import EMBEDDED_BASE_URL, ConfigError, Mode, Settings, bind_url
from service.db import upgrade_schema
from service.ingest.crypto import TokenCipher
from service.models import Athlete, AthleteStatus, OAuthState, SyncJob
from service.strava.client import AsyncStravaClient
from service.web.app import create_app
from service.web.oauth import (
    InvalidState,
    StateClaims,
    browser_digest,
    sign_state,
    state_key,
    verify_state,
)

CALLBACK = "/auth/strava/callback"
ATHLETE_ID = 12342176
# What the redirect's `scope` says when the athlete left every box ticked (docs/strava.md §3.1).
GRANTED = "read,activity:read_all"


def token_body(access: str = "access-1", refresh: str = "refresh-1") -> dict[str, Any]:
    # Shape of token_authorization_code.yaml.
    return {
        "token_type": "Bearer",
        "expires_at": 1542940199,
        "expires_in": 21600,
        "refresh_token": refresh,
        "access_token": access,
        "athlete": {
            "id": ATHLETE_ID,
            "username": "dblockdotorg",
            "resource_state": 2,
            "firstname": "Daniel",
            "lastname": "Block",
            "city": "New York",
        },
    }


# token_invalid_code.yaml
INVALID_CODE = {
    "message": "Bad Request",
    "errors": [{"resource": "RequestToken", "field": "code", "code": "invalid"}],
}
# The 401 fault of docs/strava.md §3.3.
AUTHORIZATION_ERROR = {
    "message": "Authorization Error",
    "errors": [{"resource": "Application", "field": "", "code": "invalid"}],
}


class FakeStrava:
    """Answers POST /oauth/token with the queued responses and records the requests."""

    def __init__(self, fallback: httpx.Response | None = None) -> None:
        self.responses: list[httpx.Response] = []
        self.requests: list[httpx.Request] = []
        # Answered once the queue is empty; without it an unexpected request fails the test.
        self.fallback = fallback

    def answer(self, status: int, body: dict[str, Any]) -> None:
        self.responses.append(httpx.Response(status, json=body))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.url.path == "/oauth/token"
        if not self.responses and self.fallback is not None:
            return self.fallback
        return self.responses.pop(0)


@pytest.fixture
def fake_strava() -> FakeStrava:
    return FakeStrava()


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


def mock_strava(settings: Settings, fake: FakeStrava) -> AsyncStravaClient:
    """A Strava client whose requests `fake` answers; the caller closes it."""
    return AsyncStravaClient(
        api_url=settings.strava_api_url,
        oauth_url=settings.strava_oauth_url,
        client_id=settings.strava_client_id,
        client_secret="test-client-secret",
        transport=httpx.MockTransport(fake),
    )


@pytest.fixture
def client(settings: Settings, engine: Engine, fake_strava: FakeStrava) -> Iterator[TestClient]:
    strava = mock_strava(settings, fake_strava)
    with TestClient(create_app(settings, engine=engine, strava=strava)) as client:
        yield client
        # A client passed to create_app belongs to the caller, who closes it.
        assert client.portal is not None
        client.portal.call(strava.aclose)


def stored_athletes(engine: Engine) -> list[Athlete]:
    with Session(engine) as session:
        return list(session.exec(select(Athlete)).all())


def stored_jobs(engine: Engine) -> list[SyncJob]:
    with Session(engine) as session:
        return list(session.exec(select(SyncJob)).all())


def stored_nonces(engine: Engine) -> list[OAuthState]:
    with Session(engine) as session:
        return list(session.exec(select(OAuthState)).all())


def authorize_query(response: httpx.Response) -> dict[str, list[str]]:
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        "https://www.strava.com/oauth/authorize"
    )
    return parse_qs(location.query)


def fresh_state(client: TestClient, **params: str) -> str:
    """The state /auth/strava/connect signed, as Strava would echo it back."""
    response = client.get("/auth/strava/connect", params=params, follow_redirects=False)
    return authorize_query(response)["state"][0]


def test_connect_redirects_to_strava_with_client_id_redirect_uri_and_scope(
    client: TestClient,
) -> None:
    response = client.get("/auth/strava/connect", follow_redirects=False)

    assert response.status_code == 302
    query = authorize_query(response)
    assert query.pop("state")  # signed; checked by the callback tests
    assert query == {
        "client_id": ["4242"],
        "redirect_uri": ["http://testserver/auth/strava/callback"],
        "response_type": ["code"],
        "approval_prompt": ["auto"],
        "scope": ["read,activity:read_all"],
    }


def test_connect_sends_the_athlete_back_to_the_public_url_when_set(
    make_settings: Callable[..., Settings], engine: Engine
) -> None:
    settings = make_settings(public_url="https://ingest.example.com/")

    with TestClient(create_app(settings, engine=engine)) as client:
        response = client.get("/auth/strava/connect", follow_redirects=False)

    assert authorize_query(response)["redirect_uri"] == [
        "https://ingest.example.com/auth/strava/callback"
    ]


def test_callback_exchanges_the_code_and_reports_the_connected_athlete(
    client: TestClient, fake_strava: FakeStrava
) -> None:
    fake_strava.answer(200, token_body())

    response = client.get(
        CALLBACK,
        params={
            "state": fresh_state(client),
            "code": "one-time-code",
            "scope": "read,activity:read_all",
        },
    )

    assert response.status_code == 200
    body = response.json()
    assert body.pop("sync_job_id") is not None
    assert body == {
        "athlete_id": ATHLETE_ID,
        "scopes": ["read", "activity:read_all"],
        "status": "connected",
    }
    [request] = fake_strava.requests
    # Strava takes the parameters form-encoded or in the query (docs/strava.md §3.2).
    sent = parse_qs(request.url.query.decode()) | parse_qs(request.content.decode())
    assert sent["code"] == ["one-time-code"]
    assert sent["grant_type"] == ["authorization_code"]


def test_callback_stores_the_athlete_with_encrypted_tokens(
    client: TestClient, fake_strava: FakeStrava, engine: Engine, settings: Settings
) -> None:
    fake_strava.answer(200, token_body(access="access-1", refresh="refresh-1"))

    client.get(
        CALLBACK,
        params={
            "state": fresh_state(client),
            "code": "one-time-code",
            "scope": "read,activity:read_all",
        },
    )

    [athlete] = stored_athletes(engine)
    cipher = TokenCipher(settings.token_key.get_secret_value())
    assert athlete.access_token_enc is not None
    assert athlete.refresh_token_enc is not None
    assert athlete.access_token_enc != "access-1"
    assert cipher.decrypt(athlete.access_token_enc) == "access-1"
    assert cipher.decrypt(athlete.refresh_token_enc) == "refresh-1"
    assert athlete.scopes == "read,activity:read_all"
    assert athlete.status == AthleteStatus.CONNECTED


def test_reconnecting_updates_the_athlete_without_duplicating_it(
    client: TestClient, fake_strava: FakeStrava, engine: Engine, settings: Settings
) -> None:
    fake_strava.answer(200, token_body(access="access-1"))
    fake_strava.answer(200, token_body(access="access-2"))
    client.get(
        CALLBACK,
        params={"state": fresh_state(client), "code": "first", "scope": "read,activity:read"},
    )

    client.get(CALLBACK, params={"state": fresh_state(client), "code": "second", "scope": GRANTED})

    [athlete] = stored_athletes(engine)
    assert athlete.access_token_enc is not None
    cipher = TokenCipher(settings.token_key.get_secret_value())
    assert cipher.decrypt(athlete.access_token_enc) == "access-2"
    assert athlete.scopes == "read,activity:read_all"


@pytest.mark.parametrize("scope", [None, "", "read", "read,profile:read_all,activity:write"])
def test_a_grant_that_cannot_read_activities_is_refused_before_the_exchange(
    client: TestClient, fake_strava: FakeStrava, engine: Engine, scope: str | None
) -> None:
    params = {"state": fresh_state(client), "code": "one-time-code"}
    if scope is not None:
        params["scope"] = scope

    response = client.get(CALLBACK, params=params)

    assert response.status_code == 400
    body = response.json()
    assert body["reason"] == "scope"
    assert body["missing"] == ["activity:read"]
    assert "activity:read" in body["error"]
    assert "connect again" in body["error"]
    assert "ticked" in body["error"]
    # The code is never exchanged: no tokens exist, nothing is stored, no backfill starts.
    assert fake_strava.requests == []
    assert stored_athletes(engine) == []
    assert stored_jobs(engine) == []
    assert stored_nonces(engine) == []


def test_either_activity_scope_is_enough_and_unknown_scopes_are_not_stored(
    client: TestClient, fake_strava: FakeStrava, engine: Engine
) -> None:
    fake_strava.answer(200, token_body())

    response = client.get(
        CALLBACK,
        params={
            "state": fresh_state(client),
            "code": "one-time-code",
            "scope": "activity:read,admin,activity:read,read",
        },
    )

    assert response.status_code == 200
    assert response.json()["scopes"] == ["read", "activity:read"]
    [athlete] = stored_athletes(engine)
    assert athlete.scopes == "read,activity:read"


def test_a_denied_authorization_is_rejected_and_stores_nothing(
    client: TestClient, fake_strava: FakeStrava, engine: Engine
) -> None:
    response = client.get(CALLBACK, params={"state": fresh_state(client), "error": "access_denied"})

    assert response.status_code == 400
    assert response.json()["reason"] == "access_denied"
    assert fake_strava.requests == []
    assert stored_athletes(engine) == []


def test_a_callback_without_code_is_rejected_naming_it(
    client: TestClient, fake_strava: FakeStrava
) -> None:
    response = client.get(CALLBACK, params={"state": fresh_state(client), "scope": "read"})

    assert response.status_code == 400
    assert "code" in response.json()["error"]
    assert fake_strava.requests == []


@pytest.mark.parametrize(("status", "fault"), [(400, INVALID_CODE), (401, AUTHORIZATION_ERROR)])
def test_a_code_strava_rejects_answers_400_with_its_faults_and_stores_nothing(
    client: TestClient,
    fake_strava: FakeStrava,
    engine: Engine,
    status: int,
    fault: dict[str, Any],
) -> None:
    fake_strava.answer(status, fault)

    response = client.get(
        CALLBACK, params={"state": fresh_state(client), "code": "stale-code", "scope": GRANTED}
    )

    assert response.status_code == 400
    body = response.json()
    assert "rejected" in body["error"]
    assert body["faults"] == fault["errors"]
    assert "stale-code" not in response.text
    assert stored_athletes(engine) == []


def test_strava_failing_during_the_exchange_answers_502(
    client: TestClient, fake_strava: FakeStrava, engine: Engine
) -> None:
    fake_strava.answer(503, {"message": "Service Unavailable"})

    response = client.get(
        CALLBACK, params={"state": fresh_state(client), "code": "one-time-code", "scope": GRANTED}
    )

    assert response.status_code == 502
    assert "error" in response.json()
    assert stored_athletes(engine) == []


def test_strava_rate_limiting_the_exchange_answers_503(
    client: TestClient, fake_strava: FakeStrava
) -> None:
    # The 429 body of docs/strava.md §2.3.
    fake_strava.answer(
        429,
        {
            "message": "Rate Limit Exceeded",
            "errors": [{"resource": "Application", "field": "rate limit", "code": "exceeded"}],
        },
    )

    response = client.get(
        CALLBACK, params={"state": fresh_state(client), "code": "one-time-code", "scope": GRANTED}
    )

    assert response.status_code == 503
    assert "rate limit" in response.json()["error"]


def test_a_token_response_without_athlete_answers_502_and_stores_nothing(
    client: TestClient, fake_strava: FakeStrava, engine: Engine
) -> None:
    fake_strava.answer(200, {key: value for key, value in token_body().items() if key != "athlete"})

    response = client.get(
        CALLBACK, params={"state": fresh_state(client), "code": "one-time-code", "scope": GRANTED}
    )

    assert response.status_code == 502
    assert "athlete" in response.json()["error"]
    assert stored_athletes(engine) == []


def test_a_connection_starts_the_athletes_backfill(
    client: TestClient, fake_strava: FakeStrava, engine: Engine
) -> None:
    fake_strava.answer(200, token_body())

    response = client.get(
        CALLBACK, params={"state": fresh_state(client), "code": "c", "scope": GRANTED}
    )

    [job] = stored_jobs(engine)
    assert (job.id, job.athlete_id, job.kind, job.status) == (
        response.json()["sync_job_id"],
        ATHLETE_ID,
        "backfill",
        "queued",
    )


def test_a_forged_state_is_rejected_before_any_exchange_and_stores_nothing(
    client: TestClient, fake_strava: FakeStrava, engine: Engine
) -> None:
    payload, _, _signature = fresh_state(client).partition(".")

    response = client.get(CALLBACK, params={"state": f"{payload}.forged", "code": "c"})

    assert response.status_code == 400
    assert response.json()["reason"] == "state"
    assert fake_strava.requests == []
    assert stored_athletes(engine) == []


def test_a_callback_without_state_is_rejected(
    client: TestClient, fake_strava: FakeStrava, engine: Engine
) -> None:
    response = client.get(CALLBACK, params={"code": "c", "scope": "read"})

    assert response.status_code == 400
    assert "state" in response.json()["error"]
    assert fake_strava.requests == []


def test_an_expired_state_is_rejected(settings: Settings) -> None:
    key = state_key(settings)
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    state = sign_state(key, StateClaims("n", int(issued.timestamp()), None, browser_digest("s")))

    with pytest.raises(InvalidState, match="expired"):
        verify_state(key, state, issued + timedelta(minutes=11), timedelta(minutes=10))


def test_a_replayed_callback_is_rejected_and_changes_nothing(
    client: TestClient, fake_strava: FakeStrava, engine: Engine
) -> None:
    fake_strava.answer(200, token_body(access="access-1"))
    params = {"state": fresh_state(client), "code": "once", "scope": GRANTED}
    # The first callback clears the connect cookie; the replay carries it again, so that it
    # is the spent nonce that refuses it.
    cookies = httpx.Cookies(client.cookies)
    client.get(CALLBACK, params=params)
    client.cookies = cookies

    replay = client.get(CALLBACK, params=params)

    assert replay.status_code == 400
    assert replay.json()["reason"] == "replayed"
    assert len(fake_strava.requests) == 1
    assert len(stored_athletes(engine)) == 1
    assert len(stored_jobs(engine)) == 1


# -- the browser that started the connect ------------------------------------------------------


def connect_cookie(response: httpx.Response) -> Morsel[str]:
    """The one cookie /auth/strava/connect set, with its attributes."""
    [header] = response.headers.get_list("set-cookie")
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(header)
    [morsel] = cookie.values()
    return morsel


def test_a_callback_without_the_connect_cookie_is_refused_and_stores_nothing(
    client: TestClient, fake_strava: FakeStrava, engine: Engine
) -> None:
    # The attacker's callback URL, opened by a victim whose browser never started it.
    state = fresh_state(client)
    client.cookies.clear()

    response = client.get(CALLBACK, params={"state": state, "code": "c", "scope": GRANTED})

    assert response.status_code == 400
    assert response.json()["reason"] == "state_browser"
    assert "did not start this connect" in response.json()["error"]
    assert fake_strava.requests == []
    assert stored_athletes(engine) == []
    assert stored_nonces(engine) == []


def test_a_callback_with_another_connects_cookie_is_refused(
    client: TestClient, fake_strava: FakeStrava, engine: Engine
) -> None:
    fresh_state(client)  # the victim's own connect, its cookie kept
    attackers = client.get("/auth/strava/connect", follow_redirects=False)
    client.cookies.delete(connect_cookie(attackers).key)

    response = client.get(
        CALLBACK,
        params={"state": authorize_query(attackers)["state"][0], "code": "c", "scope": GRANTED},
    )

    assert response.status_code == 400
    assert response.json()["reason"] == "state_browser"
    assert fake_strava.requests == []
    assert stored_athletes(engine) == []


def test_a_connect_cookie_holding_another_secret_is_refused(
    client: TestClient, fake_strava: FakeStrava, engine: Engine
) -> None:
    response = client.get("/auth/strava/connect", follow_redirects=False)
    name = connect_cookie(response).key
    client.cookies.clear()
    client.cookies.set(name, "a-secret-the-attacker-planted", path=CALLBACK)

    callback = client.get(
        CALLBACK,
        params={"state": authorize_query(response)["state"][0], "code": "c", "scope": GRANTED},
    )

    assert callback.status_code == 400
    assert callback.json()["reason"] == "state_browser"
    assert fake_strava.requests == []
    assert stored_nonces(engine) == []


def test_a_refused_browser_leaves_the_state_to_the_browser_that_started_it(
    client: TestClient, fake_strava: FakeStrava
) -> None:
    fake_strava.answer(200, token_body())
    params = {"state": fresh_state(client), "code": "c", "scope": GRANTED}
    genuine = httpx.Cookies(client.cookies)
    client.cookies.clear()
    assert client.get(CALLBACK, params=params).status_code == 400

    client.cookies = genuine
    response = client.get(CALLBACK, params=params)

    assert response.status_code == 200
    assert response.json()["status"] == "connected"


def test_the_browser_that_started_the_connect_finishes_it_and_its_cookie_is_cleared(
    client: TestClient, fake_strava: FakeStrava
) -> None:
    fake_strava.answer(200, token_body())
    connect = client.get("/auth/strava/connect", follow_redirects=False)
    name = connect_cookie(connect).key
    assert name in client.cookies

    response = client.get(
        CALLBACK,
        params={"state": authorize_query(connect)["state"][0], "code": "c", "scope": GRANTED},
    )

    assert response.status_code == 200
    cleared = connect_cookie(response)
    assert (cleared.key, cleared["max-age"], cleared["path"]) == (name, "0", CALLBACK)
    assert name not in client.cookies


def test_several_tabs_connecting_at_once_each_finish_with_their_own_cookie(
    client: TestClient, fake_strava: FakeStrava
) -> None:
    fake_strava.answer(200, token_body(access="first"))
    fake_strava.answer(200, token_body(access="second"))
    first, second = fresh_state(client), fresh_state(client)

    late = client.get(CALLBACK, params={"state": second, "code": "c2", "scope": GRANTED})
    early = client.get(CALLBACK, params={"state": first, "code": "c1", "scope": GRANTED})

    assert (late.status_code, early.status_code) == (200, 200)


def test_the_connect_cookie_is_http_only_lax_limited_to_the_callback_and_lives_as_the_state(
    client: TestClient, settings: Settings
) -> None:
    cookie = connect_cookie(client.get("/auth/strava/connect", follow_redirects=False))

    assert cookie.key.startswith("strava_connect_")
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == CALLBACK
    assert cookie["max-age"] == str(settings.oauth_state_seconds)
    assert not cookie["secure"]  # http://testserver: a Secure cookie would never come back


def test_the_connect_cookie_is_secure_when_the_public_url_is_https(
    make_settings: Callable[..., Settings], engine: Engine
) -> None:
    settings = make_settings(public_url="https://ingest.example.com", oauth_state_seconds=120)
    with TestClient(create_app(settings, engine=engine)) as client:
        cookie = connect_cookie(client.get("/auth/strava/connect", follow_redirects=False))

    assert cookie["secure"] is True
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == CALLBACK
    assert cookie["max-age"] == "120"


def test_a_return_url_outside_the_allow_list_is_refused(
    make_settings: Callable[..., Settings], engine: Engine
) -> None:
    settings = make_settings(oauth_return_urls="https://app.example.com/done")

    with TestClient(create_app(settings, engine=engine)) as client:
        response = client.get(
            "/auth/strava/connect",
            params={"return_to": "https://app.example.com.evil.net/done"},
            follow_redirects=False,
        )

    assert response.status_code == 400
    assert response.json()["reason"] == "return_to"


def test_an_allowed_return_url_receives_the_athlete_after_the_callback(
    make_settings: Callable[..., Settings], engine: Engine, fake_strava: FakeStrava
) -> None:
    settings = make_settings(oauth_return_urls="https://app.example.com/done")
    strava = mock_strava(settings, fake_strava)
    fake_strava.answer(200, token_body())
    with TestClient(create_app(settings, engine=engine, strava=strava)) as client:
        state = fresh_state(client, return_to="https://app.example.com/done?x=1")

        response = client.get(
            CALLBACK,
            params={"state": state, "code": "c", "scope": GRANTED},
            follow_redirects=False,
        )
        assert client.portal is not None
        client.portal.call(strava.aclose)

    assert response.status_code == 303
    assert response.headers["location"] == (
        f"https://app.example.com/done?x=1&athlete_id={ATHLETE_ID}&status=connected"
    )


# -- return_to ---------------------------------------------------------------------------------

ALLOWED = "https://app.example.com/ok"


@pytest.fixture
def allow_listed(make_settings: Callable[..., Settings], engine: Engine) -> Iterator[TestClient]:
    settings = make_settings(oauth_return_urls=f"{ALLOWED},http://localhost:3000/")
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client


@pytest.mark.parametrize(
    "return_to",
    [
        "https://app.example.com/okevil",
        "https://app.example.com/ok/../../admin",
        "https://app.example.com/ok/%2e%2e/admin",
        "https://app.example.com/ok/%2E%2E",
        "https://app.example.com/ok/./x",
        "https://app.example.com/ok/x%2f..%2f..%2fadmin",
        "https://app.example.com/ok/%252e%252e/admin",
        "https://app.example.com/ok/..;x/admin",
        "https://app.example.com/ok\\..\\admin",
        "https://app.example.com/ok/%5c..%5cadmin",
        "https://app.example.com.evil.net/ok",
        "https://evil.net/ok",
        "http://app.example.com/ok",
        "https://app.example.com:8443/ok",
        "javascript://app.example.com/ok",
        "//app.example.com/ok",
        "/ok",
        "https://app.example.com@evil.net/ok",
        "https://evil.net@app.example.com/ok",
        "https://user:pw@app.example.com/ok",
        "https://evil.net\\@app.example.com/ok",
        "https://app.example.com/ok/\r\nSet-Cookie:x=1",
        "https://app.example.com/ok/\x00",
        "https://app.example.com/ok/é",
        "https://[app.example.com/ok",
        "https://app.example.com:99999/ok",
        "https://app.example.com/ok/" + "x" * 1100,
    ],
)
def test_a_return_url_outside_the_allowed_paths_is_refused_naming_return_to(
    allow_listed: TestClient, return_to: str
) -> None:
    response = allow_listed.get(
        "/auth/strava/connect", params={"return_to": return_to}, follow_redirects=False
    )

    assert response.status_code == 400
    body = response.json()
    assert body["reason"] == "return_to"
    assert body["error"].startswith("return_to ")


@pytest.mark.parametrize(
    "return_to",
    [
        "https://app.example.com/ok",
        "https://app.example.com/ok/",
        "https://app.example.com/ok/done?x=1",
        "https://APP.example.com:443/ok/x#top",
        "http://localhost:3000/anything/below",
    ],
)
def test_a_return_url_at_or_below_an_allowed_one_is_accepted(
    allow_listed: TestClient, return_to: str
) -> None:
    response = allow_listed.get(
        "/auth/strava/connect", params={"return_to": return_to}, follow_redirects=False
    )

    assert response.status_code == 302
    assert authorize_query(response)["state"]


def test_a_signed_return_url_no_longer_allowed_is_refused_at_the_callback(
    make_settings: Callable[..., Settings], engine: Engine, fake_strava: FakeStrava
) -> None:
    before = make_settings(oauth_return_urls=ALLOWED)
    with TestClient(create_app(before, engine=engine)) as client:
        state = fresh_state(client, return_to=f"{ALLOWED}/x")
        cookies = client.cookies
    after = make_settings(oauth_return_urls="https://other.example.com/")

    with TestClient(create_app(after, engine=engine), cookies=cookies) as client:
        response = client.get(
            CALLBACK, params={"state": state, "code": "c", "scope": GRANTED}, follow_redirects=False
        )

    assert response.status_code == 400
    assert response.json()["reason"] == "return_to"
    assert stored_athletes(engine) == []


def test_a_malformed_allow_list_fails_the_configuration(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ValueError, match="oauth_return_urls"):
        make_settings(oauth_return_urls="https://app.example.com/ok?x=1")


# -- state -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        "é",
        "ünïcödé.ßignature",
        "abc.\u2028" + "x" * 42,
        "a" * 5000 + "." + "b" * 43,
        "no-dot-at-all",
        "a.short",
        "a.b.c",
        " ",
        "%00.%00",
    ],
)
def test_a_malformed_state_is_a_400_naming_state(
    client: TestClient, fake_strava: FakeStrava, engine: Engine, state: str
) -> None:
    response = client.get(CALLBACK, params={"state": state, "code": "c", "scope": GRANTED})

    assert response.status_code == 400
    assert response.json()["reason"] == "state"
    assert fake_strava.requests == []
    assert stored_nonces(engine) == []


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'{"n": 1, "t": 0, "r": null, "b": "' + b"x" * 43 + b'"}',
        b'{"n": "x", "t": "0", "r": null, "b": "' + b"x" * 43 + b'"}',
        b'{"n": "x", "t": 0, "r": null}',
        b'{"n": "x", "t": 0, "r": null, "b": "short"}',
        b'{"n": "x; Path=/", "t": 0, "r": null, "b": "' + b"x" * 43 + b'"}',
    ],
)
def test_a_signed_payload_of_the_wrong_shape_is_malformed(
    settings: Settings, payload: bytes
) -> None:
    key = state_key(settings)
    encoded = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    signature = hmac.new(key, encoded.encode(), hashlib.sha256).digest()
    state = f"{encoded}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"

    with pytest.raises(InvalidState, match="malformed"):
        verify_state(key, state, datetime.now(UTC), timedelta(minutes=10))


SECOND_KEY = Fernet.generate_key().decode()


def test_a_state_signed_before_a_token_key_rotation_verifies_after_it(
    make_settings: Callable[..., Settings], engine: Engine, fake_strava: FakeStrava
) -> None:
    before = make_settings()
    with TestClient(create_app(before, engine=engine)) as client:
        state = fresh_state(client)
        cookies = client.cookies
    # The rotation: a new key prepended to TOKEN_KEY, the service restarted.
    after = make_settings(token_key=f"{SECOND_KEY},{TOKEN_KEY}")
    fake_strava.answer(200, token_body())

    strava = mock_strava(after, fake_strava)
    with TestClient(create_app(after, engine=engine, strava=strava), cookies=cookies) as c:
        response = c.get(CALLBACK, params={"state": state, "code": "c", "scope": GRANTED})
        assert c.portal is not None
        c.portal.call(strava.aclose)

    assert response.status_code == 200
    assert response.json()["status"] == "connected"
    assert state_key(before) == state_key(after)


def test_the_state_key_changes_with_the_client_secret(
    make_settings: Callable[..., Settings],
) -> None:
    assert state_key(make_settings()) != state_key(make_settings(strava_client_secret="other"))


# -- where Strava sends the athlete back ----------------------------------------------------------


def test_production_mode_without_public_url_fails_at_start_up_naming_it(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(public_url=None)
    assert settings.mode is Mode.PRODUCTION

    with pytest.raises(ConfigError, match="PUBLIC_URL: is required in production mode"):
        create_app(settings)


def test_the_serve_command_refuses_production_without_public_url(
    database_url: str, tmp_path: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if key != "PUBLIC_URL"}
    env.update(service_env(database_url))

    result = subprocess.run(
        command("serve"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,  # a server that starts instead of refusing fails the test, never hangs it
    )

    assert result.returncode != 0
    assert "PUBLIC_URL: is required in production mode" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_forged_host_header_never_builds_the_redirect_in_production(
    client: TestClient,
) -> None:
    response = client.get(
        "/auth/strava/connect", headers={"Host": "evil.example"}, follow_redirects=False
    )

    [redirect_uri] = authorize_query(response)["redirect_uri"]
    assert redirect_uri == "http://testserver/auth/strava/callback"
    assert "evil" not in response.headers["location"]


def test_embedded_mode_without_public_url_sends_the_athlete_to_its_default_address(
    make_settings: Callable[..., Settings], sqlite_engine: Engine
) -> None:
    settings = make_settings(database_url=str(sqlite_engine.url), public_url=None)
    assert settings.mode is Mode.EMBEDDED

    with TestClient(create_app(settings, engine=sqlite_engine)) as client:
        response = client.get(
            "/auth/strava/connect", headers={"Host": "evil.example"}, follow_redirects=False
        )

    assert authorize_query(response)["redirect_uri"] == [
        f"{EMBEDDED_BASE_URL}/auth/strava/callback"
    ]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("0.0.0.0", "http://127.0.0.1:8000"),  # noqa: S104 - a bind address as input
        ("::", "http://[::1]:8000"),
        ("ingest.local", "http://ingest.local:8000"),
    ],
)
def test_embedded_serve_derives_its_address_from_the_bind_not_from_requests(
    host: str, expected: str
) -> None:
    assert bind_url(host, 8000) == expected


def test_scopes_that_cannot_read_activities_fail_the_configuration(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ValueError, match="activity:read"):
        make_settings(oauth_scopes="read,profile:read_all")


@dataclass
class Served:
    url: str
    log: Path


@pytest.fixture(scope="module")
def embedded_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`strava-ingest serve` in embedded mode, without PUBLIC_URL."""
    workdir = tmp_path_factory.mktemp("embedded")
    database_url = f"sqlite:///{workdir / 'strava_ingest.db'}"
    upgrade_schema(database_url)
    env = {key: value for key, value in os.environ.items() if key != "PUBLIC_URL"}
    env.update(service_env(database_url))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "web.log"
    with running(
        command("serve", "--port", str(port)),
        env=env,
        cwd=workdir,
        log_file=log,
        ready=lambda: answers(f"{url}/healthz"),
    ):
        yield Served(url, log)


def test_embedded_serve_sends_the_athlete_back_to_its_own_address_whatever_the_host_header(
    embedded_serve: Served,
) -> None:
    response = httpx.get(
        f"{embedded_serve.url}/auth/strava/connect", headers={"Host": "evil.example"}
    )

    assert response.status_code == 302
    assert authorize_query(response)["redirect_uri"] == [
        f"{embedded_serve.url}/auth/strava/callback"
    ]


def test_a_callback_error_cannot_forge_a_log_line(embedded_serve: Served) -> None:
    response = httpx.get(f"{embedded_serve.url}{CALLBACK}?error=x%0AINFO%20forged%20line")
    assert response.status_code == 400

    def declined() -> list[str]:
        lines = embedded_serve.log.read_text(errors="replace").splitlines()
        return [line for line in lines if "oauth callback declined" in line]

    [line] = wait_until(declined, timeout=10, what="the declined callback's log line")  # type: ignore[misc]
    assert line.endswith("error=x\\nINFO forged line")
    assert not any(
        line.startswith("INFO forged")
        for line in embedded_serve.log.read_text(errors="replace").splitlines()
    )


# -- any query string -----------------------------------------------------------------------------

query_value = st.one_of(st.none(), st.text(max_size=80), st.text(max_size=5000))


def mostly(value: str | None) -> st.SearchStrategy[str | None]:
    """`value` three times in four, else any text (or no parameter): a third of the examples
    get as far as the token exchange, the others stop at some check."""
    return st.one_of(st.just(value), st.just(value), st.just(value), query_value)


@given(data=st.data())
@hypothesis.settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
def test_no_query_string_gives_a_server_error(
    make_settings: Callable[..., Settings], engine: Engine, data: st.DataObject
) -> None:
    settings = make_settings(oauth_return_urls=ALLOWED)
    fake = FakeStrava(fallback=httpx.Response(200, json=token_body()))
    strava = mock_strava(settings, fake)
    with TestClient(create_app(settings, engine=engine, strava=strava)) as c:
        return_to = data.draw(st.one_of(mostly(f"{ALLOWED}/x"), mostly(None)), label="return_to")
        connect = c.get(
            "/auth/strava/connect",
            params={} if return_to is None else {"return_to": return_to},
            follow_redirects=False,
        )
        assert connect.status_code < 500
        signed = authorize_query(connect)["state"][0] if connect.status_code == 302 else None
        realistic = {"state": signed, "code": "one-time-code", "scope": GRANTED, "error": None}
        params: dict[str, str] = {}
        for name in ("state", "code", "scope", "error", "return_to"):
            value = data.draw(mostly(realistic.get(name)), label=name)
            if value is not None:
                params[name] = value
        callback = c.get(CALLBACK, params=params, follow_redirects=False)
        assert c.portal is not None
        c.portal.call(strava.aclose)

    assert callback.status_code < 500, callback.text
    hypothesis.event(f"callback {callback.status_code}")
