"""The operator page in a real browser: Debian's chromium, driven by Playwright, against the
service's real processes (`serve`, `worker` and `scheduler`, PostgreSQL, Redis) with the
emulator as Strava.

An operator logs in, watches a real backfill's progress bar move to 100 % over the page's
event stream, replays a failed event and watches its row turn processed, and starts a sync
with a click. The backfill's test saves a screenshot of the page to test-artifacts/admin.png
(git-ignored; docs/admin.png in the README is a copy of one).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.processes import Service, activity_when, connect, subscribe
from launch import wait_until
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from sqlmodel import Session, col, select
from support import ADMIN_KEY, CLIENT_ID, CLIENT_SECRET, FakeStrava

from service.emulator import Emulator, EmulatorConfig, RateLimits
from service.emulator.server import EmulatorServer
from service.models import Activity, HydrationStatus, InboxEvent, SyncJob, SyncStatus

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
# Enough activities that the bar has many states to pass through on the way.
HISTORY = 300
# Strava's headers report these, so the page's gauges show a backfill's share of them.
LIMITS = RateLimits(overall_short=1500, overall_daily=15000, read_short=1000, read_daily=10000)
# Generous: a loaded two-core machine runs the browser, the service and the database.
DEADLINE = 180.0
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # No network here: without these chromium keeps trying to reach its own services.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Records every value each athlete's progress bar takes, from the page's own updates.
RECORD_PROGRESS = """() => {
  window.progressSeen = {};
  const record = (bar) => {
    const id = bar.closest("[data-athlete]").dataset.athlete;
    (window.progressSeen[id] ||= []).push(Number(bar.getAttribute("value")));
  };
  new MutationObserver((mutations) => {
    for (const change of mutations) {
      if (change.type === "attributes" && change.target.matches("progress")) record(change.target);
      for (const node of change.addedNodes) {
        if (node.querySelectorAll) node.querySelectorAll("progress").forEach(record);
      }
    }
  }).observe(document.getElementById("athlete-rows"),
             {subtree: true, childList: true, attributes: true, attributeFilter: ["value"]});
}"""


@pytest.fixture
def strava() -> Iterator[FakeStrava]:
    emulator = Emulator(
        EmulatorConfig(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            athletes=1,
            activities_per_athlete=HISTORY,
            max_stream_points=30,
            # Slow enough that a loaded machine's page still sees the bar between 0 and 100.
            latency=0.05,
            limits=LIMITS,
            delivery_retry_delay=0.2,
        )
    )
    with EmulatorServer(emulator) as server:
        yield FakeStrava(emulator, server)
    emulator.close()


@pytest.fixture
def service_settings() -> dict[str, str]:
    return {
        "SYNC_PAGE_SIZE": "25",
        "QUOTA_LIMIT_SHORT": str(LIMITS.overall_short),
        "QUOTA_LIMIT_DAILY": str(LIMITS.overall_daily),
        "QUOTA_READ_LIMIT_SHORT": str(LIMITS.read_short),
        "QUOTA_READ_LIMIT_DAILY": str(LIMITS.read_daily),
        # A Strava 500 fails an event at once: the replay test's dead event.
        "RETRY_MAX_ATTEMPTS": "1",
        "EVENT_COALESCE_SECONDS": "0.5",
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail("Debian's chromium is missing: apt-get install chromium (scripts/test does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    opened = context.new_page()
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            problems.append(message.text)

    opened.on("console", console)
    opened.on("pageerror", lambda error: problems.append(str(error)))
    yield opened
    context.close()
    # The page's own script and style ran under its policy, and threw nothing.
    assert problems == []


def log_in(page: Page, url: str) -> None:
    page.goto(f"{url}/admin")
    expect(page).to_have_url(f"{url}/admin/login")
    page.get_by_label("Admin key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{url}/admin")
    expect(page.locator("#live")).to_have_attribute("data-state", "open", timeout=30_000)


def new_athlete(service: Service, strava: FakeStrava) -> int:
    """An athlete without activities connects; their backfill ends at once."""
    strava.emulator.login(strava.emulator.add_athlete())
    athlete_id = connect(service.url)
    wait_until(
        lambda: [job.status for job in jobs(service, athlete_id)] == [SyncStatus.COMPLETED],
        timeout=DEADLINE,
        what="the new athlete's backfill",
    )
    return athlete_id


def jobs(service: Service, athlete_id: int) -> list[SyncJob]:
    with Session(service.engine) as session:
        query = select(SyncJob).where(SyncJob.athlete_id == athlete_id).order_by(col(SyncJob.id))
        return list(session.exec(query))


def event_in(service: Service, activity_id: int, status: str) -> InboxEvent | None:
    """The inbox row of the activity's event, once it is in `status`."""
    with Session(service.engine) as session:
        event = session.exec(select(InboxEvent).where(InboxEvent.object_id == activity_id)).first()
    return event if event is not None and event.status == status else None


