"""SQLModel tables: athletes, activities and the webhook inbox.

Strava ids are int64 (activity ids already exceed 2^32, docs/strava.md §1.4), so every Strava
id is a BIGINT. Timestamps are stored timezone-aware and always come back as UTC, also from
SQLite, which keeps no zone of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that is stored with its zone and always read back as aware UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _timestamp(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index))


def _created() -> Any:
    return Field(default_factory=utcnow, sa_column=sa.Column(UTCDateTime(), nullable=False))


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=sa.Column(JSONType, nullable=nullable))


def _athlete_fk(index: bool = False) -> Any:
    """The owning athlete: their rows go when the athlete row does."""
    return Field(
        sa_column=sa.Column(
            sa.BigInteger,
            sa.ForeignKey("athletes.id", ondelete="CASCADE"),
            nullable=False,
            index=index,
        )
    )


def _check_in(table: str, column: str, values: type[StrEnum]) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=f"ck_{table}_{column}")


class AthleteStatus(StrEnum):
    CONNECTED = "connected"
    NEEDS_REAUTH = "needs_reauth"
    DEAUTHORIZED = "deauthorized"


class HydrationStatus(StrEnum):
    NONE = "none"
    PENDING = "pending"
    PARTIAL = "partial"
    COMPLETE = "complete"
    NOT_AVAILABLE = "not_available"
    FAILED = "failed"


class InboxStatus(StrEnum):
    RECEIVED = "received"
    ENQUEUED = "enqueued"
    # Waiting for Strava quota; `retry_after` says until when (the message is delayed).
    RATE_LIMITED = "rate_limited"
    PROCESSED = "processed"
    IGNORED = "ignored"
    # A destructive event (a delete, a deauthorization) Strava did not confirm: nothing was
    # removed; `reason` says what Strava answered (docs/events.md).
    UNCONFIRMED = "unconfirmed"
    FAILED = "failed"


class Athlete(SQLModel, table=True):
    """A Strava athlete who connected the app. After deauthorization the row stays as a
    tombstone (no tokens, `deauthorized_at` set) so late events for them are recognised."""

    __tablename__ = "athletes"
    __table_args__ = (_check_in("athletes", "status", AthleteStatus),)

    id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    username: str | None = None
    firstname: str | None = None
    lastname: str | None = None
    # Comma-separated, exactly as Strava's redirect reported what the athlete accepted.
    scopes: str = ""
    status: str = Field(default=AthleteStatus.CONNECTED.value, max_length=16)
    status_reason: str | None = None
    # Fernet tokens (service/ingest/tokens.py); never stored or logged in clear.
    access_token_enc: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    refresh_token_enc: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    expires_at: datetime | None = _timestamp()
    raw: dict[str, Any] | None = _json()
    connected_at: datetime = _created()
    deauthorized_at: datetime | None = _timestamp()
    # Webhook-priority calls this athlete's events caused in the quota window
    # `new_fetch_window` (its index): capped (WEBHOOK_FETCHES_PER_ATHLETE_PER_WINDOW).
    new_fetch_window: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    new_fetch_count: int = 0
    # Creates of activities Strava then answered 404 for: forged, or deleted at once. Past
    # FORGED_CREATES_TO_FLAG the athlete is flagged for an operator (`flagged_at`, reason).
    forged_creates: int = 0
    flagged_at: datetime | None = _timestamp()
    flag_reason: str | None = None
    created_at: datetime = _created()
    updated_at: datetime = _created()


_HYDRATING = "hydration_status IN ('pending', 'partial')"
_HELD = "hydration_held_until IS NOT NULL"


class Activity(SQLModel, table=True):
    """One Strava activity: the summary columns a product queries, plus Strava's raw JSON."""

    __tablename__ = "activities"
    __table_args__ = (
        _check_in("activities", "hydration_status", HydrationStatus),
        # An athlete's activities newest first, ties broken by id (service/ingest/
        # activity_reads.py): every page of the product API's list is one range of this index.
        sa.Index("ix_activities_athlete_start_id", "athlete_id", "start_date", "id"),
        # Race finders (`workout_type = 1`, a few percent of activities): their pages are
        # ranges of this small index rather than a scan past every other activity.
        sa.Index(
            "ix_activities_athlete_races",
            "athlete_id",
            "start_date",
            "id",
            postgresql_where=sa.text("workout_type = 1"),
            sqlite_where=sa.text("workout_type = 1"),
        ),
        # An athlete's activities still to hydrate: after each hydration the job log asks
        # whether any are left (service/ingest/job_log.py), which must not scan a long
        # history of complete ones.
        sa.Index(
            "ix_activities_athlete_hydrating",
            "athlete_id",
            postgresql_where=sa.text(_HYDRATING),
            sqlite_where=sa.text(_HYDRATING),
        ),
        # The hydrations waiting for quota, longest waiting first (service/ingest/held.py);
        # `recent` ones by start date, so that finding them never scans a backlog of old ones.
        sa.Index(
            "ix_activities_hydration_held_until",
            "hydration_held_until",
            postgresql_where=sa.text(_HELD),
            sqlite_where=sa.text(_HELD),
        ),
        sa.Index(
            "ix_activities_waiting_start",
            "start_date",
            postgresql_where=sa.text(_HELD),
            sqlite_where=sa.text(_HELD),
        ),
    )

    id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    athlete_id: int = _athlete_fk()
    name: str | None = None
    sport_type: str | None = None
    type: str | None = None
    start_date: datetime | None = _timestamp()
    # Strava writes the local wall clock with a "Z" suffix (docs/strava.md §4.4): kept naive.
    start_date_local: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime()))
    timezone: str | None = None
    utc_offset: float | None = None
    distance: float | None = None
    moving_time: int | None = None
    elapsed_time: int | None = None
    total_elevation_gain: float | None = None
    average_speed: float | None = None
    max_speed: float | None = None
    average_heartrate: float | None = None
    max_heartrate: float | None = None
    workout_type: int | None = None
    visibility: str | None = None
    private: bool | None = None
    trainer: bool | None = None
    commute: bool | None = None
    manual: bool | None = None
    gear_id: str | None = None
    summary_polyline: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    # `json`, not `jsonb`, on PostgreSQL: an archive kept as Strava's text, never queried
    # inside; bulk pages skip the binary conversion (migration 0006, docs/benchmarks/backfill.md).
    raw_summary: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column(sa.JSON(), nullable=True)
    )
    raw_detail: dict[str, Any] | None = _json()
    hydration_status: str = Field(default=HydrationStatus.NONE.value, max_length=16)
    hydration_missing: list[str] | None = _json()
    hydrated_at: datetime | None = _timestamp()
    hydrate_attempts: int = 0
    last_hydrate_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    # Set while a hydration waits for Strava quota or backs off after an error.
    retry_after: datetime | None = _timestamp()
    # When a reader last queued an on-demand hydration (service/ingest/on_demand.py): while
    # it is recent, no other reader queues another.
    on_demand_requested_at: datetime | None = _timestamp()
    # Set while the hydration waits for quota outside the broker: when it began to wait, its
    # place in the queue; the release duty admits it (service/ingest/held.py).
    hydration_held_until: datetime | None = _timestamp()
    # Webhook event ordering (service/ingest/events.py, docs/events.md), in Strava's
    # event_time (unix seconds): the newest event seen for this activity; the event time the
    # last fetch covered; and per locally applied field ("title", "type", "private") the
    # event that last set it. An older event never overwrites newer data.
    event_time: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    synced_event_time: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    update_times: dict[str, int] | None = _json()
    created_at: datetime = _created()
    updated_at: datetime = _created()


