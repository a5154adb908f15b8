"""The operator's routes (/quota, /stats/webhooks) answer only a bearer key from
ADMIN_API_KEYS, in both modes; without the setting they answer no one. Health stays open."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient
from support import ADMIN, ADMIN_KEY, Deployed, rejected

from service.config import Settings, describe_validation_error
from service.web.api_keys import bearer_key, key_matches

ADMIN_ROUTES = ["/quota", "/stats/webhooks", "/metrics"]
SECOND_KEY = "second-admin-key-abcdefghij"


@pytest.mark.parametrize("route", ADMIN_ROUTES)
def test_an_admin_route_without_a_key_is_unauthorized(deployed: Deployed, route: str) -> None:
    response = deployed.client.get(route)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "error": "an API key is required: Authorization: Bearer <key>",
        "reason": "api_key_missing",
    }


@pytest.mark.parametrize("route", ADMIN_ROUTES)
@pytest.mark.parametrize(
    "authorization", [f"Basic {ADMIN_KEY}", "Bearer", "Bearer ", ADMIN_KEY], ids=repr
)
def test_an_admin_route_with_another_scheme_or_no_key_is_unauthorized(
    deployed: Deployed, route: str, authorization: str
) -> None:
    response = deployed.client.get(route, headers={"authorization": authorization})

    assert response.status_code == 401
    assert response.json()["reason"] == "api_key_missing"


@pytest.mark.parametrize("route", ADMIN_ROUTES)
@pytest.mark.parametrize("key", [ADMIN_KEY[:-1], ADMIN_KEY + "x", ADMIN_KEY.upper(), "x" * 64])
def test_an_admin_route_with_a_wrong_key_is_forbidden(
    deployed: Deployed, route: str, key: str
) -> None:
    response = deployed.client.get(route, headers={"authorization": f"Bearer {key}"})

    assert response.status_code == 403
    assert response.json() == {
        "error": "the API key is not valid for this route",
        "reason": "api_key_wrong",
    }


@pytest.mark.parametrize("route", ADMIN_ROUTES)
def test_an_admin_route_answers_the_right_key(deployed: Deployed, route: str) -> None:
    response = deployed.client.get(route, headers={"authorization": f"bearer  {ADMIN_KEY} "})

    assert response.status_code == 200


@pytest.mark.parametrize("key", [ADMIN_KEY, SECOND_KEY])
def test_every_configured_key_is_accepted(start: Callable[..., TestClient], key: str) -> None:
    client = start(admin_api_keys=f"{ADMIN_KEY}, {SECOND_KEY}")

    response = client.get("/quota", headers={"authorization": f"Bearer {key}"})

    assert response.status_code == 200


@pytest.mark.parametrize("route", ADMIN_ROUTES)
def test_without_admin_api_keys_the_admin_routes_answer_no_one(
    start: Callable[..., TestClient], route: str
) -> None:
    client = start(admin_api_keys=None)

    without = client.get(route)
    with_any = client.get(route, headers=ADMIN)

    assert (without.status_code, with_any.status_code) == (401, 403)
    for response in (without, with_any):
        assert response.json() == {
            "error": "this route is closed: ADMIN_API_KEYS is not set",
            "reason": "api_keys_unset",
        }


def test_admin_rejections_are_counted_per_reason_and_logged(
    deployed: Deployed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="service")
    deployed.client.get("/quota")
    deployed.client.get("/quota", headers={"authorization": "Bearer not-the-key\nforged"})
    deployed.client.get("/stats/webhooks", headers={"authorization": "Bearer wrong"})

    assert rejected(deployed.client) == {"api_key_missing": 1, "api_key_wrong": 2}
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("service")]
    assert sum("reason=api_key_wrong" in message for message in messages) == 2
    assert not [message for message in messages if "not-the-key" in message or "\n" in message]


@pytest.mark.parametrize("route", ["/healthz", "/readyz"])
def test_health_stays_open(deployed: Deployed, route: str) -> None:
    response = deployed.client.get(route)

    assert response.status_code == 200


def test_a_bearer_key_is_read_from_the_authorization_header() -> None:
    assert bearer_key("Bearer abc") == "abc"
    assert bearer_key("bEaReR   abc  ") == "abc"
    assert bearer_key("Basic abc") is None
    assert bearer_key(None) is None


def test_a_key_matches_only_one_of_the_configured_keys_exactly() -> None:
    assert key_matches(SECOND_KEY, [ADMIN_KEY, SECOND_KEY])
    assert not key_matches(SECOND_KEY[:-1], [ADMIN_KEY, SECOND_KEY])
    assert not key_matches("\udc80", [ADMIN_KEY])
    assert not key_matches(ADMIN_KEY, [])


@pytest.mark.parametrize("keys", ["short", f"{ADMIN_KEY},tiny", " , "])
def test_weak_admin_keys_are_a_configuration_error(
    make_settings: Callable[..., Settings], keys: str
) -> None:
    with pytest.raises(ValidationError) as error:
        make_settings(admin_api_keys=keys)

    message = describe_validation_error(error.value)
    assert "ADMIN_API_KEYS: " in message
    assert "tiny" not in message
