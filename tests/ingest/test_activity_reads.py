"""An athlete's activities newest first, in keyset pages that stay exact while activities are
inserted and deleted between them; each filter; on PostgreSQL and SQLite."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from activity_support import BASE, minutes, stored_activity, stored_athlete
from sqlalchemy.engine import Engine
from sqlmodel import col

from service.db import session_scope
from service.ingest.activity_reads import (
    ActivityFilter,
    Position,
    latest_activity_id,
    list_activities,
    page_statement,
)
from service.models import Activity

ATHLETE = 501
OTHER = 502


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request: pytest.FixtureRequest) -> Engine:
    engine: Engine = request.getfixturevalue(
        "engine" if request.param == "postgresql" else "sqlite_engine"
    )
    stored_athlete(engine, ATHLETE)
    stored_athlete(engine, OTHER)
    return engine


def walk(engine: Engine, filters: ActivityFilter, limit: int) -> list[int]:
    ids: list[int] = []
    position: Position | None = None
    while True:
        page = list_activities(engine, ATHLETE, filters, limit, position)
        ids.extend(row["id"] for row in page.rows)
        if page.next_position is None:
            return ids
        position = page.next_position


def test_activities_come_newest_first_ties_by_id_undated_last(db: Engine) -> None:
    older = stored_activity(db, ATHLETE, BASE - minutes(10), activity_id=10)
    tie_low = stored_activity(db, ATHLETE, BASE, activity_id=20)
    tie_high = stored_activity(db, ATHLETE, BASE, activity_id=30)
    newest = stored_activity(db, ATHLETE, BASE + minutes(10), activity_id=5)
    undated = stored_activity(db, ATHLETE, None, activity_id=40)
    stored_activity(db, OTHER, BASE + minutes(20))

    for limit in (1, 2, 3, 10):
        assert walk(db, ActivityFilter(), limit) == [newest, tie_high, tie_low, older, undated]
    assert latest_activity_id(db, ATHLETE) == newest


def test_pages_neither_repeat_nor_skip_while_rows_come_and_go(db: Engine) -> None:
    rng = random.Random(7)
    # Ties on purpose: 300 activities over 60 distinct start times.
    throughout = {
        stored_activity(db, ATHLETE, BASE - minutes(rng.randrange(60))) for _ in range(240)
    }
    doomed = [stored_activity(db, ATHLETE, BASE - minutes(rng.randrange(60))) for _ in range(60)]
    rng.shuffle(doomed)

    seen: list[int] = []
    position: Position | None = None
    while True:
        page = list_activities(db, ATHLETE, ActivityFilter(), 17, position)
        seen.extend(row["id"] for row in page.rows)
        if page.next_position is None:
            break
        position = page.next_position
        # Between pages: new activities before, at and after the cursor's own start time,
        # and deletions on both sides of it, including the row the cursor points at.
        assert position.start_date is not None
        for offset in (-5, 0, 0, 5):
            stored_activity(db, ATHLETE, position.start_date + minutes(offset))
        gone = [doomed.pop() for _ in range(min(3, len(doomed)))]
        if position.activity_id not in throughout and rng.random() < 0.5:
            gone.append(position.activity_id)
        with session_scope(db) as session:
            session.execute(sa.delete(Activity).where(col(Activity.id).in_(gone)))

    assert len(seen) == len(set(seen)), "an activity was listed twice"
    assert throughout <= set(seen), "an activity that existed throughout was skipped"
    with session_scope(db) as session:
        keys = {
            row.id: (row.start_date, row.id)
            for row in session.execute(sa.select(col(Activity.id), col(Activity.start_date)))
        }
    listed = [keys[i] for i in seen if i in keys]
    assert listed == sorted(listed, reverse=True), "pages are not newest first"


def test_pages_stay_exact_while_another_connection_writes_concurrently(engine: Engine) -> None:
    stored_athlete(engine, ATHLETE)
    rng = random.Random(11)
    throughout = {
        stored_activity(engine, ATHLETE, BASE - minutes(rng.randrange(120))) for _ in range(400)
    }
    doomed = [
        stored_activity(engine, ATHLETE, BASE - minutes(rng.randrange(120))) for _ in range(200)
    ]
    stop = threading.Event()
    writes = 0

    def write() -> None:
        nonlocal writes
        local = random.Random(12)
        while not stop.is_set() and doomed:
            stored_activity(engine, ATHLETE, BASE - minutes(local.randrange(120)))
            with session_scope(engine) as session:
                session.execute(sa.delete(Activity).where(col(Activity.id) == doomed.pop()))
            writes += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        seen: list[int] = []
        position: Position | None = None
        while True:
            page = list_activities(engine, ATHLETE, ActivityFilter(), 7, position)
            seen.extend(row["id"] for row in page.rows)
            if page.next_position is None:
                break
            position = page.next_position
    finally:
        stop.set()
        writer.join()

    assert writes > 0, "the writer never ran alongside the pages"
    assert len(seen) == len(set(seen)), "an activity was listed twice"
    assert throughout <= set(seen), "an activity that existed throughout was skipped"


def test_after_and_before_bound_the_start_strictly(db: Engine) -> None:
    early = stored_activity(db, ATHLETE, BASE - minutes(10))
    middle = stored_activity(db, ATHLETE, BASE)
    late = stored_activity(db, ATHLETE, BASE + minutes(10))
    stored_activity(db, ATHLETE, None)

    assert walk(db, ActivityFilter(after=BASE - minutes(10)), 10) == [late, middle]
    assert walk(db, ActivityFilter(before=BASE + minutes(10)), 10) == [middle, early]
    assert walk(db, ActivityFilter(after=BASE - minutes(1), before=BASE + minutes(1)), 1) == [
        middle
    ]


def test_sport_types_workout_type_and_hydration_status_filter(db: Engine) -> None:
    race = stored_activity(db, ATHLETE, BASE, sport_type="Run", workout_type=1)
    run = stored_activity(db, ATHLETE, BASE - minutes(1), sport_type="Run", workout_type=0)
    ride = stored_activity(
        db, ATHLETE, BASE - minutes(2), sport_type="Ride", hydration_status="complete"
    )
    swim = stored_activity(
        db, ATHLETE, BASE - minutes(3), sport_type="Swim", hydration_status="failed"
    )

    assert walk(db, ActivityFilter(sport_types=["Run"]), 1) == [race, run]
    assert walk(db, ActivityFilter(sport_types=["Ride", "Swim"]), 1) == [ride, swim]
    assert walk(db, ActivityFilter(workout_type=1), 5) == [race]
    assert walk(db, ActivityFilter(hydration_statuses=["complete", "failed"]), 1) == [ride, swim]
    assert walk(db, ActivityFilter(sport_types=["Run"], hydration_statuses=["complete"]), 5) == []


def test_a_page_lists_only_the_athletes_own_activities(db: Engine) -> None:
    own = stored_activity(db, ATHLETE, BASE)
    stored_activity(db, OTHER, BASE + timedelta(seconds=1))
    assert walk(db, ActivityFilter(), 50) == [own]


def plan(engine: Engine, statement: Any, params: dict[str, Any]) -> list[str]:
    """The node types and index names of the statement's plan on PostgreSQL, as the planner
    picks it when every way of answering it without an index is ruled out."""
    sql = str(
        statement.params(**params).compile(
            dialect=engine.dialect, compile_kwargs={"literal_binds": True}
        )
    )
    with engine.connect() as connection:
        connection.execute(sa.text("SET enable_seqscan = off"))
        connection.execute(sa.text("SET enable_bitmapscan = off"))
        found = connection.execute(sa.text(f"EXPLAIN (FORMAT JSON) {sql}")).scalar_one()
    nodes: list[str] = []

    def walk_plan(node: dict[str, Any]) -> None:
        nodes.append(f"{node['Node Type']} {node.get('Index Name', '')}".strip())
        for child in node.get("Plans", []):
            walk_plan(child)

    walk_plan(found[0]["Plan"])
    return nodes


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        (ActivityFilter(), "ix_activities_athlete_start_id"),
        (ActivityFilter(sport_types=["Run"], workout_type=1), "ix_activities_athlete_races"),
    ],
    ids=["no_filter", "races"],
)
def test_a_page_is_one_range_of_an_index_with_no_sort(
    engine: Engine, filters: ActivityFilter, index: str
) -> None:
    statement = page_statement(filters, dated=True, resume=True)
    params = {
        "athlete_id": ATHLETE,
        "sport_types": list(filters.sport_types),
        "workout_type": filters.workout_type,
        "statuses": [],
        "cursor_start": BASE,
        "cursor_id": 5,
        "wanted": 101,
    }
    assert plan(engine, statement, params) == ["Limit", f"Index Scan {index}"]
