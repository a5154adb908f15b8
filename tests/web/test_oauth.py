"""The OAuth routes against Strava faked at the HTTP boundary (httpx.MockTransport).

Response bodies follow the recordings in tests/cassettes/oauth/ (docs/strava.md §3.2, §3.3);
tokens and codes are made up.
"""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.testclient import TestClient

from service.config import Settings
from service.ingest.crypto import TokenCipher
from service.models import Athlete, AthleteStatus, SyncJob
from service.strava.client import AsyncStravaClient
from service.web.app import create_app
from service.web.oauth import InvalidState, StateClaims, sign_state, state_key, verify_state

CALLBACK = "/auth/strava/callback"
ATHLETE_ID = 12342176


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

    def __init__(self) -> None:
        self.responses: list[httpx.Response] = []
        self.requests: list[httpx.Request] = []

    def answer(self, status: int, body: dict[str, Any]) -> None:
        self.responses.append(httpx.Response(status, json=body))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.url.path == "/oauth/token"
        return self.responses.pop(0)


@pytest.fixture
def fake_strava() -> FakeStrava:
    return FakeStrava()


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def client(settings: Settings, engine: Engine, fake_strava: FakeStrava) -> Iterator[TestClient]:
    strava = AsyncStravaClient(
        api_url=settings.strava_api_url,
        oauth_url=settings.strava_oauth_url,
        client_id=settings.strava_client_id,
        client_secret="test-client-secret",
        transport=httpx.MockTransport(fake_strava),
    )
    with TestClient(create_app(settings, engine=engine, strava=strava)) as client:
        yield client
        # A client passed to create_app belongs to the caller, who closes it.
        assert client.portal is not None
        client.portal.call(strava.aclose)


def stored_athletes(engine: Engine) -> list[Athlete]:
    with Session(engine) as session:
        return list(session.exec(select(Athlete)).all())


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
    client.get(CALLBACK, params={"state": fresh_state(client), "code": "first", "scope": "read"})

    client.get(
        CALLBACK,
        params={"state": fresh_state(client), "code": "second", "scope": "read,activity:read_all"},
    )

    [athlete] = stored_athletes(engine)
    assert athlete.access_token_enc is not None
    cipher = TokenCipher(settings.token_key.get_secret_value())
    assert cipher.decrypt(athlete.access_token_enc) == "access-2"
    assert athlete.scopes == "read,activity:read_all"


def test_a_redirect_without_scope_stores_no_scopes(
    client: TestClient, fake_strava: FakeStrava, engine: Engine
) -> None:
    fake_strava.answer(200, token_body())

    response = client.get(CALLBACK, params={"state": fresh_state(client), "code": "one-time-code"})

    assert response.json()["scopes"] == []
    [athlete] = stored_athletes(engine)
    assert athlete.scopes == ""


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
        CALLBACK, params={"state": fresh_state(client), "code": "stale-code", "scope": "read"}
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
        CALLBACK, params={"state": fresh_state(client), "code": "one-time-code", "scope": "read"}
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
        CALLBACK, params={"state": fresh_state(client), "code": "one-time-code", "scope": "read"}
    )

    assert response.status_code == 503
    assert "rate limit" in response.json()["error"]


def test_a_token_response_without_athlete_answers_502_and_stores_nothing(
    client: TestClient, fake_strava: FakeStrava, engine: Engine
) -> None:
    fake_strava.answer(200, {key: value for key, value in token_body().items() if key != "athlete"})

    response = client.get(
        CALLBACK, params={"state": fresh_state(client), "code": "one-time-code", "scope": "read"}
    )

    assert response.status_code == 502
    assert "athlete" in response.json()["error"]
    assert stored_athletes(engine) == []


def stored_jobs(engine: Engine) -> list[SyncJob]:
    with Session(engine) as session:
        return list(session.exec(select(SyncJob)).all())


def test_a_connection_starts_the_athletes_backfill(
    client: TestClient, fake_strava: FakeStrava, engine: Engine
) -> None:
    fake_strava.answer(200, token_body())

    response = client.get(CALLBACK, params={"state": fresh_state(client), "code": "c"})

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
    state = sign_state(key, StateClaims("n", int(issued.timestamp()), None))

    with pytest.raises(InvalidState, match="expired"):
        verify_state(key, state, issued + timedelta(minutes=11), timedelta(minutes=10))


def test_a_replayed_callback_is_rejected_and_changes_nothing(
    client: TestClient, fake_strava: FakeStrava, engine: Engine
) -> None:
    fake_strava.answer(200, token_body(access="access-1"))
    params = {"state": fresh_state(client), "code": "once", "scope": "read"}
    client.get(CALLBACK, params=params)

    replay = client.get(CALLBACK, params=params)

    assert replay.status_code == 400
    assert replay.json()["reason"] == "replayed"
    assert len(fake_strava.requests) == 1
    assert len(stored_athletes(engine)) == 1
    assert len(stored_jobs(engine)) == 1


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
    strava = AsyncStravaClient(
        api_url=settings.strava_api_url,
        oauth_url=settings.strava_oauth_url,
        client_id=settings.strava_client_id,
        client_secret="test-client-secret",
        transport=httpx.MockTransport(fake_strava),
    )
    fake_strava.answer(200, token_body())
    with TestClient(create_app(settings, engine=engine, strava=strava)) as client:
        state = fresh_state(client, return_to="https://app.example.com/done?x=1")

        response = client.get(
            CALLBACK, params={"state": state, "code": "c"}, follow_redirects=False
        )
        assert client.portal is not None
        client.portal.call(strava.aclose)

    assert response.status_code == 303
    assert response.headers["location"] == (
        f"https://app.example.com/done?x=1&athlete_id={ATHLETE_ID}&status=connected"
    )
