"""`strava-ingest athletes` and `athletes show ID`, against PostgreSQL and the emulator: they
print what GET /athletes and GET /athletes/{id} answer."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine
from sqlmodel import Session
from support import FakeStrava, connect_emulator_athlete, service_env

from service.cli import main
from service.ingest.athlete_status import athlete_state
from service.ingest.purge import purge_athlete
from service.ingest.sync import start_job
from service.models import Activity, Athlete, AthleteStatus, HydrationStatus, SyncKind, utcnow


def athletes(database_url: str, strava: FakeStrava, *args: str) -> Result:
    return CliRunner().invoke(main, ["athletes", *args], env=service_env(database_url, strava))


def arrange(engine: Engine, strava: FakeStrava, athlete_id: int) -> tuple[int, int]:
    """The connected athlete with 3 activities (2 complete) and a backfill; one athlete who
    must reconnect; one deauthorized. Returns the last two."""
    with Session(engine) as session:
        for n, status in enumerate(
            (HydrationStatus.COMPLETE, HydrationStatus.COMPLETE, HydrationStatus.PENDING)
        ):
            session.add(
                Activity(id=8_000_000_000 + n, athlete_id=athlete_id, hydration_status=status)
            )
        session.commit()
    start_job(engine, athlete_id, SyncKind.BACKFILL, utcnow())
    stale = connect_emulator_athlete(engine, strava, strava.emulator.add_athlete())
    with Session(engine) as session:
        athlete = session.get_one(Athlete, stale)
        athlete.status = AthleteStatus.NEEDS_REAUTH.value
        athlete.status_reason = "Strava rejected the refresh token (HTTP 400)"
        session.add(athlete)
        session.commit()
    gone = connect_emulator_athlete(engine, strava, strava.emulator.add_athlete())
    purge_athlete(engine, gone, utcnow())
    return stale, gone


def test_athletes_prints_a_table_row_per_athlete_with_status_counts_and_job(
    engine: Engine, database_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    stale, gone = arrange(engine, strava, athlete_id)

    result = athletes(database_url, strava)

    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split()[:5] == ["ID", "STATUS", "CONNECTED", "SCOPES", "ACTIVITIES"]
    by_id = {row.split()[0]: row for row in rows}
    assert set(by_id) == {str(athlete_id), str(stale), str(gone)}
    connected = by_id[str(athlete_id)].split()
    assert connected[1] == "connected"
    assert connected[5:12] == ["3", "2", "0", "1", "0", "0", "0"]
    assert "backfill queued" in by_id[str(athlete_id)]
    assert "needs_reauth" in by_id[str(stale)]
    assert by_id[str(stale)].endswith("Strava rejected the refresh token (HTTP 400)")
    assert "deauthorized" in by_id[str(gone)]


def test_athletes_json_is_what_the_api_answers_for_each_athlete(
    engine: Engine, database_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    arrange(engine, strava, athlete_id)

    result = athletes(database_url, strava, "--json")

    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed == [
        athlete_state(engine, item["id"]).model_dump(mode="json") for item in printed
    ]
    assert len(printed) == 3


def test_athletes_status_filters_the_list(
    engine: Engine, database_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    stale, gone = arrange(engine, strava, athlete_id)

    result = athletes(
        database_url, strava, "--status", "needs_reauth", "--status", "deauthorized", "--json"
    )

    assert result.exit_code == 0, result.output
    assert sorted(item["id"] for item in json.loads(result.output)) == sorted([stale, gone])


def test_athletes_show_prints_one_athlete(
    engine: Engine, database_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    arrange(engine, strava, athlete_id)

    result = athletes(database_url, strava, "show", str(athlete_id))

    assert result.exit_code == 0, result.output
    assert f"athlete {athlete_id}" in result.output
    assert "status        connected" in result.output
    assert "scopes        read,activity:read_all" in result.output
    assert "activities    3 (2 complete, 0 partial, 1 pending" in result.output
    assert "backfill queued" in result.output


def test_athletes_show_json_is_what_get_athlete_answers(
    engine: Engine, database_url: str, strava: FakeStrava, athlete_id: int
) -> None:
    stale, _ = arrange(engine, strava, athlete_id)

    result = athletes(database_url, strava, "show", str(stale), "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == athlete_state(engine, stale).model_dump(mode="json")
    assert json.loads(result.output)["status_reason"].startswith("Strava rejected")


def test_athletes_show_of_an_unknown_athlete_fails_with_a_message(
    engine: Engine, database_url: str, strava: FakeStrava
) -> None:
    result = athletes(database_url, strava, "show", "424242")

    assert result.exit_code == 1
    assert "athlete 424242 is unknown" in result.output


def test_athletes_without_any_says_so(
    engine: Engine, database_url: str, strava: FakeStrava
) -> None:
    result = athletes(database_url, strava)

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "no athletes"