def new_job(service: Service, athlete_id: int, after: SyncJob) -> SyncJob | None:
    return next((job for job in jobs(service, athlete_id) if job.id != after.id), None)


def test_a_backfills_progress_bar_moves_to_100_percent(
    production: Service, strava: FakeStrava, page: Page
) -> None:
    subscribe(production.url, production.env)
    log_in(page, production.url)
    page.evaluate(RECORD_PROGRESS)

    athlete_id = connect(production.url)

    row = page.locator(f'#athlete-rows tr[data-athlete="{athlete_id}"]')
    expect(row.locator("progress")).to_have_attribute("value", "100", timeout=DEADLINE * 1000)
    expect(row.locator('[data-field="percent"]')).to_have_text("100 %")
    expect(row.locator('[data-field="job"]')).to_contain_text("backfill")
    expect(row.locator('[data-field="job"]')).to_contain_text("completed")
    seen: list[int] = page.evaluate(f"window.progressSeen['{athlete_id}']")
    on_the_way = {value for value in seen if 0 < value < 100}
    assert len(on_the_way) >= 2, seen
    assert seen[-1] == 100
    with Session(production.engine) as session:
        statuses = session.exec(
            select(Activity.hydration_status).where(Activity.athlete_id == athlete_id)
        ).all()
    assert len(statuses) == HISTORY
    assert HydrationStatus.PENDING not in statuses
    assert HydrationStatus.PARTIAL not in statuses

    # A pushed event, processed, so that the picture shows a subscription at work.
    created = strava.emulator.create_activity(athlete_id)
    wait_until(
        lambda: event_in(production, created["id"], "processed"),
        timeout=DEADLINE,
        what="the pushed event",
    )
    # Its streams too: until then the athlete's sync counts it as waiting (99 %).
    activity_when(production, created["id"], lambda a: a.hydration_status == "complete", DEADLINE)
    page.reload()
    expect(page.locator("#live")).to_have_attribute("data-state", "open", timeout=30_000)
    expect(row.locator('[data-field="percent"]')).to_have_text("100 %")
    expect(page.locator('#inbox tr[data-status="processed"] td.num')).to_have_text("1")
    expect(page.locator('#subscription li[data-check="last_event"] .badge')).to_have_text("ok")
    expect(page.locator('figure[data-chart="read"] rect.bar')).not_to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True)
    assert (ARTIFACTS / "admin.png").stat().st_size > 10_000


def test_a_replay_click_re_drives_a_failed_event_until_its_row_turns_processed(
    production: Service, strava: FakeStrava, page: Page
) -> None:
    subscribe(production.url, production.env)
    athlete_id = new_athlete(production, strava)
    strava.emulator.fail_next(1, 500)
    created = strava.emulator.create_activity(athlete_id)
    dead = wait_until(
        lambda: event_in(production, created["id"], "failed"), timeout=DEADLINE, what="a dead event"
    )
    assert isinstance(dead, InboxEvent)
    log_in(page, production.url)

    failed = page.locator(f'#failed tr[data-event="{dead.id}"]')
    expect(failed.locator('[data-field="status"]')).to_have_text("failed")
    failed.get_by_role("button", name="Replay").click()

    expect(page.locator(".notice")).to_have_text(f"Event {dead.id} was sent to the workers again.")
    replayed = page.locator(f'#replayed [data-watch-event="{dead.id}"]')
    expect(replayed).to_have_text("processed", timeout=DEADLINE * 1000)
    expect(page.locator(f'#failed tr[data-event="{dead.id}"]')).to_have_count(0)
    with Session(production.engine) as session:
        activity = session.get(Activity, created["id"])
    assert activity is not None
    assert activity.athlete_id == athlete_id


def test_a_start_sync_click_starts_a_job(service: Service, strava: FakeStrava, page: Page) -> None:
    athlete_id = new_athlete(service, strava)
    (backfill,) = jobs(service, athlete_id)
    log_in(page, service.url)
    row = page.locator(f'#athlete-rows tr[data-athlete="{athlete_id}"]')
    expect(row.locator('[data-field="job"]')).to_contain_text(f"backfill #{backfill.id}")

    row.get_by_role("button", name="Sync", exact=True).click()

    expect(page.locator(".notice")).to_have_text(f"Athlete {athlete_id}: incremental sync started.")
    started = wait_until(
        lambda: new_job(service, athlete_id, backfill), timeout=DEADLINE, what="the new job"
    )
    assert isinstance(started, SyncJob)
    # Once the history is listed, an incremental sync reconciles the recent weeks.
    assert started.kind == "reconcile"
    job = page.locator(f'#athlete-rows tr[data-athlete="{athlete_id}"] [data-field="job"]')
    expect(job).to_contain_text(
        re.compile(rf"reconcile #{started.id}\s+completed"), timeout=DEADLINE * 1000
    )