class RemovalReason(StrEnum):
    DELETED = "deleted"
    # Only with the `activity:read` scope: deleted, or made "Only You" (docs/strava.md §1.4).
    HIDDEN = "hidden"


class ActivityRemoval(SQLModel, table=True):
    """A tombstone for an activity a delete event removed: events older than the removal
    never bring it back, and a newer create (it left "Only You") restores it cleanly."""

    __tablename__ = "activity_removals"
    __table_args__ = (_check_in("activity_removals", "reason", RemovalReason),)

    activity_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False)
    )
    athlete_id: int = _athlete_fk(index=True)
    reason: str = Field(max_length=16)
    event_time: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    removed_at: datetime = _created()


class ActivityStream(SQLModel, table=True):
    """One stream of an activity (`GET /activities/{id}/streams`, keyed by type, docs/strava.md
    §4.3), as Strava sent it. Removed with its activity (ON DELETE CASCADE): deletes and
    purges need no step of their own."""

    __tablename__ = "activity_streams"

    activity_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger,
            sa.ForeignKey("activities.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        )
    )
    type: str = Field(sa_column=sa.Column(sa.String(32), primary_key=True))
    # `json`: an archive of up to thousands of points, read whole, never queried inside.
    data: list[Any] = Field(sa_column=sa.Column(sa.JSON(), nullable=False))
    series_type: str | None = Field(default=None, max_length=16)
    original_size: int | None = None
    resolution: str | None = Field(default=None, max_length=16)
    fetched_at: datetime = _created()


