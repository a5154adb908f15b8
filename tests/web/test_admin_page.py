"""What the operator page shows and what its buttons do, in each mode, logged in.

The web app runs with its lifespan (TestClient) on PostgreSQL or SQLite and the in-process
broker: nothing consumes what the buttons queue, so a started job stays queued and a replayed
event `enqueued` while the test looks. The live parts (the progress stream, a replayed event
turning processed) run in a browser against real processes: tests/e2e/test_admin_page.py.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import cast

import pytest
from admin_support import ORIGIN, count_in_row, log_in
from sqlmodel import Session, select
from support import (
    SUBSCRIPTION_ID,
    Deployed,
    FakeStrava,
    connect_emulator_athlete,
    inbox_row,
    inbox_statuses,
)

from service.ingest import job_log
from service.ingest.subscription import save_subscription
from service.models import InboxStatus, LogLevel, SyncJob, SyncStatus, utcnow
from service.strava.quota import Tier
from service.web.state import WEB_STATE_KEY, WebState

UNKNOWN = 987654321


def web_of(deployed: Deployed) -> WebState:
    return cast(WebState, getattr(deployed.client.app.state, WEB_STATE_KEY))


@pytest.fixture
def athlete_id(deployed: Deployed, strava: FakeStrava) -> int:
    return connect_emulator_athlete(deployed.engine, strava)


@pytest.fixture
def csrf(deployed: Deployed) -> str:
    return log_in(deployed.client)


def jobs(deployed: Deployed, athlete_id: int) -> list[SyncJob]:
    with Session(deployed.engine) as session:
        query = select(SyncJob).where(SyncJob.athlete_id == athlete_id).order_by(SyncJob.id)
        return list(session.exec(query))


def test_the_overview_shows_every_section_without_asking_strava(
    deployed: Deployed, strava: FakeStrava, athlete_id: int, csrf: str
) -> None:
    now = utcnow()
    save_subscription(deployed.engine, SUBSCRIPTION_ID, f"http://testserver{deployed.webhook}")
    failed = inbox_row(deployed.engine, InboxStatus.FAILED, received_at=now, last_error="boom 503")
    unconfirmed = inbox_row(
        deployed.engine,
        InboxStatus.UNCONFIRMED,
        received_at=now - timedelta(minutes=1),
        reason="Strava still lists the activity",
    )
    inbox_row(deployed.engine, InboxStatus.PROCESSED, received_at=now - timedelta(minutes=2))
    quota = web_of(deployed).quota
    for _ in range(3):
        quota.reserve(Tier.WEBHOOK, "read")
    calls = sum(strava.emulator.calls.values())

    page = deployed.client.get("/admin")

    html = page.text
    assert page.status_code == 200
    assert sum(strava.emulator.calls.values()) == calls
    # Athletes, each with a progress bar and the buttons.
    assert f'<tr data-athlete="{athlete_id}" data-phase="none">' in html
    assert f'action="/admin/athletes/{athlete_id}/sync"' in html
    # The quota: every bucket and window with its reset, and a bar per window used.
    for bucket in ("overall", "read"):
        for window in ("short", "daily"):
            assert f'data-window="{bucket}-{window}"' in html
    read_today = re.search(r'<tr data-window="read-daily">.*?</tr>', html, re.S)
    assert read_today is not None
    assert '<meter min="0" max="1000" value="3"' in read_today.group(0)
    charts = re.findall(r'<figure class="chart" data-chart="(\w+)">(.*?)</figure>', html, re.S)
    assert [bucket for bucket, _ in charts] == ["overall", "read"]
    assert all(svg.count('<rect class="bar"') == 1 for _, svg in charts)
    assert "requests per 15-minute window, last 24 h: 3 in all" in html
    # The subscription as stored, the processes, the inbox by status.
    for check in ("listed", "callback", "subscription_id", "last_event"):
        assert f'<li data-check="{check}"><span class="badge ok">ok</span>' in html
    assert '<tr data-role="web"><td>web</td>' in html
    assert count_in_row(html, "data-status", "failed") == 1
    assert count_in_row(html, "data-status", "unconfirmed") == 1
    assert count_in_row(html, "data-status", "processed") == 1
    # Failed and unconfirmed events, each with its reason and a replay button.
    for event_id, why in ((failed, "boom 503"), (unconfirmed, "Strava still lists the activity")):
        row = re.search(rf'<tr data-event="{event_id}">(.*?)</tr>', html, re.S)
        assert row is not None
        assert why in row.group(1)
        assert f'action="/admin/events/{event_id}/replay"' in row.group(1)
    assert html.count(f'name="csrf" value="{csrf}"') >= 4
    # Where the page's stream resumes: what changes after the page was read is not missed.
    assert re.search(r'<span id="live" [^>]*data-after="\d+-\d+"', html)


def test_the_pages_stream_refuses_a_position_that_is_no_event_id(
    deployed: Deployed, csrf: str
) -> None:
    response = deployed.client.get("/admin/sync/events?after=yesterday")

    assert response.status_code == 400
    assert response.json()["error"].startswith("after must be an event id of this stream")


def test_what_a_request_sends_is_shown_escaped(deployed: Deployed, csrf: str) -> None:
    inbox_row(
        deployed.engine,
        InboxStatus.FAILED,
        received_at=utcnow(),
        last_error='<script>alert("x")</script>',
    )

    html = deployed.client.get("/admin").text

    assert '<script>alert("x")' not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_the_start_button_starts_a_job_and_a_second_click_joins_it(
    deployed: Deployed, athlete_id: int, csrf: str
) -> None:
    url = f"/admin/athletes/{athlete_id}/sync"
    form = {"csrf": csrf, "kind": "incremental", "back": "overview"}

    started = deployed.client.post(url, data=form, headers=ORIGIN, follow_redirects=False)
    again = deployed.client.post(url, data=form, headers=ORIGIN)

    assert started.status_code == 303
    assert started.headers["location"].startswith("/admin?notice=sync_started")
    (job,) = jobs(deployed, athlete_id)
    assert job.status == SyncStatus.QUEUED
    assert again.status_code == 200
    assert f"Athlete {athlete_id} has a sync under way already" in again.text
    assert len(jobs(deployed, athlete_id)) == 1
    page = deployed.client.get(started.headers["location"])
    assert f"Athlete {athlete_id}: incremental sync started." in page.text
    assert f'{job.kind} #{job.id} <span class="badge queued">queued</span>' in page.text


def test_the_cancel_button_cancels_the_job_and_its_log_shows_it(
    deployed: Deployed, athlete_id: int, csrf: str
) -> None:
    deployed.client.post(
        f"/admin/athletes/{athlete_id}/sync",
        data={"csrf": csrf, "kind": "full", "back": "athlete"},
        headers=ORIGIN,
    )

    cancelled = deployed.client.post(
        f"/admin/athletes/{athlete_id}/sync/cancel",
        data={"csrf": csrf, "back": "athlete"},
        headers=ORIGIN,
    )
    nothing_left = deployed.client.post(
        f"/admin/athletes/{athlete_id}/sync/cancel", data={"csrf": csrf}, headers=ORIGIN
    )

    (job,) = jobs(deployed, athlete_id)
    assert job.status == SyncStatus.CANCELLED
    assert cancelled.url.path == f"/admin/athletes/{athlete_id}"
    assert f"The sync of athlete {athlete_id} was cancelled." in cancelled.text
    assert re.search(r'<td><span class="badge warning">warning</span></td>\s*<td>cancelled</td>',
                     cancelled.text)  # fmt: skip
    assert f"Athlete {athlete_id} has no sync under way." in nothing_left.text


def test_the_athlete_page_shows_the_sync_and_the_job_log(
    deployed: Deployed, athlete_id: int, csrf: str
) -> None:
    deployed.client.post(
        f"/admin/athletes/{athlete_id}/sync", data={"csrf": csrf, "kind": "full"}, headers=ORIGIN
    )
    (job,) = jobs(deployed, athlete_id)
    assert job.id is not None
    for page in range(1, 4):
        job_log.write(
            deployed.engine,
            job.id,
            athlete_id,
            LogLevel.INFO,
            f"page {page}: 200 listed, 200 new, 0 updated",
            {"page": page},
            now=utcnow(),
        )

    page = deployed.client.get(f"/admin/athletes/{athlete_id}")
    unknown = deployed.client.get(f"/admin/athletes/{UNKNOWN}")
    no_such_job = deployed.client.get(f"/admin/athletes/{athlete_id}?job={job.id + 1}")

    assert page.status_code == 200
    assert f"Job log: full_refresh #{job.id}" in page.text
    messages = re.findall(r"<td>(page \d: [^<]+)</td>", page.text)
    assert messages == [f"page {n}: 200 listed, 200 new, 0 updated" for n in (1, 2, 3)]
    assert f'<section id="sync" data-athlete="{athlete_id}" data-phase="listing">' in page.text
    assert '<td class="num" data-counter="listed">0</td>' in page.text
    assert (unknown.status_code, no_such_job.status_code) == (404, 404)
    assert f"athlete {UNKNOWN} is unknown" in unknown.text


def test_the_start_button_of_an_unknown_athlete_is_a_404(deployed: Deployed, csrf: str) -> None:
    response = deployed.client.post(
        f"/admin/athletes/{UNKNOWN}/sync", data={"csrf": csrf}, headers=ORIGIN
    )

    assert response.status_code == 404
    assert f"athlete {UNKNOWN} is unknown" in response.text


def test_the_replay_button_re_drives_one_event_and_the_page_follows_it(
    deployed: Deployed, csrf: str
) -> None:
    now = utcnow()
    failed = inbox_row(deployed.engine, InboxStatus.FAILED, received_at=now, last_error="x")
    other = inbox_row(deployed.engine, InboxStatus.FAILED, received_at=now, last_error="y")
    waiting = inbox_row(deployed.engine, InboxStatus.RECEIVED, received_at=now)

    replayed = deployed.client.post(
        f"/admin/events/{failed}/replay",
        data={"csrf": csrf},
        headers=ORIGIN,
        follow_redirects=False,
    )
    refused = deployed.client.post(
        f"/admin/events/{waiting}/replay", data={"csrf": csrf}, headers=ORIGIN
    )

    assert replayed.status_code == 303
    assert inbox_statuses(deployed.engine, failed, other, waiting) == [
        "enqueued",
        "failed",
        "received",
    ]
    page = deployed.client.get(replayed.headers["location"])
    assert f"Event {failed} was sent to the workers again." in page.text
    watched = re.search(r'<table id="replayed">.*?</table>', page.text, re.S)
    assert watched is not None
    assert f'data-watch-event="{failed}">enqueued</span>' in watched.group(0)
    assert deployed.client.get(f"/admin/events/{failed}").json() == {
        "id": failed,
        "status": "enqueued",
        "attempts": 0,
        "reason": None,
        "last_error": "x",
    }
    assert f"Event {waiting} is not stored, or is still on its way" in refused.text
    assert deployed.client.get(f"/admin/events/{UNKNOWN}").status_code == 404
