"""GET /athletes/{id}/sync/log in both modes: keys, the latest job by default, levels,
reading on after an entry id, and 404 for what is not the athlete's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from support import (
    ADMIN,
    READ,
    Deployed,
    FakeStrava,
    connect_emulator_athlete,
    connect_new_emulator_athlete,
)

from service.ingest import job_log
from service.ingest.sync import cancel_job, start_job
from service.models import LogLevel, SyncKind, utcnow


def job_with_entries(engine: Engine, athlete_id: int, *levels: LogLevel) -> int:
    started = start_job(engine, athlete_id, SyncKind.BACKFILL, utcnow())
    job_id = started.job.id
    assert job_id is not None
    at = utcnow()
    for n, level in enumerate(levels):
        job_log.write(engine, job_id, athlete_id, level, f"{level.value} {n}", {"page": n}, now=at)
    return job_id


@pytest.fixture
def athlete(deployed: Deployed, strava: FakeStrava) -> int:
    return connect_emulator_athlete(deployed.engine, strava)


def log_path(athlete_id: int, query: str = "") -> str:
    return f"/athletes/{athlete_id}/sync/log" + (f"?{query}" if query else "")


def test_no_key_is_401_and_a_wrong_key_403(deployed: Deployed, athlete: int) -> None:
    job_with_entries(deployed.engine, athlete, LogLevel.INFO)

    anonymous = deployed.client.get(log_path(athlete))
    wrong = deployed.client.get(log_path(athlete), headers={"authorization": "Bearer nope"})

    assert anonymous.status_code == 401
    assert "error" in anonymous.json()
    assert wrong.status_code == 403
    assert "error" in wrong.json()


@pytest.mark.parametrize("key", [READ, ADMIN], ids=["read", "admin"])
def test_a_read_or_admin_key_reads_the_latest_job_oldest_entry_first(
    deployed: Deployed, athlete: int, key: dict[str, str]
) -> None:
    job_id = job_with_entries(deployed.engine, athlete, LogLevel.INFO, LogLevel.WARNING)

    response = deployed.client.get(log_path(athlete), headers=key)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["athlete_id"] == athlete
    assert (body["job"]["id"], body["job"]["kind"], body["job"]["status"]) == (
        job_id,
        "backfill",
        "queued",
    )
    assert [e["message"] for e in body["entries"]] == ["backfill started", "info 0", "warning 1"]
    assert body["entries"][1]["fields"] == {"page": 0}
    assert body["entries"][1]["level"] == "info"
    assert body["next_after"] == body["entries"][-1]["id"]
    assert body["more"] is False


def test_a_level_keeps_that_level_and_above(deployed: Deployed, athlete: int) -> None:
    levels = (LogLevel.DEBUG, LogLevel.ERROR, LogLevel.INFO, LogLevel.WARNING)
    job_with_entries(deployed.engine, athlete, *levels)

    response = deployed.client.get(log_path(athlete, "level=warning"), headers=READ)

    assert [e["message"] for e in response.json()["entries"]] == ["error 1", "warning 3"]


def test_reading_on_after_next_after_gets_only_newer_entries(
    deployed: Deployed, athlete: int
) -> None:
    job_id = job_with_entries(deployed.engine, athlete, LogLevel.INFO, LogLevel.INFO)

    first = deployed.client.get(log_path(athlete, "limit=2"), headers=READ).json()
    assert first["more"] is True
    job_log.write(deployed.engine, job_id, athlete, LogLevel.INFO, "written later", now=utcnow())
    rest = deployed.client.get(
        log_path(athlete, f"limit=2&after={first['next_after']}"), headers=READ
    ).json()

    assert [e["message"] for e in first["entries"]] == ["backfill started", "info 0"]
    assert [e["message"] for e in rest["entries"]] == ["info 1", "written later"]


def test_an_earlier_job_is_read_by_its_id(deployed: Deployed, athlete: int) -> None:
    earlier = job_with_entries(deployed.engine, athlete, LogLevel.INFO)
    cancel_job(deployed.engine, athlete, "stop", utcnow() + timedelta(seconds=1))
    job_with_entries(deployed.engine, athlete)

    response = deployed.client.get(log_path(athlete, f"job={earlier}"), headers=READ)

    body = response.json()
    assert (body["job"]["id"], body["job"]["status"]) == (earlier, "cancelled")
    assert body["job"]["finished_at"] is not None
    assert [e["message"] for e in body["entries"]] == ["backfill started", "info 0", "cancelled"]


def test_an_unknown_athlete_or_one_without_jobs_is_404(deployed: Deployed, athlete: int) -> None:
    unknown = deployed.client.get(log_path(123456), headers=READ)
    no_jobs = deployed.client.get(log_path(athlete), headers=READ)

    assert unknown.status_code == 404
    assert unknown.json()["reason"] == "not_found"
    assert no_jobs.status_code == 404
    assert no_jobs.json()["reason"] == "not_found"


def test_another_athletes_job_is_404(deployed: Deployed, strava: FakeStrava, athlete: int) -> None:
    job_id = job_with_entries(deployed.engine, athlete, LogLevel.INFO)
    other = connect_new_emulator_athlete(deployed.engine, strava)
    job_with_entries(deployed.engine, other, LogLevel.INFO)

    response = deployed.client.get(log_path(other, f"job={job_id}"), headers=READ)
    missing = deployed.client.get(log_path(athlete, f"job={job_id + 1000}"), headers=READ)

    assert response.status_code == 404
    assert response.json()["reason"] == "not_found"
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("level=loud", "level"),
        ("after=-1", "after"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("job=x", "job"),
        ("page=2", "page"),
        ("level=info&level=error", "level"),
    ],
)
def test_bad_input_is_400_naming_the_parameter(
    deployed: Deployed, athlete: int, query: str, named: str
) -> None:
    job_with_entries(deployed.engine, athlete)

    response = deployed.client.get(log_path(athlete, query), headers=READ)

    assert response.status_code == 400
    assert response.json()["reason"] == "query"
    assert named in [field["name"] for field in response.json()["fields"]]