class PendingHydration(SQLModel, table=True):
    """One coalesced fetch of an activity that webhook events asked for (service/ingest/
    coalesce.py). The inbox event `inbox_id` holds it and fetches once `due_at` has come;
    events arriving meanwhile only raise `requested_event_time`."""

    __tablename__ = "pending_hydrations"

    activity_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False)
    )
    athlete_id: int = _athlete_fk(index=True)
    inbox_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    due_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    requested_event_time: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    # The quota tier the fetch is charged to: `webhook`, or `recent` for an athlete past
    # their budget of webhook calls in the window (service/ingest/budget.py).
    tier: str = Field(default="webhook", max_length=16)
    # The activity was neither stored nor removed when the fetch was asked for: a 404 then
    # counts as a forged create.
    unseen: bool = False
    # A delete event waits on this fetch to confirm it (a 404): its event time and the
    # tombstone's reason. The delete event holds the fetch (`inbox_id`).
    delete_event_time: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    delete_reason: str | None = Field(default=None, max_length=16)
    created_at: datetime = _created()


class SyncKind(StrEnum):
    BACKFILL = "backfill"
    RECONCILE = "reconcile"
    FULL_REFRESH = "full_refresh"


class SyncStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    # Waiting for Strava quota; `retry_after` says until when (the message is delayed).
    RATE_LIMITED = "rate_limited"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A job in one of these holds the athlete's one active slot (service/ingest/sync.py).
ACTIVE_SYNC_STATUSES = (SyncStatus.QUEUED, SyncStatus.RUNNING, SyncStatus.RATE_LIMITED)
_ACTIVE_SYNC = "status IN ('queued', 'running', 'rate_limited')"


