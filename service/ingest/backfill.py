"""Phase 1 of a sync: pages of summaries, listed backward with a keyset cursor and stored in
bulk, the cursor committed in the same transaction as the page it covers.

`GET /athlete/activities` is page-based (docs/strava.md §4.1); offsets shift when activities
are uploaded or deleted during a long import, so the cursor is a keyset: `before` = the
oldest start second seen. Whether `before` is exclusive is UNCONFIRMED (§4.1, §7 question 1;
the emulator takes it as exclusive), and several activities can share that second with only
some of them on the page. So each request overlaps the previous one by that second
(`before = boundary + 1`) and the ids already stored at the boundary are skipped: no tie is
lost whichever way Strava counts. The price is that the overlapping activities take slots of
the next page (usually one of 200). A page with nothing older than the boundary (a second
holding a page or more, or a page that came back short, §4.1) is followed by the next page
number under the same bound; only an empty page ends the listing.

`advance` is the pure cursor step; `store_page` is the one transaction per page.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from service.db import upsert_insert
from service.ingest.activities import summary_columns
from service.ingest.policy import HydrationPolicy, plan_hydration
from service.models import Activity
from service.strava.quota import Tier
from service.strava.schemas import SummaryActivity


@dataclass(frozen=True)
class Listed:
    """What the cursor needs of a listed activity: its id and start (epoch seconds)."""

    id: int
    start: int


@dataclass(frozen=True)
class Cursor:
    """Where a listing stands; stored as JSON in `sync_jobs.cursor`.

    Parameters:
      boundary: the oldest start second seen (None before the first page).
      page: the page under `before = boundary + 1`; above 1 only while pages bring
        nothing older than the boundary (a crowded second, or short pages).
      seen: ids listed at the boundary second, skipped when the next page repeats them.
      after: the listing's lower bound, exclusive (reconciliation); None lists everything.
      gone: stored ids Strava no longer lists, removed when the listing ends.
      done: the listing reached its end.

    A request is `before=cursor.before, after=cursor.after, page=cursor.page`.
    """

    boundary: int | None = None
    page: int = 1
    seen: tuple[int, ...] = ()
    after: int | None = None
    gone: tuple[int, ...] = ()
    done: bool = False

    @property
    def before(self) -> int | None:
        """The list call's `before`: one second past the boundary, to overlap it."""
        return None if self.boundary is None else self.boundary + 1

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seen"] = list(self.seen)
        data["gone"] = list(self.gone)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cursor:
        if not data:
            return cls()
        return cls(
            boundary=data.get("boundary"),
            page=int(data.get("page", 1)),
            seen=tuple(data.get("seen", ())),
            after=data.get("after"),
            gone=tuple(data.get("gone", ())),
            done=bool(data.get("done", False)),
        )


@dataclass(frozen=True)
class CoveredRange:
    """A start-time range the listing has now seen completely: every stored activity in
    (low, high] must be among `listed`, or Strava no longer has it. None is unbounded."""

    low: int | None
    high: int | None
    listed: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Advance:
    cursor: Cursor
    covered: CoveredRange | None


def advance(cursor: Cursor, page: Sequence[Listed]) -> Advance:
    """The cursor after `page` (the answer to `cursor.request()`), and what it covered."""
    listed = frozenset(item.id for item in page) | frozenset(cursor.seen)
    if not page:
        end = CoveredRange(cursor.after, cursor.boundary, listed)
        return Advance(replace(cursor, done=True), end)
    older = [item for item in page if cursor.boundary is None or item.start < cursor.boundary]
    if not older:
        # Only the boundary second: it holds a page or more, or the page came back short
        # (which happens before the end, §4.1), so older activities may still follow. Walk
        # on by page number under the same bound; only an empty page ends the listing.
        seen = tuple(dict.fromkeys([*cursor.seen, *(item.id for item in page)]))
        return Advance(replace(cursor, page=cursor.page + 1, seen=seen), None)
    oldest = min(item.start for item in older)
    seen = tuple(item.id for item in page if item.start == oldest)
    # Everything after the oldest second is on this page (or was at the boundary before);
    # the oldest second itself may continue on the next page.
    covered = CoveredRange(oldest, cursor.boundary, listed)
    return Advance(replace(cursor, boundary=oldest, page=1, seen=seen), covered)


def listed(summaries: Iterable[SummaryActivity]) -> list[Listed]:
    # Strava always sends start_date (§4.4); one without cannot move the cursor.
    return [Listed(s.id, int(s.start_date.timestamp())) for s in summaries if s.start_date]


