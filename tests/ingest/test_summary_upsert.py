"""The bulk upsert of a listed page (service/ingest/backfill.py), on PostgreSQL and SQLite:
inserted and updated rows told apart, unchanged rows left alone, Strava's text kept."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session
from support import FakeStrava

from service.db import session_scope
from service.ingest.backfill import PageResult, upsert_summaries
from service.ingest.coalesce import apply_updates
from service.ingest.events import ApplyUpdates, LocalKey
from service.ingest.policy import HydrationPolicy
from service.models import Activity, Athlete, HydrationStatus, utcnow
from service.strava.schemas import SummaryActivity

EVERYTHING_RECENT = HydrationPolicy(recent=timedelta(days=36500))


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request: pytest.FixtureRequest, strava: FakeStrava) -> Engine:
    """Either database, holding the emulator's athlete."""
    engine: Engine = request.getfixturevalue(
        "engine" if request.param == "postgresql" else "sqlite_engine"
    )
    with session_scope(engine) as session:
        session.add(Athlete(id=strava.emulator.athlete_ids[0]))
    return engine


def listing(strava: FakeStrava) -> list[dict[str, Any]]:
    return strava.emulator.activities_of(strava.emulator.athlete_ids[0])


def as_strava_sends(raws: list[dict[str, Any]]) -> str:
    return json.dumps(raws, separators=(",", ":"), ensure_ascii=False)


def apply_locally(engine: Engine, activity_id: int, values: dict[str, Any], key: str) -> None:
    """An update event of a local key, applied as the webhook path applies it."""
    with session_scope(engine) as session:
        apply_updates(session, ApplyUpdates(activity_id, 1_900_000_000, values, (key,)), utcnow())


def store(engine: Engine, raws: list[dict[str, Any]], text: str | None = None) -> PageResult:
    summaries = [SummaryActivity.model_validate(raw) for raw in raws]
    with session_scope(engine) as session:
        return upsert_summaries(session, summaries, raws, EVERYTHING_RECENT, utcnow(), text)


def test_a_new_page_inserts_every_row_and_queues_each_for_hydration(
    db: Engine, strava: FakeStrava
) -> None:
    raws = listing(strava)

    result = store(db, raws)

    assert result.new == {raw["id"] for raw in raws}
    assert result.updated == frozenset()
    assert [activity_id for activity_id, _ in result.to_hydrate] == [raw["id"] for raw in raws]


def test_listing_the_same_page_again_touches_nothing(db: Engine, strava: FakeStrava) -> None:
    raws = listing(strava)
    store(db, raws)

    result = store(db, raws)

    assert (result.new, result.updated, result.to_hydrate) == (frozenset(), frozenset(), [])


def test_a_changed_summary_updates_its_row_but_not_the_detail_or_the_hydration_state(
    db: Engine, strava: FakeStrava
) -> None:
    raws = listing(strava)
    store(db, raws)
    edited = raws[0]["id"]
    with session_scope(db) as session:
        row = session.get_one(Activity, edited)
        row.raw_detail = {"kept": True}
        row.hydration_status = HydrationStatus.COMPLETE.value

    result = store(db, [{**raws[0], "name": "Renamed"}, *raws[1:]])

    assert (result.new, result.updated, result.to_hydrate) == (frozenset(), frozenset({edited}), [])
    with Session(db) as session:
        row = session.get_one(Activity, edited)
    assert (row.name, row.raw_detail, row.hydration_status) == (
        "Renamed",
        {"kept": True},
        "complete",
    )


def test_an_activity_listed_twice_on_a_page_is_stored_once_from_its_first_listing(
    db: Engine, strava: FakeStrava
) -> None:
    first, second = listing(strava)[:2]
    raws = [first, second, {**first, "name": "later copy"}]

    result = store(db, raws, json.dumps(raws))

    assert result.new == {first["id"], second["id"]}
    with Session(db) as session:
        assert session.get_one(Activity, first["id"]).raw_summary == first


def test_postgresql_keeps_the_summary_exactly_as_strava_sent_it(
    engine: Engine, strava: FakeStrava
) -> None:
    with session_scope(engine) as session:
        session.add(Athlete(id=strava.emulator.athlete_ids[0]))
    raws = listing(strava)[:1]
    text = json.dumps(raws, indent=1)

    store(engine, raws, text)

    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT raw_summary::text FROM activities")).scalar()
    assert stored == json.dumps(raws[0], indent=1).replace("\n", "\n ")


@pytest.mark.parametrize(
    ("key", "forged"),
    [
        (LocalKey.TITLE, {"name": "Forged title"}),
        (LocalKey.TYPE, {"type": "Yoga", "sport_type": "Yoga"}),
        (LocalKey.PRIVATE, {"private": True, "visibility": "only_me"}),
    ],
)
def test_a_forged_local_update_is_undone_by_the_next_listing(
    db: Engine, strava: FakeStrava, key: str, forged: dict[str, Any]
) -> None:
    raws = listing(strava)
    store(db, raws, as_strava_sends(raws))
    target = raws[0]
    with session_scope(db) as session:
        session.get_one(Activity, target["id"]).raw_detail = {"kept": True}
    apply_locally(db, target["id"], forged, key)

    result = store(db, raws, as_strava_sends(raws))

    assert result.updated == {target["id"]}
    with Session(db) as session:
        row = session.get_one(Activity, target["id"])
    assert {column: getattr(row, column) for column in forged} == {
        column: target[column] for column in forged
    }
    assert (row.raw_summary, row.raw_detail) == (target, {"kept": True})


def test_a_genuine_title_update_the_listing_already_shows_changes_nothing(
    db: Engine, strava: FakeStrava
) -> None:
    raws = listing(strava)
    store(db, raws, as_strava_sends(raws))
    renamed = {**raws[0], "name": "Évening ride, renamed"}
    apply_locally(db, renamed["id"], {"name": renamed["name"]}, LocalKey.TITLE)
    relisted = [renamed, *raws[1:]]

    result = store(db, relisted, as_strava_sends(relisted))

    assert (result.new, result.updated) == (frozenset(), frozenset())
    with Session(db) as session:
        row = session.get_one(Activity, renamed["id"])
    assert (row.name, row.raw_summary) == (renamed["name"], renamed)
