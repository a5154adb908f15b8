"""Production logs are JSON lines carrying the ids of their work, and no secret: a full flow
(connect with its backfill, `subscription create`, a webhook create hydrated by the worker)
through real `serve`, `worker` and `scheduler` processes, LOG_FORMAT left at production's
default."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.processes import Service, activity_when, connect
from launch import command
from sqlmodel import Session
from support import (
    ADMIN_KEY,
    CLIENT_SECRET,
    READ_KEY,
    TOKEN_KEY,
    VERIFY_TOKEN,
    WEBHOOK_SECRET,
    FakeStrava,
)

from service.ingest.crypto import TokenCipher
from service.models import Athlete, HydrationStatus

pytestmark = pytest.mark.e2e

DEADLINE = 30.0


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the log, parsed; fails naming the first line that is not a JSON object."""
    parsed = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"{path.name} line {number} is not JSON: {line[:300]!r}")
        assert isinstance(record, dict), line
        parsed.append(record)
    return parsed


def test_a_full_flow_logs_json_lines_with_their_ids_and_no_secret(
    production: Service, strava: FakeStrava, tmp_path: Path
) -> None:
    athlete_id = connect(production.url)
    subscribe_log = tmp_path / "subscription.log"
    with subscribe_log.open("wb") as output:
        subprocess.run(
            command(
                "subscription", "create", "--callback-url", f"{production.url}/webhooks/strava"
            ),
            env=production.env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
    created = strava.emulator.create_activity(athlete_id)
    activity_when(
        production,
        created["id"],
        lambda a: a.hydration_status == HydrationStatus.COMPLETE,
        DEADLINE,
    )
    traced = httpx.get(f"{production.url}/readyz", headers={"X-Request-ID": "probe-1"})
    assert traced.headers["x-request-id"] == "probe-1"

    web = json_lines(tmp_path / "web.log")
    worker = json_lines(tmp_path / "worker.log")

    # Every line says when, how bad and where from.
    for record in web + worker:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    # Each HTTP request's lines carry its id; the probe's is the one it sent.
    access = [r for r in web if r["logger"] == "uvicorn.access"]
    assert access
    assert all(r.get("request_id") for r in access)
    assert any(r["request_id"] == "probe-1" and "/readyz" in r["message"] for r in access)
    # The webhook's request knows the inbox event, the athlete and the activity it names.
    webhook = [r for r in access if "/webhooks/strava" in r["message"] and "POST" in r["message"]]
    assert webhook
    assert all(
        (r["athlete_id"], r["activity_id"]) == (athlete_id, created["id"]) and r["inbox_event_id"]
        for r in webhook
    )
    # The OAuth callback's lines know the athlete and the backfill job it started.
    callback = [r for r in access if "/auth/strava/callback" in r["message"]]
    assert [(r["athlete_id"], bool(r["job_id"])) for r in callback] == [(athlete_id, True)]
    # The worker's lines name the message's work: the event and the activity it hydrated,
    # and the sync job with its athlete.
    event_done = [r for r in worker if r["message"].startswith("event done")]
    assert event_done
    assert all(
        (r["athlete_id"], r["activity_id"]) == (athlete_id, created["id"]) and r["inbox_event_id"]
        for r in event_done
    )
    sync_lines = [r for r in worker if r.get("job_id") is not None]
    assert sync_lines
    assert all(r["athlete_id"] == athlete_id for r in sync_lines)

    with Session(production.engine) as session:
        athlete = session.get_one(Athlete, athlete_id)
    cipher = TokenCipher(TOKEN_KEY)
    assert athlete.access_token_enc is not None
    assert athlete.refresh_token_enc is not None
    secrets = {
        "athlete access token": cipher.decrypt(athlete.access_token_enc),
        "athlete refresh token": cipher.decrypt(athlete.refresh_token_enc),
        "stored access token": athlete.access_token_enc,
        "client secret": CLIENT_SECRET,
        "verify token": VERIFY_TOKEN,
        "webhook secret": WEBHOOK_SECRET,
        "token key": TOKEN_KEY,
        "admin key": ADMIN_KEY,
        "read key": READ_KEY,
    }
    for path in (tmp_path / "web.log", tmp_path / "worker.log", subscribe_log):
        text = path.read_text()
        leaked = [name for name, value in secrets.items() if value in text]
        assert not leaked, f"{path.name} holds: {leaked}"
    json_lines(subscribe_log)