@dataclass(frozen=True)
class PageResult:
    """What storing a page did: ids inserted, ids whose listed fields changed, and the
    inserted rows to hydrate with their tier (newest first, as listed)."""

    new: frozenset[int]
    updated: frozenset[int]
    to_hydrate: list[tuple[int, Tier]]


def upsert_summaries(
    session: Session,
    summaries: Sequence[SummaryActivity],
    raws: Sequence[dict[str, Any]],
    policy: HydrationPolicy,
    now: datetime,
    raw_text: str | None = None,
) -> PageResult:
    """Bulk-upsert one page in `session`'s transaction with one INSERT … ON CONFLICT, which
    only touches rows whose raw summary changed and tells inserted rows from updated ones.

    `raw_text`, when given, is the page's JSON array exactly as Strava sent it (`raws` is its
    parse): PostgreSQL then stores each element's text without our encoding it again."""
    if not summaries:
        return PageResult(frozenset(), frozenset(), [])
    # A listing changes the summary's columns only: never the detail, the hydration state or
    # anything else the app owns: summaries never overwrite stored detail.
    page = _Page(shared={"hydrate_attempts": 0, "created_at": now, "updated_at": now})
    tiers: dict[int, Tier | None] = {}
    for position, (summary, raw) in enumerate(zip(summaries, raws, strict=True), start=1):
        if summary.id in tiers:  # the same activity twice on a page: keep the first
            continue
        plan = plan_hydration(policy, summary.sport_type, summary.start_date, now)
        tiers[summary.id] = plan.tier
        page.rows.append(
            {"id": summary.id, **summary_columns(summary), "hydration_status": plan.status.value}
        )
        page.raws.append(raw)
        page.positions.append(position)
    changed = [*summary_columns(summaries[0]), "raw_summary", "updated_at"]
    if session.get_bind().dialect.name == "postgresql":
        # Positions index the listed page, duplicates included, as the received text does.
        text = raw_text if raw_text is not None else _encode(list(raws))
        touched = _upsert_postgresql(session, page, changed, text)
    else:
        touched = _upsert_portable(session, page, changed)
    new = frozenset(i for i, inserted in touched.items() if inserted)
    updated = frozenset(i for i, inserted in touched.items() if not inserted)
    # Only rows this page inserted are queued: a stored row keeps its hydration state.
    to_hydrate = [(i, tier) for i, tier in tiers.items() if tier is not None and i in new]
    return PageResult(new, updated, to_hydrate)


@dataclass
class _Page:
    """A page's rows to upsert: per-row columns, the raw summaries and their positions on
    the listed page (1-based), and the values every row shares."""

    shared: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    raws: list[dict[str, Any]] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)


def _upsert_portable(session: Session, page: _Page, changed: list[str]) -> dict[int, bool]:
    """SQLite: which ids exist is asked first (SQLite has no xmax); then one multi-row
    INSERT … ON CONFLICT (insertmanyvalues; the ORM's bulk path sends a statement per row)."""
    ids = [row["id"] for row in page.rows]
    existing = set(session.scalars(sa.select(col(Activity.id)).where(col(Activity.id).in_(ids))))
    insert = upsert_insert(session.get_bind(), Activity.__table__)  # type: ignore[attr-defined,arg-type]
    statement = insert.on_conflict_do_update(
        index_elements=["id"],
        set_={name: insert.excluded[name] for name in changed},
        where=col(Activity.raw_summary).is_distinct_from(insert.excluded.raw_summary),
    ).returning(col(Activity.id))
    rows = [
        {**row, "raw_summary": raw, **page.shared}
        for row, raw in zip(page.rows, page.raws, strict=True)
    ]
    touched = session.connection().execute(statement, rows).scalars()
    return {i: i not in existing for i in touched}


# PostgreSQL types of the columns a page writes, for json_to_recordset.
_PG_TYPES = {
    "id": "bigint",
    "athlete_id": "bigint",
    "start_date": "timestamptz",
    "start_date_local": "timestamp",
    "utc_offset": "float8",
    "distance": "float8",
    "moving_time": "integer",
    "elapsed_time": "integer",
    "total_elevation_gain": "float8",
    "average_speed": "float8",
    "max_speed": "float8",
    "average_heartrate": "float8",
    "max_heartrate": "float8",
    "workout_type": "integer",
    "private": "boolean",
    "trainer": "boolean",
    "commute": "boolean",
    "manual": "boolean",
}