class SyncJob(SQLModel, table=True):
    """One listing pass over an athlete's activities: a backfill, a reconciliation
    or a full refresh. `cursor` is committed with each page it covers, so a job resumes
    exactly where it stopped; a partial unique index allows one active job per athlete."""

    __tablename__ = "sync_jobs"
    __table_args__ = (
        _check_in("sync_jobs", "kind", SyncKind),
        _check_in("sync_jobs", "status", SyncStatus),
        sa.Index(
            "uq_sync_jobs_one_active",
            "athlete_id",
            unique=True,
            postgresql_where=sa.text(_ACTIVE_SYNC),
            sqlite_where=sa.text(_ACTIVE_SYNC),
        ),
        sa.Index("ix_sync_jobs_status", "status"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigIntKey, primary_key=True))
    athlete_id: int = _athlete_fk()
    kind: str = Field(max_length=16)
    status: str = Field(default=SyncStatus.QUEUED.value, max_length=16)
    cursor: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONType, nullable=False)
    )
    retry_after: datetime | None = _timestamp()
    cancel_requested: bool = False
    # Counters: list calls made, summaries listed, rows new / changed / removed, hydrations
    # queued (they complete later, elsewhere: `strava-ingest sync status` counts those from
    # the rows), failed attempts of the job itself.
    pages: int = 0
    listed: int = 0
    new: int = 0
    updated: int = 0
    deleted: int = 0
    hydrations_queued: int = 0
    failed: int = 0
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = _timestamp()
    started_at: datetime | None = _timestamp()
    finished_at: datetime | None = _timestamp()
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    created_at: datetime = _created()
    updated_at: datetime = _created()


class LogLevel(StrEnum):
    """How much a job log entry matters, in rising order (`LOG_LEVELS`)."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


LOG_LEVELS = tuple(LogLevel)


class SyncJobLogEntry(SQLModel, table=True):
    """One entry of a sync job's log (service/ingest/job_log.py): what the job did, with
    the numbers and Strava's answer in `fields`. Kept SYNC_LOG_RETENTION_DAYS."""

    __tablename__ = "sync_job_log"
    __table_args__ = (
        _check_in("sync_job_log", "level", LogLevel),
        # Reading a job's entries in order, and counting them against the per-job bound.
        sa.Index("ix_sync_job_log_job_id_id", "job_id", "id"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigIntKey, primary_key=True))
    job_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("sync_jobs.id", ondelete="CASCADE"), nullable=False
        )
    )
    # No foreign key of its own: the entry goes with its job, and the job with its athlete.
    # A key to `athletes` would make every write wait for the athlete's row, which a purge
    # holds while it cancels the job, whose row a write holds (job_log.py): a deadlock.
    athlete_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    # Pruning deletes the oldest first.
    at: datetime = _timestamp(nullable=False, index=True)
    level: str = Field(max_length=8)
    message: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    fields: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONType, nullable=False)
    )


class OAuthState(SQLModel, table=True):
    """A spent OAuth `state` nonce (service/web/oauth.py): a replayed callback finds it here.
    Rows outlive the state's own expiry only until the sync sweep removes them."""

    __tablename__ = "oauth_states"

    nonce: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    expires_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class InboxEvent(SQLModel, table=True):
    """One distinct webhook event as Strava pushed it. Strava's retries of the same event
    collapse onto one row through `dedupe_key` (a hash over every field)."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        _check_in("webhook_inbox", "status", InboxStatus),
        sa.Index("ix_webhook_inbox_status_received", "status", "received_at"),
        # Retention pruning (service/ingest/lifecycle.py) finds finished rows by this.
        sa.Index("ix_webhook_inbox_processed_at", "processed_at"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigIntKey, primary_key=True))
    subscription_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    object_type: str = Field(max_length=32)
    object_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    aspect_type: str = Field(max_length=32)
    owner_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False, index=True))
    # Unix seconds, exactly as Strava sent it.
    event_time: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    updates: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONType, nullable=False)
    )
    dedupe_key: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    status: str = Field(default=InboxStatus.RECEIVED.value, max_length=16)
    # Why the event ended `ignored` or `unconfirmed` (e.g. "Strava still lists the activity").
    reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    retry_after: datetime | None = _timestamp()
    received_at: datetime = _created()
    updated_at: datetime = _created()
    processed_at: datetime | None = _timestamp()


class PushSubscription(SQLModel, table=True):
    """The app's one Strava push subscription (docs/strava.md §1.1), as `strava-ingest
    subscription create | view` last saw it. Webhook events must name its id (§1.8)."""

    __tablename__ = "push_subscription"

    id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    callback_url: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    stored_at: datetime = _created()
