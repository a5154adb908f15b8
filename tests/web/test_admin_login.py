"""The operator page's door, in each mode: the login form and its session cookie, the CSRF
token every post carries, and a page closed to everyone without ADMIN_API_KEYS."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from http.cookies import SimpleCookie

import pytest
from admin_support import ORIGIN, csrf_of, log_in
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.testclient import TestClient
from support import ADMIN_KEY, Deployed, FakeStrava, connect_emulator_athlete, rejected

from service.config import Settings
from service.models import SyncJob
from service.web.admin.session import COOKIE, SESSION_SECONDS, SessionKeys


def session_cookie(set_cookie: str) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(set_cookie)
    assert COOKIE in cookie, set_cookie
    return cookie


def test_without_a_session_the_page_sends_the_browser_to_the_login_form(
    deployed: Deployed,
) -> None:
    page = deployed.client.get("/admin", follow_redirects=False)
    form = deployed.client.get("/admin/login")

    assert (page.status_code, page.headers["location"]) == (303, "/admin/login")
    assert form.status_code == 200
    assert form.headers["content-type"].startswith("text/html")
    assert 'action="/admin/login"' in form.text
    assert 'name="key" type="password"' in form.text


def test_the_login_form_lets_only_its_own_nonced_style_in(deployed: Deployed) -> None:
    form = deployed.client.get("/admin/login")

    policy = form.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce is not None
    assert f'<style nonce="{nonce.group(1)}">' in form.text
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert form.headers["x-frame-options"] == "DENY"
    assert deployed.client.get("/admin/login").headers["content-security-policy"] != policy


def test_an_admin_key_logs_in_with_a_signed_cookie_only_the_page_gets(deployed: Deployed) -> None:
    response = deployed.client.post(
        "/admin/login", data={"key": ADMIN_KEY}, headers=ORIGIN, follow_redirects=False
    )

    assert (response.status_code, response.headers["location"]) == (303, "/admin")
    cookie = session_cookie(response.headers["set-cookie"])[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "strict"
    assert cookie["path"] == "/admin"
    assert cookie["max-age"] == str(SESSION_SECONDS)
    assert not cookie["secure"]  # the test client speaks http
    assert ADMIN_KEY not in cookie.value
    page = deployed.client.get("/admin")
    assert page.status_code == 200
    assert "Log out" in page.text


def test_over_https_the_cookie_is_secure(deployed: Deployed) -> None:
    https = TestClient(deployed.client.app, base_url="https://testserver")

    response = https.post(
        "/admin/login",
        data={"key": ADMIN_KEY},
        headers={"origin": "https://testserver"},
        follow_redirects=False,
    )

    assert response.status_code == 303
    assert session_cookie(response.headers["set-cookie"])[COOKIE]["secure"] is True


@pytest.mark.parametrize(
    ("key", "status", "reason", "message"),
    [
        (ADMIN_KEY + "x", 403, "api_key_wrong", "that key is not one of ADMIN_API_KEYS"),
        ("  ", 401, "api_key_missing", "enter an admin key"),
    ],
)
def test_a_wrong_or_missing_key_gets_the_form_again_and_counts_as_a_rejection(
    deployed: Deployed, key: str, status: int, reason: str, message: str
) -> None:
    response = deployed.client.post("/admin/login", data={"key": key}, headers=ORIGIN)

    assert response.status_code == status
    assert "set-cookie" not in response.headers
    assert message in response.text
    assert 'action="/admin/login"' in response.text
    assert rejected(deployed.client) == {reason: 1}
    assert deployed.client.get("/admin", follow_redirects=False).status_code == 303


def test_a_login_posted_from_another_site_is_refused(deployed: Deployed) -> None:
    response = deployed.client.post(
        "/admin/login", data={"key": ADMIN_KEY}, headers={"origin": "https://evil.example"}
    )

    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    assert "another site" in response.text
    assert rejected(deployed.client) == {"cross_origin": 1}


def test_a_forged_expired_or_foreign_cookie_is_no_session(
    deployed: Deployed, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    now = time.time()
    _, good = SessionKeys(settings).issue(now)
    session_id, expires, signature = good.split(".")
    _, expired = SessionKeys(settings).issue(now - SESSION_SECONDS - 1)
    _, foreign = SessionKeys(make_settings(admin_api_keys="another-admin-key-0123456")).issue(now)
    forged = [
        f"{session_id}.{int(expires) + 3600}.{signature}",
        f"{session_id[::-1]}.{expires}.{signature}",
        expired,
        foreign,
        ADMIN_KEY,
        "",
    ]

    answers = []
    for value in forged:
        deployed.client.cookies.set(COOKIE, value, path="/admin")
        answers.append(deployed.client.get("/admin", follow_redirects=False).status_code)
    deployed.client.cookies.set(COOKIE, good, path="/admin")

    assert answers == [303] * len(forged)
    assert deployed.client.get("/admin", follow_redirects=False).status_code == 200


def test_logging_out_deletes_the_cookie(deployed: Deployed) -> None:
    csrf = log_in(deployed.client)

    response = deployed.client.post(
        "/admin/logout", data={"csrf": csrf}, headers=ORIGIN, follow_redirects=False
    )

    assert (response.status_code, response.headers["location"]) == (303, "/admin/login")
    cookie = session_cookie(response.headers["set-cookie"])[COOKIE]
    assert (cookie.value, cookie["max-age"], cookie["path"]) == ("", "0", "/admin")
    assert deployed.client.get("/admin", follow_redirects=False).status_code == 303


@pytest.fixture
def athlete_id(deployed: Deployed, strava: FakeStrava) -> int:
    return connect_emulator_athlete(deployed.engine, strava)


def jobs(engine: Engine, athlete_id: int) -> list[SyncJob]:
    with Session(engine) as session:
        return list(session.exec(select(SyncJob).where(SyncJob.athlete_id == athlete_id)))


def test_a_post_without_the_sessions_csrf_token_is_refused_and_does_nothing(
    deployed: Deployed, athlete_id: int, make_settings: Callable[..., Settings]
) -> None:
    csrf = log_in(deployed.client)
    other_session, _ = SessionKeys(make_settings()).issue(time.time())
    other_token = SessionKeys(make_settings()).csrf_token(other_session)
    url = f"/admin/athletes/{athlete_id}/sync"

    missing = deployed.client.post(url, data={"kind": "full"}, headers=ORIGIN)
    foreign = deployed.client.post(url, data={"kind": "full", "csrf": other_token}, headers=ORIGIN)
    cross_site = deployed.client.post(
        url, data={"kind": "full", "csrf": csrf}, headers={"origin": "https://evil.example"}
    )
    fetched_cross_site = deployed.client.post(
        url, data={"kind": "full", "csrf": csrf}, headers={"sec-fetch-site": "cross-site"}
    )

    for response in (missing, foreign):
        assert response.status_code == 403
        assert "CSRF token is missing or not this session" in response.text
    for response in (cross_site, fetched_cross_site):
        assert response.status_code == 403
        assert "sent from another site" in response.text
    assert jobs(deployed.engine, athlete_id) == []
    assert rejected(deployed.client) == {"csrf": 2, "cross_origin": 2}


def test_a_post_without_a_session_is_refused(deployed: Deployed, athlete_id: int) -> None:
    response = deployed.client.post(
        f"/admin/athletes/{athlete_id}/sync", data={"kind": "full", "csrf": "x"}, headers=ORIGIN
    )

    assert response.status_code == 403
    assert "log in again" in response.text
    assert jobs(deployed.engine, athlete_id) == []


def test_the_pages_script_routes_want_a_session(deployed: Deployed) -> None:
    stream = deployed.client.get("/admin/sync/events")
    event = deployed.client.get("/admin/events/1")

    for response in (stream, event):
        assert response.status_code == 403
        assert response.json()["reason"] == "admin_session"


def test_without_admin_api_keys_the_page_answers_no_one(start: Callable[..., TestClient]) -> None:
    client = start(admin_api_keys=None)

    form = client.get("/admin/login")
    login = client.post("/admin/login", data={"key": ADMIN_KEY}, headers=ORIGIN)
    page = client.get("/admin", follow_redirects=False)
    stream = client.get("/admin/sync/events")

    for response in (form, login, page):
        assert response.status_code == 403
        assert "closed: ADMIN_API_KEYS is not set" in response.text
    assert "set-cookie" not in login.headers
    assert stream.status_code == 403
    assert stream.json()["reason"] == "api_keys_unset"


def test_changing_the_admin_keys_ends_every_session(
    start: Callable[..., TestClient],
) -> None:
    before = start()
    log_in(before)
    cookie = before.cookies.get(COOKIE, path="/admin")
    assert cookie is not None
    after = start(admin_api_keys="a-new-admin-key-0123456789")

    after.cookies.set(COOKIE, cookie, path="/admin")

    assert after.get("/admin", follow_redirects=False).status_code == 303
    assert csrf_of(before.get("/admin").text)