def _json_value(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# check_circular=False: plain data we just built or parsed (a third faster to encode).
_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False, default=_json_value).encode


def _upsert_postgresql(
    session: Session, page: _Page, changed: list[str], raw_text: str
) -> dict[int, bool]:
    """One array per listed column (unnest) and the raw summaries (json_array_elements),
    joined by position; the shared values bound once. A short statement, where a
    6,000-placeholder one was parsed per page (~2,000 rows/s).

    The column arrays go in PostgreSQL's binary format (`%(name)b`, psycopg's own
    placeholders, hence `exec_driver_sql`): dumping them costs the client about what encoding
    the page's columns as JSON did, and the server reads them in ~0.5 ms where
    json_to_recordset parsed that JSON in ~2 ms (about 2.5 ms a page in all). Keeping the
    raw summaries apart matters: a nested ~1.5 KB summary per row read as a record doubled
    the work, while json_array_elements only cuts the array into elements. Strava's own text
    is stored when we have it (encoding 200 summaries again costs ~4 ms a page).
    `raw_summary` is `json` (migration 0006), kept as validated text: as `jsonb` the binary
    conversion was the largest single cost. Unchanged rows are found by comparing that text
    (json has no equality operator; an encoding that changed at worst rewrites a row once).
    `xmax = 0` marks the rows this statement inserted rather than updated, which spares a
    query for the ids already stored. Figures: docs/benchmarks/backfill.md."""
    names = list(page.rows[0])
    columns = ", ".join(f'"{name}"' for name in names)
    arrays = ", ".join(f"%(c{i})b::{_PG_TYPES.get(name, 'text')}[]" for i, name in enumerate(names))
    shared = ", ".join(f'"{name}"' for name in page.shared)
    bound = ", ".join(f"%(s{i})s" for i in range(len(page.shared)))
    updates = ", ".join(f'"{name}" = excluded."{name}"' for name in changed)
    statement = (
        f"INSERT INTO activities ({columns}, {shared}, raw_summary) "  # noqa: S608 - ours
        f"SELECT {columns}, {bound}, raw.value "
        f"FROM unnest({arrays}, %(positions)b::integer[]) AS page({columns}, position) "
        "JOIN json_array_elements(%(raws)s::json) WITH ORDINALITY AS raw(value, position) "
        "USING (position) "
        f"ON CONFLICT (id) DO UPDATE SET {updates} "
        "WHERE activities.raw_summary::text IS DISTINCT FROM excluded.raw_summary::text "
        "RETURNING id, (xmax = 0) AS inserted"
    )
    parameters: dict[str, Any] = {
        f"c{i}": [row[name] for row in page.rows] for i, name in enumerate(names)
    }
    parameters.update({f"s{i}": value for i, value in enumerate(page.shared.values())})
    parameters["positions"] = page.positions
    parameters["raws"] = raw_text
    result = session.connection().exec_driver_sql(statement, parameters)
    return {int(i): bool(inserted) for i, inserted in result}


def store_raw_summary(session: Session, activity_id: int, summary: dict[str, Any]) -> None:
    """Set the activity's raw summary as a listing would store it, so that a listing that
    shows the same summary finds the row unchanged: on PostgreSQL the text is compared, and
    is encoded as Strava sends it (compact, UTF-8); SQLite compares our own encoding."""
    if session.get_bind().dialect.name == "postgresql":
        text = json.dumps(summary, separators=(",", ":"), ensure_ascii=False)
        value: Any = sa.cast(sa.literal(text, sa.Text), sa.JSON)
    else:
        value = summary
    session.execute(
        sa.update(Activity).where(col(Activity.id) == activity_id).values(raw_summary=value)
    )


def missing_in(
    session: Session, athlete_id: int, covered: CoveredRange, stored_before: datetime
) -> list[int]:
    """Stored activities in the covered range that the listing did not show. Rows stored
    after the job started are left alone: they may be newer than the listing."""
    query = (
        sa.select(col(Activity.id))
        .where(col(Activity.athlete_id) == athlete_id)
        .where(col(Activity.created_at) < stored_before)
    )
    if covered.low is not None:
        query = query.where(col(Activity.start_date) >= _at(covered.low + 1))
    if covered.high is not None:
        query = query.where(col(Activity.start_date) < _at(covered.high + 1))
    return [i for i in session.scalars(query) if i not in covered.listed]


def _at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
